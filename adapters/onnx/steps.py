"""Behaviour model steps of the ONNX exports run by onnxruntime and the ONNX reference evaluator
(registered with the specification's, adapters/spec/steps.py, oracle.py and bags.py)."""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.contract import LookupFailure
from embedding_conformance.adapters.spec import bags, oracle, steps
from embedding_conformance.adapters.spec.steps import Pin, Step


def tf2onnx_onnxruntime_refuses(table, ids):
    # tf2onnx declares a bfloat16 input FLOAT16 (its TF_TO_ONNX_DTYPE map) and writes a
    # Gather with int16 indices, which ONNX's Gather does not take: onnxruntime refuses
    # the feed or the model, for every id dtype TensorFlow converts (others fail earlier)
    if ids.dtype.name in ("int16", "int32", "int64") and (
            table.dtype.name == "bfloat16" or ids.dtype.name == "int16"):
        raise LookupFailure(f"onnxruntime refuses the tf2onnx model of a {table.dtype.name} table "
                            f"with {ids.dtype.name} ids")
    return table, ids


def onnxruntime_refuses_bfloat16(table, ids):
    # onnxruntime's CPU provider has no bfloat16 Mul (docs/OperatorKernels.md), and the
    # torch.onnx export of nn.EmbeddingBag multiplies every gathered row: a bfloat16 table
    # fails for any integer ids before one is read
    if table.dtype.name == "bfloat16" and ids.dtype.kind in "iu":
        raise LookupFailure("onnxruntime has no bfloat16 Mul kernel on CPU")
    return table, ids


for _name, _fn, _pins in (
        ("tf2onnx_onnxruntime_refuses", tf2onnx_onnxruntime_refuses,
         (Pin("rows.exact", ids=(0, 1), table_dtypes=("bfloat16",)), Pin("ids.dtypes", ids=(0, 1), ids_dtype="int16"))),
        ("onnxruntime_refuses_bfloat16", onnxruntime_refuses_bfloat16,
         (Pin("bag.sum", values=(0, 1), offsets=(0, 1, 2), table_dtypes=("bfloat16",)),))):
    steps.register(Step(_name, "lookup", pins=_pins, first=True), before="ids_rank_one")
    oracle.register("transform", _name, _fn)


# --- the torch.onnx export of nn.EmbeddingBag (torchlib's _aten_embedding_bag_onnx): Gather, Mul by
# the weights (ones when none) in the table's dtype, Cast to FLOAT, a Loop of ReduceSum / ReduceMean /
# ReduceMax, CastLike back to the table's dtype

def onnx_bag_float64_in_float32(rows, n: int, weighted: bool):
    """A float64 table's rows are cast to float32 before they are pooled: rounded to nearest
    even, past FLT_MAX to infinity, float32-subnormal magnitudes to zero, NaN payloads cut to
    their top bits; the pooled float32 result is cast back."""
    if rows.dtype != np.float64:
        return rows
    with np.errstate(over="ignore", invalid="ignore"):
        return rows.astype(np.float32)


def _quiet_where(value, exact, dtype_name: str):
    layout = {"float16": (0x7C00, 0x03FF, 0x0200), "float32": (0x7F800000, 0x007FFFFF, 0x00400000)}
    if value.dtype.name != dtype_name:
        return value
    exp, man, quiet = layout[dtype_name]
    bits = value.view(f"u{value.dtype.itemsize}").copy()
    nan = ((bits & exp) == exp) & ((bits & man) != 0)
    bits[nan & exact] |= quiet
    return bits.view(value.dtype)


def onnxruntime_bag_bits(value, ctx):
    """onnxruntime multiplies the gathered float16 rows by the weights 8 elements a vector step
    over the whole (ids, row) array: a signalling NaN comes back quiet with its payload in the
    vector body and as the canonical 0x7e00 | sign in the scalar tail (the last n mod 8
    elements), even under max. A float32 signalling NaN comes back quiet with its payload
    whenever the lookup reads two ids or more in all (under max too: observed with
    onnxruntime 1.31.1 on AVX2); a lookup of one id keeps its bits."""
    if value.dtype.name == "float32" and int(ctx.sizes.sum()) >= 2:
        return _quiet_where(value, ctx.exact, "float32")
    if value.dtype.name != "float16" or value.size == 0:
        return value
    d = int(np.prod(value.shape[1:], dtype=np.int64))
    starts = np.concatenate([[0], np.cumsum(ctx.sizes)[:-1]]).astype(np.int64)
    tail_from = 8 * ((int(ctx.sizes.sum()) * d) // 8)
    flat = (starts[:, None] * d + np.arange(d)[None, :]).reshape(value.shape)  # where each element was multiplied
    bits = value.view(np.uint16).copy()
    nan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0) & ctx.exact
    tail = flat >= tail_from
    bits[nan & ~tail] |= 0x0200
    bits[nan & tail] = (bits[nan & tail] & 0x8000) | 0x7E00
    return bits.view(value.dtype)


def onnx_reference_bag_bits(value, ctx):
    """The reference evaluator's Mul (numpy) quiets float16 and float32 signalling NaNs, and
    its CastLike from float32 to bfloat16 makes every NaN 0x7fc0 | sign."""
    value = _quiet_where(_quiet_where(value, ctx.exact, "float16"), ctx.exact, "float32")
    if value.dtype.name == "bfloat16":
        bits = value.view(np.uint16).copy()
        nan = ((bits & 0x7F80) == 0x7F80) & ((bits & 0x007F) != 0)
        bits[nan] = (bits[nan] & 0x8000) | 0x7FC0
        value = bits.view(value.dtype)
    return value


_BAG_PINS = (Pin("bag.single", values=(0, 1, 2), offsets=(0, 1, 2, 3)),
             Pin("bag.single", v=1, values=(0,), offsets=(0, 1)))
steps.register(Step("onnx_bag_float64_in_float32", "bags", pins=tuple(
    Pin(p.clause, v=p.v, values=p.values, offsets=p.offsets, table_dtypes=("float64",)) for p in _BAG_PINS)))
bags.register("reader", "onnx_bag_float64_in_float32", onnx_bag_float64_in_float32)
for _name, _fn in (("onnxruntime_bag_bits", onnxruntime_bag_bits), ("onnx_reference_bag_bits", onnx_reference_bag_bits)):
    steps.register(Step(_name, "bags", pins=_BAG_PINS))
    bags.register("finisher", _name, _fn)
