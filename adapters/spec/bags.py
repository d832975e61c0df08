"""The contract of a pooled lookup (a *bag* lookup) as code, and the behaviour models
of what frameworks do instead (issue #20).

The contract. ``lookup_bags(table, values, offsets, weights, combiner)``:

- ``table`` (V, ...) of a float dtype; ``values`` 1-D ids; ``offsets`` 1-D int64 of
  length B + 1, CSR: bag b holds ``values[offsets[b]:offsets[b + 1]]``; ``weights``
  None or 1-D, one per id, of the table's dtype; ``combiner`` sum, mean, sqrtn or max.
- Offsets must start at 0, never decrease and end at len(values) (a value past the
  last offset would belong to no bag and be dropped silently): anything else is
  ``InvalidOffsets``. Ids are checked exactly as in a plain lookup (adapters/spec/oracle.py):
  an id outside [0, V), negative ones included, is ``OutOfRange``, a float or bool id
  ``InvalidIds``; nothing is dropped.
- The result has shape (B,) + table.shape[1:] and the table's dtype; every bag keeps
  its place, empty ones (first, middle, last, trailing) included.
- With w_i the weights (all 1 when None), x_i the bag's rows:
  sum = sum w_i x_i; mean = sum w_i x_i / sum w_i; sqrtn = sum w_i x_i / sqrt(sum w_i^2);
  max = the elementwise max of the rows (unweighted: max takes no weights).
- A bag with no entries gives a zero row. So does a non-empty bag whose denominator is
  zero (mean with sum w_i = 0, sqrtn with every w_i = 0): the contract reads the
  quotient of a zero denominator as zero (div_no_nan), the rule an empty bag already
  follows (its sum of weights is 0 too). A non-finite row would turn a bag of
  cancelling weights into NaN that propagates through a model; zero is what
  TensorFlow's and keras-rs's combiners give.
- Arithmetic may run in any order and precision at least the table's: results are
  compared within a tolerance derived from the bag's size and the dtype (below, and
  stated next to each clause in suites/test_bag.py). A bag of one id with weight 1 (or
  no weights) equals the plain lookup bit for bit, as does max (a selection).
- The gradient w.r.t. the table (``grad_bags``) scatters each bag's upstream row back
  to its ids, weighted as the forward pass was: coefficient w_i (sum), w_i / sum w
  (mean), w_i / sqrt(sum w^2) (sqrtn), and for max, per element, 1 for the row that
  held the maximum.
- With a padding id p (``lookup_bags_padded``; p in [-V, V), negative counting from
  the end), entries equal to p % V are left out of their bag: of the sum, the count
  and the max; a bag of padding alone is empty.

Tolerances (u = eps/2 of the table's dtype, gamma(k) = k*u / (1 - k*u); n the bag's
size; M = sum |w_i x_i| per element): sum gamma(n)*M; mean gamma(2n+1)*M / |sum w|;
sqrtn gamma(2n+3)*M / sqrt(sum w^2); each plus u*|result| (the oracle's rounding) and
gamma_64(n+1) times the same scale (the oracle's own float64 arithmetic, which matters
for float64 tables). Derivations at ``_pool``.

Behaviour models are named steps, composed with the plain lookup's (adapters/spec/oracle.py:
``wrap_negative``, ...), which say how ids resolve:

- ``drop_negative_ids``: entries with an id < 0 are removed from their bags before the
  lookup (tf.nn.safe_embedding_lookup_sparse prunes them);
- ``drop_nonpositive_weights``: for a combiner other than sum, entries whose weight is
  not > 0 (zero, negative, NaN) are removed (safe_embedding_lookup_sparse);
- ``drop_trailing_empty_bags``: the result ends at the last non-empty bag
  (tf.nn.embedding_lookup_sparse: its segment count is the largest row id + 1);
- ``float32_output``: the result comes back as float32, whatever the table's dtype,
  within the table dtype's tolerance (TorchRec's pooled outputs);
- ``bfloat16_held_as_float16``: a bfloat16 table is held in float16: its elements are
  rounded to float16 before the lookup (past 65504 to infinity, below 2**-24 to zero or a
  float16 subnormal; NaN payloads kept, quieted), its gradient comes back float16, and
  weights (of the table's dtype, bfloat16) no longer match it: a weighted call fails
  (TorchRec's EmbeddingBagCollection allocates every table that is not FP32 as float16);
- ``no_bags_fail``: a call with no bags (B = 0, offsets [0]) fails, a failure of no
  contract kind (TorchRec's KeyedJaggedTensor of stride 0);
- ``no_ids_fail``: a call with no ids at all (every bag empty, or no bags) fails, a
  failure of no contract kind (F.embedding_bag's 2-D input of shape (B, 0): its offsets
  torch.arange(0, 0, 0));
- ``last_offset_unread``: offsets[-1] is not read (torch's offsets of length B): the
  last bag runs to the end of the values, and only offsets[:-1] are checked (start at
  0, never decrease, none past len(values));
- ``values_past_last_offset_unread``: values past offsets[-1] are ignored instead of
  refused (torch's include_last_offset=True);
- ``empty_bag_reads_row_0``: an empty bag (after the pruning steps) is given id 0 before
  the lookup and its row zeroed after, so with a table of no rows it fails out_of_range
  (safe_embedding_lookup_sparse's sparse_fill_empty_rows);
- ``empty_bag_default_row``: an empty bag (after the pruning steps) is given the id V - 1
  with weight 1 and pooled as such: it comes back as row V - 1, and with a table of no
  rows fails out_of_range (safe_embedding_lookup_sparse with default_id=V - 1);
- ``flush_subnormals``: subnormal table elements read as zeros of their sign, in every
  bag (a kernel run with denormals flushed: TensorFlow's sparse segment reductions);
- ``sum_from_zero``: a bag of one id under sum, mean or sqrtn comes back as +0.0 + row:
  -0.0 becomes +0.0 and a signalling NaN is quieted (an accumulator that starts at zero:
  torch's embedding_bag).

A framework's own bag steps (which NaN a kernel's vector lanes give, what its widening
does) live in its folder and register here (``register``): *readers* change a bag's rows
as the kernel reads them, *finishers* the pooled result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from embedding_conformance.adapters.spec import oracle, steps
from embedding_conformance.adapters.contract import COMBINERS, INT_DTYPES, InvalidIds, InvalidOffsets, LookupFailure, OutOfRange
from embedding_conformance.adapters.spec.training import Bounded, bounded, eps

STEPS = ("drop_negative_ids", "drop_nonpositive_weights", "drop_trailing_empty_bags", "float32_output",
         "bfloat16_held_as_float16", "no_bags_fail", "no_ids_fail", "last_offset_unread", "values_past_last_offset_unread",
         "empty_bag_reads_row_0", "empty_bag_default_row", "flush_subnormals", "sum_from_zero")
MODELS = STEPS

_U64 = 2.0**-53


def gamma(k, dtype: np.dtype):
    """gamma(k) = k*u / (1 - k*u), u = eps/2 of ``dtype`` (elementwise over k)."""
    u = eps(dtype) / 2
    k = np.asarray(k, dtype=np.float64)
    return k * u / (1 - k * u)


def _gamma64(k):
    k = np.asarray(k, dtype=np.float64)
    return k * _U64 / (1 - k * _U64)


def check_model(model: Sequence[str]) -> None:
    unknown = [m for m in model if m not in MODELS and m not in oracle.MODELS]
    if unknown:
        raise ValueError(f"unknown bag model {unknown[0]!r}; known: {', '.join(MODELS + oracle.MODELS)}")


# --- validation -------------------------------------------------------------------------

def check_offsets(offsets: np.ndarray, n: int, model: Sequence[str] = ()) -> np.ndarray:
    """The offsets as int64, or InvalidOffsets. Under ``last_offset_unread`` the last
    entry is replaced by n (the framework never sees it)."""
    offsets = np.asarray(offsets)
    if offsets.ndim != 1 or offsets.size == 0 or offsets.dtype.kind not in "iu":
        raise InvalidOffsets(f"offsets must be a non-empty 1-D integer array (B + 1 entries), got "
                             f"{offsets.dtype} of shape {offsets.shape}")
    wide = offsets.astype(np.int64)
    if "last_offset_unread" in model:
        head = wide[:-1]
        if head.size and (head[0] != 0 or (np.diff(head) < 0).any() or head.max() > n):
            raise InvalidOffsets(f"offsets[:-1] {head.tolist()} must start at 0, never decrease and stay <= {n}")
        # no bags (B == 0): nothing is read, whatever the values hold
        return np.append(head, n) if head.size else np.zeros(1, dtype=np.int64)
    if wide[0] != 0:
        raise InvalidOffsets(f"offsets[0] is {wide[0]}, not 0")
    if (np.diff(wide) < 0).any():
        k = int(np.flatnonzero(np.diff(wide) < 0)[0])
        raise InvalidOffsets(f"offsets decrease: offsets[{k}] = {wide[k]} > offsets[{k + 1}] = {wide[k + 1]}")
    if wide[-1] > n or (wide[-1] < n and "values_past_last_offset_unread" not in model):
        raise InvalidOffsets(f"offsets[-1] is {wide[-1]}, not len(values) = {n}")
    return wide


def _check_values(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.name not in INT_DTYPES:
        raise InvalidIds(f"ids must be integers, got {values.dtype}")
    if values.ndim != 1:
        raise InvalidIds(f"values must be 1-D, got shape {values.shape}")
    return values


def _prepared(table, values, offsets, weights, combiner, model, padding_idx=None):
    """Validate, apply the model's pruning steps, resolve the ids. Returns (table,
    per-entry row plan, offsets, weights as float64 or None)."""
    if combiner not in COMBINERS:
        raise ValueError(f"unknown combiner {combiner!r}; the contract's are {', '.join(COMBINERS)}")
    oracle.validate_table(table)
    lookup_model = [m for m in model if m in oracle.MODELS]
    values = np.asarray(values)
    for m in lookup_model:  # a runtime that refuses the model itself does so before reading the offsets
        if m in oracle.TRANSFORMS and steps.STEPS[m].first:
            oracle.TRANSFORMS[m](table, values)
    offs = check_offsets(offsets, values.shape[0] if values.ndim else 1, model)
    # the model's id transforms (e.g. float ids truncated) come before the ids' own check
    table, values = oracle._transformed(table, values, lookup_model)
    values = _check_values(values)
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != values.shape:
            raise LookupFailure(f"weights of shape {weights.shape} for values of shape {values.shape}")
        if combiner == "max":
            raise ValueError("the contract's max takes no weights (the suite never asks for it)")
    # entries past the last offset are never part of a bag (values_past_last_offset_unread)
    used = int(offs[-1])
    values = values[:used]
    w64 = None if weights is None else weights[:used].astype(np.float64)
    keep = np.ones(values.shape, dtype=bool)
    if "drop_negative_ids" in model:
        keep &= oracle._as_int_ids(values) >= 0
    if "drop_nonpositive_weights" in model and w64 is not None and combiner != "sum":
        with np.errstate(invalid="ignore"):
            keep &= w64 > 0
    if not keep.all():
        values, offs, w64 = _pruned(values, offs, w64, keep)
    if "empty_bag_default_row" in model and (np.diff(offs) == 0).any():
        if table.shape[0] == 0:
            raise OutOfRange("an empty bag is given id V - 1 = -1, outside [0, 0)")
        values, offs, w64 = _filled(values, offs, w64, table.shape[0] - 1)
    # both fail before any id is read (the jagged input's split; the kernel's dtype check)
    if "no_bags_fail" in model and offs.shape[0] == 1:
        raise LookupFailure("no bags (offsets [0]): the call fails (no_bags_fail)")
    if "no_ids_fail" in model and values.shape[0] == 0:
        raise LookupFailure("no ids (bags of length 0): the call fails (no_ids_fail)")
    if "bfloat16_held_as_float16" in model and table.dtype.name == "bfloat16":
        if weights is not None:
            raise LookupFailure("bfloat16 weights for a table held as float16: the call fails "
                                "(bfloat16_held_as_float16)")
        table = bfloat16_as_float16(table)
    _, _, plan = oracle.resolve(table, values, lookup_model)
    if padding_idx is not None:
        v = table.shape[0]
        if not -v <= padding_idx < v:
            raise OutOfRange(f"padding_idx {padding_idx} is outside [-{v}, {v})")
        values, offs, w64 = _pruned(values, offs, w64, plan != padding_idx % v)
        plan = plan[plan != padding_idx % v]
    return table, plan, offs, w64


def bfloat16_as_float16(table: np.ndarray) -> np.ndarray:
    """A bfloat16 array rounded to float16 as an IEEE conversion does it (via float32,
    which holds every bfloat16 exactly): to nearest even, past 65504 to infinity, small
    values to float16 subnormals or zero; a NaN keeps its sign and the top 9 bits of its
    payload, and is quieted."""
    f32 = table.astype(np.float32)
    with np.errstate(over="ignore"):
        out = f32.astype(np.float16).view(np.uint16).copy()
    nan = np.isnan(f32)
    u = f32.view(np.uint32)[nan]
    out[nan] = (((u >> 16) & 0x8000) | 0x7E00 | ((u & 0x7FFFFF) >> 13)).astype(np.uint16)
    return out.view(np.float16)


def _filled(values, offs, w64, fill: int):
    """Each empty bag given the one entry ``fill`` (weight 1), the offsets moved to match."""
    sizes = np.diff(offs)
    at = offs[:-1][sizes == 0]  # where each empty bag's entry goes (np.insert: before these)
    values = np.insert(values, at, np.array(fill, dtype=values.dtype))
    w64 = None if w64 is None else np.insert(w64, at, 1.0)
    offs = offs + np.concatenate([[0], np.cumsum(sizes == 0)])
    return values, offs.astype(np.int64), w64


def _pruned(values, offs, w64, keep):
    """Entries where ``keep`` holds, the offsets moved to match."""
    cum = np.concatenate([[0], np.cumsum(keep)])
    return values[keep], cum[offs].astype(np.int64), (None if w64 is None else w64[keep])


# --- pooling ------------------------------------------------------------------------------

def _plus_zero(row: np.ndarray) -> np.ndarray:
    """+0.0 + row, in IEEE arithmetic: -0.0 -> +0.0, a signalling NaN quieted (payload kept)."""
    bits = row.view(f"u{row.dtype.itemsize}").copy()
    width = 8 * row.dtype.itemsize
    e_bits = {2: 8 if row.dtype.name == "bfloat16" else 5, 4: 8, 8: 11}[row.dtype.itemsize]
    m_bits = width - 1 - e_bits
    one = np.array(1, bits.dtype)
    exp_mask = np.array(((1 << e_bits) - 1) << m_bits, bits.dtype)
    nan = ((bits & exp_mask) == exp_mask) & ((bits & np.array((1 << m_bits) - 1, bits.dtype)) != 0)
    bits[nan] |= one << np.array(m_bits - 1, bits.dtype)
    bits[bits == (one << np.array(width - 1, bits.dtype))] = 0
    return bits.view(row.dtype)


def _pool(rows: np.ndarray, w: np.ndarray | None, combiner: str, model: Sequence[str] = ()):
    """(value, atol) of one non-empty bag: the value in the table's dtype where it is a
    stored element (max; a bag of one id with weight 1), else in float64.

    One id with weight 1 (or none): the row itself, whatever the combiner (x, x / 1,
    x / sqrt(1), max of one), bit for bit.

    sum: products rounded once each (u) and n - 1 additions in any order: |err| <=
    gamma(n) * M. mean: the numerator's gamma(n) * M, the denominator's relative
    gamma(n - 1) times |q| <= M / |W| (non-negative weights), the division's u: together
    <= gamma(2n + 1) * M / |W|; normalising the weights first (w_i / W, then a sum)
    stays within it. sqrtn: sum w^2 errs by relative gamma(n), its root by half that
    plus u, the division u: <= gamma(2n + 3) * M / sqrt(sum w^2). The oracle's own
    rounding to the dtype adds u * |result|; its float64 arithmetic gamma_64(n + 1)
    times the same scale."""
    n = rows.shape[0]
    if n == 1 and (w is None or w[0] == 1):
        row = _plus_zero(rows[0]) if "sum_from_zero" in model and combiner != "max" else rows[0]
        return row, np.zeros(rows.shape[1:])
    with np.errstate(invalid="ignore"):  # a signalling NaN is quieted in float64: only its NaN-ness is read
        x = rows.astype(np.float64)
    dtype = rows.dtype
    u = eps(dtype) / 2
    if combiner == "max":
        with np.errstate(invalid="ignore"):
            pick = np.argmax(np.where(np.isnan(x), np.inf, x), axis=0)  # NaN wins, as in a propagating max
        chosen = np.take_along_axis(rows, pick[None], axis=0)[0]
        return chosen, np.zeros(chosen.shape)
    ww = np.ones(n) if w is None else w
    wcol = ww.reshape((n,) + (1,) * (x.ndim - 1))
    with np.errstate(invalid="ignore", over="ignore"):
        p = wcol * x
        s = p.sum(axis=0)
        m = np.abs(p).sum(axis=0)
        if combiner == "sum":
            scale, k = 1.0, n
        elif combiner == "mean":
            den = ww.sum()
            if den == 0:
                return np.zeros(s.shape), np.zeros(s.shape)
            scale, k = 1.0 / abs(den), 2 * n + 1
            s = s / den
        else:  # sqrtn
            den = math.sqrt((ww * ww).sum())
            if den == 0:
                return np.zeros(s.shape), np.zeros(s.shape)
            scale, k = 1.0 / den, 2 * n + 3
            s = s / den
        atol = (gamma(k, dtype) + _gamma64(n + 1)) * m * scale + u * np.abs(s)
    return s, atol


def _flushed(table: np.ndarray) -> np.ndarray:
    """Subnormal elements replaced by zeros of their sign (flush_subnormals); float16
    tables are computed in float32, where none of their values is subnormal."""
    if table.dtype == np.float16:
        return table
    bits = table.view(f"u{table.dtype.itemsize}")
    width = 8 * table.dtype.itemsize
    e_bits = {2: 8 if table.dtype.name == "bfloat16" else 5, 4: 8, 8: 11}[table.dtype.itemsize]
    m_bits = width - 1 - e_bits
    exponent = (bits >> np.array(m_bits, bits.dtype)) & np.array((1 << e_bits) - 1, bits.dtype)
    mantissa = bits & np.array((1 << m_bits) - 1, bits.dtype)
    sub = (exponent == 0) & (mantissa != 0)
    out = bits.copy()
    out[sub] &= np.array(1 << (width - 1), bits.dtype)
    return out.view(table.dtype)


@dataclass(frozen=True)
class Bags:
    """What a framework's bag step may read besides the result: the table (after the model's
    transforms), each bag's size, the combiner and whether weights were given."""

    table: np.ndarray
    sizes: np.ndarray
    combiner: str
    weighted: bool
    exact: np.ndarray  # (B, *row) True where the result is compared bit for bit (a bag of one id, weight 1)


# A framework's own bag steps (registered from its folder, beside its Step in adapters/spec/steps.py):
# readers change the rows of one bag as the kernel reads them, (rows, n ids, weighted) -> rows;
# finishers change the pooled result, (value, Bags) -> value.
READERS: dict[str, Callable[[np.ndarray, int, bool], np.ndarray]] = {}
FINISHERS: dict[str, Callable[[np.ndarray, "Bags"], np.ndarray]] = {}


def register(kind: str, name: str, fn: Callable) -> None:
    global MODELS, STEPS
    target = {"reader": READERS, "finisher": FINISHERS}[kind]
    if target.get(name, fn) is not fn:
        raise ValueError(f"bag step {name} is registered twice")
    target[name] = fn
    if name not in STEPS:
        STEPS = MODELS = STEPS + (name,)


def _bags(table, plan, offs, w64, combiner, model):
    b = offs.shape[0] - 1
    if "empty_bag_reads_row_0" in model and table.shape[0] == 0 and (np.diff(offs) == 0).any():
        raise OutOfRange("an empty bag is given id 0, outside [0, 0)")
    if "flush_subnormals" in model:
        table = _flushed(table)
    readers = [READERS[m] for m in model if m in READERS]
    out_dtype = np.dtype(np.float32) if "float32_output" in model else table.dtype
    row = table.shape[1:]
    value = np.zeros((b, *row), dtype=out_dtype)
    atol = np.zeros((b, *row), dtype=np.float64)
    for k in range(b):
        lo, hi = int(offs[k]), int(offs[k + 1])
        if hi == lo:
            continue  # an empty bag: a zero row
        rows = oracle._gather(table, plan[lo:hi])  # a model's fill codes (fill_zero, fill_nan) too
        for read in readers:
            rows = read(rows, hi - lo, w64 is not None)
        v, a = _pool(rows, None if w64 is None else w64[lo:hi], combiner, model)
        value[k] = v if v.dtype == out_dtype else v.astype(out_dtype)
        atol[k] = a
    sizes = np.diff(offs)
    ones = (sizes == 1) if w64 is None else np.array([hi - lo == 1 and w64[lo] == 1 for lo, hi in
                                                       zip(offs[:-1], offs[1:])], dtype=bool)
    if "drop_trailing_empty_bags" in model:
        last = int(np.flatnonzero(sizes)[-1]) + 1 if sizes.any() else 0
        value, atol, sizes, ones = value[:last], atol[:last], sizes[:last], ones[:last]
    for step in model:
        if step in FINISHERS:
            exact = np.broadcast_to(ones.reshape((ones.shape[0],) + (1,) * len(row)), value.shape)
            value = FINISHERS[step](value, Bags(table, sizes, combiner, w64 is not None, exact))
    return bounded(value, atol, any_zero_sign=True)


def lookup_bags(table: np.ndarray, values: np.ndarray, offsets: np.ndarray, weights: np.ndarray | None,
                combiner: str, model: Sequence[str] = ()) -> Bounded:
    """The pooled lookup under ``model`` (the contract by default): the expected rows
    with their tolerance (``Bounded``: zeros compare by value)."""
    table, plan, offs, w64 = _prepared(table, values, offsets, weights, combiner, model)
    return _bags(table, plan, offs, w64, combiner, model)


def lookup_bags_padded(table, values, offsets, weights, combiner, padding_idx, model=()) -> Bounded:
    """The pooled lookup with entries equal to the padding id left out."""
    table, plan, offs, w64 = _prepared(table, values, offsets, weights, combiner, model, int(padding_idx))
    return _bags(table, plan, offs, w64, combiner, model)


def _dropped_upstream(up: np.ndarray, offs: np.ndarray):
    """drop_trailing_empty_bags in a gradient: the forward pass returns k <= B rows, and
    the loss sum(out * upstream) broadcasts them against the B upstream rows as NumPy
    and TensorFlow do: k == B as usual; k == 1 meets every upstream row (bag 0's
    upstream is their sum); k == 0 with B == 1 gives no gradient; anything else fails
    (incompatible shapes)."""
    b = offs.shape[0] - 1
    sizes = np.diff(offs)
    k = int(np.flatnonzero(sizes)[-1]) + 1 if sizes.any() else 0
    if k == b:
        return up, offs
    if k == 1:
        return up.sum(axis=0, keepdims=True), offs[:2]
    if k == 0 and b == 1:
        return up[:0], offs[:1]
    raise LookupFailure(f"the forward pass returns {k} rows for {b} bags: sum(out * upstream) has incompatible shapes")


def grad_bags(table, values, offsets, weights, combiner, upstream, model=()) -> Bounded:
    """d sum(lookup_bags(...) * upstream) / d table, dense, with its tolerance: each
    contribution c * up errs by its coefficient's rounding (at most gamma(2n + 3), as
    the forward pass's denominators) and a product (u); k contributions to one element
    add gamma(k - 1): gamma(k + 2n + 3) * sum |c * up| + u * |g|, n the largest bag
    contributing. Each of those k + 2n + 3 roundings may land among the subnormals, where
    its error is absolute, at most half the smallest subnormal (tiny * u): so
    (k + 2n + 3) * tiny * u more. Elements nothing reaches are exact zeros.

    Under ``bfloat16_held_as_float16`` the upstream of a bfloat16 table reaches the
    float16 table's backward rounded to float16 (the float32 output's gradient is cast to
    the dtype the pooled rows were computed in)."""
    held = "bfloat16_held_as_float16" in model and np.asarray(table).dtype.name == "bfloat16"
    table, plan, offs, w64 = _prepared(table, values, offsets, weights, combiner, model)
    up = np.asarray(upstream)
    with np.errstate(invalid="ignore"):
        up = (bfloat16_as_float16(up) if held else up).astype(np.float64)
    if "drop_trailing_empty_bags" in model:
        up, offs = _dropped_upstream(up, offs)
    acc = np.zeros(table.shape, dtype=np.float64)
    mags = np.zeros(table.shape, dtype=np.float64)
    count = np.zeros(table.shape, dtype=np.float64)
    nmax = np.zeros(table.shape, dtype=np.float64)
    for k in range(offs.shape[0] - 1):
        lo, hi = int(offs[k]), int(offs[k + 1])
        n = hi - lo
        if n == 0:
            continue
        rows = plan[lo:hi]
        if combiner == "max":
            x = table[rows].astype(np.float64).reshape(n, -1)
            pick = np.argmax(x, axis=0)
            flat_acc, flat_mags = acc.reshape(table.shape[0], -1), mags.reshape(table.shape[0], -1)
            flat_count, flat_n = count.reshape(table.shape[0], -1), nmax.reshape(table.shape[0], -1)
            u_k = up[k].reshape(-1)
            cols = np.arange(x.shape[1])
            r = rows[pick]
            np.add.at(flat_acc, (r, cols), u_k)
            np.add.at(flat_mags, (r, cols), np.abs(u_k))
            np.add.at(flat_count, (r, cols), 1)
            flat_n[r, cols] = np.maximum(flat_n[r, cols], n)
            continue
        w = np.ones(n) if w64 is None else w64[lo:hi]
        if combiner == "sum":
            c = w
        elif combiner == "mean":
            den = w.sum()
            c = w / den if den != 0 else np.zeros(n)
        else:
            den = math.sqrt((w * w).sum())
            c = w / den if den != 0 else np.zeros(n)
        for r, ci in zip(rows, c):
            contrib = ci * up[k]
            acc[r] += contrib
            mags[r] += np.abs(contrib)
            count[r] += 1
            nmax[r] = np.maximum(nmax[r], n)
    u = eps(table.dtype) / 2
    roundings = count + 2 * nmax + 3
    with np.errstate(invalid="ignore", over="ignore"):
        atol = np.where(count > 0, (gamma(roundings, table.dtype) + _gamma64(roundings)) * mags
                        + u * np.abs(acc) + roundings * oracle._tiny(table.dtype) * u, 0.0)
    return bounded(acc.astype(table.dtype), atol, any_zero_sign=True)
