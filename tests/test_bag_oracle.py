"""Golden cases for the bag oracle (adapters/spec/bags.py): the contract and each behaviour
model on small inputs, every expected value written out literally, computed by hand
next to its case."""
from __future__ import annotations

import numpy as np
import pytest

from embedding_conformance.adapters.spec import bags
from embedding_conformance.adapters.contract import InvalidIds, InvalidOffsets, LookupFailure, OutOfRange

F = np.float32
# rows: 0 -> [0, 1, 2], 1 -> [3, 4, 5], 2 -> [6, 7, 8], 3 -> [9, 10, 11]
T = np.arange(12, dtype=F).reshape(4, 3)
V4 = np.array([0, 1, 2, 3])


def vals(a) -> list:
    return np.asarray(a).tolist()


def test_sum_keeps_every_bag_in_place():
    # bags [0, 1], [], [2, 3], [] (trailing): [0+3, 1+4, 2+5], zeros, [6+9, 7+10, 8+11], zeros
    out = bags.lookup_bags(T, V4, np.array([0, 2, 2, 4, 4]), None, "sum")
    assert vals(out) == [[3, 5, 7], [0, 0, 0], [15, 17, 19], [0, 0, 0]]
    assert out.dtype == F and out.shape == (4, 3)


def test_mean_sqrtn_max():
    offs = np.array([0, 2, 4])
    assert vals(bags.lookup_bags(T, V4, offs, None, "mean")) == [[1.5, 2.5, 3.5], [7.5, 8.5, 9.5]]
    # [3, 5, 7] / sqrt(2) = [2.1213203, 3.5355339, 4.9497475] in float32
    sq = bags.lookup_bags(T, V4, offs, None, "sqrtn")
    assert vals(sq[0]) == [np.float32(3 / np.sqrt(2)).item(), np.float32(5 / np.sqrt(2)).item(),
                           np.float32(7 / np.sqrt(2)).item()]
    assert vals(bags.lookup_bags(T, V4, offs, None, "max")) == [[3, 4, 5], [9, 10, 11]]


def test_max_of_negative_rows_and_an_empty_bag():
    neg = -T - 1  # row 0 -> [-1, -2, -3], row 1 -> [-4, -5, -6]
    assert vals(bags.lookup_bags(neg, np.array([0, 1]), np.array([0, 0, 2]), None, "max")) == [
        [0, 0, 0], [-1, -2, -3]]


def test_weights():
    w = np.array([2, 0.5, 1, 3], dtype=F)
    offs = np.array([0, 2, 4])
    # sum: 2*[0,1,2] + 0.5*[3,4,5] = [1.5, 4, 6.5]; 1*[6,7,8] + 3*[9,10,11] = [33, 37, 41]
    assert vals(bags.lookup_bags(T, V4, offs, w, "sum")) == [[1.5, 4, 6.5], [33, 37, 41]]
    # mean: / 2.5 -> [0.6, 1.6, 2.6]; / 4 -> [8.25, 9.25, 10.25]
    mean = bags.lookup_bags(T, V4, offs, w, "mean")
    assert vals(mean[1]) == [8.25, 9.25, 10.25]
    assert vals(mean[0]) == [np.float32(0.6).item(), np.float32(1.6).item(), np.float32(2.6).item()]
    # sqrtn: / sqrt(1 + 9) -> [33, 37, 41] / sqrt(10)
    assert vals(bags.lookup_bags(T, V4, offs, w, "sqrtn")[1]) == [np.float32(x / np.sqrt(10)).item()
                                                                   for x in (33, 37, 41)]


def test_zero_weight_sum_is_a_zero_row():
    # mean over [0, 1] with weights [1, -1]: sum w = 0 -> zeros; the sum is [0-3, 1-4, 2-5]
    w = np.array([1, -1, 0, 0], dtype=F)
    offs = np.array([0, 2, 4])
    assert vals(bags.lookup_bags(T, V4, offs, w, "mean")) == [[0, 0, 0], [0, 0, 0]]
    assert vals(bags.lookup_bags(T, V4, offs, w, "sum")) == [[-3, -3, -3], [0, 0, 0]]
    # sqrtn: all-zero weights of bag 1 -> zeros; bag 0: [-3, -3, -3] / sqrt(2)
    assert vals(bags.lookup_bags(T, V4, offs, w, "sqrtn")[1]) == [0, 0, 0]


def test_special_weights_follow_ieee():
    w = np.array([1, np.nan, np.inf, 3], dtype=F)
    out = np.asarray(bags.lookup_bags(T, V4, np.array([0, 2, 4]), w, "sum"))
    assert np.isnan(out[0]).all() and vals(out[1]) == [np.inf, np.inf, np.inf]


def test_single_id_is_the_row_bit_for_bit():
    t = np.array([[-0.0], [np.nan]], dtype=np.float16)
    t.view(np.uint16)[1, 0] = 0x7D01  # a signalling NaN with a payload
    for combiner in ("sum", "mean", "sqrtn", "max"):
        out = np.asarray(bags.lookup_bags(t, np.array([0, 1]), np.array([0, 1, 2]), None, combiner))
        assert out.view(np.uint16).tolist() == [[0x8000], [0x7D01]]


def test_tolerance_grows_with_the_bag():
    out = bags.lookup_bags(np.ones((1, 1), F), np.zeros(4, np.int64), np.array([0, 4]), None, "sum")
    u = 2.0**-24
    # gamma(4) * M + u * |4| + gamma64(5) * M, M = 4
    assert out.atol[0, 0] == pytest.approx(4 * u / (1 - 4 * u) * 4 + u * 4 + 5 * 2.0**-53 / (1 - 5 * 2.0**-53) * 4)


def test_ids_and_offsets_are_checked():
    with pytest.raises(OutOfRange):
        bags.lookup_bags(T, np.array([4]), np.array([0, 1]), None, "sum")
    with pytest.raises(OutOfRange):
        bags.lookup_bags(T, np.array([-1]), np.array([0, 1]), None, "sum")
    with pytest.raises(InvalidIds):
        bags.lookup_bags(T, np.array([1.0]), np.array([0, 1]), None, "sum")
    for bad in ([1, 1], [0, 2, 1], [0, 2], [0, 0]):  # start, decrease, past the end, short of it
        with pytest.raises(InvalidOffsets):
            bags.lookup_bags(T, np.array([0]), np.array(bad), None, "sum")


def test_padding():
    # bags [1, 1] and [2] with padding id 1 (or -3): bag 0 is all padding -> zeros; bag 1 row 2
    for p in (1, -3):
        assert vals(bags.lookup_bags_padded(T, np.array([1, 1, 2]), np.array([0, 2, 3]), None, "mean", p)) == [
            [0, 0, 0], [6, 7, 8]]
    with pytest.raises(OutOfRange):
        bags.lookup_bags_padded(T, np.array([1]), np.array([0, 1]), None, "sum", 4)


def test_grad():
    up = np.ones((2, 3), dtype=F)
    offs = np.array([0, 2, 4])
    # mean: each id of a bag of two gets 1/2 of the upstream row
    assert vals(bags.grad_bags(T, V4, offs, None, "mean", up)) == [[0.5] * 3] * 4
    # max: the upstream goes to the row holding the maximum (row 1 of bag 0, row 3 of bag 1)
    assert vals(bags.grad_bags(T, V4, offs, None, "max", up)) == [[0] * 3, [1] * 3, [0] * 3, [1] * 3]
    # weighted sum with a duplicate id: row 0 gets 2 + 3
    w = np.array([2, 3], dtype=F)
    assert vals(bags.grad_bags(T, np.array([0, 0]), np.array([0, 2]), w, "sum", up[:1])) == [
        [5] * 3, [0] * 3, [0] * 3, [0] * 3]


# --- behaviour models -------------------------------------------------------------------------

def test_model_drop_trailing_empty_bags():
    out = bags.lookup_bags(T, V4, np.array([0, 0, 4, 4, 4]), None, "sum", ["drop_trailing_empty_bags"])
    assert vals(out) == [[0, 0, 0], [18, 22, 26]]
    assert bags.lookup_bags(T, V4[:0], np.array([0, 0, 0]), None, "sum", ["drop_trailing_empty_bags"]).shape == (0, 3)


def test_model_drop_negative_ids_and_nonpositive_weights():
    out = bags.lookup_bags(T, np.array([-1, 1]), np.array([0, 1, 2]), None, "sum", ["drop_negative_ids"])
    assert vals(out) == [[0, 0, 0], [3, 4, 5]]
    w = np.array([1, -1], dtype=F)
    # mean over [0, 1] with [1, -1]: the -1 entry is pruned -> row 0
    assert vals(bags.lookup_bags(T, np.array([0, 1]), np.array([0, 2]), w, "mean", ["drop_nonpositive_weights"])) \
        == [[0, 1, 2]]
    # the sum keeps it
    assert vals(bags.lookup_bags(T, np.array([0, 1]), np.array([0, 2]), w, "sum", ["drop_nonpositive_weights"])) \
        == [[-3, -3, -3]]


def test_model_empty_bag_reads_row_0():
    with pytest.raises(OutOfRange):
        bags.lookup_bags(np.zeros((0, 2), F), np.zeros(0, np.int64), np.array([0, 0]), None, "sum",
                         ["empty_bag_reads_row_0"])
    assert vals(bags.lookup_bags(T, V4[:0], np.array([0, 0]), None, "sum", ["empty_bag_reads_row_0"])) == [[0, 0, 0]]


def test_model_float32_output_and_wrap_negative():
    out = bags.lookup_bags(T.astype(np.float16), np.array([-1]), np.array([0, 1]), None, "sum",
                           ["wrap_negative", "float32_output"])
    assert out.dtype == np.float32 and vals(out) == [[9, 10, 11]]


def test_model_offsets():
    # last_offset_unread: CSR [0, 5] over 1 value reads as [0, 1]
    assert vals(bags.lookup_bags(T, np.array([2]), np.array([0, 5]), None, "sum", ["last_offset_unread"])) == [[6, 7, 8]]
    # values_past_last_offset_unread: [0, 1] over 2 values drops the second
    assert vals(bags.lookup_bags(T, np.array([2, 3]), np.array([0, 1]), None, "sum",
                                 ["values_past_last_offset_unread"])) == [[6, 7, 8]]


def test_model_sum_from_zero_and_flush():
    t = np.array([[-0.0, 5e-324]], dtype=np.float64)
    out = np.asarray(bags.lookup_bags(t, np.array([0]), np.array([0, 1]), None, "sum", ["sum_from_zero"]))
    assert out.view(np.uint64).tolist() == [[0, 1]]
    out = np.asarray(bags.lookup_bags(t, np.array([0]), np.array([0, 1]), None, "sum", ["flush_subnormals"]))
    assert out.view(np.uint64).tolist() == [[0x8000000000000000, 0]]


def test_grad_model_drop_trailing_empty_bags():
    up = np.array([[1, 1, 1], [2, 2, 2], [4, 4, 4]], dtype=F)
    # one row comes back for three bags: it meets every upstream row (1 + 2 + 4 = 7)
    g = bags.grad_bags(T, np.array([0]), np.array([0, 1, 1, 1]), None, "sum", up, ["drop_trailing_empty_bags"])
    assert vals(g[0]) == [7, 7, 7]
    with pytest.raises(LookupFailure):  # two rows for three bags: incompatible shapes
        bags.grad_bags(T, np.array([0, 1]), np.array([0, 1, 2, 2]), None, "sum", up, ["drop_trailing_empty_bags"])


def test_model_bfloat16_held_as_float16():
    import ml_dtypes

    bf = ml_dtypes.bfloat16
    # bfloat16 1e5 (99840) is past float16's 65504: inf; 2**-20 is a float16 subnormal, kept
    # exactly; 2**-26 is below half the smallest float16 subnormal (2**-25): zero; 3 stays 3;
    # the signalling NaN 0x7f81 keeps its payload's top bits and is quieted: 0x7e08
    t = np.array([[1e5, 2.0**-20], [2.0**-26, 3.0]], dtype=bf)
    t[1, 0] = np.array(0x7F81, np.uint16).view(bf)
    held = bags.bfloat16_as_float16(t)
    assert held.dtype == np.float16 and held.view(np.uint16).tolist() == [[0x7C00, 0x0010], [0x7E08, 0x4200]]
    assert held.view(np.uint16)[0, 1] == 0x0010  # 2**-20 = 16 * 2**-24
    out = bags.lookup_bags(t, np.array([0, 1]), np.array([0, 1, 2]), None, "sum",
                           ["float32_output", "bfloat16_held_as_float16"])
    assert out.dtype == np.float32
    assert np.asarray(out).view(np.uint32)[0].tolist() == [0x7F800000, 0x35800000]  # inf, 2**-20
    assert np.isnan(np.asarray(out)[1, 0]) and np.asarray(out)[1, 1] == 3.0
    assert bags.bfloat16_as_float16(np.array([2.0**-26], bf)).view(np.uint16).tolist() == [0]
    with pytest.raises(LookupFailure):  # bfloat16 weights against the float16 table
        bags.lookup_bags(t, np.array([0]), np.array([0, 1]), np.ones(1, bf), "sum", ["bfloat16_held_as_float16"])
    # the gradient is float16, the upstream rounded to float16 first: 2**20 -> inf, 3 -> 3
    g = bags.grad_bags(t, np.array([0, 1]), np.array([0, 1, 2]), None, "sum",
                       np.array([[2.0**20, 1.0], [3.0, 0.5]], dtype=bf), ["bfloat16_held_as_float16"])
    assert g.dtype == np.float16 and vals(g) == [[np.inf, 1.0], [3.0, 0.5]]


def test_model_no_bags_fail():
    with pytest.raises(LookupFailure) as info:
        bags.lookup_bags(T, V4[:0], np.array([0]), None, "sum", ["no_bags_fail"])
    assert type(info.value) is LookupFailure  # no contract kind
    # one empty bag is a bag: a zero row
    assert vals(bags.lookup_bags(T, V4[:0], np.array([0, 0]), None, "sum", ["no_bags_fail"])) == [[0, 0, 0]]
    assert bags.lookup_bags(T, V4[:0], np.array([0]), None, "sum").shape == (0, 3)  # the contract: no rows


def test_grad_tolerance_covers_subnormal_rounding():
    # float16, mean of the bag [0, 0] with upstream 2**-24 (the smallest subnormal): each
    # contribution 2**-25 rounds (ties to even) to 0 in float16, so a kernel gives 0; the exact
    # gradient is 2**-24. The tolerance holds (k + 2n + 3) = 2 + 4 + 3 = 9 half-subnormals.
    t = np.zeros((1, 1), np.float16)
    g = bags.grad_bags(t, np.array([0, 0]), np.array([0, 2]), None, "mean", np.array([[2.0**-24]], np.float16))
    assert vals(g) == [[2.0**-24]]
    assert g.atol[0, 0] >= 2.0**-24 and g.atol[0, 0] < 2.0**-21


def test_model_empty_bag_default_row():
    # default_id = V - 1 = 3: the empty bags (first and last) are row 3 [9, 10, 11] under any
    # combiner; bag 1 = mean of rows 1 and 2 = [4.5, 5.5, 6.5]
    offs = np.array([0, 0, 2, 2])
    assert vals(bags.lookup_bags(T, np.array([1, 2]), offs, None, "mean", ["empty_bag_default_row"])) == [
        [9, 10, 11], [4.5, 5.5, 6.5], [9, 10, 11]]
    # its weight is 1: sqrtn of the filled bag is the row itself, whatever the other weights
    w = np.array([2, 2], dtype=F)
    assert vals(bags.lookup_bags(T, np.array([1, 2]), offs, w, "sqrtn", ["empty_bag_default_row"])[2]) == [9, 10, 11]
    # a bag emptied by pruning is filled too: weights [0, -1] under mean leave bag 0 empty
    assert vals(bags.lookup_bags(T, np.array([1, 2]), np.array([0, 2]), np.array([0, -1], dtype=F), "mean",
                                 ["drop_nonpositive_weights", "empty_bag_default_row"])) == [[9, 10, 11]]
    # the gradient: each empty bag's upstream goes to row 3 (two bags of ones: 2)
    g = bags.grad_bags(T, np.array([1, 2]), offs, None, "sum", np.ones((3, 3), F), ["empty_bag_default_row"])
    assert vals(g) == [[0, 0, 0], [1, 1, 1], [1, 1, 1], [2, 2, 2]]
    with pytest.raises(OutOfRange):  # a table of no rows: the id V - 1 = -1
        bags.lookup_bags(np.zeros((0, 3), F), V4[:0], np.array([0, 0]), None, "sum", ["empty_bag_default_row"])


def test_model_no_ids_fail():
    # three bags of no ids (a (3, 0) input): fails, no kind; the contract gives three zero rows
    with pytest.raises(LookupFailure) as info:
        bags.lookup_bags(T, V4[:0], np.array([0, 0, 0, 0]), None, "sum", ["no_ids_fail"])
    assert type(info.value) is LookupFailure
    assert vals(bags.lookup_bags(T, V4[:0], np.array([0, 0, 0, 0]), None, "sum")) == [[0, 0, 0]] * 3
    # one id is enough: bags [2] and [] give row 2 and a zero row
    assert vals(bags.lookup_bags(T, np.array([2]), np.array([0, 1, 1]), None, "sum", ["no_ids_fail"])) == [
        [6, 7, 8], [0, 0, 0]]
