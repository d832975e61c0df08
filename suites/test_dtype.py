"""Clause family `dtype`: the output's dtype."""
from embedding_conformance.suites import assertions
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.lookup_clauses import LOOKUP
from embedding_conformance.suites.strategies import lookup_args


@clause(
    "dtype.output",
    "out.dtype == table.dtype, for every float dtype the API takes (float16, bfloat16, float32, float64)",
    compare=assertions.same_dtype, **LOOKUP,
)
def output_dtype_cases(caps, pool):
    return lookup_args(caps, pool)


def test_clause(check):
    check.run()
