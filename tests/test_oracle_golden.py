"""Golden cases: the worked examples of shared/seed-examples.md and hand-computed
cases for each behaviour model, against the oracle. Every expected value is
written out literally."""
from __future__ import annotations

import numpy as np
import pytest

from embedding_conformance.adapters.spec import oracle
from embedding_conformance.adapters.spec import partition
from embedding_conformance.adapters.contract import InvalidIds, InvalidShards, OutOfRange
from embedding_conformance.suites.seed_cases import E1, E2, E3, E5

F = np.float32


def bits(a) -> bytes:
    return np.asarray(a).tobytes()


# --- E1 to E5: the worked examples -------------------------------------------------

@pytest.mark.parametrize("case", E1 + E2 + E3 + E5, ids=lambda c: c.name)
def test_seed_examples(case):
    if isinstance(case.expected, str):
        with pytest.raises(OutOfRange):
            oracle.lookup(case.table, case.ids)
    else:
        out = oracle.lookup(case.table, case.ids)
        assert out.shape == case.expected.shape and out.dtype == case.expected.dtype
        assert bits(out) == bits(case.expected)


def test_e1_keras_row_selection_shapes():
    w = np.arange(50, dtype=F).reshape(5, 10)
    out = oracle.lookup(w, np.array([[0, 1, 1, 4, 4]]))
    assert out.shape == (1, 5, 10) and w.size == 50
    assert all((out[0, k] == w[i]).all() for k, i in enumerate([0, 1, 1, 4, 4]))


def test_e2_torch_literal_rows():
    w = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15]], dtype=F)
    assert oracle.lookup(w, np.array(1)).tolist() == [6, 7, 8, 9, 10]
    assert oracle.lookup(w, np.array([[0], [1], [2]])).shape == (3, 1, 5)
    assert oracle.lookup(w, np.array([0])).tolist() == [[1, 2, 3, 4, 5]]
    assert oracle.lookup(w, np.array([1])).tolist() == [[6, 7, 8, 9, 10]]
    with pytest.raises(OutOfRange):
        oracle.lookup(w, np.array([3]))


def test_e3_single_tensor_literal():
    params = np.array([10, 20, 30, 40], dtype=F)
    assert oracle.lookup(params, np.array([0, 1, 2, 3])).tolist() == [10, 20, 30, 40]
    assert oracle.lookup(params, np.array([1, 1, 3])).tolist() == [20, 20, 40]
    rank3 = np.array([[[1, 1], [2, 2], [3, 3], [4, 4]], [[11, 11], [12, 12], [13, 13], [14, 14]],
                      [[21, 21], [22, 22], [23, 23], [24, 24]]], dtype=F)
    out = oracle.lookup(rank3, np.array([0, 2, 1]))
    assert out.shape == (3, 4, 2)
    assert out[:, :, 0].tolist() == [[1, 2, 3, 4], [21, 22, 23, 24], [11, 12, 13, 14]]
    # with one tensor, 'div' and 'mod' give the same result
    for strategy in ("div", "mod"):
        assert bits(partition.lookup_sharded([rank3], np.array([0, 2, 1]), strategy)) == bits(out)


def test_e4_sharded_examples():
    two = [np.array([1, 2], dtype=F), np.array([10, 20], dtype=F)]
    ids = np.array([2, 0, 2, 1, 2, 3])
    assert partition.lookup_sharded(two, ids, "mod").tolist() == [2, 1, 2, 10, 2, 20]
    # the TF2 API applies 'div' to a list of shards
    assert partition.lookup_sharded(two, ids, "div").tolist() == [10, 1, 10, 2, 10, 20]
    three = [np.array([1, 2, 3], dtype=F), np.array([4, 5, 6], dtype=F), np.array([7, 8, 9], dtype=F)]
    assert partition.logical_table(three, "mod").tolist() == [1, 4, 7, 2, 5, 8, 3, 6, 9]
    assert partition.lookup_sharded(three, np.array([0, 3, 4, 1, 7]), "mod").tolist() == [1, 2, 5, 4, 6]
    # three shards of shape (2, 64) under 'mod': shard 0 holds ids 0 and 3, shard 1 ids 1 and 4, shard 2 ids 2 and 5
    shard, local = partition.route(np.arange(6), 6, 3, "mod")
    assert shard.tolist() == [0, 1, 2, 0, 1, 2] and local.tolist() == [0, 0, 0, 1, 1, 1]


def test_e5_parameter_counts():
    assert 7842 * 128 == 1_003_776 and 3079 * 128 == 394_112
    assert oracle.lookup(np.zeros((7842, 128), F), np.zeros((1, 95), np.int64)).shape == (1, 95, 128)


def test_e6_one_hot_product():
    table = np.array([[1.5, -0.0], [2.0, 3.0], [-4.0, 0.5]], dtype=F)
    ids = np.array([2, 0])
    looked_up = oracle.lookup(table, ids)
    product = oracle.one_hot_product(table, ids)
    assert product.tolist() == [[-4.0, 0.5], [1.5, 0.0]]
    assert looked_up.tolist() == product.tolist()  # equal as numbers...
    assert np.signbit(looked_up[1, 1]) and not np.signbit(product[1, 1])  # ...but -0.0 + 0.0 is +0.0
    table[1, 0] = np.inf  # a non-finite value anywhere poisons the product, never the lookup
    assert np.isnan(oracle.one_hot_product(table, ids)[0, 0])
    assert oracle.lookup(table, ids)[0, 0] == -4.0


# --- the contract's edges ------------------------------------------------------------

def test_negative_ids_are_out_of_range_not_wrapped():
    with pytest.raises(OutOfRange):
        oracle.lookup(np.zeros((4, 2), F), np.array([-1]))


def test_int64_wide_is_never_narrowed():
    with pytest.raises(OutOfRange):
        oracle.lookup(np.zeros((4, 2), F), np.array([2**33 + 1], dtype=np.int64))
    with pytest.raises(OutOfRange):
        oracle.lookup(np.zeros((4, 2), F), np.array([2**64 - 1], dtype=np.uint64))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.bool_])
def test_non_integer_ids_are_invalid(dtype):
    with pytest.raises(InvalidIds):
        oracle.lookup(np.zeros((4, 2), F), np.array([1], dtype=dtype))


def test_nan_payloads_and_signed_zeros_survive():
    raw = np.array([0x7FA00001, 0xFFC00003, 0x80000000, 0x00000001], dtype=np.uint32)
    table = raw.view(F).reshape(4, 1)
    out = oracle.lookup(table, np.array([3, 2, 1, 0]))
    assert out.view(np.uint32).reshape(-1).tolist() == [0x00000001, 0x80000000, 0xFFC00003, 0x7FA00001]


def test_empty_table():
    assert oracle.lookup(np.zeros((0, 3), F), np.zeros((2, 0), np.int64)).shape == (2, 0, 3)
    with pytest.raises(OutOfRange):
        oracle.lookup(np.zeros((0, 3), F), np.array([0]))


# --- behaviour models, hand-computed ------------------------------------------------------

T = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=F)  # row r holds r


def rows(out):
    return [None if np.isnan(x) else float(x) for x in np.asarray(out).reshape(-1)]


def test_model_wrap_negative():
    assert rows(oracle.lookup(T, np.array([-1, -4, 0]), ["wrap_negative"])) == [3.0, 0.0, 0.0]
    with pytest.raises(OutOfRange):
        oracle.lookup(T, np.array([-5]), ["wrap_negative"])
    with pytest.raises(OutOfRange):
        oracle.lookup(T, np.array([4]), ["wrap_negative"])
    # a 0-d uint64 id past 2**63 (found by a sweep seed: the oracle raised OverflowError)
    with pytest.raises(OutOfRange):
        oracle.lookup(T, np.array(2**64 - 1, dtype=np.uint64), ["wrap_negative"])
    assert rows(oracle.lookup(T, np.array(2**64 - 1, dtype=np.uint64), ["wrap_negative", "fill_zero"])) == [0.0]


def test_model_fill_nan_and_fill_zero():
    assert rows(oracle.lookup(T, np.array([1, 4, -1]), ["fill_nan"])) == [1.0, None, None]
    assert oracle.lookup(T, np.array([4]), ["fill_nan"]).view(np.uint32).tolist() == [[0x7FC00000]]
    assert rows(oracle.lookup(T, np.array([1, 4, -1]), ["fill_zero"])) == [1.0, 0.0, 0.0]
    assert rows(oracle.lookup(T, np.array([-1, -5, 9]), ["wrap_negative", "fill_nan"])) == [3.0, None, None]


def test_model_clip():
    assert rows(oracle.lookup(T, np.array([-7, 4, 100, 2]), ["clip"])) == [0.0, 3.0, 3.0, 2.0]


def test_model_truncate_float_ids_and_bool_as_int():
    assert rows(oracle.lookup(T, np.array([1.7, 2.0, -0.5]), ["truncate_float_ids"])) == [1.0, 2.0, 0.0]
    assert rows(oracle.lookup(T, np.array([True, False]), ["bool_as_int"])) == [1.0, 0.0]


def test_model_narrow_to_int32():
    ids = np.array([2**32 + 1, 2**33 + 3, -(2**32) + 2], dtype=np.int64)
    assert rows(oracle.lookup(T, ids, ["narrow_to_int32"])) == [1.0, 3.0, 2.0]
    with pytest.raises(OutOfRange):  # 2**31 narrows to -2**31
        oracle.lookup(T, np.array([2**31], dtype=np.int64), ["narrow_to_int32"])


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown behaviour model 'wrap'"):
        oracle.check_model(["wrap"])


# --- partition, hand-computed ---------------------------------------------------------

def test_div_uneven_layout():
    assert partition.canonical_sizes(7, 3) == [3, 2, 2]
    shard, local = partition.route(np.arange(7), 7, 3, "div")
    assert shard.tolist() == [0, 0, 0, 1, 1, 2, 2] and local.tolist() == [0, 1, 2, 0, 1, 0, 1]
    assert partition.canonical_sizes(2, 4) == [1, 1, 0, 0]


def test_noncanonical_and_mismatched_shards_are_invalid():
    with pytest.raises(InvalidShards):
        partition.lookup_sharded([np.zeros(1, F), np.zeros(3, F)], np.array([0]), "div")
    with pytest.raises(InvalidShards):
        partition.lookup_sharded([np.zeros(2, F), np.zeros(2, np.float64)], np.array([0]), "mod")
    with pytest.raises(InvalidShards):
        partition.lookup_sharded([np.zeros((2, 1), F), np.zeros((2, 2), F)], np.array([0]), "mod")


def test_model_route_by_total():
    # sizes [3, 1]: N = 4, P = 2 routes as if [2, 2]; id 2 -> shard 1 row 0, id 3 -> shard 1 row 1 (missing)
    shards = [np.array([0.0, 1.0, 2.0], F), np.array([10.0], F)]
    assert rows(partition.lookup_sharded(shards, np.array([0, 1, 2]), "div", ["route_by_total"])) == [0.0, 1.0, 10.0]
    with pytest.raises(OutOfRange):
        partition.lookup_sharded(shards, np.array([3]), "div", ["route_by_total"])


# --- one_hot_matmul (tf_keras.layers.Embedding[one_hot]), hand-computed --------------------

OH = ["cast_ids_to_int32", "one_hot_matmul"]


def test_model_one_hot_matmul_zero_rows_signed_zeros_and_flushed_subnormals():
    sub32 = np.array([1], dtype=np.uint32).view(F)[0]  # the smallest float32 subnormal
    t = np.array([[1.0, -0.0], [2.0, sub32], [-3.0, 4.0]], dtype=F)
    out = oracle.lookup(t, np.array([0, 1, 3, -1], dtype=np.int64), OH)
    assert isinstance(out, oracle.AnyNaN) and out.dtype == F and out.shape == (4, 2)
    # -0.0 and the subnormal come back +0.0; ids 3 and -1 are all-zero one-hot vectors
    assert np.asarray(out).view(np.uint32).tolist() == [
        [0x3F800000, 0], [0x40000000, 0], [0, 0], [0, 0]]


def test_model_one_hot_matmul_keeps_float16_subnormals():
    t = np.array([[1.0, 2.0**-24], [-0.0, 5.0]], dtype=np.float16)
    out = oracle.lookup(t, np.array([[0], [1]], dtype=np.int32), OH)
    assert out.shape == (2, 1, 2)
    assert np.asarray(out).view(np.uint16).tolist() == [[[0x3C00, 0x0001]], [[0x0000, 0x4500]]]


def test_model_one_hot_matmul_non_finite_columns_poison_every_row():
    t = np.array([[1.0, np.inf], [2.0, 3.0], [np.nan, 6.0]], dtype=F)
    out = np.asarray(oracle.lookup(t, np.array([1, 0, 7], dtype=np.int32), OH))
    # column 0 holds a NaN (row 2): 0 * NaN is NaN for ids 1, 0 and 7 alike;
    # column 1 holds +inf (row 0): id 0 gets 1 * inf = inf, the others 0 * inf = NaN
    assert np.isnan(out[:, 0]).all()
    assert np.isnan(out[0, 1]) and out[1, 1] == np.inf and np.isnan(out[2, 1])


def test_model_one_hot_matmul_casts_ids_as_keras_does():
    t = np.array([[10.0], [20.0], [30.0]], dtype=F)
    rows = lambda ids: np.asarray(oracle.lookup(t, ids, OH)).ravel().tolist()
    assert rows(np.array([1.7, -0.5, 2.0], dtype=np.float32)) == [20.0, 10.0, 30.0]  # truncated
    assert rows(np.array([True, False])) == [20.0, 10.0]
    assert rows(np.array([2**32 + 1], dtype=np.uint64)) == [20.0]  # uint64 wraps to int32
    assert rows(np.array([2**32 + 1], dtype=np.int64)) == [0.0]  # int64 is not narrowed: out of range


def test_model_one_hot_matmul_rejects_0d_ids():
    # one_hot of a 0-d id is a vector; tf.matmul takes only operands of rank >= 2
    with pytest.raises(InvalidIds):
        oracle.lookup(np.ones((3, 2), dtype=F), np.array(1), OH)
    out = oracle.lookup(np.ones((3, 2), dtype=F), np.zeros((2, 0), dtype=np.int8), OH)
    assert out.shape == (2, 0, 2)
