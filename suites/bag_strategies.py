"""Hypothesis strategies for pooled lookups (suites/test_bag.py).

A bag case is a table, 1-D ``values``, CSR ``offsets`` (B + 1 entries), ``weights``
(None or one per id) and a ``combiner``. Its signature comes from the run's pool
(suites/signatures.py), as every other clause's does: the table's dtype, V and row
width, the ids' dtype, and, from the pool's ids shape and knob, the number of ids N
(the ids shape's size: 0 to 27) and of bags B (0 to 5). So a compiled adapter compiles
once per signature; what every example draws afresh is where the bags split the ids
(empty bags first, in the middle, last and trailing, favoured), the ids (boundary rows
favoured, as for a plain lookup), the table's bits and the weights.

Weights have full mantissas with exponents in [-4, 3] (as finite tables do), so that a
product or sum in a narrower precision shows; zeros of either sign one in sixteen;
negative ones where the clause allows; and, for the weighted sum, special values (NaN,
infinities, +-0, +-1) planted one in four. Tables and weights hold no subnormals, so
no flush-to-zero muddies a tolerance.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from hypothesis import strategies as st

from embedding_conformance.adapters.contract import Capabilities

from .signatures import MAX_V, Signature, covering_half
from .strategies import (choice, draw_planted_ids, draw_table, draw_upstream, draw_valid_ids, full_mantissa, np_dtype,
                         raw, signatures)

MAX_BAGS = 5
WEIGHT_EXPONENTS = (-4, 3)
# weights a weighted sum must carry through its arithmetic as IEEE says
WEIGHT_SPECIALS = (0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0)


@dataclass(frozen=True)
class BagSig:
    table_dtype: str
    v: int
    row: tuple[int, ...]
    ids_dtype: str
    n: int  # ids
    b: int  # bags
    knob: int
    reach: bool = False
    fixed: bool = False  # bags of one length L = n // b (capabilities.fixed_length_bags)

    @property
    def table_shape(self) -> tuple[int, ...]:
        return (self.v, *self.row)


def _bag_sig(sig: Signature, *, vector: bool, min_bags: int, nonempty: bool, fixed: bool = False) -> BagSig:
    n = int(np.prod(sig.ids_shape, dtype=np.int64))
    if nonempty:
        n = max(n, 1)
    # B from the ids rank and the knob, so the pool's signatures spread over 0..MAX_BAGS
    b = (len(sig.ids_shape) + sig.knob) % (MAX_BAGS + 1)
    if n:  # ids need a bag to live in (without ids, B = 0: no bags, or all of them empty)
        b = max(b, min_bags, 1)
    if fixed and b:  # B bags of L ids each: n = B * L (L = 0, every bag empty, when there were no ids)
        n = b * (max(n // b, 1) if n else 0)
    row = ((sig.row[0] if sig.row else 1),) if vector else sig.row
    return BagSig(sig.table_dtype, sig.v, row, sig.ids_dtype, n, b, sig.knob, sig.reach, fixed)


@lru_cache(maxsize=None)
def bag_signatures(caps: Capabilities, pool: tuple[Signature, ...], *, vector: bool = True, min_bags: int = 0,
                   nonempty: bool = False, v_min: int = 0, v_max: int = MAX_V, reach: bool = True, aim=None,
                   id_dtypes: tuple[str, ...] | None = None, half: bool = False) -> tuple[BagSig, ...]:
    """The bag signatures a clause draws: the pool as the adapter takes it (see
    suites.strategies.signatures), each made a bag signature. ``vector``: tables of
    shape (V, D) (the value clauses); else the pool's own row shapes. ``min_bags``: at
    least that many bags where there are ids. ``half``: a covering half of the pool
    (gradients: a compile of their own kind per signature)."""
    base = covering_half(pool, reach=1) if half else pool
    sigs = signatures(caps, base, nonempty=nonempty, v_min=v_min, v_max=v_max, reach=reach, aim=aim,
                      id_dtypes=id_dtypes)
    return tuple(dict.fromkeys(_bag_sig(s, vector=vector, min_bags=min_bags, nonempty=nonempty,
                                        fixed=caps.fixed_length_bags) for s in sigs))


@lru_cache(maxsize=None)
def covering_combiners(sigs: tuple[BagSig, ...], combiners: tuple[str, ...],
                       weighted: tuple[str, ...] = ()) -> tuple[BagSig, ...]:
    """The signatures, plus one for each combiner (and each weighted combiner, weighted)
    that none of them pools over a bag of two ids or more: a copy of the signature with
    the most ids, its knob pointing at that combiner (knob % len(combiners); weighted
    when (knob // len(combiners)) % 2 == 1), with more ids than bags (so some bag holds
    two). A combiner's gradient (or mean by count) shows only then,
    and the knob pairing of a small pool can leave a combiner with bags of one id."""
    k = len(combiners)
    out = list(sigs)
    ordinary = [s for s in sigs if not s.reach] or list(sigs)
    if not ordinary:
        return sigs
    base = max(ordinary, key=lambda s: (s.n, -s.v))
    for i, c in enumerate(combiners):
        for w in ((False, True) if c in weighted else (False,)):
            if any(s.knob % k == i and (s.knob // k) % 2 == w and 1 <= s.b < s.n for s in out):
                continue
            n = max(base.n, 2)
            b = 1 if base.fixed else max(1, min(base.b, n - 1))  # fixed length: one bag of n
            out.append(BagSig(base.table_dtype, max(base.v, 1), base.row, base.ids_dtype, n, b, i + k * w, base.reach,
                              base.fixed))
    return tuple(dict.fromkeys(out))


# --- offsets ----------------------------------------------------------------------------

def offsets_from(buf: bytes, b: int, n: int) -> np.ndarray:
    """CSR offsets of ``b`` bags over ``n`` ids from ``b - 1`` bytes: each cut at 0 (an
    empty first bag) or n (an empty last bag) three times in sixteen each, otherwise
    uniform in [0, n]; equal cuts make empty bags in the middle."""
    if b == 0:
        return np.zeros(1, dtype=np.int64)
    c = np.frombuffer(buf, dtype=np.uint8, count=b - 1).astype(np.int64)
    cuts = np.where(c < 48, 0, np.where(c >= 208, n, (c - 48) * (n + 1) // 160))
    return np.concatenate([[0], np.sort(np.minimum(cuts, n)), [n]]).astype(np.int64)


def with_empty_bag(offsets: np.ndarray, at: int) -> np.ndarray:
    """The offsets with bag ``at`` emptied, its ids given to a neighbour (the bag after
    it, or for the last bag the one before): a trailing empty bag when ``at`` is B - 1."""
    offs = offsets.copy()
    b = offs.shape[0] - 1
    if b == 1:
        return offs  # one bag holds every id; it is empty only when there are none
    if at == b - 1:
        offs[b - 1] = offs[b]
    else:
        offs[at + 1] = offs[at]
    return offs


def draw_offsets(draw, sig: BagSig, *, empty: bool = False) -> np.ndarray:
    if sig.fixed:  # bags of one length: nothing to draw (all of them empty when there are no ids)
        return np.arange(sig.b + 1, dtype=np.int64) * (sig.n // sig.b if sig.b else 0)
    offs = offsets_from(draw(raw(max(sig.b - 1, 0)), label="offsets"), sig.b, sig.n)
    if empty and sig.b >= 2:
        # one bag emptied for certain: the trailing one in half the examples
        sel = draw(raw(1), label="empty bag")[0]
        offs = with_empty_bag(offs, sig.b - 1 if sel >= 128 else sel % sig.b)
    return offs


# --- weights ----------------------------------------------------------------------------

def weights_from(buf: bytes, dtype_name: str, n: int, kind: str) -> np.ndarray:
    """``n`` weights from ``n * (itemsize + 1)`` bytes: full mantissas, exponents in
    WEIGHT_EXPONENTS, zeros one in sixteen. ``kind``: "signed"; "nonneg" (magnitudes);
    "special" (signed, and one in four a special value)."""
    dtype = np_dtype(dtype_name)
    size = dtype.itemsize
    w = full_mantissa(buf[: n * size], dtype_name, (n,), WEIGHT_EXPONENTS).copy()
    if kind == "nonneg":
        w = np.abs(w.astype(np.float64)).astype(dtype)
    elif kind == "special":
        sel = np.frombuffer(buf, dtype=np.uint8, count=n, offset=n * size)
        plant = sel >= 192
        w[plant] = np.array(WEIGHT_SPECIALS, dtype=np.float64)[sel[plant] % len(WEIGHT_SPECIALS)].astype(dtype)
    return w


def draw_weights(draw, sig: BagSig, kind: str) -> np.ndarray:
    size = np_dtype(sig.table_dtype).itemsize
    return weights_from(draw(raw(sig.n * (size + 1)), label="weights"), sig.table_dtype, sig.n, kind)


def each_bag_weighted(weights: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Weights where every non-empty bag has a non-zero weight (its first set to 1 where
    all were zero): a bag whose denominator is zero is bag.zero_weights' business."""
    w = weights.copy()
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        if hi > lo and not (w[lo:hi].astype(np.float64) != 0).any():
            w[lo] = 1
    return w


def zero_sum_bag(weights: np.ndarray, offsets: np.ndarray, at: int, pair: bool) -> np.ndarray:
    """Weights with bag ``at`` summing to exactly zero in any order of addition: all
    zeros (of the signs drawn), or, ``pair``, its first weight w and its last -w with
    zeros between."""
    w = weights.copy()
    lo, hi = int(offsets[at]), int(offsets[at + 1])
    if hi == lo:
        return w
    signs = np.signbit(w[lo:hi].astype(np.float64))
    w[lo:hi] = np.where(signs, -0.0, 0.0).astype(w.dtype)
    if pair and hi - lo >= 2:
        first = weights[lo] if weights[lo].astype(np.float64) != 0 else np.ones((), w.dtype)
        w[lo], w[hi - 1] = first, -first
    return w


# --- whole cases --------------------------------------------------------------------------

def distinct_columns(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The table with the values of ``rows`` distinct in every column (a duplicate moved
    one ulp away from zero at a time; +0.0 and -0.0 count as equal): the gradient of max
    goes to the row holding the maximum, which ties make ambiguous."""
    t = table.copy()
    used = np.unique(rows.astype(np.int64))
    bits = t.reshape(t.shape[0], -1).view(f"u{t.dtype.itemsize}")
    values = t.reshape(t.shape[0], -1)
    for j in range(bits.shape[1]):
        seen: set = set()
        for i in used:
            while float(values[i, j]) in seen:
                bits[i, j] += 1  # the next magnitude, same sign (finite tables stay finite)
            seen.add(float(values[i, j]))
    return t


def draw_bag_case(draw, sigs: tuple[BagSig, ...], combiners: tuple[str, ...], *, finite: bool = True,
                  weights: str | None = None, empty: bool = False, aim=None) -> tuple[BagSig, dict]:
    """(signature, args) of one bag case; the combiner goes with the signature's knob
    (a compiled adapter specialises on it)."""
    sig = draw(choice(sigs), label="signature")
    table = draw_table(draw, sig.table_dtype, sig.table_shape, finite=finite)
    if aim is None:
        values = draw_valid_ids(draw, sig.ids_dtype, (sig.n,), sig.v, label="values")
    else:
        values = draw_planted_ids(draw, sig.ids_dtype, (sig.n,), sig.v, aim)
    offsets = draw_offsets(draw, sig, empty=empty)
    combiner = combiners[sig.knob % len(combiners)]
    w = None
    if weights is not None:
        w = draw_weights(draw, sig, weights)
    return sig, {"table": table, "values": values, "offsets": offsets, "weights": w, "combiner": combiner}


@st.composite
def bag_cases(draw, sigs, combiners, finite=True, weights=None, empty=False, aim=None):
    return draw_bag_case(draw, sigs, combiners, finite=finite, weights=weights, empty=empty, aim=aim)[1]


def with_upstream(draw, args: dict) -> dict:
    b = args["offsets"].shape[0] - 1
    args["upstream"] = draw_upstream(draw, args["table"].dtype.name, (b, *args["table"].shape[1:]))
    return args
