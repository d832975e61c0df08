"""Planted faults for pooled lookups: third-party bag adapters, each carrying one
realistic bug, plugged in through --adapter exactly as a user's adapter would be.
``breaks`` names the bag clause that must report ``violates`` for it.

Each starts from ``CorrectBags``, a plain NumPy implementation written apart from the
oracle (validate, then one reduction per bag in float64, rounded once), and changes
one thing, the way real implementations go wrong. ``CorrectBags`` itself must conform
on every bag clause."""
from __future__ import annotations

import math

import numpy as np

from embedding_conformance.adapters.contract import InvalidIds, InvalidOffsets, OutOfRange


class CorrectBags:
    framework = "numpy"
    breaks = ""

    @property
    def name(self) -> str:
        return f"planted.bags.{type(self).__name__}"

    # -- the shared correct path, that each fault bends
    def check_offsets(self, offsets, n):
        o = np.asarray(offsets).astype(np.int64)
        if o[0] != 0 or (np.diff(o) < 0).any() or o[-1] != n:
            raise InvalidOffsets(f"offsets {o.tolist()} are not CSR over {n} values")

    def check_ids(self, table, values):
        if values.dtype.kind not in "iu":
            raise InvalidIds(f"{values.dtype} ids")
        wide = values.astype(object) if values.dtype == np.uint64 else values.astype(np.int64)
        if values.size and (min(wide) < 0 or max(wide) >= table.shape[0]):
            raise OutOfRange("id outside [0, V)")
        return values.astype(np.int64)

    def spans(self, offsets, n):
        return [(int(offsets[b]), int(offsets[b + 1])) for b in range(len(offsets) - 1)]

    def rows(self, table, ids):
        return table[ids]

    def empty_row(self, table):
        return np.zeros(table.shape[1:], dtype=table.dtype)

    def reduce(self, rows, w, combiner):
        if rows.shape[0] == 1 and (w is None or float(w[0]) == 1.0):
            return rows[0]  # one id, weight 1: the row itself
        if combiner == "max":
            return rows.max(axis=0)
        x = rows.astype(np.float64)
        ww = np.ones(rows.shape[0]) if w is None else w.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            s = (ww.reshape((-1,) + (1,) * (x.ndim - 1)) * x).sum(axis=0)
            den = {"sum": 1.0, "mean": ww.sum(), "sqrtn": math.sqrt((ww * ww).sum())}[combiner]
            return (s / den if den != 0 else np.zeros_like(s)).astype(rows.dtype)

    def lookup_bags(self, table, values, offsets, weights, combiner):
        self.check_offsets(offsets, values.shape[0])
        ids = self.check_ids(table, values)
        out = np.zeros((len(offsets) - 1, *table.shape[1:]), dtype=table.dtype)
        for b, (lo, hi) in enumerate(self.spans(offsets, values.shape[0])):
            out[b] = self.empty_row(table) if hi <= lo else self.reduce(
                self.rows(table, ids[lo:hi]), None if weights is None else weights[lo:hi], combiner)
        return out

    def lookup_bags_padded(self, table, values, offsets, weights, combiner, padding_idx):
        v = table.shape[0]
        if not -v <= padding_idx < v:
            raise OutOfRange("padding_idx outside [-V, V)")
        self.check_offsets(offsets, values.shape[0])
        self.check_ids(table, values)
        keep = values.astype(np.int64) != padding_idx % v
        cum = np.concatenate([[0], np.cumsum(keep)])
        return self.lookup_bags(table, values[keep], cum[np.asarray(offsets)],
                                None if weights is None else weights[keep], combiner)

    def coefficients(self, rows, w, combiner):
        ww = np.ones(rows.shape[0]) if w is None else w.astype(np.float64)
        den = {"sum": 1.0, "mean": ww.sum(), "sqrtn": math.sqrt((ww * ww).sum())}[combiner]
        return ww / den if den != 0 else np.zeros_like(ww)

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        self.check_offsets(offsets, values.shape[0])
        ids = self.check_ids(table, values)
        g = np.zeros(table.shape, dtype=np.float64)
        up = upstream.astype(np.float64)
        for b, (lo, hi) in enumerate(self.spans(offsets, values.shape[0])):
            if hi <= lo:
                continue
            rows = table[ids[lo:hi]]
            if combiner == "max":
                flat = rows.astype(np.float64).reshape(hi - lo, -1)
                pick = flat.argmax(axis=0)
                gf = g.reshape(table.shape[0], -1)
                np.add.at(gf, (ids[lo:hi][pick], np.arange(flat.shape[1])), up[b].reshape(-1))
                continue
            c = self.coefficients(rows, None if weights is None else weights[lo:hi], combiner)
            for i, ci in zip(ids[lo:hi], c):
                g[i] += ci * up[b]
        return g.astype(table.dtype)


# --- the faults the issue names -------------------------------------------------------------

class DropsTrailingEmptyBags(CorrectBags):
    """Returns rows up to the last non-empty bag (a segment count from the largest id)."""
    breaks = "bag.empty"

    def lookup_bags(self, table, values, offsets, weights, combiner):
        out = super().lookup_bags(table, values, offsets, weights, combiner)
        sizes = np.diff(np.asarray(offsets))
        return out[: int(np.flatnonzero(sizes)[-1]) + 1 if sizes.any() else 0]


class WeightedMeanByCount(CorrectBags):
    """Divides a weighted mean by the number of ids instead of the sum of weights."""
    breaks = "bag.weights"

    def reduce(self, rows, w, combiner):
        if combiner == "mean" and w is not None:
            return super().reduce(rows, w, "sum").astype(np.float64) / rows.shape[0]
        return super().reduce(rows, w, combiner)


class IgnoresWeights(CorrectBags):
    """Pools as if no weights were given."""
    breaks = "bag.weights"

    def reduce(self, rows, w, combiner):
        return super().reduce(rows, None, combiner)


class NanForEmptyBag(CorrectBags):
    """An empty bag is 0 / 0: NaN rows."""
    breaks = "bag.empty"

    def empty_row(self, table):
        return np.full(table.shape[1:], np.nan, dtype=table.dtype)


class SqrtnByCount(CorrectBags):
    """Divides a weighted sqrtn by sqrt(count) instead of sqrt(sum w^2)."""
    breaks = "bag.weights"

    def reduce(self, rows, w, combiner):
        if combiner == "sqrtn" and w is not None:
            s = super().reduce(rows, w, "sum").astype(np.float64)
            return (s / math.sqrt(rows.shape[0])).astype(rows.dtype)
        return super().reduce(rows, w, combiner)


class OffByOneOffsets(CorrectBags):
    """Bag b takes values[offsets[b] + 1 : offsets[b + 1] + 1] (an exclusive start)."""
    breaks = "bag.sum"

    def spans(self, offsets, n):
        return [(min(int(lo) + 1, n), min(int(hi) + 1, n)) for lo, hi in zip(offsets[:-1], offsets[1:])]


# --- one per clause -------------------------------------------------------------------------

class SumInHalf(CorrectBags):
    """Accumulates every bag in float16, whatever the table's dtype."""
    breaks = "bag.sum"

    def reduce(self, rows, w, combiner):
        if combiner == "sum" and rows.shape[0] > 1 and w is None:
            acc = np.zeros(rows.shape[1:], dtype=np.float16)
            for r in rows.astype(np.float16):
                acc = (acc + r).astype(np.float16)
            return acc.astype(rows.dtype)
        return super().reduce(rows, w, combiner)


class MeanOverUniqueIds(CorrectBags):
    """Divides the sum by the number of distinct ids, not of entries."""
    breaks = "bag.mean"

    def reduce(self, rows, w, combiner):
        if combiner == "mean" and w is None:
            s = rows.astype(np.float64).sum(axis=0)
            return (s / len({r.tobytes() for r in rows})).astype(rows.dtype)
        return super().reduce(rows, w, combiner)


class SqrtnIntegerRoot(CorrectBags):
    """Divides by math.isqrt(count): an integer square root."""
    breaks = "bag.sqrtn"

    def reduce(self, rows, w, combiner):
        if combiner == "sqrtn" and w is None:
            return (rows.astype(np.float64).sum(axis=0) / math.isqrt(rows.shape[0])).astype(rows.dtype)
        return super().reduce(rows, w, combiner)


class MaxFromZero(CorrectBags):
    """Starts the running max at 0: a bag of negative rows gives 0."""
    breaks = "bag.max"

    def reduce(self, rows, w, combiner):
        if combiner == "max":
            return np.maximum(rows.max(axis=0), np.zeros((), rows.dtype)).astype(rows.dtype)
        return super().reduce(rows, w, combiner)


class ZeroWeightsNaN(CorrectBags):
    """Divides by the sum of weights as it is: 0 / 0 is NaN."""
    breaks = "bag.zero_weights"

    def reduce(self, rows, w, combiner):
        if combiner in ("mean", "sqrtn") and w is not None:
            x, ww = rows.astype(np.float64), w.astype(np.float64)
            s = (ww[:, None] * x.reshape(len(ww), -1)).sum(axis=0).reshape(rows.shape[1:])
            den = ww.sum() if combiner == "mean" else math.sqrt((ww * ww).sum())
            with np.errstate(invalid="ignore", divide="ignore"):
                return (s / den).astype(rows.dtype)
        return super().reduce(rows, w, combiner)


class ClampsIds(CorrectBags):
    """Clamps ids >= V to the last row."""
    breaks = "bag.out_of_range"

    def check_ids(self, table, values):
        if values.dtype.kind not in "iu":
            raise InvalidIds(f"{values.dtype} ids")
        wide = values.astype(np.float64)
        if table.shape[0] == 0 and values.size or (wide < 0).any():
            raise OutOfRange("id outside [0, V)")
        return np.minimum(wide, table.shape[0] - 1).astype(np.int64)


class WrapsNegativeIds(CorrectBags):
    """Python indexing: -1 is the last row."""
    breaks = "bag.negative"

    def check_ids(self, table, values):
        if values.dtype.kind in "i" and values.size and (values.astype(np.int64) < 0).any():
            wide = values.astype(np.int64)
            v = table.shape[0]
            if (wide < -v).any() or (wide >= v).any():
                raise OutOfRange("id outside [-V, V)")
            return wide % v
        return super().check_ids(table, values)


class TruncatesFloatIds(CorrectBags):
    """Casts float ids to integers."""
    breaks = "bag.float_ids"

    def check_ids(self, table, values):
        if values.dtype.kind in "fb":
            with np.errstate(invalid="ignore"):
                values = np.nan_to_num(np.trunc(values.astype(np.float64)), nan=-1, posinf=-1, neginf=-1)
            values = values.astype(np.int64)
        return super().check_ids(table, values)


class UncheckedOffsets(CorrectBags):
    """Slices whatever offsets it is given (a decrease is an empty bag)."""
    breaks = "bag.offsets"

    def check_offsets(self, offsets, n):
        pass


class PaddingCountedInMean(CorrectBags):
    """Leaves padding out of the sum but counts it in a mean's denominator."""
    breaks = "bag.padding"

    def lookup_bags_padded(self, table, values, offsets, weights, combiner, padding_idx):
        out = super().lookup_bags_padded(table, values, offsets, weights, combiner, padding_idx)
        if combiner != "mean":
            return out
        full = np.diff(np.asarray(offsets))
        pad = values.astype(np.int64) == padding_idx % table.shape[0]
        kept = np.array([full[b] - pad[offsets[b]:offsets[b + 1]].sum() for b in range(len(full))])
        scale = np.where(full > 0, kept / np.maximum(full, 1), 1.0).reshape((-1,) + (1,) * (table.ndim - 1))
        return (out.astype(np.float64) * scale).astype(table.dtype)


class AccumulatesFromZero(CorrectBags):
    """Sums from a zero accumulator in the table's dtype: a lone -0.0 comes back +0.0."""
    breaks = "bag.single"

    def reduce(self, rows, w, combiner):
        if combiner == "sum" and rows.shape[0] == 1:
            return (np.zeros(rows.shape[1:], rows.dtype) + rows[0]).astype(rows.dtype)
        return super().reduce(rows, w, combiner)


class FlattensRows(CorrectBags):
    """Pools rows flattened to vectors: matrix rows come back as (B, D1 * D2)."""
    breaks = "bag.row_shapes"

    def lookup_bags(self, table, values, offsets, weights, combiner):
        flat = table.reshape(table.shape[0], -1) if table.ndim != 2 else table
        return super().lookup_bags(flat, values, offsets, weights, combiner)


class MeanGradNotDivided(CorrectBags):
    """Backpropagates a mean as if it were a sum."""
    breaks = "bag.grad"

    def coefficients(self, rows, w, combiner):
        return super().coefficients(rows, w, "sum" if combiner == "mean" else combiner)


ALL = [cls for cls in list(globals().values())
       if isinstance(cls, type) and issubclass(cls, CorrectBags) and cls.breaks]
