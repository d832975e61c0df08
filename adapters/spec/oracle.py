"""The specification as code: a NumPy oracle for plain lookups, and the behaviour
models that describe the known ways frameworks depart from it.

NumPy indexing is used only after every id has been validated, because NumPy
itself wraps negative ids and raises IndexError where the contract says
out_of_range. Rows are moved as unsigned-integer views, so no float ever passes
through an arithmetic unit and every bit (NaN payloads, -0.0, subnormals) stays.

A behaviour model is a sequence of named steps. *Transforms* change the table
or the ids before resolution (``truncate_float_ids``, ``ids_via_table_dtype``, ``bool_as_int``,
``narrow_to_int32``, ``cast_ids_to_int32``, ``cast_ids_to_int32_saturating``,
``float_ids_via_float32``, ``x64_off``, ``bf16_nan_as_ffff``, ``table_rows_fit_ids_dtype``,
``uint64_as_int64``, ``uint64_ids_refused``, ``uint64_ids_refused_by_value``, ``ids_rank_one``);
*resolvers* claim some ids and say what comes back for them (``broadcast_single_row``,
``wrap_negative``, ``wrap_negative_in_id_dtype``, ``fill_nan``, ``fill_zero``, ``clip``), the
first to claim an id in the model's (canonical) order wins; *finishers* change the result
(``canonicalize_bf16_nan``, ``empty_table_returns_table``, ``xla_bf16_via_f32``). Ids no
resolver claims are resolved by the contract. The contract itself is the empty model ``()``.
A framework's own steps live in its folder and register here (``register``); every step's
place in the canonical order, group and pins are in adapters/spec/steps.py.

Float ids meet two casts to int32 in the wild: C's (TensorFlow's and torch's CPU
kernels: a value int32 cannot hold, NaN and infinities included, becomes INT_MIN, the
x86 "integer indefinite") and XLA's (saturating: clamped to [INT_MIN, INT_MAX], NaN
becomes 0). Both truncate toward zero otherwise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from embedding_conformance.adapters.contract import INT_DTYPES, InvalidIds, InvalidTable, LookupFailure, OutOfRange

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


# --- transforms: (table, ids) -> (table, ids) ------------------------------------

def _truncate_float_ids(table, ids):
    # C-style cast toward zero, as a framework that casts floats to ints does
    return table, (np.trunc(ids).astype(np.int64) if ids.dtype.kind == "f" else ids)


def _bool_as_int(table, ids):
    return table, (ids.astype(np.int64) if ids.dtype == np.bool_ else ids)


def _narrow_to_int32(table, ids):
    # two's-complement wrap to 32 bits, what a C cast int64 -> int32 does
    if ids.dtype.kind in "iu" and ids.dtype.itemsize > 4 or ids.dtype == np.uint32:
        return table, ids.astype(np.int32)
    return table, ids


_INT32 = np.iinfo(np.int32)


def _float_to_int32(ids: np.ndarray, saturating: bool) -> np.ndarray:
    """A float -> int32 cast: truncation toward zero; what int32 cannot hold (NaN and
    infinities too) is INT_MIN (C on x86) or, ``saturating``, clamped with NaN -> 0 (XLA)."""
    x = np.asarray(ids, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        t = np.trunc(x)
        fits = (t >= _INT32.min) & (t <= _INT32.max)
    out = np.full(x.shape, _INT32.min, dtype=np.int32)
    out[fits] = t[fits].astype(np.int32)
    if saturating:
        out[~fits & (x > 0)] = _INT32.max
        out[np.isnan(x)] = 0
    return out


def _cast_to_int32(ids, saturating: bool):
    # Keras: ids of any dtype but int32/int64 are cast to int32 (floats truncate, bools
    # become 0/1, uint32/uint64 wrap); int64 is left alone
    if ids.dtype.name in ("int32", "int64"):
        return ids
    if ids.dtype.kind == "f":
        return _float_to_int32(ids, saturating)
    return ids.astype(np.int32)


def _cast_ids_to_int32(table, ids):
    return table, _cast_to_int32(ids, saturating=False)


def _cast_ids_to_int32_saturating(table, ids):
    return table, _cast_to_int32(ids, saturating=True)


def _float_ids_via_float32(table, ids):
    # a keras.Model autocasts float inputs to float32: float64 ids are rounded to
    # float32 first (0.9999999999999999 becomes 1.0)
    if ids.dtype == np.float64:
        with np.errstate(over="ignore"):
            return table, ids.astype(np.float32)
    return table, ids


def _bf16_nan_as_ffff(table, ids):
    # a bfloat16 table carried through float32 and cast back with torch's conversion:
    # every NaN, whatever its sign and payload, becomes 0xffff (a negative quiet NaN)
    if table.dtype.name != "bfloat16":
        return table, ids
    bits = table.view(np.uint16).copy()
    nan, _ = _bf16_classes(bits)
    bits[nan] = 0xFFFF
    return bits.view(table.dtype), ids


def _table_rows_fit_ids_dtype(table, ids):
    # a kernel indexing in the ids' own type refuses a table with more rows than that
    # type can count (TensorFlow's GatherV2: "params.shape[0] too large for int16 indexing")
    if ids.dtype.kind in "iu" and table.shape[0] > np.iinfo(ids.dtype).max:
        raise LookupFailure(f"a table of {table.shape[0]} rows is too large for {ids.dtype} indexing")
    return table, ids


def _x64_off(table, ids):
    # JAX with jax_enable_x64 off (its default): int64 -> int32 and uint64 -> uint32
    # (mod 2**32, keeping signedness), float64 ids and a float64 table -> float32
    # (round to nearest even)
    if ids.dtype == np.int64:
        ids = ids.astype(np.int32)
    elif ids.dtype == np.uint64:
        ids = ids.astype(np.uint32)
    elif ids.dtype == np.float64:
        with np.errstate(over="ignore"):
            ids = ids.astype(np.float32)
    if table.dtype == np.float64:
        with np.errstate(over="ignore", invalid="ignore"):
            table = table.astype(np.float32)
    return table, ids


def _ids_via_table_dtype(table, ids):
    # Keras 3.0 on TensorFlow: Layer.__call__ converts NumPy inputs to the layer's
    # dtype (the table's), so integer ids become floats first: exact while small,
    # infinite or rounded when large (float16 past 65504 is inf); Embedding.call then
    # casts them to int32, where an overflowing value becomes INT_MIN
    if table.dtype.kind == "f" or table.dtype.name == "bfloat16":
        with np.errstate(over="ignore", invalid="ignore"):
            as_float = ids.astype(np.float64).astype(table.dtype).astype(np.float64)
        out = np.full(ids.shape, np.iinfo(np.int32).min, dtype=np.int32)
        fits = np.isfinite(as_float) & (as_float >= -(2.0**31)) & (as_float < 2.0**31)
        out[fits] = np.trunc(as_float[fits]).astype(np.int32)
        return table, out
    return table, ids


def _uint64_as_int64(table, ids):
    # NumPy's take casts ids to intp with the 'same_kind' rule: uint64 ids past 2**63 - 1
    # are read as int64 (two's complement), so 2**64 - 1 is -1
    return table, (ids.astype(np.int64) if ids.dtype == np.uint64 else ids)


def _uint64_ids_refused(table, ids):
    # NumPy before 2.1: np.take casts ids to intp with the 'safe' rule, which uint64 fails
    if ids.dtype == np.uint64:
        raise InvalidIds("uint64 ids do not cast safely to intp")
    return table, ids


def _uint64_ids_refused_by_value(table, ids):
    # NumPy 1.x: as uint64_ids_refused, but a 0-d array is cast by its value (value-based
    # casting, before NEP 50): one below 2**63 is taken as an int64
    if ids.dtype == np.uint64 and (ids.ndim > 0 or int(ids) >= 2**63):
        raise InvalidIds("uint64 ids do not cast safely to intp")
    return table, (ids.astype(np.int64) if ids.dtype == np.uint64 else ids)


def _ids_rank_one(table, ids):
    # the array API standard's take: "indices: the array must be one-dimensional"
    if np.ndim(ids) != 1:
        raise InvalidIds(f"ids of rank {np.ndim(ids)}: the API takes one-dimensional ids only")
    return table, ids








TRANSFORMS = {
    "truncate_float_ids": _truncate_float_ids,
    "ids_via_table_dtype": _ids_via_table_dtype,
    "bool_as_int": _bool_as_int,
    "narrow_to_int32": _narrow_to_int32,
    "float_ids_via_float32": _float_ids_via_float32,
    "cast_ids_to_int32": _cast_ids_to_int32,
    "cast_ids_to_int32_saturating": _cast_ids_to_int32_saturating,
    "x64_off": _x64_off,
    "bf16_nan_as_ffff": _bf16_nan_as_ffff,
    "table_rows_fit_ids_dtype": _table_rows_fit_ids_dtype,
    "uint64_as_int64": _uint64_as_int64,
    "uint64_ids_refused": _uint64_ids_refused,
    "uint64_ids_refused_by_value": _uint64_ids_refused_by_value,
    "ids_rank_one": _ids_rank_one,
}


# --- resolvers: (ids, V) -> (claimed mask, plan) ----------------------------------

def _wrap_negative(ids: np.ndarray, v: int):
    claimed = (ids < 0) & (ids >= -v)
    # asarray: on 0-d object ids (uint64) ``ids + v`` is a Python int, which np.where
    # would squeeze into a C long (2**64 - 1 overflows it)
    return claimed, np.where(claimed, np.asarray(ids + v, dtype=ids.dtype), 0)


def _wrap_in(dtype: np.dtype):
    # jnp.take normalises a negative id as id + V computed in the ids' own dtype (V cast
    # to it first): past the dtype's range the sum wraps (int8 -2 with V = 129 is
    # -2 + (-127) = -129 -> 127, row 127); a result outside [0, V) is left unclaimed
    def resolve(ids: np.ndarray, v: int):
        if dtype.kind != "i":
            return np.zeros(ids.shape, dtype=bool), np.zeros(ids.shape, dtype=np.int64)
        bits = 8 * dtype.itemsize
        wrapped_v = ((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))
        total = (np.asarray(ids, dtype=object) + wrapped_v + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
        total = np.asarray(total, dtype=np.int64)
        claimed = (ids < 0) & (total >= 0) & (total < v)
        return claimed, np.where(claimed, total, 0)
    return resolve

def _fill(code: int):
    # an empty table has no row shape to fill from a gather: the lookup fails instead
    def resolve(ids: np.ndarray, v: int):
        claimed = ((ids < 0) | (ids >= v)) & (v > 0)
        return claimed, np.full(ids.shape, code, dtype=object)
    return resolve


def _clip(ids: np.ndarray, v: int):
    # XLA gather clamps the start index into [0, V - 1]; an empty table has no row
    claimed = ((ids < 0) | (ids >= v)) & (v > 0)
    return claimed, np.where(ids < 0, 0, v - 1)


def _broadcast_single_row(ids: np.ndarray, v: int):
    # flax.nnx.Embed with one row broadcasts it instead of gathering: any id is row 0
    # (and 0-d ids fail, and one broadcast element keeps its bits: see lookup())
    claimed = np.full(ids.shape, v == 1)
    return claimed, np.zeros(ids.shape, dtype=np.int64)




RESOLVERS = {
    "broadcast_single_row": _broadcast_single_row,
    "wrap_negative": _wrap_negative,
    "wrap_negative_in_id_dtype": None,  # built per ids dtype (_wrap_in)
    "fill_nan": _fill(FILL_NAN),
    "fill_zero": _fill(FILL_ZERO),
    "clip": _clip,
}

# finishers: (table, ids, out) -> out


def _bf16_classes(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(NaN, subnormal) masks of bfloat16 bit patterns."""
    exponent, mantissa = bits & 0x7F80, bits & 0x007F
    return (exponent == 0x7F80) & (mantissa != 0), (exponent == 0) & (mantissa != 0)


def _canonicalize_bf16_nan(table, ids, out):
    # jnp.take's fill mode selects through a float op: every bfloat16 NaN becomes
    # the quiet NaN 0x7fc0 with its sign kept
    if out.dtype.name != "bfloat16":
        return out
    bits = out.view(np.uint16).copy()
    nan, _ = _bf16_classes(bits)
    bits[nan] = (bits[nan] & 0x8000) | 0x7FC0
    return bits.view(out.dtype)


# XLA on CPU (TensorFlow 2.21's and jaxlib 0.10.2's LLVM) sometimes carries a bfloat16 result
# through float32 and converts it back in software (without AVX512_BF16): every NaN becomes the
# canonical 0x7fc0 with its sign, nothing else changes. Which gathers do is a matter of shapes alone
# (ids dtype, values, table values and compile history make no difference; a result converts whole
# or not at all): a one-row table becomes a broadcast, whose bfloat16 load LLVM hoists out of its
# loops (and then stores through __truncsfbf2) when the row's loop is fully unrolled; a gather from
# a 1-D table of 2 to 4 rows becomes a chain of float32 selects. LLVM's full-unroll limits are 74
# row elements and 99 scalar stores.
_UNROLL_ROW, _UNROLL_SCALAR = 74, 99


def xla_broadcast_converts(row: tuple[int, ...], ids_shape: tuple[int, ...]) -> bool:
    """Whether XLA's broadcast of one row to ids_shape + row goes through float32."""
    if 0 in row or 0 in ids_shape:
        return False
    r, n = [s for s in row if s != 1], [s for s in ids_shape if s != 1]
    if not r:  # one element: loaded once before the loops, stored in them
        return len(n) >= 2 or (len(n) == 1 and n[0] > _UNROLL_SCALAR)
    if len(r) == 1:  # one row dimension: its loads are hoisted once the row's loop is unrolled
        return bool(n) and r[0] <= _UNROLL_ROW
    return r == [2, 2] and bool(n)  # LLVM removes the 2-trip loop around a 2-element unrolled row


def xla_gather_converts(table_shape: tuple[int, ...], ids_shape: tuple[int, ...]) -> bool:
    """Whether XLA's gather of ids_shape ids from a table of table_shape goes through float32."""
    v, row = table_shape[0], tuple(table_shape[1:])
    if v == 0 or 0 in row or 0 in ids_shape:
        return False
    if v == 1:
        return xla_broadcast_converts(row, tuple(ids_shape))
    return 2 <= v <= 4 and not row  # AlgebraicSimplifier: a small 1-D gather becomes selects in float32


def _xla_bf16_via_f32(table, ids, out):
    if out.dtype.name != "bfloat16" or not xla_gather_converts(table.shape, np.shape(ids)):
        return out
    return _canonicalize_bf16_nan(table, ids, out)


def _empty_table_returns_table(table, ids, out):
    # jnp.take short-cuts a zero-size gather by returning its operand unchanged
    return table.copy() if table.shape[0] == 0 and ids.size == 0 else out


FINISHERS = {
    "canonicalize_bf16_nan": _canonicalize_bf16_nan,
    "empty_table_returns_table": _empty_table_returns_table,
    "xla_bf16_via_f32": _xla_bf16_via_f32,
}

# --- steps of sharded lookups on distributed engines, which depend on the number of devices
# (or ranks) the table is sharded over. A model says that number with one of DEVICE_COUNTS;
# partition.device_count replaces it with each example's count (``on_devices``).
DEVICE_COUNTS = {"over_1_device": 1, "over_2_devices": 2, "over_3_devices": 3, "over_4_devices": 4}


def devices_of(model: Model) -> int:
    return next((DEVICE_COUNTS[m] for m in model if m in DEVICE_COUNTS), 1)


def on_devices(model: Model, n: int) -> tuple[str, ...]:
    """``model`` with its device count set to ``n``."""
    marker = next(k for k, v in DEVICE_COUNTS.items() if v == n)
    return tuple(marker if m in DEVICE_COUNTS else m for m in model)


def _refuse_uneven(axis: int, what: str):
    # JAX refuses a NamedSharding whose sharded dimension the device count does not divide
    # (IndivisibleError), before any id is looked at
    def transform(table, ids, n):
        if n > 1 and table.ndim > axis and table.shape[axis] % n:
            raise InvalidTable(f"{table.shape[axis]} {what} do not divide over {n} devices")
        return table, ids
    return transform


DEVICE_TRANSFORMS = {"uneven_rows_refused": _refuse_uneven(0, "rows"),
                     "uneven_columns_refused": _refuse_uneven(1, "columns")}

# XLA CPU's all-reduce, per dtype: (NaN rule, subnormals flushed). float32 sums quiet a NaN
# keeping sign and payload and flush subnormals; bfloat16 sums flush subnormals and give the
# canonical NaN with its sign; float16 goes through float32, where its subnormals are normal
_XLA_ALLREDUCE = {"float16": ("canonical", False), "bfloat16": ("canonical", True), "float32": ("quiet", True)}


def _allreduce_zero_sum_xla(table, ids, out, n):
    """A row-sharded gather partitioned into gathers that give +0.0 for the rows a device
    does not hold, summed across devices: with two or more devices each element is x + 0.0
    in the all-reduce's arithmetic. -0.0 becomes +0.0; NaNs and subnormals as _XLA_ALLREDUCE."""
    if n < 2 or out.size == 0 or out.dtype.name not in _XLA_ALLREDUCE:
        return out
    nan_rule, flush = _XLA_ALLREDUCE[out.dtype.name]
    e, m = _LAYOUT_BITS[out.dtype.name]
    u = _bits_dtype(out.dtype)
    bits = out.view(u).copy()
    sign, exp_all, mant = u.type(1 << (e + m)), u.type(((1 << e) - 1) << m), u.type((1 << m) - 1)
    nan = ((bits & exp_all) == exp_all) & ((bits & mant) != 0)
    subnormal = ((bits & exp_all) == 0) & ((bits & mant) != 0)
    quiet = u.type(1 << (m - 1))
    if nan_rule == "quiet":
        bits[nan] |= quiet
    else:
        bits[nan] = (bits[nan] & sign) | exp_all | quiet
    bits[(bits == sign) | (subnormal & flush)] = 0
    return bits.view(out.dtype)


_LAYOUT_BITS = {"float16": (5, 10), "bfloat16": (8, 7), "float32": (8, 23), "float64": (11, 52)}
DEVICE_FINISHERS = {"allreduce_zero_sum_xla": _allreduce_zero_sum_xla}

# steps the lookup reads by name rather than through the dicts above
SPECIAL = ("one_hot_matmul", "unchecked_empty_rows", "xla_empty_table_zero_slice")
MODELS = tuple(TRANSFORMS) + tuple(RESOLVERS) + tuple(FINISHERS) + SPECIAL \
    + tuple(DEVICE_COUNTS) + tuple(DEVICE_TRANSFORMS) + tuple(DEVICE_FINISHERS)


def register(kind: str, name: str, fn) -> None:
    """A framework's own step (from its folder, beside its Step in adapters/spec/steps.py):
    ``kind`` is "transform" (table, ids) -> (table, ids), "resolver" (ids, V) -> (mask, rows)
    or "finisher" (table, ids, out) -> out."""
    global MODELS
    target = {"transform": TRANSFORMS, "resolver": RESOLVERS, "finisher": FINISHERS}[kind]
    if target.get(name, fn) is not fn:
        raise ValueError(f"lookup step {name} is registered twice")
    target[name] = fn
    if name not in MODELS:
        MODELS = MODELS + (name,)


def check_model(model: Model) -> None:
    unknown = [m for m in model if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown behaviour model {unknown[0]!r}; known models: {', '.join(MODELS)}")


# --- the lookup ------------------------------------------------------------------

def validate_table(table: np.ndarray) -> None:
    if not isinstance(table, np.ndarray) or table.ndim < 1:
        raise InvalidTable(f"a table is an array of rank >= 1, got {type(table).__name__} "
                           f"of rank {getattr(table, 'ndim', '?')}")


def _transformed(table: np.ndarray, ids: np.ndarray, model: Model):
    validate_table(table)
    ids = np.asarray(ids)
    for step in model:
        if step in TRANSFORMS:
            table, ids = TRANSFORMS[step](table, ids)
        elif step in DEVICE_TRANSFORMS:
            table, ids = DEVICE_TRANSFORMS[step](table, ids, devices_of(model))
    if ids.dtype.name not in INT_DTYPES:
        raise InvalidIds(f"ids must be integers, got {ids.dtype}")
    return table, ids


def resolve(table: np.ndarray, ids: np.ndarray, model: Model = CONTRACT):
    """Where each id's row comes from under ``model``: (table, ids, plan) after the
    transforms, the plan holding a row index or a fill code per id. Raises as the
    lookup does."""
    table, ids = _transformed(table, ids, model)
    v = table.shape[0]
    if "broadcast_single_row" in model and v == 1 and ids.ndim == 0:
        # jnp.broadcast_to(row, ids.shape + (D,)) cannot drop the row's leading 1
        raise LookupFailure("a one-row table is broadcast to ids.shape + row shape, which 0-d ids cannot take")
    wide = _as_int_ids(ids)
    plan = np.full(ids.shape, None, dtype=object)
    unclaimed = np.ones(ids.shape, dtype=bool)
    for step in model:
        if step in RESOLVERS:
            resolver = RESOLVERS[step] or _wrap_in(ids.dtype)
            claimed, rows = resolver(wide, v)
            take = claimed & unclaimed
            plan[take] = np.asarray(rows, dtype=object)[take] if np.ndim(rows) else rows
            unclaimed &= ~take
    bad = unclaimed & ((wide < 0) | (wide >= v))
    if bad.any():
        first = wide[bad].flat[0]
        raise OutOfRange(f"id {first} is outside [0, {v})")
    plan[unclaimed] = wide[unclaimed]
    return table, ids, plan.astype(np.int64)


def lookup(table: np.ndarray, ids: np.ndarray, model: Model = CONTRACT) -> np.ndarray:
    """``out[k] == table[ids[k]]`` bit for bit, under ``model`` (the contract by default)."""
    if "one_hot_matmul" in model:
        return one_hot_matmul(*_transformed(table, ids, model))
    if "xla_empty_table_zero_slice" in model and table.shape[0] == 0 and np.size(ids):
        # XLA's gather from an empty operand yields zeros of one row's shape, the
        # ids' dimensions dropped
        _transformed(table, ids, model)
        return np.zeros(table.shape[1:], dtype=table.dtype)
    if "unchecked_empty_rows" in model and 0 in table.shape[1:]:
        # rows with no elements: a kernel whose bounds check sits in the loop over
        # row elements never runs it, so any id gives the (empty) row
        table, ids = _transformed(table, ids, model)
        return np.empty(ids.shape + table.shape[1:], dtype=table.dtype)
    if "broadcast_single_row" in model and table.shape[0] == 1:
        table, ids, _ = resolve(table, ids, model)  # the ids' dtype checked, 0-d ids refused
        out = _gather(table, np.zeros(np.shape(ids), dtype=np.int64))
        # XLA's broadcast of the row, through float32 for some shapes (xla_bf16_via_f32)
        return _xla_bf16_via_f32(table, ids, out) if "xla_bf16_via_f32" in model else out
    table, ids, plan = resolve(table, ids, model)
    out = _gather(table, plan)
    for step in model:
        if step in FINISHERS:
            out = FINISHERS[step](table, ids, out)
        elif step in DEVICE_FINISHERS:
            out = DEVICE_FINISHERS[step](table, ids, out, devices_of(model))
    return out


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
    hot = (np.asarray(ids)[..., None] == np.arange(v)).astype(np.float64)
    flat = table.reshape(v, -1).astype(np.float64)  # exact: one term is non-zero
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 is NaN: that is the point of E6
        return (hot @ flat).astype(table.dtype).reshape(np.shape(ids) + table.shape[1:])


class AnyNaN(np.ndarray):
    """An expected result whose NaN elements may carry any bits (sign, payload):
    where arithmetic produces a NaN, which NaN is the kernel's accumulation order."""


def one_hot_matmul(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The lookup as tf_keras computes it with use_one_hot_matmul=True:
    ``one_hot(ids) @ table`` in the table's dtype. Per output element (k, j), with
    i = ids[k]: NaN if any other row's T[r, j] is NaN or infinite (0 * inf) or
    T[i, j] is NaN; else T[i, j] for i in [0, V) unless it is zero or (except in
    float16) subnormal, which the CPU kernel reads as zero; else a zero, of
    either sign (the kernel's accumulator decides; compared by value) (an id
    outside [0, V) is an all-zero one-hot vector). 0-d ids are InvalidIds: their
    one-hot vector has rank 1 and tf.matmul takes only operands of rank >= 2."""
    if np.ndim(ids) == 0:
        raise InvalidIds("ids of rank 0: tf.matmul(tf.one_hot(ids, V), table) needs rank >= 2 operands")
    v = table.shape[0]
    flat = table.reshape(v, -1)
    wide = _as_int_ids(ids).reshape(-1)
    with np.errstate(invalid="ignore"):  # bfloat16 NaNs widen without a warning
        x = flat.astype(np.float64)
    if table.dtype != np.float16:
        x = np.where(np.abs(x) < _tiny(table.dtype), 0.0, x)  # denormals are zero
    bad = ~np.isfinite(x)
    out = np.zeros((wide.size, flat.shape[1]), dtype=table.dtype)
    for k, i in enumerate(wide):
        inside = 0 <= i < v
        others = bad.copy()
        if inside:
            others[int(i)] = False
        poisoned = others.any(axis=0)
        row = x[int(i)] if inside else np.zeros(flat.shape[1])
        keep = inside & (row != 0) & np.isfinite(row)  # a zero comes back with the sign the kernel gives it (AnyNaN)
        res = np.zeros(flat.shape[1], dtype=table.dtype)
        res[keep] = flat[int(i)][keep] if inside else 0
        res[poisoned | (np.isnan(row) if inside else False)] = np.nan
        if inside:
            inf_here = np.isinf(row) & ~poisoned
            res[inf_here] = flat[int(i)][inf_here]
        out[k] = res
    return out.reshape(ids.shape + table.shape[1:]).view(AnyNaN)


def _tiny(dtype: np.dtype) -> float:
    return 2.0**-126 if dtype.name == "bfloat16" else float(np.finfo(dtype).tiny)
