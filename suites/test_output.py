"""Clause families `shape` and `dtype`: the output's shape and dtype, each on the lookups
every adapter takes (lookup_args)."""
from embedding_conformance.suites import assertions
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.lookup_clauses import LOOKUP
from embedding_conformance.suites.strategies import lookup_args


def _cases(caps, pool):
    return lookup_args(caps, pool)


for _id, _statement, _compare in (
    ("shape.output", "out.shape == ids.shape + table.shape[1:], for ids of rank 0 to 4 (zero-size dimensions too) "
                     "and rows of every rank the API takes", assertions.same_shape),
    ("dtype.output", "out.dtype == table.dtype, for every float dtype the API takes (float16, bfloat16, float32, "
                     "float64)", assertions.same_dtype),
):
    clause(_id, _statement, compare=_compare, **LOOKUP)(_cases)


def test_clause(check):
    check.run()
