"""Minimal examples that are minimal: suites/source.py writes a large array as a
constructor for its bulk and the rows that differ from it, and the source (the record's
example, and the inputs of the snippet built from it) still rebuilds the same bytes."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from embedding_conformance.suites.source import (args_source, example_source, plain_table, reachable_rows,
                                                 unreached_zeroed)


def _rebuilt(source: str) -> dict:
    ns = {"np": np, "ml_dtypes": ml_dtypes}
    exec(source, ns)
    return ns


def _same(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_a_65537_row_table_is_a_constructor_and_the_rows_that_matter():
    table = np.zeros((65537, 1), dtype=np.float32)
    table[[0, 65536]] = [[1.5], [-0.0]]
    ids = np.array([65537, 0, 0], dtype=np.int32)
    src = example_source({"table": table, "ids": ids})
    assert src.splitlines()[0] == "table = np.zeros((65537, 1), dtype=np.float32)"
    assert src.splitlines()[1] == "table[[0, 65536]] = np.array([[1.5], [-0.0]], dtype=np.float32)"
    assert len(src) < 300
    ns = _rebuilt(src)
    assert _same(ns["table"], table) and _same(ns["ids"], ids)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_nan_payloads_and_a_repeated_row_rebuild_bit_for_bit(dtype):
    dt = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    row = np.array([1.25, -3.0], dtype=dt)
    table = np.broadcast_to(row, (5000, 2)).copy()
    bits = table.view(f"u{table.itemsize}")
    bits[17, 0] = {2: 0x7C01 if dtype == "float16" else 0x7F81, 4: 0x7F800001, 8: 0x7FF0000000000001}[table.itemsize]
    bits[4000, 1] = 1  # a subnormal
    src = example_source({"table": table})
    assert "broadcast_to" in src and len(src) < 600, src
    assert _same(_rebuilt(src)["table"], table)


def test_one_value_everywhere_is_np_full_and_shards_stay_a_list():
    shards = [np.full((300, 3), 2.0, dtype=np.float16), np.zeros((300, 3), dtype=np.float16)]
    shards[1][7] = 5.0
    src = args_source({"shards": shards, "strategy": "mod"})
    text = "shards = " + src["shards"] + "\nstrategy = " + src["strategy"]
    assert "np.full((300, 3), 2.0, dtype=np.float16)" in text and "shards[1][7] = " in text
    got = _rebuilt(text)["shards"]
    assert all(_same(a, b) for a, b in zip(got, shards))


def test_small_and_random_arrays_are_written_out_as_before():
    small = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert example_source({"ids": small}) == "ids = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int64)"
    noise = np.random.default_rng(0).standard_normal((200, 2)).astype(np.float32)
    src = example_source({"table": noise})
    assert src.count("\n") == 0 and _same(_rebuilt(src)["table"], noise)


def test_unreached_rows_zeroed_keep_every_row_an_id_can_reach():
    table = np.random.default_rng(1).standard_normal((70000, 1)).astype(np.float32)
    ids = np.array([69999, -1, 70000, 5], dtype=np.int64)
    rows = reachable_rows(ids, 70000)
    assert {0, 5, 69999}.issubset(set(rows.tolist())) and len(rows) < 20
    smaller = unreached_zeroed({"table": table, "ids": ids})
    assert smaller is not None and _same(smaller["table"][rows], table[rows])
    assert not smaller["table"][np.setdiff1d(np.arange(70000), rows)].any()
    src = example_source(smaller)
    assert src.startswith("table = np.zeros((70000, 1), dtype=np.float32)\ntable[[") and len(src) < 1000
    assert unreached_zeroed({"table": table[:10], "ids": ids}) is None  # a small table is left alone
    plain = plain_table(table, ids)
    assert plain.dtype == table.dtype and np.isfinite(plain).all() and set(np.unique(plain)) <= set(range(14))
