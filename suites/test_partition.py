"""Clause family `partition`: sharded tables under 'mod' and 'div'.

The oracle (adapters.partition) routes each id to its shard and local row and
validates the shard list; a canonical sharded lookup equals the plain lookup on
the logical table. Each strategy below builds shard lists from a logical table
with the oracle's own partitioner (canonical) or breaks one on purpose."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from adapters import partition
from suites.catalogue import clause
from suites.strategies import (in_range_ids, logical_tables, np_dtype, planted_ids, row_shapes, strategies_of,
                               tables_of)

SUSPECTS = (
    ("route_by_total",), ("wrap_negative",), ("clip",), ("route_by_total", "wrap_negative"),
    ("route_by_total", "clip"),
)


def sharded_oracle(args, model, caps):
    return partition.lookup_sharded(args["shards"], args["ids"], args["strategy"], model)


SHARDED = dict(method="lookup_sharded", oracle=sharded_oracle, suspects=SUSPECTS)


def _needs(*wanted):
    def check(caps, adapter):
        if not strategies_of(caps, wanted):
            return f"the adapter's lookup_sharded takes none of the strategies {', '.join(wanted)}"
        return None
    return check


@st.composite
def _canonical(draw, caps, wanted=("mod", "div"), *, p_of=None, ids=in_range_ids, n_min=0, n_max=10):
    """A canonical shard list of a drawn logical table, and ids for it."""
    strategy = draw(st.sampled_from(strategies_of(caps, wanted)), label="strategy")
    table = draw(logical_tables(caps, n_min=n_min, n_max=n_max), label="logical table")
    n = table.shape[0]
    p = draw(p_of(n) if p_of else st.integers(1, max(n, 1) + 2), label="P")
    id_dtype = draw(st.sampled_from(caps.id_dtypes), label="ids dtype")
    return {"shards": partition.split(table, p, strategy), "ids": draw(ids(id_dtype, n), label="ids"),
            "strategy": strategy}


@clause("partition.mod", "'mod': id i is row i // P of shard i % P, for canonical shard lists",
        applicable=_needs("mod"), **SHARDED)
def mod_cases(caps):
    return _canonical(caps, ("mod",), p_of=lambda n: st.integers(1, max(n, 1)), n_min=1)


@clause("partition.div", "'div' with N divisible by P: shard s holds the contiguous ids [s*N/P, (s+1)*N/P)",
        applicable=_needs("div"), **SHARDED)
def div_even_cases(caps):
    divisors = lambda n: st.sampled_from([p for p in range(1, n + 1) if n % p == 0])
    return _canonical(caps, ("div",), p_of=divisors, n_min=1)


@clause("partition.div.uneven", "'div' with N % P = r > 0: the first r shards hold one row more, ids contiguous in shard order",
        applicable=_needs("div"), **SHARDED)
def div_uneven_cases(caps):
    uneven = lambda n: st.sampled_from([p for p in range(2, n) if n % p] or [n + 1])
    return _canonical(caps, ("div",), p_of=uneven, n_min=3)


@clause("partition.single_shard", "one shard is the plain lookup on that shard, under either strategy",
        applicable=_needs("mod", "div"), **SHARDED)
def single_shard_cases(caps):
    return _canonical(caps, p_of=lambda n: st.just(1), n_min=1)


@clause("partition.equals_plain", "a canonical sharded lookup equals the plain lookup on the logical table, bit for bit (special values included)",
        applicable=_needs("mod", "div"), **SHARDED)
def equals_plain_cases(caps):
    return _canonical(caps, n_min=1)


def _outside(id_dtype, n):
    # one flavour per example: an array whose bad ids are all negative meets a
    # lookup that wraps them, one whose bad ids are all >= N one that misroutes them
    flavours = [st.sampled_from([n, n + 1]), st.integers(n, n + 20)]
    if id_dtype.startswith("int"):
        flavours += [st.integers(-n - 1, -1), st.just(-1)]
    return st.sampled_from(flavours).flatmap(lambda targets: planted_ids(id_dtype, n, targets))


@clause("partition.out_of_range", "with shards, an id outside [0, N) (negative or >= N) is out_of_range, even where a shard has a row at its local index",
        applicable=_needs("mod", "div"), **SHARDED)
def sharded_out_of_range_cases(caps):
    return _canonical(caps, ids=_outside)


@st.composite
def _noncanonical(draw, caps):
    strategy = draw(st.sampled_from(strategies_of(caps)), label="strategy")
    p = draw(st.integers(2, 4), label="P")
    sizes = draw(st.lists(st.integers(0, 4), min_size=p, max_size=p), label="shard sizes")
    n = sum(sizes)
    if sizes == partition.canonical_sizes(n, p):  # make it not fit: move a row to the last shard
        if n == 0:
            sizes[-1] = 1
        else:
            donor = next(k for k, s in enumerate(sizes) if s)
            sizes[donor] -= 1
            sizes[-1 if donor != p - 1 else 0] += 1
        if sizes == partition.canonical_sizes(sum(sizes), p):
            sizes = [sum(sizes)] + [0] * (p - 1)
    n = sum(sizes)
    dtype = draw(st.sampled_from(caps.table_dtypes), label="table dtype")
    row = draw(row_shapes(caps), label="row shape")
    shards = [draw(tables_of(dtype, (s, *row)), label=f"shard {k}") for k, s in enumerate(sizes)]
    id_dtype = draw(st.sampled_from(caps.id_dtypes), label="ids dtype")
    return {"shards": shards, "ids": draw(in_range_ids(id_dtype, n), label="ids"), "strategy": strategy}


@clause("partition.noncanonical", "a shard list whose sizes do not fit the strategy is InvalidShards: never a silently misrouted row",
        applicable=_needs("mod", "div"), **SHARDED)
def noncanonical_cases(caps):
    return _noncanonical(caps)


@clause("partition.more_shards_than_rows", "P > N (some shards empty) is still a canonical layout: valid ids give their rows",
        applicable=_needs("mod", "div"), **SHARDED)
def more_shards_cases(caps):
    return _canonical(caps, p_of=lambda n: st.integers(n + 1, n + 3), n_max=4)


@st.composite
def _mismatched(draw, caps):
    args = draw(_canonical(caps, p_of=lambda n: st.integers(2, max(n, 2)), n_min=2))
    shards = args["shards"]
    k = draw(st.integers(0, len(shards) - 1), label="odd shard")
    odd = shards[k]
    kinds = ["row shape"] + (["dtype"] if len(caps.table_dtypes) > 1 else [])
    if draw(st.sampled_from(kinds), label="mismatch") == "dtype":
        other = draw(st.sampled_from([d for d in caps.table_dtypes if d != odd.dtype.name]), label="odd dtype")
        with np.errstate(invalid="ignore", over="ignore"):
            shards[k] = odd.astype(np_dtype(other))
    else:
        shards[k] = np.concatenate([odd, odd[..., :1]], axis=-1) if odd.ndim > 1 else odd.reshape(-1, 1)
    return args


@clause("partition.mismatched_shards", "shards whose row shapes or dtypes disagree are InvalidShards",
        applicable=_needs("mod", "div"), **SHARDED)
def mismatched_cases(caps):
    return _mismatched(caps)


def test_clause(check):
    check.run()
