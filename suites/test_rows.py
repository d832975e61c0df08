"""Clause family `rows`: the rows themselves, bit for bit."""
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.lookup_clauses import LOOKUP
from embedding_conformance.suites.strategies import lookup_args


@clause(
    "rows.exact",
    "out[k] == table[ids[k]] bit for bit: NaN payloads, signed zeros, infinities and subnormals unchanged",
    **LOOKUP,
)
def exact_rows_cases(caps, pool):
    # tables are drawn as bit patterns, special values favoured
    return lookup_args(caps, pool, v_min=1)


def test_clause(check):
    check.run()
