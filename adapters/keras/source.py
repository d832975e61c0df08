"""The Keras 3 preludes, one per backend, that the Keras adapters run their calls with and
their snippets print (adapters/toolkit/source.py). Keras reads ``KERAS_BACKEND`` once, when
it is first imported: the worker sets it before anything is imported, a snippet in its
``before`` lines, and each prelude checks it got the backend it was written for. Each
prelude defines the backend's ``to_numpy`` (bits unchanged): torch's is the torch
prelude's own (adapters/torch/source.py), with its ``to_torch``. Importing this module
imports no framework."""
from __future__ import annotations

from embedding_conformance.adapters.jax.source import prelude as jax_prelude
from embedding_conformance.adapters.torch.source import PRELUDE as TORCH_PRELUDE
from embedding_conformance.adapters.toolkit.source import Source

BACKENDS = ("tensorflow", "torch", "jax")


def _keras(backend: str) -> str:
    return (f"import keras\nassert keras.backend.backend() == {backend!r}, "
            f"'KERAS_BACKEND must be {backend} before keras is imported'\n")


_TENSORFLOW = f'''\
import numpy as np
import ml_dtypes
import tensorflow as tf
{_keras("tensorflow")}

def to_numpy(x):
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    return np.asarray(tf.convert_to_tensor(x).numpy())  # densifies IndexedSlices; a 0-d array, not a scalar
'''
PRELUDES = {
    "tensorflow": _TENSORFLOW,
    "torch": TORCH_PRELUDE + "\n" + _keras("torch"),
    "jax": jax_prelude(*_keras("jax").splitlines()),
}
KERAS = {b: Source(f"keras[{b}]", PRELUDES[b]) for b in BACKENDS}


def before(backend: str, *more: str) -> list[str]:
    """What a snippet sets ahead of its imports: the backend (and ``more`` lines after `import os`)."""
    return ["import os", f"os.environ['KERAS_BACKEND'] = {backend!r}  # read once, when keras is first imported",
            "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')", *more]
