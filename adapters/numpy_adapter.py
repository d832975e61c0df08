"""The ``numpy`` adapter: the oracle itself, so the suite can run with no framework."""
from __future__ import annotations

import numpy as np

from . import oracle, partition
from .contract import Capabilities


class NumpyAdapter:
    name = "numpy"
    framework = "numpy"
    capabilities = Capabilities()

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return oracle.lookup(table, ids)

    def lookup_sharded(self, shards: list[np.ndarray], ids: np.ndarray, strategy: str) -> np.ndarray:
        return partition.lookup_sharded(shards, ids, strategy)

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        return oracle.grad(table, ids, upstream)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        call = {
            "lookup": "oracle.lookup(table, ids)",
            "lookup_sharded": "partition.lookup_sharded(shards, ids, strategy)",
            "grad": "oracle.grad(table, ids, upstream)",
        }[op]
        lines = ["import numpy as np", "from adapters import oracle, partition"]
        lines += [f"{k} = {v}" for k, v in args.items()]
        lines += [f"print(repr({call}))"]
        return "\n".join(lines)
