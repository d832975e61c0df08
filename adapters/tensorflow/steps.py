"""Behaviour model steps of TensorFlow's sparse segment reductions (registered with the
specification's, adapters/spec/steps.py and bags.py): what tf.nn.embedding_lookup_sparse and
safe_embedding_lookup_sparse do to the bits of a bag.

Without weights TF calls sparse_segment_{sum,mean,sqrt_n}: a bag of one id is a copy of its row
(float32, float64), or its row through float32 (float16: a signalling NaN quieted; bfloat16:
below); a bag of several ids is summed in float32/float64 with denormals read as zero and
results flushed (DAZ/FTZ). With weights it gathers, multiplies by the weights in float32/float64
and segment-sums, DAZ/FTZ throughout: every bag, one id too, reads its subnormals as zeros of
their sign, and a signalling NaN comes back quiet. A bfloat16 NaN result loses its payload:
0x7fc0 in the kernel's 8-element vector lanes (its sign dropped), 0x7fc0 | sign in the scalar
tail (without weights per row, the first 8 * floor(D / 8) elements being vector lanes; with
weights over the flattened output)."""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.spec import bags, steps
from embedding_conformance.adapters.spec.steps import Pin, Step

_LAYOUT = {2: (0x7C00, 0x03FF, 0x8000), 4: (0x7F800000, 0x007FFFFF, 0x80000000),
           8: (0x7FF0000000000000, 0x000FFFFFFFFFFFFF, 0x8000000000000000)}


def _masks(dtype: np.dtype):
    if dtype.name == "bfloat16":
        return np.uint16(0x7F80), np.uint16(0x007F), np.uint16(0x8000)
    u = np.dtype(f"u{dtype.itemsize}").type
    return tuple(u(x) for x in _LAYOUT[dtype.itemsize])


def _daz(rows: np.ndarray) -> np.ndarray:
    exp, man, sign = _masks(rows.dtype)
    bits = rows.view(f"u{rows.dtype.itemsize}").copy()
    sub = ((bits & exp) == 0) & ((bits & man) != 0)
    bits[sub] &= sign
    return bits.view(rows.dtype)


def tf_segment_reads(rows: np.ndarray, n: int, weighted: bool) -> np.ndarray:
    """DAZ where the kernel does arithmetic: a bag of several ids, or any weighted bag
    (float16 computes in float32, where its subnormals are normal numbers)."""
    if (n >= 2 or weighted) and rows.dtype.name != "float16":
        return _daz(rows)
    return rows


def tf_segment_bits(value: np.ndarray, ctx: bags.Bags) -> np.ndarray:
    """The bits of a bag of one id: a signalling NaN quieted where the row went through
    float32 arithmetic (float16, or any weighted bag); bfloat16 NaNs per the vector lanes."""
    if value.size == 0:
        return value
    dtype = value.dtype
    exp, man, sign = _masks(dtype)
    bits = value.view(f"u{dtype.itemsize}").copy()
    nan = ((bits & exp) == exp) & ((bits & man) != 0)
    if dtype.name == "bfloat16":
        flat = bits.reshape(-1)
        b, d = value.shape[0], int(np.prod(value.shape[1:], dtype=np.int64))
        if ctx.weighted:
            vector = np.arange(flat.size) < 8 * (flat.size // 8)
        else:
            vector = np.tile(np.arange(d) < 8 * (d // 8), b)
        nanf = nan.reshape(-1)
        flat[nanf & vector] = 0x7FC0
        flat[nanf & ~vector] = (flat[nanf & ~vector] & 0x8000) | 0x7FC0
        return flat.view(dtype).reshape(value.shape)
    if dtype.name == "float16" or ctx.weighted:
        u = type(man)  # typed constants: NumPy 1.x refuses uint64 >> int
        quiet = u((man >> u(1)) + u(1))  # the top mantissa bit
        bits[nan & ctx.exact] |= quiet
    return bits.view(dtype)


_PINS = (Pin("bag.single", values=(0, 1, 2), offsets=(0, 1, 2, 3)),
         Pin("bag.single", values=(0, 1, 2), offsets=(0, 1, 2, 3), weights=(1.0, 1.0, 1.0)),
         Pin("bag.single", v=1, row=(9,), values=(0,), offsets=(0, 1)))
steps.register(Step("tf_segment_bits", "bags", pins=_PINS))
bags.register("reader", "tf_segment_bits", tf_segment_reads)
bags.register("finisher", "tf_segment_bits", tf_segment_bits)
