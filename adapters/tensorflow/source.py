"""The TensorFlow prelude every TensorFlow-based adapter runs its calls with and its
snippets print (adapters/toolkit/source.py): the imports and the NumPy <-> TensorFlow
conversions, bit for bit. tf.nn.embedding_lookup, the sparse bags, tf-keras and keras-rs
share it (the last two add their own imports).

A call whose objects are built once and reused (a tf.function, a layer) runs as two
texts: the first call for a key runs the whole text, build and call, which is the text its
snippet prints; later calls run the call lines with the kept objects bound (``Kept``).
Importing this module does not import TensorFlow; the first call does."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from embedding_conformance.adapters.contract import LookupFailure, Translate
from embedding_conformance.adapters.toolkit.source import Source

PRELUDE = '''\
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import ml_dtypes
import tensorflow as tf

# one tf.function per input signature is the design: its retracing warning says nothing
tf.get_logger().setLevel("ERROR")


def to_tf(a):
    # tf.constant copies the array's bytes, and TensorFlow's bfloat16 is ml_dtypes.bfloat16:
    # the tensor has a's dtype and bits (NaN payloads, signed zeros, subnormals)
    return tf.constant(a)


def to_numpy(t):
    if isinstance(t, np.ndarray):
        return t
    # Tensor.numpy() copies the buffer (bfloat16 arrives as ml_dtypes.bfloat16); a 0-d
    # tensor gives a NumPy scalar, which np.asarray wraps without touching its bits
    return np.asarray(t.numpy())
'''

TENSORFLOW = Source("tensorflow", PRELUDE)


def translating(classify: Callable[[BaseException, np.dtype], LookupFailure | None], ids: Any) -> Translate:
    """``with translating(classify, ids):`` raises a TensorFlow error (or a ValueError or
    TypeError) that ``classify(exc, ids_dtype)`` names as that contract failure."""
    dtype = np.asarray(ids).dtype
    tf = TENSORFLOW.helper("tf")
    return Translate(lambda exc: classify(exc, dtype), catch=(tf.errors.OpError, ValueError, TypeError))


def run_keeping(source: Source, lines: Sequence[str], keep: Callable[[dict], None], **names: Any) -> dict[str, Any]:
    """``source.run(lines, **names)``, then ``keep(namespace)``, also when the text raised
    after its build lines ran: a failing first call must not cost a rebuild (or a retrace)
    on the next."""
    ns: dict[str, Any] = {}
    try:
        return source.run(lines, ns, **names)
    finally:
        keep(ns)


class Kept:
    """The object a build text binds to ``name`` (a tf.function, a layer), kept per key.
    The first call for a key runs ``first`` (the build lines and the call: its snippet's
    text); later ones run ``again`` (the call lines, reloading a table where the object
    holds one) with the object bound."""

    def __init__(self, source: Source, name: str):
        self.source, self.name = source, name
        self.objects: dict[Any, Any] = {}

    def run(self, key: Any, first: Sequence[str], again: Sequence[str], **names: Any) -> dict[str, Any]:
        obj = self.objects.get(key)
        if obj is not None:
            return self.source.run(again, **names, **{self.name: obj})
        return run_keeping(self.source, first, lambda ns: self._keep(key, ns), **names)

    def _keep(self, key: Any, ns: dict[str, Any]) -> None:
        if self.name in ns:  # else the build itself failed: nothing to keep
            self.objects[key] = ns[self.name]
