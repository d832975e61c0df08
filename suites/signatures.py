"""Signature pools: the shapes and dtypes one run draws its examples from.

A compiled adapter (torch.compile, XLA, jax.jit, tf.function, a Keras model)
builds one executable per input signature, and even eager JAX compiles each op
per shape. When every example brings a new (table dtype, V, row shape, ids dtype,
ids shape), every example is a compile (150 ms for torch.compile, 30 ms for
jnp.take, against 0.03 ms for a call that hits the cache). So every clause of an
adapter draws its signature from one pool (16 signatures; 64 in the thorough
profile), fixed for the run; what varies from example to example is the values
(every bit of the table, every id).

The pool is balanced: each level of each factor (every table dtype the adapter
takes, every integer ids dtype, V in 0..9 with the small ones favoured, every row
rank, ids of rank 0 to 4 and zero-size ids) appears about equally often, and the
pairing of levels is drawn from the run's seed (the ci profile uses one fixed
pool), so runs under different seeds meet different combinations. Rows are
sorted simplest first: hypothesis shrinks a drawn index towards 0.

Every pool also holds the *reach* signatures (``REACH``): tables on both sides of
each id dtype's wrap boundary (V = 2^7 and 2^7 + 1, 2^8 and 2^8 + 1, 2^15 and
2^15 + 1, 2^16 and 2^16 + 1), each paired with the ids dtype whose range it tests,
rows of one element so that memory stays small. A fault that hides until V > 255,
or that reads uint8 ids past 127 as negative, or narrows ids to 16 bits, meets them
in every run. Clauses about ids and rows keep them whatever their V range
(``reach=True``); clauses whose cases need small tables (duplicates in gradients,
shard counts) leave them out.

A clause takes the pool's signatures its constraints allow (V in a range, some ids
dtypes, non-empty ids, ...) as they are (``select``), so clauses of one adapter
share their signatures and a function compiled for one clause serves the next;
only when too few fit is the pool projected (``project``: each row moved to the
nearest signature the clause allows). Clauses whose every signature is a compile
of its own kind take a covering part of the pool (``subset``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Sequence

import numpy as np

from embedding_conformance.adapters.contract import INT_DTYPES, Capabilities

MAX_V = 9
MAX_SIDE = 3
# V levels: each appears about equally often, so 1 and 2 (where compilers take
# shortcuts: a one-row gather becomes a broadcast) come up twice as often as the rest
V_LEVELS = (0, 1, 2, 3, 1, 2, 4, 5, 6, 9)
# ids shape levels: the rank, or "zero-size" (a rank 1..3 shape with one side 0)
IDS_LEVELS = (0, 1, 2, 3, 4, "zero-size")
KNOBS = 4  # a small index clause-specific options key on (max_norm's value, ...), so that they repeat too
# Shapes where frameworks have been seen to take shortcuts, in every pool whatever its seed:
# (V, ids shape, row of ones or not). An empty table with ids of shape (2, 0) (jnp.take
# returns the table itself), one-row tables (XLA and Flax broadcast the row), a 0-d id,
# and a 1 x 1 weight hit twice (inductor's one-element scatter).
EDGES = ((0, (2, 0), False), (1, (), False), (1, (2,), True))
# (V, ids dtype): each id dtype's wrap boundary 2^k with V = 2^k (the dtype's top id is
# the last row, or V itself wraps to 0 in k bits) and V = 2^k + 1 (rows past the
# boundary: an id there read in k bits, or as signed, lands on another row)
REACH = ((2**7, "int8"), (2**7 + 1, "uint8"), (2**8, "uint8"), (2**8 + 1, "int16"),
         (2**15, "int16"), (2**15 + 1, "uint16"), (2**16, "uint16"), (2**16 + 1, "int32"))
REACH_IDS = ((6,), (2, 3))  # ids shapes of the reach signatures, taken in turn
# "simplest" orders, for sorting the pool (what a shrunk example shows)
_TABLE_ORDER = ("float32", "float64", "float16", "bfloat16")
_IDS_ORDER = ("int32", "int64", "int16", "int8", "uint8", "uint16", "uint32", "uint64")


@dataclass(frozen=True)
class Signature:
    table_dtype: str
    v: int
    row: tuple[int, ...]
    ids_dtype: str
    ids_shape: tuple[int, ...]
    knob: int = 0
    edge: bool = field(default=False, compare=False)  # one of EDGES (kept by ``subset``)
    reach: bool = field(default=False, compare=False)  # one of REACH (kept by clauses with reach=True)

    @property
    def table_shape(self) -> tuple[int, ...]:
        return (self.v, *self.row)

    def complexity(self) -> tuple:
        size = int(np.prod(self.ids_shape, dtype=np.int64))
        return (size, len(self.ids_shape), self.v, int(np.prod(self.row, dtype=np.int64)), len(self.row),
                _rank(_TABLE_ORDER, self.table_dtype), _rank(_IDS_ORDER, self.ids_dtype), self.knob)


def _rank(order: Sequence[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


def _balanced(rng: np.random.Generator, levels: Sequence, n: int) -> list:
    """n picks of ``levels`` in random order, each level used as evenly as possible."""
    whole = n // len(levels)
    picks = list(levels) * whole + [levels[i] for i in rng.permutation(len(levels))[: n - whole * len(levels)]]
    return [picks[i] for i in rng.permutation(n)]


def _ids_shape(rng: np.random.Generator, level) -> tuple[int, ...]:
    if level == "zero-size":
        rank = int(rng.integers(1, 4))
        shape = [int(s) for s in rng.integers(1, MAX_SIDE + 1, rank)]
        shape[int(rng.integers(0, rank))] = 0
        return tuple(shape)
    return tuple(int(s) for s in rng.integers(1, MAX_SIDE + 1, level))


@lru_cache(maxsize=None)
def make_pool(caps: Capabilities, size: int, salt: int) -> tuple[Signature, ...]:
    """``size`` signatures for an adapter with ``caps``, balanced over every factor,
    paired by ``salt`` (the run's seed; 0 in the ci profile), simplest first."""
    rng = np.random.default_rng([salt & 0xFFFFFFFF, size])
    row_ranks = sorted(nd - 1 for nd in caps.table_ndims)
    columns = [
        _balanced(rng, tuple(caps.table_dtypes), size),
        _balanced(rng, V_LEVELS, size),
        _balanced(rng, row_ranks, size),
        _balanced(rng, INT_DTYPES, size),
        _balanced(rng, IDS_LEVELS, size),
        _balanced(rng, tuple(range(KNOBS)), size),
    ]
    rows = set()
    for k, (dtype, v, rank, ids_dtype, level, knob) in enumerate(zip(*columns)):
        row = tuple(int(s) for s in rng.integers(1, MAX_SIDE + 1, rank))
        ids_shape = _ids_shape(rng, level)
        edge = k < len(EDGES)
        if edge:  # the edge shapes take the first rows' other factors
            v, ids_shape, ones = EDGES[k]
            row = (1,) * rank if ones else row
        rows.add(Signature(dtype, max(int(v), caps.min_rows), row, ids_dtype, ids_shape, knob, edge))
    dtypes = _balanced(rng, tuple(caps.table_dtypes), len(REACH))
    for k, (v, ids_dtype) in enumerate(REACH):
        rank = row_ranks[k % len(row_ranks)]
        rows.add(Signature(dtypes[k], v, (1,) * rank, ids_dtype, REACH_IDS[k % len(REACH_IDS)], k % KNOBS,
                           reach=True))
    return tuple(sorted(rows, key=Signature.complexity))


def _nearest(name: str, allowed: Sequence[str], universe: Sequence[str]) -> str:
    """``name`` if allowed, else one of ``allowed`` chosen by name, so that the pool's
    different dtypes spread over the allowed ones instead of piling onto the first."""
    if name in allowed:
        return name
    return allowed[(universe.index(name) if name in universe else 0) % len(allowed)]


def project(pool: Sequence[Signature], *, v_min: int = 0, v_max: int = MAX_V,
            id_dtypes: Sequence[str], table_dtypes: Sequence[str], row_min_side: int = 1,
            ids: str = "valid", empty: str | None = None, reach: bool = False) -> tuple[Signature, ...]:
    """The pool as one clause may draw it. ``ids``: "valid" (a table with no rows
    gets zero-size ids, the only valid ones) or "nonempty" (at least one id, for
    clauses that plant the ids they are about). ``empty`` (table.empty): "table" makes
    V = 0, "rows" makes the last row side 0, "both" does both."""
    out: dict[Signature, None] = {}
    for sig in pool:
        if sig.reach and not reach:
            continue
        v = sig.v if sig.reach else min(max(sig.v, v_min), max(v_max, v_min))
        row = tuple(max(s, row_min_side) for s in sig.row)
        shape = sig.ids_shape
        if empty in ("table", "both"):
            v = 0
        if empty in ("rows", "both"):
            row = (*row[:-1], 0)
        if ids == "nonempty":
            shape = tuple(max(s, 1) for s in shape)
        elif v == 0 and empty not in ("table", "both") and 0 not in shape:
            shape = (*shape[:-1], 0) if shape else (0,)
        out[replace(sig, table_dtype=_nearest(sig.table_dtype, table_dtypes, _TABLE_ORDER), v=v, row=row,
                    ids_dtype=_nearest(sig.ids_dtype, id_dtypes, INT_DTYPES), ids_shape=shape)] = None
    return tuple(sorted(out, key=Signature.complexity))


def _allows(sig: Signature, v_min: int, v_max: int, id_dtypes: Sequence[str], table_dtypes: Sequence[str],
            row_min_side: int, ids: str, reach: bool = False) -> bool:
    size = int(np.prod(sig.ids_shape, dtype=np.int64))
    in_range = (v_min <= sig.v <= v_max) if not sig.reach else reach
    return (in_range and sig.ids_dtype in id_dtypes and sig.table_dtype in table_dtypes
            and all(s >= row_min_side for s in sig.row)
            and (size > 0 if ids == "nonempty" else sig.v > 0 or size == 0))


def select(pool: Sequence[Signature], *, minimum: int, v_min: int = 0, v_max: int = MAX_V,
           id_dtypes: Sequence[str], table_dtypes: Sequence[str], row_min_side: int = 1,
           ids: str = "valid", reach: bool = False) -> tuple[Signature, ...]:
    """The signatures of ``pool`` a clause allows as they are, when there are at
    least ``minimum`` of them: then the clause compiles nothing its neighbours have
    not compiled already; a table dtype, ids dtype, ids rank or a table of 0 or 1
    rows that the filter would lose comes back projected (a float64 table dropped
    with V = 9 hides a float64 departure). Otherwise the whole pool, projected onto
    the clause."""
    kw = dict(v_min=v_min, v_max=v_max, id_dtypes=id_dtypes, table_dtypes=table_dtypes,
              row_min_side=row_min_side, ids=ids, reach=reach)
    projected = project(pool, **kw)
    fitting = [s for s in pool if _allows(s, **kw)]
    if len([s for s in fitting if not s.reach]) < min(minimum, len([s for s in pool if not s.reach])):
        return projected
    have = set().union(*(_kept(s) for s in fitting))
    for sig in projected:
        if _kept(sig) - have:
            fitting.append(sig)
            have |= _kept(sig)
    return tuple(sorted(dict.fromkeys(fitting), key=Signature.complexity))


def _kept(sig: Signature) -> set:
    """The levels ``select`` keeps whatever it filters."""
    return {lv for lv in _levels(sig) if lv[0] in ("table", "ids", "rank") or lv in (("v", 0), ("v", 1))}


def _levels(sig: Signature) -> set:
    size = int(np.prod(sig.ids_shape, dtype=np.int64))
    return {("table", sig.table_dtype), ("v", sig.v), ("row", len(sig.row)), ("ids", sig.ids_dtype),
            ("rank", "zero-size" if size == 0 else len(sig.ids_shape))}


@lru_cache(maxsize=None)
def subset(pool: tuple[Signature, ...], n: int) -> tuple[Signature, ...]:
    """``n`` signatures of ``pool``: its edge shapes, then those that between them
    cover as many factor levels as possible (greedy, simplest first on ties), for
    clauses whose every signature is a compile of its own kind (gradients, max_norm,
    empty tables): what they are about lives in the values (duplicate ids, row
    norms), which every example draws afresh."""
    chosen = [s for s in pool if s.edge][:n]
    covered: set = set().union(*(_levels(s) for s in chosen))
    rest = [s for s in pool if not s.edge and not s.reach]
    while rest and len(chosen) < n:
        best = max(rest, key=lambda s: len(_levels(s) - covered))  # max keeps the first (simplest) on ties
        chosen.append(best)
        covered |= _levels(best)
        rest.remove(best)
    return tuple(sorted(chosen, key=Signature.complexity))


def covering_half(pool: tuple[Signature, ...], reach: int = 0) -> tuple[Signature, ...]:
    """Half the pool, covering its factor levels (``subset``): what the clauses whose
    every signature is a compile of its own kind draw; and ``reach`` of its reach
    signatures, the largest tables first."""
    ordinary = [s for s in pool if not s.reach]
    large = sorted((s for s in pool if s.reach), key=lambda s: -s.v)[:reach]
    return tuple(sorted(subset(tuple(ordinary), max(1, len(ordinary) // 2)) + tuple(large),
                        key=Signature.complexity))
