"""Behaviour model steps of torch's kernels (registered with the specification's,
adapters/spec/steps.py and bags.py)."""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.spec import bags, steps
from embedding_conformance.adapters.spec.steps import Pin, Step


def bf16_mean_nan_lanes(value: np.ndarray, ctx: bags.Bags) -> np.ndarray:
    """A bfloat16 bag under mean is divided by its size in place (apply_bag_size: output /=
    bag_size), 32 elements a vector step: a NaN result comes back 0xffff where the vector body
    runs (its float32 -> bfloat16 conversion blends NaN lanes with 0xffff) and 0x7fc0 in the
    scalar tail (c10's round_to_nearest_even), whatever its sign and payload. The division runs
    over each row (D > 1) or, with rows of one element, over the bags coalesced into one run.
    Serially, as for every output of at most 32768 elements; larger ones are split among the
    intra-op threads, which moves the tails (no generated bag reaches it)."""
    if ctx.combiner != "mean" or value.dtype.name != "bfloat16" or value.size == 0:
        return value
    b = value.shape[0]
    d = int(np.prod(value.shape[1:], dtype=np.int64))
    bits = value.reshape(b, d).view(np.uint16).copy()
    nan = ((bits & 0x7F80) == 0x7F80) & ((bits & 0x007F) != 0)
    if d == 1:
        vector = (np.arange(b) < 32 * (b // 32))[:, None]
    else:
        vector = (np.arange(d) < 32 * (d // 32))[None, :]
    bits[nan] = np.where(np.broadcast_to(vector, bits.shape)[nan], 0xFFFF, 0x7FC0).astype(np.uint16)
    return bits.view(value.dtype).reshape(value.shape)


steps.register(Step("bf16_mean_nan_lanes", "bags", pins=(
    Pin("bag.single", values=(0, 1, 2), offsets=(0, 1, 2, 3), combiners=("mean",), table_dtypes=("bfloat16",)),
    Pin("bag.single", v=1, row=(32,), values=(0,), offsets=(0, 1), combiners=("mean",), table_dtypes=("bfloat16",)))))
bags.register("finisher", "bf16_mean_nan_lanes", bf16_mean_nan_lanes)
