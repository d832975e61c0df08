"""Clause family `bag`: pooled lookups (embedding bags and combiners).

The contract is adapters/spec/bags.py's: CSR offsets, every bag in its place (empty ones
give a zero row), sum / mean / sqrtn / max, weights, ids checked as in a plain lookup.
Each clause's oracle is the contract's pooled lookup (``bags.lookup_bags``) under the
check's model; each tolerance, stated with its clause, comes from the bag's size and
the table's dtype (adapters/spec/bags.py derives them). Rows of one id, and max, are
compared bit for bit. The value clauses use tables of shape (V, D); bag.row_shapes
holds the other row ranks."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from embedding_conformance.adapters.spec import bags
from embedding_conformance.adapters.spec import oracle
from embedding_conformance.suites.bag_strategies import (BagSig, bag_cases, bag_signatures, covering_combiners, distinct_columns, draw_bag_case,
                                   draw_weights, each_bag_weighted, with_upstream, zero_sum_bag)
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.strategies import SIGNED, choice, draw_table, draw_valid_ids, ints, raw
from embedding_conformance.suites.test_ids import FLOAT_KIND, _negative, _too_large, fine_float_ids

SUSPECTS = (
    ("drop_trailing_empty_bags",), ("drop_negative_ids",), ("drop_nonpositive_weights",),
    ("drop_negative_ids", "drop_nonpositive_weights"), ("wrap_negative",), ("float32_output",),
    ("last_offset_unread",), ("values_past_last_offset_unread",), ("clip",), ("fill_zero",),
    ("truncate_float_ids",), ("cast_ids_to_int32",), ("flush_subnormals",), ("empty_bag_reads_row_0",), ("sum_from_zero",),
)


def _bag_oracle(a, model, caps):
    return bags.lookup_bags(a["table"], a["values"], a["offsets"], a["weights"], a["combiner"], model)


BAG = dict(method="lookup_bags", oracle=_bag_oracle, suspects=SUSPECTS)

TOL = ("u = eps/2 of the table's dtype, gamma(k) = k*u/(1 - k*u), n the bag's size, M = sum |w_i * x_i| per "
       "element: ")
TOL_SUM = TOL + ("gamma(n) * M (n products, n - 1 additions in any order, in the table's dtype or wider) "
                 "+ u * |sum| (the oracle's rounding) + gamma_64(n + 1) * M (its float64 arithmetic); empty bags exact zeros")
TOL_MEAN = TOL + ("gamma(2n + 1) * M / |sum w| (numerator gamma(n), denominator gamma(n - 1), the division u; "
                  "weights normalised first stay within it) + u * |mean| + gamma_64(n + 1) * M / |sum w|; "
                  "unweighted sum w = n; empty bags exact zeros")
TOL_SQRTN = TOL + ("gamma(2n + 3) * M / sqrt(sum w^2) (the numerator gamma(n), sum w^2 gamma(n) halved by the root "
                   "plus u, the division u) + u * |result| + gamma_64(n + 1) * M / sqrt(sum w^2); empty bags "
                   "exact zeros")
TOL_ANY = "per combiner as bag.sum, bag.mean, bag.sqrtn; max bit for bit (a selection); zeros compare by value"


def _combiners(caps, wanted=None, weighted=False):
    have = caps.weighted_combiners if weighted else caps.combiners
    return tuple(c for c in (wanted or caps.combiners) if c in have and c in caps.combiners)


def _needs(*combiners, weighted=False):
    def check(caps, adapter):
        if not _combiners(caps, combiners, weighted):
            what = "weighted " if weighted else ""
            return f"the adapter takes no {what}combiner {' or '.join(combiners)} (capabilities.combiners)"
        return None
    return check


# --- the combiners ----------------------------------------------------------------------

@clause("bag.sum", "combiner sum: each bag is the sum of its rows; every bag keeps its place, an empty one gives a "
        "zero row", applicable=_needs("sum"), tolerance=TOL_SUM, **BAG)
def sum_cases(caps, pool):
    return bag_cases(bag_signatures(caps, pool), ("sum",))


@clause("bag.mean", "combiner mean: each bag is the mean of its rows (sum / count)", applicable=_needs("mean"),
        tolerance=TOL_MEAN, **BAG)
def mean_cases(caps, pool):
    return bag_cases(bag_signatures(caps, pool), ("mean",))


@clause("bag.sqrtn", "combiner sqrtn: each bag is the sum of its rows / sqrt(count)", applicable=_needs("sqrtn"),
        tolerance=TOL_SQRTN, **BAG)
def sqrtn_cases(caps, pool):
    return bag_cases(bag_signatures(caps, pool), ("sqrtn",))


@clause("bag.max", "combiner max: each bag is the elementwise max of its rows, bit for bit (finite tables)",
        applicable=_needs("max"), tolerance="none: a selection, bit for bit (zeros compare by value)", **BAG)
def max_cases(caps, pool):
    return bag_cases(bag_signatures(caps, pool), ("max",))


# --- bag.weights ------------------------------------------------------------------------

# the weights each combiner draws: the sum any (NaN, infinities and zeros planted); the
# mean non-negative ones (a mixed-sign denominator near zero has no useful tolerance);
# sqrtn any sign (its denominator sum w^2 cannot cancel)
WEIGHT_KINDS = {"sum": "special", "mean": "nonneg", "sqrtn": "signed"}


@st.composite
def _weighted(draw, sigs, combiners):
    sig, args = draw_bag_case(draw, sigs, combiners)
    w = draw_weights(draw, sig, WEIGHT_KINDS[args["combiner"]])
    args["weights"] = w if args["combiner"] == "sum" else each_bag_weighted(w, args["offsets"])
    return args


@clause("bag.weights", "with weights, sum = sum w*x, mean = sum w*x / sum w, sqrtn = sum w*x / sqrt(sum w^2); "
        "weights of the table's dtype, zero, negative (sum, sqrtn), NaN and infinite (sum) included",
        applicable=_needs("sum", "mean", "sqrtn", weighted=True), tolerance=TOL_ANY + "; NaN where IEEE gives NaN "
        "(NaN or infinite weights), infinities equal", **BAG)
def weights_cases(caps, pool):
    return _weighted(bag_signatures(caps, pool), _combiners(caps, ("sum", "mean", "sqrtn"), weighted=True))


# --- bag.empty ----------------------------------------------------------------------------

@clause("bag.empty", "empty bags (first, middle, last, trailing; every bag, no bags at all; tables with no rows) keep "
        "their place and give a zero row, whatever the combiner", tolerance=TOL_ANY, **BAG)
def empty_cases(caps, pool):
    return bag_cases(bag_signatures(caps, pool, min_bags=2), tuple(caps.combiners), empty=True)


# --- bag.zero_weights -----------------------------------------------------------------------

@st.composite
def _zero_weights(draw, sigs, combiners):
    sig, args = draw_bag_case(draw, sigs, combiners)
    offs = args["offsets"]
    w = each_bag_weighted(draw_weights(draw, sig, WEIGHT_KINDS[args["combiner"]]), offs)
    full = [k for k in range(sig.b) if offs[k + 1] > offs[k]]
    at = full[draw(ints(0, len(full) - 1), label="zero bag")] if len(full) > 1 else full[0]
    # mean: all zeros or w and -w; sqrtn: all zeros (only then is sum w^2 zero)
    pair = args["combiner"] == "mean" and draw(raw(1), label="pair")[0] >= 128
    args["weights"] = zero_sum_bag(w, offs, at, pair)
    return args


@clause("bag.zero_weights", "a non-empty bag whose weights sum to zero (mean: all zero, or w and -w; sqrtn: all "
        "zero) gives a zero row: the quotient of a zero denominator is zero, as an empty bag's is",
        applicable=_needs("mean", "sqrtn", weighted=True), tolerance=TOL_ANY + "; the zero-sum bag exact zeros",
        **BAG)
def zero_weights_cases(caps, pool):
    return _zero_weights(bag_signatures(caps, pool, nonempty=True, v_min=1), _combiners(caps, ("mean", "sqrtn"), weighted=True))


# --- ids --------------------------------------------------------------------------------

@clause("bag.out_of_range", "an id >= V in any bag is out_of_range, as in a plain lookup: never dropped, wrapped, "
        "clamped or a zero row", tolerance=TOL_ANY, **BAG)
def out_of_range_cases(caps, pool):
    return bag_cases(bag_signatures(caps, pool, nonempty=True, aim=_too_large), tuple(caps.combiners), aim=_too_large)


def _signed(caps, adapter):
    return None if set(SIGNED) & set(caps.id_dtypes) else "the adapter takes no signed id dtype"


@clause("bag.negative", "a negative id in any bag is out_of_range, those in [-V, -1] included: never dropped from "
        "its bag or wrapped to row id + V", applicable=_signed, tolerance=TOL_ANY, **BAG)
def negative_cases(caps, pool):
    dtypes = tuple(d for d in caps.id_dtypes if d in SIGNED)
    return bag_cases(bag_signatures(caps, pool, nonempty=True, aim=_negative, id_dtypes=dtypes),
                     tuple(caps.combiners), aim=_negative)


@st.composite
def _float_values(draw, sigs, combiners):
    sig, args = draw_bag_case(draw, sigs, combiners)
    kind = FLOAT_KIND[sig.ids_dtype]
    if kind == "bool":
        args["values"] = (np.frombuffer(draw(raw(sig.n), label="values"), dtype=np.uint8) & 1).astype(np.bool_)
    else:
        args["values"] = fine_float_ids(draw(raw(4 * sig.n), label="values"), kind, sig.v, sig.n)
    return args


@clause("bag.float_ids", "float or bool ids are InvalidIds, as in a plain lookup: never truncated, rounded or "
        "read as 0/1", **BAG)
def float_ids_cases(caps, pool):
    return _float_values(bag_signatures(caps, pool, nonempty=True, v_min=1, v_max=6), tuple(caps.combiners))


# --- bag.offsets ----------------------------------------------------------------------------

def malformed(buf: bytes, offsets: np.ndarray, n: int) -> np.ndarray:
    """The offsets made malformed in one way, by ``buf[0]``: not starting at 0; a
    decrease (with B == 2, a negative offset); ending past len(values); ending short of
    it (values that belong to no bag). ``n`` >= 1."""
    offs = offsets.copy()
    b = offs.shape[0] - 1
    r = int.from_bytes(buf[1:3], "little")
    kinds = ["start", "past", "short"] + (["decrease"] if b >= 2 else [])
    kind = kinds[buf[0] % len(kinds)]
    if kind == "start":
        offs[0] = 1 + r % n
        offs[1:] = np.maximum(offs[1:], offs[0])
    elif kind == "past":
        offs[-1] = n + 1 + r % 3
    elif kind == "short":
        offs[-1] = r % n
        offs[1:-1] = np.minimum(offs[1:-1], offs[-1])
    elif b == 2:
        offs[1] = -1 - r % 3
    else:
        offs[1], offs[2] = n, r % n
    return offs


@st.composite
def _malformed(draw, sigs, combiners):
    sig, args = draw_bag_case(draw, sigs, combiners)
    args["offsets"] = malformed(draw(raw(3), label="malformed"), args["offsets"], sig.n)
    return args


@clause("bag.offsets", "offsets that are not CSR over the values (not starting at 0, decreasing, ending past "
        "len(values), or short of it, leaving values in no bag) are invalid_offsets: nothing read past them, "
        "nothing dropped",
        applicable=lambda caps, adapter: "the API takes no offsets (bags of one length)" if caps.fixed_length_bags
        else None, **BAG)
def offsets_cases(caps, pool):
    return _malformed(bag_signatures(caps, pool, nonempty=True, v_min=1, reach=False), tuple(caps.combiners))


# --- bag.padding ----------------------------------------------------------------------------

def _padded_oracle(a, model, caps):
    return bags.lookup_bags_padded(a["table"], a["values"], a["offsets"], a["weights"], a["combiner"],
                                   a["padding_idx"], model)


@st.composite
def _padded(draw, sigs, combiners):
    sig, args = draw_bag_case(draw, sigs, combiners)
    v = sig.v
    p = draw(ints(-v, v - 1), label="padding_idx")
    values = args["values"]
    plant = draw(raw(4), label="padding positions")
    for k in range(1 + plant[0] % 3):  # the padding id itself, in one to three places
        values[plant[1 + k] % values.size] = p % v
    args["padding_idx"] = p
    return args


@clause("bag.padding", "with a padding id p (negative counting from the end), entries equal to p % V are left out "
        "of their bag: of the sum, the count and the max; a bag of padding alone gives a zero row",
        method="lookup_bags_padded", oracle=_padded_oracle, suspects=SUSPECTS, tolerance=TOL_ANY)
def padding_cases(caps, pool):
    return _padded(bag_signatures(caps, pool, nonempty=True, v_min=1, v_max=6), tuple(caps.combiners))


# --- bag.single -------------------------------------------------------------------------------

def _single_oracle(a, model, caps):
    if model:  # a model's rows, each a stored element: bit for bit too, NaN payloads included
        return np.asarray(_bag_oracle(a, model, caps))
    # a bag of one id, weight 1: no arithmetic, the plain lookup's row bit for bit
    if a["offsets"].shape[0] - 1 != a["values"].shape[0] or (a["offsets"] != np.arange(a["offsets"].shape[0])).any():
        raise AssertionError("bag.single's cases are bags of one id each")
    bags.check_offsets(a["offsets"], a["values"].shape[0])
    return oracle.lookup(a["table"], a["values"])


@st.composite
def _singles(draw, sigs, caps):
    sig = draw(choice(sigs), label="signature")
    table = draw_table(draw, sig.table_dtype, sig.table_shape)  # every bit pattern: NaN payloads, -0.0, subnormals
    values = draw_valid_ids(draw, sig.ids_dtype, (sig.n,), sig.v, label="values")
    combiner = caps.combiners[sig.knob % len(caps.combiners)]
    weighted = combiner in caps.weighted_combiners and (sig.knob // len(caps.combiners)) % 2 == 1
    weights = np.ones(sig.n, dtype=table.dtype) if weighted else None
    return {"table": table, "values": values, "offsets": np.arange(sig.n + 1, dtype=np.int64), "weights": weights,
            "combiner": combiner}


@clause("bag.single", "a bag of one id, with weight 1 or no weights, is the plain lookup's row bit for bit, with "
        "every combiner (NaN payloads, -0.0, subnormals included)", tolerance="none: bit for bit",
        **{**BAG, "oracle": _single_oracle})
def single_cases(caps, pool):
    sigs = bag_signatures(caps, pool)
    return _singles(tuple(dict.fromkeys(BagSig(s.table_dtype, s.v, s.row, s.ids_dtype, s.n, s.n, s.knob, s.reach, s.fixed)
                                        for s in sigs)), caps)


# --- bag.row_shapes ---------------------------------------------------------------------------

@clause("bag.row_shapes", "rows of any shape pool elementwise: scalar rows (a 1-D table) and matrix rows give "
        "(B,) + table.shape[1:]", tolerance=TOL_ANY,
        applicable=lambda caps, adapter: None if set(caps.table_ndims) - {2} else "the adapter takes 2-D tables only",
        **BAG)
def row_shapes_cases(caps, pool):
    sigs = tuple(s for s in bag_signatures(caps, pool, vector=False) if len(s.row) != 1)
    return bag_cases(sigs or bag_signatures(caps, pool, vector=False), tuple(caps.combiners))


# --- bag.grad ---------------------------------------------------------------------------------

def _grad_oracle(a, model, caps):
    return bags.grad_bags(a["table"], a["values"], a["offsets"], a["weights"], a["combiner"], a["upstream"], model)


@st.composite
def _upstreamed(draw, sigs, caps):
    sig, args = draw_bag_case(draw, sigs, tuple(caps.combiners))
    combiner = args["combiner"]
    if combiner == "max":
        args["table"] = distinct_columns(args["table"], args["values"])  # no ties: the maximum's row is unambiguous
    elif combiner in caps.weighted_combiners and (sig.knob // len(caps.combiners)) % 2 == 1:
        w = draw_weights(draw, sig, "nonneg" if combiner == "mean" else "signed")
        args["weights"] = w if combiner == "sum" else each_bag_weighted(w, args["offsets"])
    return with_upstream(draw, args)


@clause("bag.grad", "the gradient w.r.t. the table scatters each bag's upstream row to its ids, weighted as the "
        "forward pass: w (sum), w / sum w (mean), w / sqrt(sum w^2) (sqrtn), the maximum's row (max); duplicates "
        "accumulate", method="grad_bags", oracle=_grad_oracle, suspects=SUSPECTS,
        tolerance=("gamma(k + 2n + 3) * sum |c * up| + u * |g| + (k + 2n + 3) * tiny * u per element: a "
                   "contribution's coefficient c errs as the forward pass's denominators (gamma(2n + 3)), its product "
                   "u, k contributions add gamma(k - 1); each of those roundings may fall among the subnormals, where "
                   "it errs by at most half the smallest subnormal (tiny * u); elements no id reaches exact zeros"))
def grad_cases(caps, pool):
    sigs = bag_signatures(caps, pool, half=True, v_min=1, v_max=6)
    return _upstreamed(covering_combiners(sigs, tuple(caps.combiners), tuple(caps.weighted_combiners)), caps)


def test_clause(check):
    check.run()
