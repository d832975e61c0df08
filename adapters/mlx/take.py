"""MLX adapters, on MLX's CPU backend (``pip install mlx[cpu]`` on Linux):
``mlx.core.take`` (``mx.take(x, indices, axis=0)``) and ``mlx.nn.Embedding`` (the
layer built with ``nn.Embedding(V, D)``, its weight set with ``load_weights``).

Arrays are built with their own dtype (``mx.array(a, dtype=mx.<dtype>)``: without
it ``mx.array`` turns a float64 NumPy array into float32). A bfloat16 result comes
back through a uint16 view (``np.array`` of an MLX bfloat16 array has no buffer
format), bits unchanged.

MLX does not check ids against the table (ml-explore/mlx#206): an out-of-range id
reads memory past the table, and far enough past it kills the process with
SIGSEGV. So every call runs in a child process (adapters/toolkit/isolation.py): a killed
child is the check's result (``ProcessKilled``), not the end of the worker.

MLX is imported lazily, and only in that child: importing this module imports no
framework.
"""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, Description, FLOAT_DTYPES, InvalidIds, LookupFailure, OutOfRange, methods_of
from embedding_conformance.adapters.toolkit.source import Source

# the prelude: imports and the conversions both ways; it runs (once) in the child
SOURCE = Source("mlx", '''\
import numpy as np
import ml_dtypes
import mlx.core as mx
import mlx.nn as nn


def mx_array(a):
    # an MLX array of a's own dtype (mx.array alone makes float64 float32)
    a = np.asarray(a)
    return mx.array(a, dtype=getattr(mx, "bool_" if a.dtype == np.bool_ else a.dtype.name))


def to_numpy(out):
    if out.dtype == mx.bfloat16:  # np.array() has no bfloat16 buffer format: the bits, as uint16
        return np.array(out.view(mx.uint16)).view(ml_dtypes.bfloat16)
    return np.array(out)
''')

# each adapter's call, as the child runs it and a snippet prints it
CALLS = {
    "mlx.core.take": ["out = mx.take(mx_array(table), mx_array(ids), axis=0)"],
    "mlx.nn.Embedding": [
        "layer = nn.Embedding(table.shape[0], table.shape[1])",
        'layer.load_weights([("weight", mx_array(table))])',
        "out = layer(mx_array(ids))",
    ],
}

_MESSAGES: tuple[tuple[str, type[LookupFailure]], ...] = (
    ("Boolean indices not supported", InvalidIds),  # mx.take
    ("boolean indices are not yet supported", InvalidIds),  # nn.Embedding: weight[ids]
    ("Indices must be integral", InvalidIds),
    # any id of a table with no rows (the one bounds check MLX makes)
    ("Cannot do a non-empty take from an empty axis", OutOfRange),
)

_NOTES = (
    "MLX on the CPU (mlx[cpu]); every call runs in a child process, since an out-of-range id can kill "
    "the process (ml-explore/mlx#206): a killed child is reported as ProcessKilled",
)
CAPABILITIES = {
    "mlx.core.take": Capabilities(table_dtypes=FLOAT_DTYPES, distributions=("mlx", "mlx-cpu"), notes=_NOTES + (
        "mx.take(x, indices, axis=0)",)),
    "mlx.nn.Embedding": Capabilities(table_dtypes=FLOAT_DTYPES, table_ndims=(2,),
                                     distributions=("mlx", "mlx-cpu"), notes=_NOTES + (
        "nn.Embedding(num_embeddings, dims) holds a 2-D weight, set with load_weights([('weight', ...)])",)),
}


def child_lookup(call: str, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Runs in the child process: the call text the adapter handed over."""
    return SOURCE.helper("to_numpy")(SOURCE.run(call, table=table, ids=ids)["out"])


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    if isinstance(exc, LookupFailure):
        return exc
    text = str(exc)
    if isinstance(exc, ZeroDivisionError):
        # nn.Embedding(V, 0): its initializer's scale is sqrt(1 / dims), before any weight is
        # loaded: a framework failure on a valid table (rows of size 0), no contract kind
        return LookupFailure(f"ZeroDivisionError: {text}")
    for needle, cls in _MESSAGES:
        if needle in text:
            return cls(f"{type(exc).__name__}: {text}"[:500])
    return None


class MlxLookup:
    framework = "mlx"

    def __init__(self, name: str):
        from embedding_conformance.adapters.toolkit.isolation import Isolated

        self.name = name
        self.capabilities = CAPABILITIES[name]
        self._call = Isolated(__name__, "child_lookup", preload=("mlx.core", "mlx.nn"), label=f"{name} (MLX)")
        self._call.ready()  # an MLX that does not import makes the adapter unavailable

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        try:
            return self._call(SOURCE.handed_over(CALLS[self.name]), table, ids)
        except Exception as exc:
            failure = classify(exc)
            if failure is None or failure is exc:
                raise
            raise failure from exc

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op != "lookup":
            raise ValueError(f"{self.name} has no operation {op!r}")
        return SOURCE.snippet(args, CALLS[self.name], ["print(out.dtype, out.shape)", "result = show('out', out)"])


def describe(name: str) -> Description:
    return Description(methods_of(MlxLookup), CAPABILITIES[name])


def take() -> MlxLookup:
    return MlxLookup("mlx.core.take")


def embedding() -> MlxLookup:
    return MlxLookup("mlx.nn.Embedding")
