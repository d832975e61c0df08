"""Behaviour model steps of TorchRec's EmbeddingBagCollection on CPU (registered with the
specification's, adapters/spec/steps.py and bags.py)."""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.spec import bags, steps
from embedding_conformance.adapters.spec.steps import Pin, Step


def f16_widen_nan_tail(value: np.ndarray, ctx: bags.Bags) -> np.ndarray:
    """The pooled float16 result is widened by Tensor.float(), 8 elements a vector step over
    the flattened output: a NaN keeps its sign and payload (sign | 0x7fc00000 | payload << 13)
    in the vector body, and comes back 0x7fffffff in the scalar tail (the last n mod 8
    elements). Serially, as for every output of at most 32768 elements; larger ones are split
    among the intra-op threads, which moves the tails (no generated bag reaches it)."""
    if ctx.table.dtype.name != "float16" or value.dtype != np.float32 or value.size == 0:
        return value
    bits = value.reshape(-1).view(np.uint32).copy()
    n = bits.size
    tail = np.arange(n) >= 8 * (n // 8)
    nan = ((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x007FFFFF) != 0)
    bits[nan & tail] = 0x7FFFFFFF
    return bits.view(np.float32).reshape(value.shape)


steps.register(Step("f16_widen_nan_tail", "bags", pins=(
    Pin("bag.single", values=(0, 1, 2), offsets=(0, 1, 2, 3), table_dtypes=("float16", "bfloat16")),
    Pin("bag.single", v=1, row=(8,), values=(0,), offsets=(0, 1), table_dtypes=("float16", "bfloat16")))))
bags.register("finisher", "f16_widen_nan_tail", f16_widen_nan_tail)
