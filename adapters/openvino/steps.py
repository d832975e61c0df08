"""Behaviour model steps of OpenVINO's CPU plugin (registered with the specification's,
adapters/spec/steps.py and oracle.py).

The exported nn.Embedding is Constant(table) -> Gather -> Result; what the CPU plugin does to
the bits is what it does to the constant, and that depends on the machine (the adapter reports
the facts, adapters/openvino/cpu_plugin.py, and declarations condition on them with ``when``):

- a float32 constant holding any subnormal is flushed (src/plugins/intel_cpu/src/nodes/input.cpp:
  every element with a zero exponent, subnormals and -0.0, becomes +0.0; one without is kept);
- a bfloat16 constant is widened to float32 (and so flushed as one) only where the plugin has
  no bfloat16 support (transformation_pipeline.cpp: the bf16 -> f32 conversion is added only
  without it; ``openvino.bf16_native`` = 0); with it the Gather copies the bfloat16 bits;
- a float16 constant is widened to float32: signalling NaNs come back quiet;
- a float64 constant is converted to float32 (convert_precision.cpp: clamped to +-FLT_MAX,
  infinities too; rounded to nearest; NaNs quieted), flushed as a float32 one, and the result
  converted back;
- with bfloat16 inference precision (the default on a CPU with native bfloat16,
  ``openvino.inference_precision`` = bf16) the Input node also saturates a float32 constant to
  bfloat16's range: a finite element past +-0x7f7f0000 becomes +-0x7f7f0000; the Gather stays
  float32, so nothing is rounded to bfloat16."""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.contract import LookupFailure
from embedding_conformance.adapters.spec import oracle, steps
from embedding_conformance.adapters.spec.steps import Pin, Step

_FLT_MAX = float(np.finfo(np.float32).max)
_BF16_MAX = float(np.array(0x7F7F0000, dtype=np.uint32).view(np.float32))


def openvino_empty_table_fails(table, ids):
    # OpenVINO's ONNX frontend cannot convert a Gather from a constant with no elements, no rows
    # or rows of none ('Model wasn't fully converted ... Accessing out-of-range dimension'),
    # whatever the ids
    if table.size == 0 and ids.dtype.kind in "iu":
        raise LookupFailure("OpenVINO's ONNX frontend cannot convert a Gather from a table with no elements")
    return table, ids


def openvino_gather_nop(ids: np.ndarray, v: int):
    # OpenVINO's EliminateGather pass drops a Gather whose data has one row along the axis
    # and whose output has the data's shape (case_1 of simplify_gather): one id on a
    # one-row table returns the table, whatever the id
    claimed = np.full(ids.shape, v == 1 and ids.shape == (1,))
    return claimed, np.zeros(ids.shape, dtype=np.int64)


def _has_subnormal32(bits: np.ndarray) -> bool:
    return bool((((bits & 0x7F800000) == 0) & ((bits & 0x007FFFFF) != 0)).any())


def _flush32(bits: np.ndarray) -> np.ndarray:
    out = bits.copy()
    out[(out & 0x7F800000) == 0] = 0
    return out


def _as_f32(a: np.ndarray) -> np.ndarray:
    """float64 -> float32 as the plugin converts a constant: clamped to +-FLT_MAX (infinities
    too), rounded to nearest even; NaNs quieted, sign and top payload bits kept."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(np.isnan(a), a, np.clip(a, -_FLT_MAX, _FLT_MAX)).astype(np.float32)


def openvino_f32_constants_flushed(table, ids, out):
    if out.dtype.name != "float32" or not _has_subnormal32(table.view(np.uint32)):
        return out
    return _flush32(out.view(np.uint32)).view(np.float32)


def openvino_bf16_constants_widened(table, ids, out):
    # where EliminateGather drops the Gather (openvino_gather_nop) nothing reads the constant in
    # float32: the bfloat16 bits come back as stored
    if out.dtype.name != "bfloat16" or (table.shape[0] == 1 and np.shape(ids) == (1,)):
        return out
    if not _has_subnormal32(table.view(np.uint16).astype(np.uint32) << 16):
        return out
    bits = out.view(np.uint16).copy()
    bits[(bits & 0x7F80) == 0] = 0
    return bits.view(out.dtype)


def openvino_f16_constants_widened(table, ids, out):
    if out.dtype.name != "float16":
        return out
    bits = out.view(np.uint16).copy()
    nan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0)
    bits[nan] |= 0x0200
    return bits.view(out.dtype)


def openvino_f64_constants_via_f32(table, ids, out):
    if out.dtype.name != "float64":
        return out
    narrow = _as_f32(out).view(np.uint32)
    if _has_subnormal32(_as_f32(table).view(np.uint32)):
        narrow = _flush32(narrow)
    return narrow.view(np.float32).astype(np.float64)


def openvino_bf16_saturation(table, ids, out):
    if out.dtype.name not in ("float32", "float64"):
        return out
    with np.errstate(invalid="ignore"):
        big = np.isfinite(out) & (np.abs(out) > _BF16_MAX)
    if not big.any():
        return out
    fixed = out.copy()
    fixed[big] = np.copysign(_BF16_MAX, out[big])
    return fixed


_ROWS = (Pin("rows.exact", ids=(2, 0, 1)), Pin("rows.exact", v=1, ids=(0, 0)))
steps.register(Step("openvino_empty_table_fails", "lookup", pins=(Pin("table.empty", v=0, row=(2,), ids=(0,)),
                                                                  Pin("table.empty", v=2, row=(0,), ids=(0, 1)))),
               before="narrow_to_int32")
oracle.register("transform", "openvino_empty_table_fails", openvino_empty_table_fails)
steps.register(Step("openvino_gather_nop", "lookup", pins=(Pin("ids.out_of_range", v=1, ids=(7,)),
                                                           Pin("rows.exact", v=1, ids=(0,)))),
               before="wrap_negative")
oracle.register("resolver", "openvino_gather_nop", openvino_gather_nop)
for _name, _fn, _dtypes in (
        ("openvino_f64_constants_via_f32", openvino_f64_constants_via_f32, ("float64",)),
        ("openvino_f32_constants_flushed", openvino_f32_constants_flushed, ("float32",)),
        ("openvino_bf16_constants_widened", openvino_bf16_constants_widened, ("bfloat16",)),
        ("openvino_f16_constants_widened", openvino_f16_constants_widened, ("float16",)),
        ("openvino_bf16_saturation", openvino_bf16_saturation, ("float32", "float64"))):
    steps.register(Step(_name, "lookup", pins=tuple(Pin(p.clause, ids=p.ids, v=p.v, table_dtypes=_dtypes)
                                                     for p in _ROWS)))
    oracle.register("finisher", _name, _fn)
