"""Clause family `ids`: which ids a lookup takes, and what it does with the rest.

Each strategy plants at least one id the clause is about in every case, so an
adapter that departs is found on the first example, whatever the seed."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from embedding_conformance.adapters.contract import INT_DTYPES, InvalidIds
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.lookup_clauses import LOOKUP, lookup_oracle
from embedding_conformance.suites.strategies import (MAX_V, SIGNED, WRAPS, choice, draw_table, dtype_range, fits, lookup_args, raw,
                               signatures)


def _not_applicable_without(dtypes):
    def check(caps, adapter):
        if not set(dtypes) & set(caps.id_dtypes):
            return f"the adapter takes none of the id dtypes {', '.join(dtypes)}"
        return None
    return check


# --- ids.dtypes ----------------------------------------------------------------------

def _dtypes_oracle(args, model, caps):
    # an integer dtype the adapter does not declare must be refused, never misread
    if args["ids"].dtype.name not in caps.id_dtypes:
        raise InvalidIds(f"{args['ids'].dtype} ids are not among the declared {', '.join(caps.id_dtypes)}")
    return lookup_oracle(args, model, caps)


@clause(
    "ids.dtypes",
    "ids of every signed and unsigned integer dtype, 8 to 64 bits, give exact rows, or InvalidIds where the adapter declares the dtype unsupported",
    **{**LOOKUP, "oracle": _dtypes_oracle},
)
def id_dtype_cases(caps, pool):
    return lookup_args(caps, pool, v_min=1, id_dtypes=INT_DTYPES)


# --- ids.float ---------------------------------------------------------------------

# the pool's integer ids dtype picks the float kind, so that the kinds repeat with the signatures
FLOAT_KIND = {"int8": "bool", "uint8": "bool", "int16": "float16", "uint16": "float16",
              "int32": "float32", "uint32": "float32", "int64": "float64", "uint64": "float64"}


# magnitudes where a cast to an integer type saturates, wraps or is undefined
_LARGE = (2.0**31, 2.0**31 - 0.5, -(2.0**31) - 1, 2.0**32 + 1, 2.0**53 + 2, 2.0**63, -(2.0**63), 1e10,
          3.0e38, np.inf, -np.inf, np.nan, -0.0, 5e-324)


def fine_float_ids(buf: bytes, kind: str, v: int, n: int) -> np.ndarray:
    """``n`` float ids of dtype ``kind`` from 4 bytes each: an integer k in [-V, V]
    (0, -1, 1, -2, ... as the bytes shrink), then by a flavour byte k itself, k one ulp
    toward zero (0.99999994 in float32, 0.9999999999999999 in float64; a quarter of the
    ids) or away from it, k plus or minus an arbitrary fraction, or a large or special
    magnitude. A truncating lookup
    turns most of them into valid rows; one that rounds, or truncates through a
    narrower float type, differs from truncation right next to an integer."""
    dtype = np.dtype(kind)
    r = np.frombuffer(buf, dtype=np.uint8, count=4 * n).reshape(n, 4).astype(np.int64)
    j = (r[:, 1] | (r[:, 2] << 8)) % (2 * v + 1)
    k = np.where(j % 2 == 0, j // 2, -(j + 1) // 2).astype(dtype)
    fraction = ((r[:, 3] + 1) / 257).astype(dtype)  # in (0, 1)
    # toward zero, one ulp from a non-zero integer: where truncation and any rounding part
    below = np.nextafter(np.where(k == 0, dtype.type(1), k), dtype.type(0))
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.select(
            [r[:, 0] % 8 == f for f in range(1, 7)],
            [below, below, np.nextafter(k, dtype.type(np.inf)), k + fraction, k - fraction,
             np.array(_LARGE, dtype=np.float64)[r[:, 3] % len(_LARGE)].astype(dtype)],
            default=k)
    return out.astype(dtype)


@st.composite
def _float_ids(draw, sigs):
    sig = draw(choice(sigs), label="signature")
    table = draw_table(draw, sig.table_dtype, sig.table_shape)
    kind = FLOAT_KIND[sig.ids_dtype]
    n = int(np.prod(sig.ids_shape, dtype=np.int64))
    if kind == "bool":
        codes = np.frombuffer(draw(raw(n), label="ids"), dtype=np.uint8)
        ids = (codes & 1).astype(np.bool_)
    else:
        ids = fine_float_ids(draw(raw(4 * n), label="ids"), kind, sig.v, n)
        # one id in every example one ulp below a row's integer (hypothesis favours simple
        # bytes, which decode to integers): where truncating and rounding part ways
        at, row = draw(raw(2), label="near-integer id")
        k = 1 + row % max(sig.v - 1, 1)
        ids[at % n] = np.nextafter(np.array(k, dtype=kind), np.array(0, dtype=kind))
    return {"table": table, "ids": ids.reshape(sig.ids_shape)}


@clause(
    "ids.float",
    "ids of a float or bool dtype are InvalidIds: never truncated, rounded or read as 0/1 (float ids within one ulp "
    "of an integer, with arbitrary fractions and magnitudes, NaN and infinities)",
    **LOOKUP,
)
def float_id_cases(caps, pool):
    return _float_ids(signatures(caps, pool, v_min=1, v_max=6, id_dtypes=INT_DTYPES, nonempty=True))


# --- ids.out_of_range ----------------------------------------------------------------

def _wrap_points(v: int) -> tuple[tuple[int, int], ...]:
    """Ids at or just past 2^k (k = 7, 8, 15, 16, 31, 32) that are >= V: where a lookup
    that reads ids in k bits, or as signed, turns an out-of-range id into a row."""
    return tuple((b, b + 1) for k in WRAPS for b in (2**k - 1, 2**k) if b >= v)


def _too_large(id_dtype, v):
    # the dtype's top values are where a lookup that casts ids to a narrower or
    # signed type reads -1, -2, ... and wraps them to rows
    hi = dtype_range(id_dtype)[1]
    flavours = [((v, v + 1),), ((v, v + 1000),), ((hi - MAX_V, hi),), ((hi, hi),)]
    wraps = _wrap_points(v)
    return flavours + ([wraps] if wraps else [])


@clause(
    "ids.out_of_range",
    "an id >= V is out_of_range: never a wrapped, clamped, zero or NaN row",
    **LOOKUP,
)
def out_of_range_cases(caps, pool):
    fitting = tuple(d for d in caps.id_dtypes if fits(d, 2 * MAX_V + 2))
    return lookup_args(caps, pool, id_dtypes=fitting, aim=_too_large)  # signatures whose dtype holds an id >= V


# --- ids.negative --------------------------------------------------------------------

def _negative(id_dtype, v):
    lo = dtype_range(id_dtype)[0]
    boundary = tuple((b, b) for b in sorted({-1, -v, -v - 1, lo} - {0}))
    near = [((-v, -1),), ((-1, -1), (-v, -v))] if v else []  # a wrapping lookup reads rows
    # -2^k: where a lookup that wraps in the ids' own type (id + V overflowing) lands elsewhere
    wraps = tuple((-b, -b + 1) for k in WRAPS for b in (2**k,) if b <= v)
    return [boundary, ((-v - 2, -1),), *near] + ([wraps] if wraps else [])


@clause(
    "ids.negative",
    "a negative id is out_of_range, those in [-V, -1] included: never wrapped to row id + V",
    applicable=_not_applicable_without(SIGNED), **LOOKUP,
)
def negative_cases(caps, pool):
    return lookup_args(caps, pool, id_dtypes=tuple(d for d in caps.id_dtypes if d in SIGNED), aim=_negative)


# --- ids.int64_wide ------------------------------------------------------------------

def _wide(id_dtype, v):
    """One flavour of wide id per example, so that a narrowing or reinterpreting
    lookup meets an array it turns wholly into valid rows."""
    r = v - 1  # ids 0..V-1 once narrowed
    if id_dtype == "int64":
        return [
            ((2**32, 2**32 + r),),               # narrows to a row
            ((-(2**32), -(2**32) + r),),         # narrows to a row
            ((2**33, 2**33 + r),),
            ((2**31, 2**31), (-(2**31) - 1, -(2**31) - 1), (2**63 - 1, 2**63 - 1), (-(2**63), -(2**63))),
            ((2**31, 2**63 - 1),), ((-(2**63), -(2**31) - 1),),
        ]
    hi = dtype_range(id_dtype)[1]
    flavours = [((hi - r, hi),),                 # all ones: -1 - x when read as signed
                ((2**31, 2**31 + r),), ((2**31, hi),)]
    if hi > 2**32:
        flavours += [((2**32, 2**32 + r),), ((2**63, 2**63 + r),)]
    return flavours


WIDE = ("int64", "uint64", "uint32")


@clause(
    "ids.int64_wide",
    "an int64 (or uint32/uint64) id at or past +-2**31 is never narrowed: 2**32 + 1 is out_of_range, not row 1",
    applicable=_not_applicable_without(WIDE), **LOOKUP,
)
def wide_cases(caps, pool):
    return lookup_args(caps, pool, v_min=1, id_dtypes=tuple(d for d in caps.id_dtypes if d in WIDE), aim=_wide)


def test_clause(check):
    check.run()
