"""``array_api_strict.take``: the array API standard's reference implementation.

``xp.take(xp.asarray(table), xp.asarray(ids), axis=0)`` as the standard writes
it. What the standard says (data-apis.org/array-api, ``take``): ``indices`` "must be
one-dimensional and have an integer data type", a negative index counts from the
last element, and out-of-bounds behaviour is unspecified. array_api_strict takes
only the standard's data types, so float16 and bfloat16 tables cannot be built
(``TypeError: The array_api_strict namespace does not support the dtype``): its
capabilities say so. Its departures (1-D ids only, negative ids wrap) are declared
in adapters/array_api/declarations.toml.

array_api_strict is imported lazily.
"""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, Description, InvalidIds, LookupFailure, OutOfRange, Translate, methods_of
from embedding_conformance.adapters.toolkit.source import Source

SOURCE = Source("array_api_strict", """\
import numpy as np
import ml_dtypes
import array_api_strict as xp

to_numpy = np.asarray  # array_api_strict wraps a NumPy array; np.asarray hands it over unchanged
""")
# the call, as the adapter runs it and a snippet prints it
_CALL = [
    "x = xp.asarray(table)",
    "indices = xp.asarray(ids)",
    "out = xp.take(x, indices, axis=0)",
]

# (exception type name, substring) -> failure class, by what went wrong
_MESSAGES: tuple[tuple[str, str, type[LookupFailure]], ...] = (
    ("IndexError", "out of bounds", OutOfRange),
    ("IndexError", "non-empty take from an empty", OutOfRange),
    # the standard's take takes one-dimensional integer indices only
    ("ValueError", "Only 1-dim indices array is supported", InvalidIds),
    ("TypeError", "Only integer dtypes are allowed in indexing", InvalidIds),
)

CAPABILITIES = Capabilities(
    table_dtypes=("float32", "float64"),
    distributions=("array-api-strict",),
    notes=(
        "the array API standard has no float16 or bfloat16: array_api_strict.asarray refuses them "
        "(TypeError: The array_api_strict namespace does not support the dtype)",
        "take(x, indices, axis=0): the standard asks for one-dimensional integer indices, wraps "
        "negative ones and leaves out-of-bounds behaviour unspecified",
    ),
)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure an array_api_strict exception stands for; the call's ids'
    dtype tells a dtype refused for the ids from one refused for the table."""
    ids_dtype = call.ids_dtype
    msg = str(exc)
    for type_name, needle, cls in _MESSAGES:
        if type(exc).__name__ == type_name and needle in msg:
            return cls(msg)
    # xp.asarray of a dtype outside the standard (float16 ids, ...): refused ids
    if isinstance(exc, TypeError) and "namespace does not support the dtype" in msg and (
            ids_dtype is None or f"'{np.dtype(ids_dtype).name}'" in msg):
        return InvalidIds(msg)
    return None


class ArrayApiStrictTake:
    name = "array_api_strict.take"
    framework = "array-api-strict"
    capabilities = CAPABILITIES

    def __init__(self):
        SOURCE.base()  # imports array_api_strict: one that does not import makes the adapter unavailable

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        with Translate(lambda exc: classify(exc, Call(ids)), catch=(IndexError, ValueError, TypeError)):
            ns = SOURCE.run(_CALL, table=table, ids=ids)
        return SOURCE.helper("to_numpy")(ns["out"])

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op != "lookup":
            raise ValueError(f"{self.name} has no operation {op!r}")
        return SOURCE.snippet(args, _CALL, ["print(out.dtype, out.shape)", "result = show('out', out)"])


def describe(name: str) -> Description:
    return Description(methods_of(ArrayApiStrictTake), CAPABILITIES)


def take() -> ArrayApiStrictTake:
    return ArrayApiStrictTake()
