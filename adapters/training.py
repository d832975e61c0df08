"""Training semantics as code: the gradient of a lookup, padding rows, max_norm.

The gradient of sum(lookup(T, I) * U) with respect to T is a scatter-add of U
into zeros: row r receives the sum of U[k] over every k with I[k] == r. The sum
is taken in float64 (exact for the suite's upstreams: small multiples of 1/2)
and rounded once to the table's dtype.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import oracle

MODELS: tuple[str, ...] = ()


class Bounded(np.ndarray):
    """An expected array with a per-element absolute tolerance ``atol``, where the
    framework's own arithmetic may round differently from the oracle's."""

    atol: np.ndarray | float = 0.0


def bounded(a: np.ndarray, atol) -> Bounded:
    out = a.view(Bounded)
    out.atol = atol
    return out


def eps(dtype: np.dtype) -> float:
    return float(np.finfo(np.float32 if dtype.name == "bfloat16" else dtype).eps) if dtype.name != "bfloat16" else 2.0**-7


def grad(table: np.ndarray, ids: np.ndarray, upstream: np.ndarray, model: Sequence[str] = ()) -> np.ndarray:
    """Dense d sum(lookup(table, ids) * upstream) / d table. Ids are checked as the
    forward lookup checks them (an out-of-range id fails the same way)."""
    oracle.lookup(table, ids, model)  # the forward pass: raises where the lookup does
    v = table.shape[0]
    acc = np.zeros((v, *table.shape[1:]), dtype=np.float64)
    flat_ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    flat_up = np.asarray(upstream, dtype=np.float64).reshape((flat_ids.size, *table.shape[1:]))
    np.add.at(acc, flat_ids, flat_up)
    return acc.astype(table.dtype)


def accumulation_tolerance(table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    """Per element: a framework may add a row's n contributions in any order, in the
    table's dtype. Each of the n - 1 additions rounds by at most half an ulp of the
    running sum, itself at most sum|u|: so (n - 1) * eps/2 * sum|u|, plus the final
    rounding of the exact sum (eps/2 * |sum|) that the oracle does too. With no
    duplicate ids n <= 1 and the bound is the one rounding both sides share: exact."""
    v = table.shape[0]
    flat_ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    counts = np.bincount(flat_ids, minlength=v).astype(np.float64) if flat_ids.size else np.zeros(v)
    mags = np.zeros((v, *table.shape[1:]), dtype=np.float64)
    np.add.at(mags, flat_ids, np.abs(np.asarray(upstream, dtype=np.float64).reshape((flat_ids.size, *table.shape[1:]))))
    extra = np.maximum(counts - 1, 0).reshape((v,) + (1,) * (table.ndim - 1))
    return extra * eps(table.dtype) / 2 * mags
