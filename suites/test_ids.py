"""Clause family `ids`: which ids a lookup takes, and what it does with the rest.

Each strategy plants at least one id the clause is about in every case, so an
adapter that departs is found on the first example, whatever the seed."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from adapters.contract import INT_DTYPES, InvalidIds
from suites.catalogue import clause
from suites.lookup_clauses import LOOKUP, lookup_oracle
from suites.strategies import MAX_SIDE, MAX_V, SIGNED, dtype_range, fits, lookup_args, planted_ids


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
def id_dtype_cases(caps):
    return lookup_args(caps, v_min=1, id_dtypes=INT_DTYPES)


# --- ids.float ---------------------------------------------------------------------

@st.composite
def _float_ids(draw, caps):
    args = draw(lookup_args(caps, v_min=1, v_max=6, ids=lambda d, v: st.just(None)))
    v = args["table"].shape[0]
    kind = draw(st.sampled_from(["float16", "float32", "float64", "bool"]), label="ids dtype")
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=MAX_SIDE), label="ids.shape")
    if kind == "bool":
        ids = draw(hnp.arrays(np.bool_, shape), label="ids")
    else:
        # integral and fractional values in about [-V, V]: a truncating lookup returns a valid row for most
        halves = st.integers(-2 * v, 2 * v - 1).map(lambda x: x / 2)
        ids = draw(hnp.arrays(np.dtype(kind), shape, elements=halves), label="ids")
    return {"table": args["table"], "ids": ids}


@clause(
    "ids.float",
    "ids of a float or bool dtype are InvalidIds: never truncated, rounded or read as 0/1",
    **LOOKUP,
)
def float_id_cases(caps):
    return _float_ids(caps)


# --- ids.out_of_range ----------------------------------------------------------------

def _too_large(id_dtype, v):
    # one flavour per example: the dtype's top values are where a lookup that casts
    # ids to a narrower or signed type reads -1, -2, ... and wraps them to rows
    hi = dtype_range(id_dtype)[1]
    flavours = [st.sampled_from([v, v + 1]), st.integers(v, min(hi, v + 1000)),
                st.integers(max(v, hi - MAX_V), hi), st.just(hi)]
    return st.sampled_from(flavours).flatmap(lambda targets: planted_ids(id_dtype, v, targets))


@clause(
    "ids.out_of_range",
    "an id >= V is out_of_range: never a wrapped, clamped, zero or NaN row",
    **LOOKUP,
)
def out_of_range_cases(caps):
    fitting = tuple(d for d in caps.id_dtypes if fits(d, 2 * MAX_V + 2))
    return lookup_args(caps, id_dtypes=fitting, ids=_too_large)


# --- ids.negative --------------------------------------------------------------------

def _negative(id_dtype, v):
    lo = dtype_range(id_dtype)[0]
    boundary = sorted({-1, -v, -v - 1, lo} - {0})
    near = [st.integers(-v, -1), st.sampled_from(sorted({-1, -v}))] if v else []  # a wrapping lookup reads rows
    flavours = [st.sampled_from(boundary), st.integers(-v - 2, -1), *near]
    return st.sampled_from(flavours).flatmap(lambda targets: planted_ids(id_dtype, v, targets))


@clause(
    "ids.negative",
    "a negative id is out_of_range, those in [-V, -1] included: never wrapped to row id + V",
    applicable=_not_applicable_without(SIGNED), **LOOKUP,
)
def negative_cases(caps):
    return lookup_args(caps, id_dtypes=tuple(d for d in caps.id_dtypes if d in SIGNED), ids=_negative)


# --- ids.int64_wide ------------------------------------------------------------------

def _wide(id_dtype, v):
    """One flavour of wide id per example, so that a narrowing or reinterpreting
    lookup meets an array it turns wholly into valid rows."""
    r = st.integers(0, max(v - 1, 0))
    if id_dtype == "int64":
        flavours = [
            r.map(lambda x: 2**32 + x),          # narrows to row x
            r.map(lambda x: -(2**32) + x),       # narrows to row x
            r.map(lambda x: 2**33 + x),
            st.sampled_from([2**31, -(2**31) - 1, 2**63 - 1, -(2**63)]),
            st.integers(2**31, 2**63 - 1), st.integers(-(2**63), -(2**31) - 1),
        ]
    else:
        hi = dtype_range(id_dtype)[1]
        flavours = [
            r.map(lambda x: hi - x),             # all ones: -1 - x when read as signed
            r.map(lambda x: 2**31 + x),
            st.integers(2**31, hi),
        ] + ([r.map(lambda x: 2**32 + x), r.map(lambda x: 2**63 + x)] if hi > 2**32 else [])
    return st.sampled_from(flavours).flatmap(lambda targets: planted_ids(id_dtype, v, targets))


WIDE = ("int64", "uint64", "uint32")


@clause(
    "ids.int64_wide",
    "an int64 (or uint32/uint64) id at or past +-2**31 is never narrowed: 2**32 + 1 is out_of_range, not row 1",
    applicable=_not_applicable_without(WIDE), **LOOKUP,
)
def wide_cases(caps):
    return lookup_args(caps, v_min=1, id_dtypes=tuple(d for d in caps.id_dtypes if d in WIDE), ids=_wide)


def test_clause(check):
    check.run()
