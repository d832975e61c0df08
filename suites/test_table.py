"""Clause family `table`: edge tables."""
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from suites.catalogue import clause
from suites.lookup_clauses import LOOKUP
from suites.strategies import MAX_SIDE, ids_array, in_range_ids, row_shapes, tables_of


@st.composite
def _empty_cases(draw, caps):
    dtype = draw(st.sampled_from(caps.table_dtypes), label="table dtype")
    id_dtype = draw(st.sampled_from(caps.id_dtypes), label="ids dtype")
    row = draw(row_shapes(caps, min_side=0 if caps.empty_rows else 1), label="row shape")
    no_rows = caps.min_rows == 0 and (not row or not caps.empty_rows or draw(st.booleans(), label="V == 0"))
    if no_rows:  # scalar rows cannot have size 0
        table = draw(tables_of(dtype, (0, *row)), label="table")
        # no id is valid in an empty table: empty ids give an empty result, any id is out of range
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=MAX_SIDE), label="ids.shape")
        ids = draw(ids_array(id_dtype, shape, st.integers(0, 3)), label="ids")
    else:
        if 0 not in row:
            row = (*row[:-1], 0)
        v = draw(st.integers(max(1, caps.min_rows), 5), label="V")
        table = draw(tables_of(dtype, (v, *row)), label="table")
        ids = draw(in_range_ids(id_dtype, v), label="ids")
    return {"table": table, "ids": ids}


@clause(
    "table.empty",
    "an empty table (V == 0) returns an empty result for empty ids and out_of_range for any id; rows of size 0 look up as empty rows",
    applicable=lambda caps, adapter: None if caps.min_rows == 0 or caps.empty_rows else
    "the API cannot build a table with no rows or with rows of size 0 (see its capabilities)",
    **LOOKUP,
)
def empty_table_cases(caps):
    return _empty_cases(caps)


def test_clause(check):
    check.run()
