"""The specification as code: a NumPy oracle for plain lookups, and the behaviour
models that describe the known ways frameworks depart from it.

NumPy indexing is used only after every id has been validated, because NumPy
itself wraps negative ids and raises IndexError where the contract says
out_of_range. Rows are moved as unsigned-integer views, so no float ever passes
through an arithmetic unit and every bit (NaN payloads, -0.0, subnormals) stays.

A behaviour model is a sequence of named steps applied to the ids:
*transforms* change the ids before resolution (``truncate_float_ids``,
``narrow_to_int32``, ``bool_as_int``); *resolvers* claim some ids and say what
comes back for them (``wrap_negative``, ``fill_nan``, ``fill_zero``, ``clip``).
Ids no resolver claims are resolved by the contract. The contract itself is the
empty model ``()``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .contract import INT_DTYPES, InvalidIds, InvalidTable, OutOfRange

Model = Sequence[str]
CONTRACT: Model = ()

# A resolver maps (ids as int64-exact Python-comparable array, V) to a per-id
# "plan": row index >= 0, or one of the fill codes below, for the ids it claims
# (mask), leaving the rest to later resolvers and the contract.
FILL_NAN, FILL_ZERO = -1, -2


def _bits_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{dtype.itemsize}") if dtype.itemsize in (1, 2, 4, 8) else dtype


def _as_int_ids(ids: np.ndarray) -> np.ndarray:
    """Ids as a NumPy integer array the oracle compares exactly (object for uint64,
    whose values above 2**63 do not fit int64)."""
    if ids.dtype == np.uint64:
        return ids.astype(object)
    return ids.astype(np.int64)


# --- transforms: ids -> ids ------------------------------------------------------

def _truncate_float_ids(ids: np.ndarray) -> np.ndarray:
    # C-style cast toward zero, as a framework that casts floats to ints does
    return np.trunc(ids).astype(np.int64) if ids.dtype.kind == "f" else ids


def _bool_as_int(ids: np.ndarray) -> np.ndarray:
    return ids.astype(np.int64) if ids.dtype == np.bool_ else ids


def _narrow_to_int32(ids: np.ndarray) -> np.ndarray:
    # two's-complement wrap to 32 bits, what a C cast int64 -> int32 does
    if ids.dtype.kind in "iu" and ids.dtype.itemsize > 4 or ids.dtype == np.uint32:
        return ids.astype(np.int32)
    return ids


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "truncate_float_ids": _truncate_float_ids,
    "bool_as_int": _bool_as_int,
    "narrow_to_int32": _narrow_to_int32,
}


# --- resolvers: (ids, V) -> (claimed mask, plan) ----------------------------------

def _wrap_negative(ids: np.ndarray, v: int):
    claimed = (ids < 0) & (ids >= -v)
    return claimed, np.where(claimed, ids + v, 0)


def _fill(code: int):
    def resolve(ids: np.ndarray, v: int):
        claimed = (ids < 0) | (ids >= v)
        return claimed, np.full(ids.shape, code, dtype=object)
    return resolve


def _clip(ids: np.ndarray, v: int):
    # XLA gather clamps the start index into [0, V - 1]; an empty table has no row
    claimed = ((ids < 0) | (ids >= v)) & (v > 0)
    return claimed, np.where(ids < 0, 0, v - 1)


RESOLVERS = {
    "wrap_negative": _wrap_negative,
    "fill_nan": _fill(FILL_NAN),
    "fill_zero": _fill(FILL_ZERO),
    "clip": _clip,
}

MODELS = tuple(TRANSFORMS) + tuple(RESOLVERS)


def check_model(model: Model) -> None:
    unknown = [m for m in model if m not in TRANSFORMS and m not in RESOLVERS]
    if unknown:
        raise ValueError(f"unknown behaviour model {unknown[0]!r}; known models: {', '.join(MODELS)}")


# --- the lookup ------------------------------------------------------------------

def validate_table(table: np.ndarray) -> None:
    if not isinstance(table, np.ndarray) or table.ndim < 1:
        raise InvalidTable(f"a table is an array of rank >= 1, got {type(table).__name__} "
                           f"of rank {getattr(table, 'ndim', '?')}")


def lookup(table: np.ndarray, ids: np.ndarray, model: Model = CONTRACT) -> np.ndarray:
    """``out[k] == table[ids[k]]`` bit for bit, under ``model`` (the contract by default)."""
    validate_table(table)
    ids = np.asarray(ids)
    for step in model:
        if step in TRANSFORMS:
            ids = TRANSFORMS[step](ids)
    if ids.dtype.name not in INT_DTYPES:
        raise InvalidIds(f"ids must be integers, got {ids.dtype}")
    v = table.shape[0]
    wide = _as_int_ids(ids)
    plan = np.full(ids.shape, None, dtype=object)
    unclaimed = np.ones(ids.shape, dtype=bool)
    for step in model:
        if step in RESOLVERS:
            claimed, rows = RESOLVERS[step](wide, v)
            take = claimed & unclaimed
            plan[take] = np.asarray(rows, dtype=object)[take] if np.ndim(rows) else rows
            unclaimed &= ~take
    bad = unclaimed & ((wide < 0) | (wide >= v))
    if bad.any():
        first = wide[bad].flat[0]
        raise OutOfRange(f"id {first} is outside [0, {v})")
    plan[unclaimed] = wide[unclaimed]
    return _gather(table, plan)


def _gather(table: np.ndarray, plan: np.ndarray) -> np.ndarray:
    bits = table.view(_bits_dtype(table.dtype))
    index = plan.astype(np.int64)
    out = np.empty(index.shape + table.shape[1:], dtype=bits.dtype)
    rows = index >= 0
    if rows.any():  # every index here was validated against [0, V)
        out[rows] = bits[index[rows]]
    nan_rows = index == FILL_NAN
    if nan_rows.any():
        out[nan_rows] = _nan_bits(table.dtype)
    out[index == FILL_ZERO] = 0
    return out.view(table.dtype)


def _nan_bits(dtype: np.dtype):
    # the canonical quiet NaN (positive sign, top mantissa bit set) of the dtype
    return np.array(np.nan, dtype=dtype).view(_bits_dtype(dtype))


def one_hot_product(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """E6: the lookup as ``one_hot(ids) @ table``, computed in the table's dtype."""
    v = table.shape[0]
    hot = (np.asarray(ids)[..., None] == np.arange(v)).astype(table.dtype)
    flat = table.reshape(v, -1)
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 is NaN: that is the point of E6
        return (hot @ flat).reshape(np.shape(ids) + table.shape[1:])
