"""Sharded tables: the partition strategies of the specification, as code.

- ``mod``: id i lives in shard i % P at local row i // P;
- ``div``: with N rows, q, r = divmod(N, P); the first r shards hold q + 1 rows,
  the rest q; ids are laid out contiguously in that order.

Both strategies give the same canonical shard sizes; they differ in which ids
a shard holds. A shard list that does not fit (sizes, row shapes, dtypes) is
InvalidShards. The sharded lookup equals the plain lookup on the logical table.

Behaviour models for what frameworks do instead are named steps, like the plain
lookup's (see MODELS).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from embedding_conformance.adapters.spec import oracle
from embedding_conformance.adapters.contract import STRATEGIES, InvalidIds, InvalidShards, OutOfRange

# route_by_total: accept any shard sizes; route every id by the canonical rule for
#   N = sum of the sizes (as if the layout were canonical) and read the local row
#   from the shard as it is; a local row past the end of its shard is out_of_range.
# tf_partition_route: TensorFlow's _embedding_lookup_and_transform. One shard: a
#   plain lookup on it. Otherwise, in the ids' dtype with floor division: 'mod'
#   routes id to shard id % P, row id // P; 'div' with N summed in the ids' dtype
#   (wrapping: 32768 rows are -32768 for int16 ids) and q, r = divmod(N, P) to
#   p = max(id // (q + 1), (id - r) // q) (as int32, wrapping), row id % (q + 1)
#   if p < r else (id - r) % q. Sizes are never checked; q == 0 under 'div' fails
#   (integer division by zero: InvalidShards); a shard index outside [0, P) is
#   out_of_range; each shard then gathers its rows as the plain lookup does (under
#   the plain lookup's model: a row past a shard's end is out_of_range, or clamped
#   under `clip`); shards that disagree in row shape or dtype fail after routing
#   (InvalidShards).
# concat_shards: the plain lookup on the shards concatenated in order, sizes
#   unchecked (an eager tf ShardedVariable converts itself to one tensor).
# xla_division_by_zero: with tf_partition_route, 'div' with fewer rows than shards
#   (q == 0) does not fail under XLA, whose integer division by zero does not trap:
#   the valid ids reach their rows (id i is shard i's one row); an id outside [0, N)
#   kills the process there (no model: see adapters/tensorflow/declarations.toml).
MODELS = ("route_by_total", "tf_partition_route", "concat_shards", "xla_division_by_zero")


def canonical_sizes(n: int, p: int) -> list[int]:
    """Rows per shard in a canonical layout of n rows over p shards (either strategy)."""
    q, r = divmod(n, p)
    return [q + 1] * r + [q] * (p - r)


def split(table: np.ndarray, p: int, strategy: str) -> list[np.ndarray]:
    """The canonical shards of a logical table."""
    _check_strategy(strategy)
    if strategy == "mod":
        return [table[s::p] for s in range(p)]
    bounds = np.cumsum([0, *canonical_sizes(table.shape[0], p)])
    return [table[bounds[s]:bounds[s + 1]] for s in range(p)]


def route(ids: np.ndarray, n: int, p: int, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """(shard, local row) of each id in [0, n) under a canonical layout."""
    ids = np.asarray(ids, dtype=np.int64)
    if strategy == "mod":
        return ids % p, ids // p
    q, r = divmod(n, p)
    big = r * (q + 1)  # ids held by the first r shards, q + 1 each
    in_big = ids < big
    shard = np.where(in_big, ids // (q + 1), r + (ids - big) // max(q, 1))
    local = np.where(in_big, ids % (q + 1), (ids - big) % max(q, 1))
    return shard, local


def validate(shards: Sequence[np.ndarray], strategy: str) -> None:
    _check_strategy(strategy)
    if len(shards) == 0:
        raise InvalidShards("a sharded table needs at least one shard")
    first = shards[0]
    for k, s in enumerate(shards):
        if not isinstance(s, np.ndarray) or s.ndim < 1:
            raise InvalidShards(f"shard {k} is not an array of rank >= 1")
        if s.shape[1:] != first.shape[1:]:
            raise InvalidShards(f"shard {k} has rows of shape {s.shape[1:]}, shard 0 {first.shape[1:]}")
        if s.dtype != first.dtype:
            raise InvalidShards(f"shard {k} has dtype {s.dtype}, shard 0 {first.dtype}")
    sizes = [s.shape[0] for s in shards]
    want = canonical_sizes(sum(sizes), len(shards))
    if sizes != want:
        raise InvalidShards(f"shard sizes {sizes} do not fit '{strategy}' for {sum(sizes)} rows over "
                            f"{len(shards)} shards (expected {want})")


def logical_table(shards: Sequence[np.ndarray], strategy: str) -> np.ndarray:
    """The table a canonical shard list stands for."""
    n, p = sum(s.shape[0] for s in shards), len(shards)
    out = np.empty((n, *shards[0].shape[1:]), dtype=shards[0].dtype)
    shard, local = route(np.arange(n), n, p, strategy)
    for s in range(p):  # rows move as they are (fancy indexing copies bits)
        mine = shard == s
        out[mine] = shards[s][local[mine]]
    return out


def lookup_sharded(shards: Sequence[np.ndarray], ids: np.ndarray, strategy: str,
                   model: Sequence[str] = ()) -> np.ndarray:
    """The sharded lookup under ``model`` (the contract by default); the plain
    lookup's models (wrap_negative, ...) apply to the logical ids."""
    lookup_model = [m for m in model if m not in MODELS]
    if "tf_partition_route" in model:
        return _tf_route(shards, ids, strategy, lookup_model, "xla_division_by_zero" in model)
    if "concat_shards" in model:
        _same_rows(shards)
        return oracle.lookup(np.concatenate(shards), ids, lookup_model)
    if "route_by_total" not in model:
        validate(shards, strategy)
        return oracle.lookup(logical_table(shards, strategy), ids, lookup_model)
    return _route_by_total(shards, ids, strategy, lookup_model)


def _route_by_total(shards, ids, strategy, lookup_model) -> np.ndarray:
    _check_strategy(strategy)
    if not shards:
        raise InvalidShards("a sharded table needs at least one shard")
    first = shards[0]
    if any(s.shape[1:] != first.shape[1:] or s.dtype != first.dtype for s in shards):
        raise InvalidShards("shards disagree in row shape or dtype")
    n, p = sum(s.shape[0] for s in shards), len(shards)
    # ids are first resolved against N (out_of_range, or a model's wrap), then routed
    position = oracle.lookup(np.arange(n, dtype=np.int64), ids, lookup_model) if n else \
        oracle.lookup(np.zeros(0, np.int64), ids, lookup_model)
    shard, local = route(position, n, p, strategy)
    out = np.empty(position.shape + first.shape[1:], dtype=first.dtype)
    flat = out.reshape((-1, *first.shape[1:]))
    for k, (s, l) in enumerate(zip(shard.reshape(-1), local.reshape(-1))):
        if l >= shards[s].shape[0]:
            raise OutOfRange(f"id routes to row {l} of shard {s}, which holds {shards[s].shape[0]} rows")
        flat[k] = shards[s][l]
    return out


def _same_rows(shards) -> None:
    first = shards[0]
    if any(s.shape[1:] != first.shape[1:] or s.dtype != first.dtype for s in shards):
        raise InvalidShards("shards disagree in row shape or dtype")


def _tf_route(shards, ids, strategy, lookup_model, xla_division: bool = False) -> np.ndarray:
    _check_strategy(strategy)
    ids = np.asarray(ids)
    p = len(shards)
    if p == 1:
        return oracle.lookup(shards[0], ids, lookup_model)
    if ids.dtype.kind not in "iu":
        raise InvalidIds(f"ids must be integers, got {ids.dtype}")
    if ids.size == 0:
        _same_rows(shards)
        return np.empty(ids.shape + shards[0].shape[1:], dtype=shards[0].dtype)
    sizes = [s.shape[0] for s in shards]
    i = ids.reshape(-1)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if strategy == "mod":
            shard, local = i % p, i // p
        else:
            # the sizes are summed in the ids' own dtype: 32768 rows are -32768 in int16
            n = np.array(sum(sizes)).astype(ids.dtype)
            q, r = n // ids.dtype.type(p), n % ids.dtype.type(p)
            if q == 0 and xla_division:
                if ((i < 0) | (i >= n)).any():
                    raise OutOfRange(f"an id outside [0, {n}) with fewer rows than shards (the process dies)")
                big, local = i.astype(np.int64), np.zeros(i.shape, dtype=np.int64)
            elif q == 0:
                raise InvalidShards(f"'div' with fewer rows ({n}) than shards ({p}): integer division by zero")
            else:
                big = np.maximum(i // (q + ids.dtype.type(1)), (i - r) // q)
                local = np.where(big < r, i % (q + ids.dtype.type(1)), (i - r) % q)
            shard = big.astype(np.int64).astype(np.int32)  # TF casts the partition index to int32
    shard = shard.astype(np.int64)
    outside = (shard < 0) | (shard >= p)
    if outside.any():
        raise OutOfRange(f"id {i[outside][0]} routes to shard {shard[outside][0]}, outside [0, {p})")
    _same_rows(shards)
    first = shards[0]
    out = np.empty((i.size, *first.shape[1:]), dtype=first.dtype)
    gather_model = [m for m in lookup_model if m not in oracle.FINISHERS]
    for s_ in range(p):  # each shard gathers its local ids under the plain lookup's model
        mine = shard == s_
        if mine.any():
            out[mine] = oracle.lookup(shards[s_], local[mine].astype(ids.dtype), gather_model)
    out = out.reshape(ids.shape + first.shape[1:])
    for step in lookup_model:  # what the model does to a result (bits), to the whole one
        if step in oracle.FINISHERS:
            out = oracle.FINISHERS[step](np.concatenate(shards), ids, out)
    return out


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown partition strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
