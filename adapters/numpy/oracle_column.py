"""The ``numpy`` adapter: the oracle itself, every capability, so the suite can
run with no framework and every clause's machinery is exercised."""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.spec import bags
from embedding_conformance.adapters.spec import oracle
from embedding_conformance.adapters.spec import partition
from embedding_conformance.adapters.spec import training
from embedding_conformance.adapters.contract import Capabilities, Description, methods_of

_CALLS = {
    "lookup": "oracle.lookup(table, ids)",
    "lookup_sharded": "partition.lookup_sharded(shards, ids, strategy)",
    "grad": "training.grad(table, ids, upstream)",
    "grad_padded": "training.grad_padded(table, ids, upstream, padding_idx)",
    "grad_scaled": "training.grad_scaled(table, ids, upstream)",
    "lookup_with_state": "training.lookup_with_state(table, ids, max_norm)",
    "lookup_mask_zero": "(oracle.lookup(table, ids), ids != 0)",
    "lookup_loaded": "oracle.lookup(np.array(table, copy=True), ids)",
    "lookup_bags": "np.asarray(bags.lookup_bags(table, values, offsets, weights, combiner))",
    "grad_bags": "np.asarray(bags.grad_bags(table, values, offsets, weights, combiner, upstream))",
    "lookup_bags_padded": "np.asarray(bags.lookup_bags_padded(table, values, offsets, weights, combiner, padding_idx))",
}


class NumpyAdapter:
    name = "numpy"
    framework = "numpy"
    capabilities = Capabilities(load_paths=("copy",))

    def lookup(self, table, ids):
        return oracle.lookup(table, ids)

    def lookup_sharded(self, shards, ids, strategy):
        return partition.lookup_sharded(shards, ids, strategy)

    def grad(self, table, ids, upstream):
        return np.asarray(training.grad(table, ids, upstream))

    def grad_padded(self, table, ids, upstream, padding_idx):
        out, g = training.grad_padded(table, ids, upstream, padding_idx)
        return out, np.asarray(g)

    def grad_scaled(self, table, ids, upstream):
        return np.asarray(training.grad_scaled(table, ids, upstream))

    def lookup_with_state(self, table, ids, max_norm=None):
        return training.lookup_with_state(table, ids, max_norm)

    def lookup_loaded(self, table, ids, path):
        if path != "copy":
            raise ValueError(f"numpy has no load path {path!r}; it takes copy")
        return oracle.lookup(np.array(table, copy=True), ids)

    def lookup_mask_zero(self, table, ids):
        return oracle.lookup(table, ids), np.asarray(np.asarray(ids) != 0)

    def lookup_bags(self, table, values, offsets, weights, combiner):
        return np.asarray(bags.lookup_bags(table, values, offsets, weights, combiner))

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        return np.asarray(bags.grad_bags(table, values, offsets, weights, combiner, upstream))

    def lookup_bags_padded(self, table, values, offsets, weights, combiner, padding_idx):
        return np.asarray(bags.lookup_bags_padded(table, values, offsets, weights, combiner, padding_idx))

    def snippet(self, op: str, args: dict[str, str]) -> str:
        lines = ["import numpy as np", "import ml_dtypes", "from embedding_conformance.adapters.spec import bags, oracle, partition, training"]
        lines += [f"{k} = {v}" for k, v in args.items()]
        lines += [f"result = {_CALLS[op]}", "print(repr(result))"]
        return "\n".join(lines)


def describe(name: str) -> Description:
    return Description(methods_of(NumpyAdapter), NumpyAdapter.capabilities)
