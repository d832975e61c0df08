"""The torch prelude every torch-based adapter runs its calls with and its snippets print
(adapters/toolkit/source.py): the imports and the one NumPy <-> torch conversion, bit for
bit (bfloat16 through its int16 view). The torch adapters, TorchRec and the torch.onnx
exports share it. Importing this module does not import torch; the first call does."""
from __future__ import annotations

from embedding_conformance.adapters.toolkit.source import Source

PRELUDE = '''\
import numpy as np
import ml_dtypes
import torch
import torch.nn.functional as F


def to_torch(a, copy=False):
    # a tensor with a's dtype and bits, sharing a's memory unless copy (or it cannot be shared)
    a = np.asarray(a)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if copy or not a.flags.c_contiguous or not a.flags.writeable:
        a = a.copy(order="C")  # keeps a 0-d array 0-d, unlike np.ascontiguousarray
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def to_numpy(t):
    if isinstance(t, np.ndarray):
        return t
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()  # torch's own densification of a sparse gradient
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()
'''

TORCH = Source("torch", PRELUDE)
