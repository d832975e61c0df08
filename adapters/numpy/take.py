"""``numpy.take``: NumPy's own indexing as a column of its own.

``np.take(table, ids, axis=0)`` with its default ``mode='raise'``, as a user who
ports a lookup to NumPy writes it. Its real behaviour departs from the contract
(declared in adapters/numpy/declarations.toml): ids in [-V, -1] wrap, ids are cast
to ``intp`` with the 'same_kind' rule (uint64 ids past 2**63 become negative, bool
ids become 0/1, float ids are refused). The ``numpy`` column is the oracle's own
self-check and stays separate.

Imports nothing but NumPy.
"""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.toolkit.source import Source
from embedding_conformance.adapters.contract import Call, Capabilities, Description, InvalidIds, LookupFailure, OutOfRange, Translate, methods_of

# the call, as the snippet prints it and the adapter runs it
SOURCE = Source("numpy.take", "import numpy as np\nimport ml_dtypes\nto_numpy = np.asarray\n")
_CALL = "out = np.take(table, ids, axis=0)"


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a NumPy exception from ``np.take`` stands for."""
    msg = str(exc)
    if isinstance(exc, IndexError) and ("out of bounds" in msg or "non-empty take from an empty" in msg):
        return OutOfRange(msg)
    if isinstance(exc, TypeError) and ("Cannot cast array data from dtype" in msg
                                       or "Cannot cast scalar from dtype" in msg):
        return InvalidIds(msg)  # float ids (0-d ones too): no 'same_kind' cast to intp
    return None


class NumpyTake:
    name = "numpy.take"
    framework = "numpy"
    capabilities = Capabilities(notes=(
        "np.take(table, ids, axis=0), mode='raise' (the default): ids are cast to intp with the "
        "'same_kind' rule, ids in [-V, -1] wrap, others raise IndexError",
        "not the oracle's self-check: that is the `numpy` column",
    ))

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        with Translate(classify, catch=(IndexError, TypeError)):
            ns = SOURCE.run(_CALL, table=table, ids=ids)
        return np.asarray(ns["out"])

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op != "lookup":
            raise ValueError(f"{self.name} has no operation {op!r}")
        return SOURCE.snippet(args, _CALL, ["print(out.dtype, out.shape)", "result = show('out', out)"])


def describe(name: str) -> Description:
    return Description(methods_of(NumpyTake), NumpyTake.capabilities)


def numpy_take() -> NumpyTake:
    return NumpyTake()
