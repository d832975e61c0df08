"""Clause family `partition`: sharded tables under 'mod' and 'div'.

The oracle (adapters.spec.partition) routes each id to its shard and local row and
validates the shard list; a canonical sharded lookup equals the plain lookup on
the logical table. Each strategy below builds shard lists from a logical table
with the oracle's own partitioner (canonical) or breaks one on purpose."""
from __future__ import annotations

import zlib

import numpy as np
from hypothesis import strategies as st

from embedding_conformance.adapters.spec import partition
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.sharded_clauses import SHARDED
from embedding_conformance.suites.strategies import (choice, draw_ids, draw_table, draw_valid_ids, ints, np_dtype, signatures,
                               strategies_of)



def _needs(*wanted):
    def check(caps, adapter):
        if not strategies_of(caps, wanted):
            return f"the adapter's lookup_sharded takes none of the strategies {', '.join(wanted)}"
        return None
    return check


@st.composite
def _split(draw, sigs, strategies, p_of, aim):
    strategy = draw(choice(strategies), label="strategy")
    sig = draw(choice(sigs), label="signature")
    table = draw_table(draw, sig.table_dtype, sig.table_shape, label="logical table")
    p = draw(choice(_shard_counts(p_of(sig.v), sig.knob)), label="P")
    return {"shards": partition.split(table, p, strategy), "ids": draw_ids(draw, sig, aim), "strategy": strategy}


def _shard_counts(candidates: range | tuple, knob: int) -> tuple[int, ...]:
    """The smallest and the largest shard count a clause allows, and one between picked
    by the signature's knob: a compiled sharded lookup specialises on the number of
    shards, so the shard counts go with the signatures (three per signature) instead
    of being drawn freely."""
    candidates = tuple(candidates)
    return tuple(dict.fromkeys((candidates[0], candidates[-1], candidates[knob % len(candidates)])))


def _canonical(caps, pool, wanted=("mod", "div"), *, p_of=None, aim=None, n_min=0, n_max=10, reach=False):
    """A canonical shard list of a logical table (N = the signature's V), and ids for it;
    ``p_of(N)`` the shard counts the clause allows; ``reach``: the pool's large tables
    too (N up to 2^16 + 1, split into a few shards)."""
    sigs = signatures(caps, pool, nonempty=aim is not None, v_min=n_min, v_max=n_max, reach=reach, aim=aim)
    return _split(sigs, strategies_of(caps, wanted), p_of or (lambda n: range(1, max(n, 1) + 3)), aim)


@clause("partition.mod", "'mod': id i is row i // P of shard i % P, for canonical shard lists",
        applicable=_needs("mod"), **SHARDED)
def mod_cases(caps, pool):
    return _canonical(caps, pool, ("mod",), p_of=lambda n: range(1, max(n, 1) + 1), n_min=1)


@clause("partition.div", "'div' with N divisible by P: shard s holds the contiguous ids [s*N/P, (s+1)*N/P)",
        applicable=_needs("div"), **SHARDED)
def div_even_cases(caps, pool):
    divisors = lambda n: tuple(p for p in range(1, n + 1) if n % p == 0)
    return _canonical(caps, pool, ("div",), p_of=divisors, n_min=1)


@clause("partition.div.uneven", "'div' with N % P = r > 0: the first r shards hold one row more, ids contiguous in shard order",
        applicable=_needs("div"), **SHARDED)
def div_uneven_cases(caps, pool):
    uneven = lambda n: tuple(p for p in range(2, n) if n % p) or (n + 1,)
    return _canonical(caps, pool, ("div",), p_of=uneven, n_min=3)


@clause("partition.single_shard", "one shard is the plain lookup on that shard, under either strategy",
        applicable=_needs("mod", "div"), **SHARDED)
def single_shard_cases(caps, pool):
    return _canonical(caps, pool, p_of=lambda n: (1,), n_min=1)


@clause("partition.equals_plain", "a canonical sharded lookup equals the plain lookup on the logical table, bit for bit (special values included)",
        applicable=_needs("mod", "div"), **SHARDED)
def equals_plain_cases(caps, pool):
    return _canonical(caps, pool, n_min=1, reach=True, p_of=lambda n: range(1, min(max(n, 1), 4) + 3))


def _outside(id_dtype, n):
    # one flavour per example: an array whose bad ids are all negative meets a
    # lookup that wraps them, one whose bad ids are all >= N one that misroutes them
    flavours = [((n, n + 1),), ((n, n + 20),)]
    if id_dtype.startswith("int"):
        flavours += [((-n - 1, -1),), ((-1, -1),)]
    return flavours


@clause("partition.out_of_range", "with shards, an id outside [0, N) (negative or >= N) is out_of_range, even where a shard has a row at its local index",
        applicable=_needs("mod", "div"), **SHARDED)
def sharded_out_of_range_cases(caps, pool):
    return _canonical(caps, pool, aim=_outside, reach=True, p_of=lambda n: range(1, min(max(n, 1), 4) + 3))


def _layouts(sig) -> tuple[tuple[int, ...], ...]:
    """Two shard layouts that fit no strategy: the smallest ([0, 1]: an empty shard
    before a full one) and one of P = 2..4 shards of 0..4 rows, picked by the signature
    (layouts go with the signatures: a sharded variable is built per layout)."""
    rng = np.random.default_rng(zlib.crc32(repr(sig).encode()))
    p = int(rng.integers(2, 5))
    sizes = [int(s) for s in rng.integers(0, 5, p)]
    if sizes == partition.canonical_sizes(sum(sizes), p):  # make it not fit: move a row to the last shard
        if sum(sizes) == 0:
            sizes[-1] = 1
        else:
            donor = next(k for k, s in enumerate(sizes) if s)
            sizes[donor] -= 1
            sizes[-1 if donor != p - 1 else 0] += 1
        if sizes == partition.canonical_sizes(sum(sizes), p):
            sizes = [sum(sizes)] + [0] * (p - 1)
    return tuple(dict.fromkeys(((0, 1), tuple(sizes))))


@st.composite
def _noncanonical_draw(draw, sigs, strategies):
    strategy = draw(choice(strategies), label="strategy")
    sig = draw(choice(sigs), label="signature")
    sizes = draw(choice(_layouts(sig)), label="shard sizes")
    n = sum(sizes)
    rows = draw_table(draw, sig.table_dtype, (n, *sig.row), label="shard rows")
    shards = np.split(rows, np.cumsum(sizes)[:-1])
    shape = sig.ids_shape if n or 0 in sig.ids_shape else (*sig.ids_shape[:-1], 0)
    return {"shards": shards, "ids": draw_valid_ids(draw, sig.ids_dtype, shape, n), "strategy": strategy}


@clause("partition.noncanonical", "a shard list whose sizes do not fit the strategy is InvalidShards: never a silently misrouted row",
        applicable=_needs("mod", "div"), **SHARDED)
def noncanonical_cases(caps, pool):
    return _noncanonical_draw(signatures(caps, pool, reach=False), strategies_of(caps))


@clause("partition.more_shards_than_rows", "P > N (some shards empty) is still a canonical layout: valid ids give their rows",
        applicable=_needs("mod", "div"), **SHARDED)
def more_shards_cases(caps, pool):
    return _canonical(caps, pool, p_of=lambda n: range(n + 1, n + 4), n_max=4)


@st.composite
def _mismatched(draw, sigs, strategies, table_dtypes):
    args = draw(_split(sigs, strategies, lambda n: range(2, max(n, 2) + 1), None))
    shards = args["shards"]
    k = draw(ints(0, len(shards) - 1), label="odd shard")
    odd = shards[k]
    others = tuple(d for d in table_dtypes if d != odd.dtype.name)
    if others and draw(choice(("row shape", "dtype")), label="mismatch") == "dtype":
        other = draw(choice(others), label="odd dtype")
        with np.errstate(invalid="ignore", over="ignore"):
            shards[k] = odd.astype(np_dtype(other))
    else:
        shards[k] = np.concatenate([odd, odd[..., :1]], axis=-1) if odd.ndim > 1 else odd.reshape(-1, 1)
    return args


@clause("partition.mismatched_shards", "shards whose row shapes or dtypes disagree are InvalidShards",
        applicable=_needs("mod", "div"), **SHARDED)
def mismatched_cases(caps, pool):
    return _mismatched(signatures(caps, pool, v_min=2, reach=False), strategies_of(caps), caps.table_dtypes)


def test_clause(check):
    check.run()
