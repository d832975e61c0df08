"""Hypothesis strategies for tables, ids, shard lists and upstream gradients.

Every example takes its signature (table dtype, V, row shape, ids dtype, ids
shape) from the run's signature pool (suites/signatures.py), so that compiled
adapters compile once per signature, not once per example; the values are drawn
afresh each time. An array costs one draw: a byte string decoded into its
elements (hypothesis.extra.numpy draws element by element, ten times the cost for
the sizes here, and shrinks no better). Floats are bit patterns: every NaN
payload, both zeros, infinities and subnormals are reachable, nothing is rejected,
and the special values are favoured. Ids favour the boundaries 0, V-1, V, -1, -V,
-V-1 and each dtype's extremes. Byte strings shrink towards zero bytes, which
decode to +0.0, id 0 and the first value of each planted range: the simplest
example that still departs.

Reach: tables past every id dtype's wrap boundary (the pool's reach signatures, V up
to 2^16 + 1) are filled from a drawn 8-byte seed (NumPy's generator: every bit
random, so a misread row never passes for the right one), with special values
planted where hypothesis says; valid ids favour the rows at 2^k - 1, 2^k and 2^k + 1
(k = 7, 8, 15, 16) and the last one; float ids come within one ulp of an integer,
with arbitrary fractions and magnitudes; finite tables and upstream gradients have
full mantissas (random bits in a bounded exponent range), so that a computation in
a narrower precision shows.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from hypothesis import strategies as st

from embedding_conformance.adapters.contract import Capabilities, INT_DTYPES

from .signatures import MAX_SIDE, MAX_V, Signature, project, select  # noqa: F401  (MAX_SIDE, MAX_V re-exported)


@lru_cache(maxsize=None)
def np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


# --- cached strategy builders (building and validating a strategy costs more than a draw)

@lru_cache(maxsize=None)
def raw(nbytes: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=nbytes, max_size=nbytes)


@lru_cache(maxsize=None)
def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


@lru_cache(maxsize=None)
def choice(options: tuple) -> st.SearchStrategy:
    return st.sampled_from(options)


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


# --- float bit patterns ---------------------------------------------------------

# (exponent bits, mantissa bits) per float width
_LAYOUT = {"float16": (5, 10), "bfloat16": (8, 7), "float32": (8, 23), "float64": (11, 52)}


@lru_cache(maxsize=None)
def special_bits(dtype_name: str) -> tuple[int, ...]:
    """Bit patterns a lookup must carry unchanged: zeros, infinities, quiet and
    signalling NaNs with payloads of both signs, subnormals, the finite extremes."""
    e, m = _LAYOUT[dtype_name]
    sign = 1 << (e + m)
    exp_all = ((1 << e) - 1) << m
    quiet = 1 << (m - 1)
    return (
        0, sign,                                  # +0.0, -0.0
        exp_all, sign | exp_all,                  # +inf, -inf
        exp_all | quiet,                          # canonical quiet NaN
        exp_all | quiet | 0b101,                  # quiet NaN with a payload
        sign | exp_all | quiet | 0b11,            # negative quiet NaN with a payload
        exp_all | 1,                              # signalling NaN, smallest payload
        1, (1 << m) - 1, sign | 1,                # subnormals: min, max, negative min
        exp_all - 1,                              # max finite
        (((1 << (e - 1)) - 1) << m),              # 1.0
    )


@lru_cache(maxsize=None)
def _specials_array(dtype_name: str) -> np.ndarray:
    return np.array(special_bits(dtype_name), dtype=f"u{np_dtype(dtype_name).itemsize}")


def _bit_table(buf: bytes, dtype_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Byte 0: the whole table special (>= 128) or not; then one selector byte per
    element (>= 192: a special pattern, one in four); then every element's bits.
    A table that is not wholly special still holds one special value at least: a
    lookup that changes one bit pattern (a NaN payload, a subnormal) shows it in most
    examples, on every seed."""
    dtype = np_dtype(dtype_name)
    n = _size(shape)
    specials = _specials_array(dtype_name)
    sel = np.frombuffer(buf, dtype=np.uint8, count=n, offset=1)
    if buf[0] >= 128:
        bits = specials[sel % len(specials)]
    else:
        bits = np.frombuffer(buf, dtype=specials.dtype, count=n, offset=1 + n).copy()
        special = sel >= 192
        if not special.any():
            special[buf[0] % n] = True
        bits[special] = specials[sel[special] % len(specials)]
    return bits.view(dtype).reshape(shape)


BIG = 4096  # elements: a larger table is filled from a drawn seed, not drawn byte by byte
# exponent ranges (unbiased, inclusive) of full-mantissa values: finite tables (max_norm's
# squares stay far from float16's overflow) and upstream gradients
TABLE_EXPONENTS = (-4, 3)
# upstreams span what the dtype holds without a sum of them overflowing: float16 barely
# (a bfloat16 or float32 sum carried in float16 flushes or overflows), the others widely
UPSTREAM_EXPONENTS = {"float16": (-6, 8), "bfloat16": (-40, 40), "float32": (-40, 40), "float64": (-80, 80)}


def _seeded(draw, nbytes: int, label: str) -> bytes:
    """``nbytes`` bytes from an 8-byte seed hypothesis draws (a big table's bulk)."""
    seed = int.from_bytes(draw(raw(8), label=f"{label} seed"), "little")
    return np.random.default_rng(seed).bytes(nbytes)


def full_mantissa(buf: bytes, dtype_name: str, shape: tuple[int, ...], exponents: tuple[int, int]) -> np.ndarray:
    """Finite values with every mantissa bit random, signs random and exponents in
    ``exponents``; one in sixteen a zero of either sign. All-zero bytes decode to +0.0."""
    dtype = np_dtype(dtype_name)
    e_bits, m_bits = _LAYOUT[dtype_name]
    width = 8 * dtype.itemsize
    r = np.frombuffer(buf, dtype=f"u{dtype.itemsize}", count=_size(shape)).astype(np.uint64)
    lo, hi = exponents
    bias = (1 << (e_bits - 1)) - 1
    upper = r >> np.uint64(m_bits)  # the bits above the mantissa pick sign, exponent and zeros
    exponent = (bias + lo + (upper >> np.uint64(4)) % np.uint64(hi - lo + 1)).astype(np.uint64)
    sign = (r >> np.uint64(width - 1)) & np.uint64(1)
    bits = (sign << np.uint64(width - 1)) | (exponent << np.uint64(m_bits)) | (r & np.uint64((1 << m_bits) - 1))
    zero = (upper & np.uint64(0xF)) == 0
    bits[zero] = sign[zero] << np.uint64(width - 1)
    bits[r == 0] = 0
    return bits.astype(f"u{dtype.itemsize}").view(dtype).reshape(shape)


def draw_table(draw, dtype_name: str, shape: tuple[int, ...], *, finite: bool = False,
               label: str = "table") -> np.ndarray:
    """A table of the given dtype and shape: any bit pattern, special values
    favoured; or, ``finite``, full-mantissa finite values (for clauses whose oracle
    does arithmetic). A table past ``BIG`` elements is filled from a drawn seed, with
    special values planted at drawn places."""
    n = _size(shape)
    dtype = np_dtype(dtype_name)
    if n == 0:
        return np.zeros(shape, dtype=dtype)
    if n > BIG:
        return _big_table(draw, dtype_name, shape, finite, label)
    if finite:
        return full_mantissa(draw(raw(n * dtype.itemsize), label=label), dtype_name, shape, TABLE_EXPONENTS)
    return _bit_table(draw(raw(1 + n * (1 + dtype.itemsize)), label=label), dtype_name, shape)


def _big_table(draw, dtype_name: str, shape: tuple[int, ...], finite: bool, label: str) -> np.ndarray:
    dtype = np_dtype(dtype_name)
    n = _size(shape)
    bulk = _seeded(draw, n * dtype.itemsize, label)
    if finite:
        return full_mantissa(bulk, dtype_name, shape, TABLE_EXPONENTS)
    bits = np.frombuffer(bulk, dtype=f"u{dtype.itemsize}").copy()
    specials = _specials_array(dtype_name)
    plant = np.frombuffer(draw(raw(4 * PLANTS), label=f"{label} specials"), dtype=np.uint32)
    bits[plant % n] = specials[(plant >> 20) % len(specials)]
    return bits.view(dtype).reshape(shape)


def small_ints(buf: bytes, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    """Integers in [lo, hi], one byte each (shrinks towards lo)."""
    return (lo + np.frombuffer(buf, dtype=np.uint8).astype(np.int64) % (hi - lo + 1)).reshape(shape)


def draw_upstream(draw, dtype_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Upstream gradients with full mantissas (random bits, exponents in the dtype's
    ``UPSTREAM_EXPONENTS``): a scatter-add that accumulates in a narrower precision or
    range than the table's, or rounds a single contribution, differs from the exact sum."""
    n = _size(shape)
    dtype = np_dtype(dtype_name)
    if n == 0:
        return np.zeros(shape, dtype=dtype)
    buf = draw(raw(n * dtype.itemsize), label="upstream") if n <= BIG else _seeded(draw, n * dtype.itemsize, "upstream")
    return full_mantissa(buf, dtype_name, shape, UPSTREAM_EXPONENTS[dtype_name])


# --- ids --------------------------------------------------------------------------

def dtype_range(name: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(name))
    return int(info.min), int(info.max)


def fits(dtype_name: str, *values: int) -> bool:
    lo, hi = dtype_range(dtype_name)
    return all(lo <= x <= hi for x in values)


SIGNED = tuple(d for d in INT_DTYPES if d.startswith("int"))


WRAPS = (7, 8, 15, 16, 31, 32)  # the bit widths where an id read in fewer bits, or as signed, wraps


@lru_cache(maxsize=None)
def boundary_ids(v: int) -> np.ndarray:
    """The valid ids at the wrap boundaries: 2^k - 1, 2^k, 2^k + 1 below V, and the last two rows."""
    near = {b for k in WRAPS for b in (2**k - 1, 2**k, 2**k + 1)} | {v - 2, v - 1}
    return np.array(sorted(b for b in near if 0 <= b < v), dtype=np.int64)


def _id_bytes(v: int) -> int:
    return 2 if v <= 0x10000 else 4


def _valid(buf: bytes, v: int) -> np.ndarray:
    # per id 2 bytes (4 past 2^16 rows): one in eight the last row V-1, one in eight a row
    # at a wrap boundary, the rest uniform in [0, V)
    width = _id_bytes(v)
    r = np.frombuffer(buf, dtype=f"u{width}").astype(np.int64)
    top = 1 << (8 * width)
    edges = boundary_ids(v)
    return np.where(r >= top * 7 // 8, v - 1, np.where(r >= top * 6 // 8, edges[r % len(edges)], r % v))


def draw_valid_ids(draw, dtype_name: str, shape: tuple[int, ...], v: int, label: str = "ids") -> np.ndarray:
    """Ids in [0, V) of the given dtype and shape (V == 0: the shape must be zero-size);
    only those the dtype holds (a table past the dtype's range keeps rows no id reaches)."""
    n = _size(shape)
    if n == 0:
        return np.zeros(shape, dtype=dtype_name)
    if v == 0:
        raise ValueError(f"no valid ids of shape {shape} for a table with no rows")
    reachable = min(v, dtype_range(dtype_name)[1] + 1)
    return _valid(draw(raw(_id_bytes(reachable) * n), label=label), reachable).reshape(shape).astype(dtype_name)


# A flavour of bad ids is a tuple of closed ranges (lo, hi); a planted id picks one
# range and a value in it. One flavour per example: an array whose bad ids are all
# of one kind meets a lookup that turns that kind wholly into valid rows.
Flavour = tuple[tuple[int, int], ...]
Aim = Callable[[str, int], Sequence[Flavour]]  # (ids dtype, V) -> the flavours of a clause
PLANTS = 3
_PLANT_BYTES = 1 + PLANTS * 11  # a count byte; per plant: 2 position bytes, a range byte, 8 value bytes


@lru_cache(maxsize=None)
def flavours(aim: Aim, dtype_name: str, v: int) -> tuple[Flavour, ...]:
    """The aim's flavours for one ids dtype and V, cut to the dtype's range (none: the
    dtype holds no id the clause is about, e.g. no id >= 2^15 + 1 in int16)."""
    lo, hi = dtype_range(dtype_name)
    out = []
    for flavour in aim(dtype_name, v):
        ranges = tuple((max(a, lo), min(b, hi)) for a, b in flavour if max(a, lo) <= min(b, hi))
        if ranges:
            out.append(ranges)
    return tuple(out)


def _target(buf: bytes, flavour: Flavour) -> int:
    a, b = flavour[buf[0] % len(flavour)]
    return a + int.from_bytes(buf[1:9], "little") % (b - a + 1)


def draw_planted_ids(draw, dtype_name: str, shape: tuple[int, ...], v: int, aim: Aim) -> np.ndarray:
    """An ids array (at least one id) holding 1 to 3 ids of one of the aim's flavours
    (the inputs a clause is about); the rest valid ids, or, with V == 0, all of them
    of that flavour."""
    options = flavours(aim, dtype_name, v)
    if not options:
        raise ValueError(f"{aim.__qualname__} has no ids of dtype {dtype_name} for V = {v}")
    flavour = options[draw(ints(0, len(options) - 1), label="flavour")] if len(options) > 1 else options[0]
    n = _size(shape)
    plant = draw(raw(_PLANT_BYTES), label="planted ids")
    if v > 0:
        ids = draw_valid_ids(draw, dtype_name, shape, v).reshape(-1)
    else:  # nothing is valid: every id is a target
        ids = np.full(n, _target(plant[3:12], flavour), dtype=dtype_name)
    for k in range(1 + plant[0] % PLANTS):
        at = 1 + 11 * k
        ids[int.from_bytes(plant[at:at + 2], "little") % n] = _target(plant[at + 2:at + 11], flavour)
    return ids.reshape(shape)


def draw_ids(draw, sig: Signature, aim: Aim | None) -> np.ndarray:
    if aim is None:
        return draw_valid_ids(draw, sig.ids_dtype, sig.ids_shape, sig.v)
    return draw_planted_ids(draw, sig.ids_dtype, sig.ids_shape, sig.v, aim)


# --- whole lookup cases -----------------------------------------------------------

@lru_cache(maxsize=None)
def signatures(caps: Capabilities, pool: tuple[Signature, ...], *, nonempty: bool = False, v_min: int = 0,
               v_max: int = MAX_V, id_dtypes: tuple[str, ...] | None = None,
               table_dtypes: tuple[str, ...] | None = None, row_min_side: int = 1,
               reach: bool = True, aim: Aim | None = None) -> tuple[Signature, ...]:
    """The signatures a clause draws for an adapter: the pool as the adapter takes it
    (its table dtypes, ids dtypes, fewest rows), then the rows the clause allows
    among them (suites.signatures.select); ``nonempty``: at least one id (for
    clauses that plant the ids they are about); ``reach``: the pool's large tables
    too, whatever ``v_max`` says; ``aim``: only signatures whose ids dtype holds ids
    the clause is about. A clause about ids dtypes the adapter does not declare
    starts from the pool's own ids dtypes."""
    id_dtypes = id_dtypes or caps.id_dtypes
    table_dtypes = table_dtypes or caps.table_dtypes
    base = project(pool, v_min=caps.min_rows, id_dtypes=caps.id_dtypes if set(id_dtypes) <= set(caps.id_dtypes)
                   else INT_DTYPES, table_dtypes=caps.table_dtypes, reach=True)
    sigs = select(base, minimum=max(1, len(pool) // 3), v_min=max(v_min, caps.min_rows), v_max=v_max,
                  id_dtypes=id_dtypes, table_dtypes=table_dtypes, row_min_side=row_min_side,
                  ids="nonempty" if nonempty else "valid", reach=reach)
    if aim is not None:
        sigs = tuple(s for s in sigs if flavours(aim, s.ids_dtype, s.v))
    return sigs


def draw_lookup(draw, sigs: tuple[Signature, ...], aim: Aim | None = None, *, finite: bool = False):
    """(signature, {"table": ..., "ids": ...}); ``aim`` the clause's bad ids, if any."""
    sig = draw(choice(sigs), label="signature")
    table = draw_table(draw, sig.table_dtype, sig.table_shape, finite=finite)
    return sig, {"table": table, "ids": draw_ids(draw, sig, aim)}


@st.composite
def _lookups(draw, sigs, aim, finite):
    return draw_lookup(draw, sigs, aim, finite=finite)[1]


def lookup_args(caps: Capabilities, pool: tuple[Signature, ...], *, aim: Aim | None = None, finite: bool = False,
                **constraints) -> st.SearchStrategy[dict]:
    """``{"table": ..., "ids": ...}`` from the pool under the clause's ``constraints``
    (see ``signatures``); ``aim(ids dtype, V)`` gives the flavours of bad ids to plant."""
    return _lookups(signatures(caps, pool, nonempty=aim is not None, aim=aim, **constraints), aim, finite)


def strategies_of(caps: Capabilities, wanted: tuple[str, ...] = ("mod", "div")) -> tuple[str, ...]:
    return tuple(s for s in caps.strategies if s in wanted)
