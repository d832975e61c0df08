"""Clause family `seed`: the worked examples of shared/seed-examples.md, run
against every adapter, each checked against its literally written result."""
from __future__ import annotations

from hypothesis import strategies as st

from embedding_conformance.adapters.contract import FAILURES
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.lookup_clauses import LOOKUP, lookup_oracle
from embedding_conformance.suites.seed_cases import E1, E2, E3, E4, E5
from embedding_conformance.suites.sharded_clauses import SHARDED, sharded_oracle


def _fits(case, caps) -> bool:
    return case.table.ndim in caps.table_ndims and case.table.dtype.name in caps.table_dtypes


def _cases(cases):
    def strategy(caps, pool):  # fixed inputs: the pool does not apply
        usable = [c for c in cases if _fits(c, caps)]
        return st.sampled_from(usable).map(lambda c: {"table": c.table, "ids": c.ids})
    return strategy


def _applicable(cases):
    return lambda caps, adapter: None if any(_fits(c, caps) for c in cases) else \
        "no example fits the table ranks and dtypes the adapter takes"


def _literal(cases):
    by_input = {(c.table.tobytes(), c.table.shape, c.ids.tobytes(), c.ids.shape): c.expected for c in cases}

    def oracle(args, model, caps):
        if model:  # a declared divergence is held against its model
            return lookup_oracle(args, model, caps)
        want = by_input[(args["table"].tobytes(), args["table"].shape, args["ids"].tobytes(), args["ids"].shape)]
        if isinstance(want, str):
            raise FAILURES[want](f"the worked example says {want}")
        return want
    return oracle


for _id, _cases_, _statement in (
    ("seed.e1", E1, "E1 (Keras Embedding is row selection): ids [0,1,1,4,4] give exactly those rows; ids are 0..input_dim-1"),
    ("seed.e2", E2, "E2 (torch nn.Embedding): 0-d ids give one row; rank N ids give rank N+1; id >= num_embeddings fails"),
    ("seed.e3", E3, "E3 (tf.nn.embedding_lookup on one tensor): the worked examples' rows, rank-3 params included"),
):
    clause(_id, _statement, **{**LOOKUP, "oracle": _literal(_cases_), "applicable": _applicable(_cases_)})(_cases(_cases_))


# --- E4: sharded params, on every adapter with lookup_sharded --------------------------------

def _fits_sharded(case, caps) -> bool:
    return (case.strategy in caps.strategies and case.shards[0].ndim in caps.table_ndims
            and case.shards[0].dtype.name in caps.table_dtypes)


def _e4_key(args) -> tuple:
    return (tuple((s.tobytes(), s.shape) for s in args["shards"]), args["ids"].tobytes(), args["strategy"])


_E4_EXPECTED = {_e4_key({"shards": c.shards, "ids": c.ids, "strategy": c.strategy}): c.expected for c in E4}


def _e4_oracle(args, model, caps):
    if model:  # a declared divergence is held against its model
        return sharded_oracle(args, model, caps)
    return _E4_EXPECTED[_e4_key(args)]


def _e4_cases(caps, pool):
    usable = [c for c in E4 if _fits_sharded(c, caps)]
    return st.sampled_from(usable).map(lambda c: {"shards": list(c.shards), "ids": c.ids, "strategy": c.strategy})


clause("seed.e4", "E4 (sharded params): 'mod' and 'div' route the worked examples' ids to exactly those rows",
       **{**SHARDED, "oracle": _e4_oracle,
          "applicable": lambda caps, adapter: None if any(_fits_sharded(c, caps) for c in E4) else
          "no example fits the strategies, table ranks and dtypes the adapter's lookup_sharded takes"})(_e4_cases)


clause("seed.e5", "E5 (shapes in models): (1, 3, 100), (1, 5, 100) and (1, 95, 128) outputs",
       **{**LOOKUP, "oracle": _literal(E5), "applicable": _applicable(E5)})(_cases(E5))


def test_clause(check):
    check.run()
