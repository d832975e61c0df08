"""Hypothesis strategies for tables, ids, shard lists and upstream gradients.

Built on hypothesis.extra.numpy. Floats are drawn as bit patterns (every NaN
payload, both zeros, infinities and subnormals are reachable, nothing is
rejected), with the special values favoured. Ids favour the boundaries 0, V-1,
V, -1, -V, -V-1 and each dtype's extremes. Sizes stay small: a lookup's
behaviour does not depend on size, and small draws shrink to clear examples.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from adapters.contract import Capabilities, INT_DTYPES

MAX_V = 9
MAX_SIDE = 3


@lru_cache(maxsize=None)
def np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


# --- float bit patterns ---------------------------------------------------------

# (sign, exponent bits, mantissa bits) per float width
_LAYOUT = {"float16": (5, 10), "bfloat16": (8, 7), "float32": (8, 23), "float64": (11, 52)}


@lru_cache(maxsize=None)
def special_bits(dtype_name: str) -> tuple[int, ...]:
    """Bit patterns a lookup must carry unchanged: zeros, infinities, quiet and
    signalling NaNs with payloads of both signs, subnormals, the finite extremes."""
    e, m = _LAYOUT[dtype_name]
    sign = 1 << (e + m)
    exp_all = ((1 << e) - 1) << m
    quiet = 1 << (m - 1)
    patterns = [
        0, sign,                                  # +0.0, -0.0
        exp_all, sign | exp_all,                  # +inf, -inf
        exp_all | quiet,                          # canonical quiet NaN
        exp_all | quiet | 0b101,                  # quiet NaN with a payload
        sign | exp_all | quiet | 0b11,            # negative quiet NaN with a payload
        exp_all | 1,                              # signalling NaN, smallest payload
        1, (1 << m) - 1, sign | 1,                # subnormals: min, max, negative min
        exp_all - 1,                              # max finite
        (((1 << (e - 1)) - 1) << m),              # 1.0
    ]
    return tuple(patterns)


@lru_cache(maxsize=None)
def _raw(nbytes: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=nbytes, max_size=nbytes)


# at least one special value in every non-empty table: a lookup that changes one
# bit pattern (a NaN payload, a subnormal) is met in most examples, on every seed
_SPECIAL_COUNT = st.integers(1, 4)
_ALL_SPECIAL = st.booleans()


@lru_cache(maxsize=None)
def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """st.integers, built once per range (building and validating a strategy costs
    more than drawing from it)."""
    return st.integers(lo, hi)


@lru_cache(maxsize=None)
def choice(options: tuple) -> st.SearchStrategy:
    return st.sampled_from(options)


@st.composite
def _bit_tables(draw, dtype_name: str, shape: tuple[int, ...]):
    # one draw of raw bytes for the whole table (cheap, shrinks to +0.0), then a
    # few special bit patterns planted at drawn positions
    dtype = np_dtype(dtype_name)
    bits_dtype = np.dtype(f"u{dtype.itemsize}")
    n = int(np.prod(shape, dtype=np.int64))
    bits = np.frombuffer(draw(_raw(n * dtype.itemsize)), dtype=bits_dtype).copy()
    if n and draw(_ALL_SPECIAL, label="every element special"):
        # a table made only of special values: a lookup that changes any of them
        # (quiets a NaN, flushes a subnormal) shows it in whichever row it returns
        specials = np.array(special_bits(dtype_name), dtype=bits_dtype)
        bits = specials[np.frombuffer(draw(_raw(n)), dtype=np.uint8) % len(specials)]
    elif n:
        for _ in range(draw(_SPECIAL_COUNT)):
            bits[draw(ints(0, n - 1))] = draw(choice(special_bits(dtype_name)))
    return bits.view(dtype).reshape(shape)


@st.composite
def _small_int_arrays(draw, shape: tuple[int, ...], lo: int, hi: int):
    """Integers in [lo, hi] from one draw of bytes (shrinks towards lo)."""
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.frombuffer(draw(_raw(n)), dtype=np.uint8).astype(np.int64)
    return (lo + raw % (hi - lo + 1)).reshape(shape)


@lru_cache(maxsize=4096)
def tables_of(dtype_name: str, shape: tuple[int, ...], *, finite: bool = False) -> st.SearchStrategy[np.ndarray]:
    """A table of the given dtype and shape: any bit pattern, special values
    favoured; or, ``finite``, small integer values, exact in every dtype (for
    clauses whose oracle does arithmetic)."""
    if finite:
        dtype = np_dtype(dtype_name)
        return _small_int_arrays(shape, -8, 8).map(lambda a: a.astype(dtype))
    return _bit_tables(dtype_name, shape)


@lru_cache(maxsize=None)
def row_shapes(caps: Capabilities, *, min_side: int = 1) -> st.SearchStrategy[tuple[int, ...]]:
    ndims = sorted(caps.table_ndims)
    return st.sampled_from(ndims).flatmap(
        lambda nd: hnp.array_shapes(min_dims=nd - 1, max_dims=nd - 1, min_side=min_side, max_side=MAX_SIDE)
        if nd > 1 else st.just(())
    )


def dtype_range(name: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(name))
    return int(info.min), int(info.max)


def ids_array(dtype_name: str, shape: tuple[int, ...], elements: st.SearchStrategy[int]) -> st.SearchStrategy[np.ndarray]:
    """Ids drawn element by element: for small arrays of arbitrary values."""
    return hnp.arrays(np.dtype(dtype_name), shape, elements=elements)


@st.composite
def _valid_array(draw, dtype_name: str, shape: tuple[int, ...], v: int):
    # one draw of bytes gives every id; then the boundaries 0 and V-1 planted
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.frombuffer(draw(_raw(2 * n)), dtype=np.uint16).astype(np.int64) % v
    if n:
        for _ in range(draw(ints(0, 2))):
            raw[draw(ints(0, n - 1))] = draw(choice(tuple(sorted({0, v - 1}))))
    return raw.reshape(shape).astype(dtype_name)


_ID_SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=MAX_SIDE)
_NONEMPTY_SHAPES = {d: hnp.array_shapes(min_dims=d, max_dims=4, min_side=1, max_side=MAX_SIDE) for d in range(5)}


@st.composite
def _zero_size_shape(draw):
    shape = list(draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=MAX_SIDE)))
    shape[draw(ints(0, len(shape) - 1))] = 0
    return tuple(shape)


@lru_cache(maxsize=None)
def in_range_ids(id_dtype: str, v: int) -> st.SearchStrategy[np.ndarray]:
    """Valid ids of any rank 0..4; zero-size shapes included (the only ones when V == 0)."""
    if v == 0:
        return _zero_size_shape().map(lambda s: np.zeros(s, dtype=id_dtype))
    return _ID_SHAPES.flatmap(lambda s: _valid_array(id_dtype, s, v))


@st.composite
def planted_ids(draw, dtype_name: str, v: int, targets: st.SearchStrategy[int], *, min_dims: int = 0):
    """An ids array holding at least one id drawn from ``targets`` (the inputs a
    clause is about), the rest valid ids."""
    shape = draw(_NONEMPTY_SHAPES[min_dims], label="ids.shape")
    if v > 0:
        ids = draw(_valid_array(dtype_name, shape, v), label="ids")
    else:  # nothing is valid: every id is a target
        ids = np.full(shape, draw(targets), dtype=dtype_name)
    for _ in range(draw(ints(1, 3), label="planted count")):
        ids.reshape(-1)[draw(ints(0, ids.size - 1), label="planted position")] = draw(targets, label="planted id")
    return ids


def upstreams(dtype_name: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Upstream gradients: small integers and halves, exact in every float dtype,
    so the only rounding in a scatter-add is the accumulation itself."""
    dtype = np_dtype(dtype_name)
    return _small_int_arrays(shape, -16, 16).map(lambda a: (a / 2).astype(dtype))


SIGNED = tuple(d for d in INT_DTYPES if d.startswith("int"))


# --- whole lookup cases -----------------------------------------------------------

@lru_cache(maxsize=None)
def _row_counts(lo: int, hi: int) -> st.SearchStrategy[int]:
    small = ints(lo, min(lo + 1, hi))
    return st.one_of(small, ints(lo, hi), ints(lo, hi))


@st.composite
def lookup_args(draw, caps: Capabilities, *, ids=in_range_ids, v_min: int = 0, v_max: int = MAX_V,
                id_dtypes: tuple[str, ...] | None = None, table_dtypes: tuple[str, ...] | None = None,
                row_min_side: int = 1, finite: bool = False):
    """``{"table": ..., "ids": ...}``; ``ids(id_dtype, V)`` is the clause's aim."""
    dtype = draw(choice(tuple(table_dtypes or caps.table_dtypes)), label="table dtype")
    v_min = max(v_min, caps.min_rows)
    # the smallest tables are where compilers take shortcuts (a one-row gather
    # becomes a broadcast): favoured, one example in three
    v = draw(_row_counts(v_min, max(v_max, v_min)), label="V")
    row = draw(row_shapes(caps, min_side=row_min_side), label="row shape")
    table = draw(tables_of(dtype, (v, *row), finite=finite), label="table")
    id_dtype = draw(choice(tuple(id_dtypes or caps.id_dtypes)), label="ids dtype")
    return {"table": table, "ids": draw(ids(id_dtype, v), label="ids")}


def fits(dtype_name: str, *values: int) -> bool:
    lo, hi = dtype_range(dtype_name)
    return all(lo <= x <= hi for x in values)


# --- shard lists --------------------------------------------------------------------

@st.composite
def logical_tables(draw, caps: Capabilities, *, n_min: int = 0, n_max: int = 10, finite: bool = False):
    dtype = draw(st.sampled_from(caps.table_dtypes), label="table dtype")
    n_min = max(n_min, caps.min_rows)
    n = draw(st.integers(n_min, max(n_max, n_min)), label="N")
    row = draw(row_shapes(caps), label="row shape")
    return draw(tables_of(dtype, (n, *row), finite=finite), label="logical table")


def strategies_of(caps: Capabilities, wanted: tuple[str, ...] = ("mod", "div")) -> tuple[str, ...]:
    return tuple(s for s in caps.strategies if s in wanted)
