"""Clause families `shape` and `dtype`: the output's shape and dtype."""
from embedding_conformance.suites import assertions
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.lookup_clauses import LOOKUP
from embedding_conformance.suites.strategies import lookup_args


@clause(
    "shape.output",
    "out.shape == ids.shape + table.shape[1:], for ids of rank 0 to 4 (zero-size dimensions too) and rows of every rank the API takes",
    compare=assertions.same_shape, **LOOKUP,
)
def output_shape_cases(caps, pool):
    return lookup_args(caps, pool)


@clause(
    "dtype.output",
    "out.dtype == table.dtype, for every float dtype the API takes (float16, bfloat16, float32, float64)",
    compare=assertions.same_dtype, **LOOKUP,
)
def output_dtype_cases(caps, pool):
    return lookup_args(caps, pool)


def test_clause(check):
    check.run()
