"""Training semantics as code: the gradient of a lookup, padding rows, frequency
scaling, max_norm, and what a lookup may do to its table (nothing).

The gradient of sum(lookup(T, I) * U) with respect to T is a scatter-add of U
into zeros: row r receives the sum of U[k] over every k with I[k] == r. The
oracle sums exactly (in float64, exact for float16/bfloat16/float32 contributions
of the suite's exponent range; with math.fsum for float64 ones) and rounds once to
the table's dtype; a framework may add in any order, in the table's dtype or wider,
within the bound ``_accumulation_atol`` states. Zeros compare by value: whether a
lone -0.0 contribution comes back as -0.0 or +0.0 is the summation's choice. Under a lookup behaviour model, an id that
resolves to a row scatters into it (a wrapped id into its wrapped row); an id
filled with NaN or zeros reaches no row and contributes nothing.

Models (steps next to the lookup's own):
- ``drop_clipped_grad``: ids the forward pass clamped (``clip``) contribute no
  gradient (XLA's scatter drops out-of-bounds updates);
- ``renorm_torch``: max_norm rescales a row with norm > m by m / (norm + 1e-7),
  and rows with a NaN norm are left alone (torch's embedding_renorm_);
- ``clip_by_norm_tf``: rows come back as row * m / max(norm, m) (tf.clip_by_norm:
  a NaN or infinite norm poisons the whole row);
- ``renorm_in_place``: the lookup writes the renormalised rows into its table;
- ``renorm_before_check``: with max_norm, rows are renormalised (in place) before
  the ids are checked: the sorted unique ids are taken in order, ids in [-V, -1]
  wrapping to id + V, until the first invalid one; then the lookup fails, leaving
  the rows renormalised so far (torch's embedding_renorm_ runs before the gather);
- ``scalar_ids_fail_backward``: the backward pass fails (a framework failure) for
  0-d ids (torch's sparse gradient with padding_idx).
- ``one_element_scatter_fails``: the backward pass fails (a framework failure)
  for a 1 x 1 table and two or more ids (torch.compile's inductor cannot generate
  the scatter-add of a one-element gradient that several ids accumulate into).

Under the lookup model ``one_hot_matmul`` the gradient is ``one_hot(ids)^T @ U``:
ids outside [0, V) have an all-zero one-hot vector and reach no row, 0-d ids are
InvalidIds (MatMul takes rank >= 2), and an element no id reaches is a sum of
products 0 * u, a zero whose sign is the kernel's (compared by value).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from embedding_conformance.adapters.spec import oracle
from embedding_conformance.adapters.contract import InvalidIds, LookupFailure, OutOfRange

MODELS = ("drop_clipped_grad", "renorm_torch", "clip_by_norm_tf", "renorm_in_place", "renorm_before_check",
          "scalar_ids_fail_backward", "one_element_scatter_fails")


class Bounded(np.ndarray):
    """An expected array with a per-element absolute tolerance ``atol``, where the
    framework's own arithmetic may round differently from the oracle's."""

    atol: np.ndarray | float = 0.0
    any_zero_sign: bool = False  # zeros compare by value: +0.0 and -0.0 both hold


def bounded(a: np.ndarray, atol, *, any_zero_sign: bool = False) -> Bounded:
    out = np.asarray(a).view(Bounded)
    out.atol = atol
    out.any_zero_sign = any_zero_sign
    return out


def eps(dtype: np.dtype) -> float:
    return 2.0**-7 if dtype.name == "bfloat16" else float(np.finfo(dtype).eps)


def _rows_of(table, ids, model):
    """Row each id scatters into (-1: none), after the lookup's own checks."""
    if "one_hot_matmul" in model:
        if np.ndim(ids) == 0:
            raise InvalidIds("ids of rank 0: the one-hot gradient's MatMul needs rank >= 2 operands")
        t, ids2 = oracle._transformed(table, ids, model)  # applies the model's transforms only
        wide = oracle._as_int_ids(ids2).reshape(-1)
        inside = (wide >= 0) & (wide < t.shape[0])
        return np.where(inside, wide, -1).astype(np.int64), t
    t, ids2, plan = oracle.resolve(table, ids, [m for m in model if m not in MODELS])
    plan = plan.reshape(-1).copy()
    if "clip" in model and "drop_clipped_grad" in model:
        wide = oracle._as_int_ids(ids2).reshape(-1)
        plan[(wide < 0) | (wide >= t.shape[0])] = -1
    return plan, t


def _scatter(table, rows, upstream, weights=None):
    """(exact sums per row, sums of magnitudes, contributions per row)."""
    acc = np.zeros(table.shape, dtype=np.float64)
    mags = np.zeros(table.shape, dtype=np.float64)
    up = np.asarray(upstream, dtype=np.float64).reshape((rows.size, *table.shape[1:]))
    if weights is not None:
        up = up * weights.reshape((-1,) + (1,) * (table.ndim - 1))
    keep = rows >= 0
    if np.asarray(upstream).dtype == np.float64:
        # float64 contributions: float64 additions would round; fsum is exact, then rounded once
        width = int(np.prod(table.shape[1:], dtype=np.int64))
        flat_acc = acc.reshape(table.shape[0], width)
        flat_up = up.reshape(rows.size, width)
        for r in np.unique(rows[keep]):
            hit = flat_up[rows == r]
            flat_acc[r] = [math.fsum(col) for col in hit.T]
    else:  # float64 holds these sums exactly
        np.add.at(acc, rows[keep], up[keep])
    np.add.at(mags, rows[keep], np.abs(up[keep]))
    counts = np.bincount(rows[keep], minlength=table.shape[0]) if keep.any() else np.zeros(table.shape[0], int)
    return acc, mags, counts


def _accumulation_atol(table, acc, mags, counts):
    """A framework may add a row's n contributions in any order, in the table's
    dtype or wider: recursive or pairwise summation errs by at most
    gamma(n - 1) * sum|u| (gamma(k) = k*u / (1 - k*u), u = eps/2 of the table's dtype),
    and the oracle's own rounding of the exact sum adds u * |sum|. A row hit once or
    never: no addition, exact."""
    shape = (-1,) + (1,) * (table.ndim - 1)
    extra = np.maximum(counts - 1, 0).reshape(shape)
    u = eps(table.dtype) / 2
    gamma = extra * u / (1 - extra * u)
    return gamma * mags + np.where(extra > 0, u * np.abs(acc), 0.0)


def _upstream(table: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    # a model that changed the table's dtype (x64_off: float64 -> float32) holds the
    # upstream in that dtype too (JAX converts it on the way in)
    up = np.asarray(upstream)
    return up.astype(table.dtype) if up.dtype != table.dtype and up.dtype.itemsize > table.dtype.itemsize else up


def grad(table: np.ndarray, ids: np.ndarray, upstream: np.ndarray, model: Sequence[str] = ()) -> Bounded:
    """Dense d sum(lookup(table, ids) * upstream) / d table, with its tolerance."""
    rows, table = _rows_of(table, ids, model)  # a model may change the table's dtype (x64_off)
    if "one_element_scatter_fails" in model and table.shape == (1, 1) and np.size(ids) >= 2:
        raise LookupFailure("the backward pass fails for a 1 x 1 table and two or more ids")
    acc, mags, counts = _scatter(table, rows, _upstream(table, upstream))
    return bounded(acc.astype(table.dtype), _accumulation_atol(table, acc, mags, counts), any_zero_sign=True)


def grad_padded(table, ids, upstream, padding_idx, model=()):
    """(forward rows, gradient): the padding row is looked up as stored, and its
    gradient is zero. A negative padding_idx counts from the end (p + V)."""
    v = table.shape[0]
    if not -v <= padding_idx < v:
        raise OutOfRange(f"padding_idx {padding_idx} is outside [-{v}, {v})")
    if "scalar_ids_fail_backward" in model and np.ndim(ids) == 0:
        raise LookupFailure("the backward pass fails for 0-d ids")
    out = oracle.lookup(table, ids, [m for m in model if m not in MODELS])
    g = grad(table, ids, upstream, model)
    p = padding_idx % v
    g[p] = 0
    g.atol = np.array(g.atol, dtype=np.float64)  # a copy: the padding row is exact
    if g.atol.ndim:
        g.atol[p] = 0
    return out, g


def grad_scaled(table, ids, upstream, model=()):
    """scale_grad_by_freq: each contribution divided by how often its id occurs."""
    rows, table = _rows_of(table, ids, model)
    counts = np.bincount(rows[rows >= 0], minlength=table.shape[0]) if (rows >= 0).any() else np.zeros(table.shape[0], int)
    weights = np.where(rows >= 0, 1.0 / np.maximum(counts[np.maximum(rows, 0)], 1), 0.0)
    acc, mags, n = _scatter(table, rows, _upstream(table, upstream), weights)
    # dividing by a count > 1 rounds each contribution once more (half an ulp each) and
    # the oracle's float64 quotient once (float64 contributions); a count of 1 divides exactly
    scaled = (n > 1).reshape((-1,) + (1,) * (table.ndim - 1))
    atol = _accumulation_atol(table, acc, mags, n) + np.where(scaled, eps(table.dtype) * mags, 0.0)
    return bounded(acc.astype(table.dtype), atol, any_zero_sign=True)


# --- max_norm -----------------------------------------------------------------------

def _norms(rows: np.ndarray) -> np.ndarray:
    flat = rows.reshape(rows.shape[0], -1).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.sqrt((flat * flat).sum(axis=1))


def renormed(rows: np.ndarray, max_norm: float, formula: str) -> np.ndarray:
    """Rows after max_norm, computed in float64 and rounded once to the dtype."""
    x = rows.reshape(rows.shape[0], -1).astype(np.float64)
    norm = _norms(rows)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if formula == "contract":
            # a row whose norm exceeds m comes back with norm m; a row holding NaN or
            # an infinity has no finite rescaling and comes back as it is
            finite = np.isfinite(x).all(axis=1)
            scale = np.where(finite & (norm > max_norm), max_norm / np.where(norm > 0, norm, 1), 1.0)
            out = x * scale[:, None]
            out[~finite] = x[~finite]
        elif formula == "renorm_torch":
            scale = np.where(norm > max_norm, max_norm / (norm + 1e-7), 1.0)
            out = x * scale[:, None]
        elif formula == "clip_by_norm_tf":
            out = x * max_norm / np.maximum(norm, max_norm)[:, None]
            out[np.isnan(norm)] = np.nan
        else:
            raise ValueError(formula)
    res = out.astype(rows.dtype).reshape(rows.shape)
    keep = (out == x)  # untouched elements keep their bits (NaN payloads, -0.0)
    res.reshape(rows.shape[0], -1)[keep] = rows.reshape(rows.shape[0], -1)[keep]
    return res


def max_norm_tolerance(rows: np.ndarray) -> float:
    """Relative, in units u = eps/2 of the table's dtype: the D squares and their sum
    err by at most D*u, which the square root halves (D/2); the root itself, the
    division (or the scale's rounding to the dtype), the product and the oracle's own
    rounding of the exact result one u each (4). A framework computing in a wider
    dtype errs less."""
    d = int(np.prod(rows.shape[1:], dtype=np.int64)) if rows.ndim > 1 else 1
    return (math.ceil(d / 2) + 4) * eps(rows.dtype) / 2


def lookup_with_state(table, ids, max_norm=None, model=()):
    """(rows or the failure, table after): a lookup never changes its table."""
    lookup_model = [m for m in model if m not in MODELS]
    formula = next((m for m in model if m in ("renorm_torch", "clip_by_norm_tf")), "contract")
    after = table.copy()
    try:
        _, _, plan = oracle.resolve(table, ids, lookup_model)
    except LookupFailure as failure:
        if max_norm is not None and "renorm_before_check" in model and np.asarray(ids).dtype.kind in "iu":
            v = table.shape[0]
            for i in np.unique(oracle._as_int_ids(np.asarray(ids)).reshape(-1)):
                if not -v <= i < v:
                    break
                r = int(i) % v
                after[r] = renormed(after[r:r + 1], max_norm, formula)[0]
        return failure, after
    out = oracle.lookup(table, ids, lookup_model)
    if max_norm is None:
        return out, after
    touched = np.unique(plan.reshape(-1)[plan.reshape(-1) >= 0])
    fixed = table.copy()
    if touched.size:
        fixed[touched] = renormed(table[touched], max_norm, formula)
    if "renorm_in_place" in model:
        after = fixed
    out = oracle.lookup(fixed, ids, lookup_model)
    return out, after
