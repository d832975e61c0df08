"""Keras 3 ``keras.layers.Embedding`` adapters, one set per backend.

Keras fixes its backend per process (``KERAS_BACKEND`` is read when ``keras`` is
first imported), so the adapter's name is derived from ``keras.backend.backend()``:

- ``keras.layers.Embedding[<backend>]``: the layer called directly on the ids;
- ``keras.layers.Embedding[<backend>][predict]``: a ``keras.Model`` wrapping the
  layer, compiled with ``jit_compile=False`` and driven by
  ``model.predict(ids, verbose=0)`` as users do;
- ``keras.layers.Embedding[<backend>][jit]``: the same with ``jit_compile=True``
  (XLA on tensorflow and jax, ``torch.compile`` on torch).

Nothing here imports keras (or a backend) at module level; the factories do.

The layer is built the documented way (``Embedding(input_dim=V, output_dim=D,
dtype=<table dtype>)``) and its weights loaded bit-exactly: ``Variable.assign``
with the NumPy table (tensorflow, jax), or with a ``torch`` tensor that shares the
table's bits (torch; Keras's own NumPy -> torch conversion routes bfloat16 through
float32 and canonicalises NaN payloads on the way in, which is a weight-loading
issue, not a lookup one, so it is kept out of the lookup measurement and reported
separately). Built layers and models are cached per (V, D, dtype, mask_zero) and
the weights re-assigned only when the table's bits change.
"""
from __future__ import annotations

import os
import re

import numpy as np

from .contract import (
    FLOAT_DTYPES,
    INT_DTYPES,
    Capabilities,
    InvalidIds,
    InvalidTable,
    LookupFailure,
    OutOfRange,
)

_BACKEND_DISTS = {"tensorflow": ("tensorflow",), "torch": ("torch",), "jax": ("jax", "jaxlib")}

# Messages the backends raise, by what went wrong.
_OUT_OF_RANGE = re.compile(
    r"is not in \[0, ?\d+\)"  # tensorflow GatherV2 / ResourceGather
    r"|index out of range in self"  # torch embedding (index_select)
    r"|index \S+ is out of bounds"  # torch index_select / take
    r"|out of bounds for dimension",  # torch
)
_INVALID_IDS = re.compile(r"Unsupported dtype for PyTorch: (u?int|bool|float)")
_INVALID_TABLE = re.compile(r"`(input_dim|output_dim)` must be a positive integer")


def _translate(err: BaseException) -> BaseException | None:
    """The contract failure for a framework exception, or None to re-raise it."""
    if isinstance(err, LookupFailure):
        return err
    msg = str(err)
    if _OUT_OF_RANGE.search(msg):
        return OutOfRange(_short(msg))
    if _INVALID_IDS.search(msg):
        return InvalidIds(_short(msg))
    if _INVALID_TABLE.search(msg):
        return InvalidTable(_short(msg))
    return None


def _short(msg: str, limit: int = 400) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _bits(a: np.ndarray) -> bytes:
    return a.dtype.str.encode() + repr(a.shape).encode() + a.tobytes()


class KerasModelPredict:
    """``keras.layers.Embedding`` on the current Keras backend, in one of three modes:
    ``"eager"`` (layer called directly), ``"predict"`` (``Model.predict``,
    ``jit_compile=False``), ``"jit"`` (``Model.predict``, ``jit_compile=True``).
    This class has ``lookup`` only; :class:`KerasEmbedding` (the plain layer) adds
    ``grad`` and ``lookup_mask_zero``."""

    framework = "keras"
    _SUFFIX = {"eager": "", "predict": "[predict]", "jit": "[jit]"}

    def __init__(self, mode: str = "eager"):
        if mode not in self._SUFFIX:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(self._SUFFIX)}")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras  # the backend is whatever KERAS_BACKEND chose for this process

        self._keras = keras
        self.mode = mode
        self.backend = keras.backend.backend()
        self.name = f"keras.layers.Embedding[{self.backend}]{self._SUFFIX[mode]}"
        self.capabilities = self._capabilities()
        self._cache: dict = {}  # (V, D, dtype, mask_zero) -> [layer, model, table bits]
        self._init_backend()

    # -- declared capabilities -----------------------------------------------------

    def _capabilities(self) -> Capabilities:
        notes = ["keras.layers.Embedding holds a 2-D (input_dim, output_dim) table; "
                 "input_dim and output_dim must be positive integers"]
        table_dtypes, id_dtypes = FLOAT_DTYPES, INT_DTYPES
        if self.backend == "jax":
            import jax

            if not jax.config.jax_enable_x64:
                table_dtypes = tuple(d for d in FLOAT_DTYPES if d != "float64")
                notes.append("jax backend with jax_enable_x64 off (the default): a "
                             "dtype='float64' Embedding stores and returns float32 weights")
        if self.backend == "torch":
            id_dtypes = tuple(d for d in INT_DTYPES if d != "uint64")
            notes.append("torch backend: keras.ops.convert_to_tensor rejects uint64 "
                         "('Unsupported dtype for PyTorch: uint64')")
        if self.mode != "eager":
            notes.append("Model.predict: lookup only (grad and mask_zero are clauses "
                         "of the plain layer)")
        return Capabilities(
            table_dtypes=table_dtypes,
            table_ndims=(2,),
            id_dtypes=id_dtypes,
            distributions=_BACKEND_DISTS.get(self.backend, ()),
            notes=tuple(notes),
        )

    # -- backend glue ------------------------------------------------------------------

    def _init_backend(self) -> None:
        b = self.backend
        if b == "torch":
            import torch

            self._torch = torch
        elif b == "tensorflow":
            import tensorflow as tf

            self._tf = tf
        elif b == "jax":
            import jax
            import jax.numpy as jnp

            self._jax, self._jnp = jax, jnp

    def _backend_table(self, table: np.ndarray):
        """The table as a backend value with exactly the same bits, for assign()."""
        if self.backend == "torch":
            torch = self._torch
            if table.dtype.name == "bfloat16":
                return torch.from_numpy(np.ascontiguousarray(table).view(np.int16)).view(torch.bfloat16)
            return torch.from_numpy(np.ascontiguousarray(table))
        return table  # tensorflow and jax convert NumPy tables bit-exactly

    def _to_numpy(self, x) -> np.ndarray:
        if self.backend == "torch":
            torch = self._torch
            x = x.detach().cpu()
            if x.dtype == torch.bfloat16:
                import ml_dtypes

                return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
            return x.numpy()
        if self.backend == "tensorflow":
            if isinstance(x, self._tf.IndexedSlices):
                x = self._tf.convert_to_tensor(x)
            return x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        return np.asarray(x)

    # -- building and caching ----------------------------------------------------------

    def _entry(self, table: np.ndarray, mask_zero: bool = False):
        if not isinstance(table, np.ndarray) or table.ndim != 2:
            raise InvalidTable("keras.layers.Embedding takes a 2-D (input_dim, output_dim) "
                               f"table, got shape {getattr(table, 'shape', None)}")
        v, d = table.shape
        key = (v, d, table.dtype.name, mask_zero)
        entry = self._cache.get(key)
        if entry is None:
            keras = self._keras
            try:
                layer = keras.layers.Embedding(
                    input_dim=v, output_dim=d, dtype=table.dtype.name, mask_zero=mask_zero
                )
            except Exception as err:
                failure = _translate(err)
                if failure is None:
                    raise
                raise failure from err
            layer.build()
            model = None
            if self.mode != "eager":
                model = _wrap_model(keras, layer)
                model.compile(jit_compile=(self.mode == "jit"))
            entry = self._cache[key] = [layer, model, None]
        bits = _bits(table)
        if entry[2] != bits:
            entry[0].embeddings.assign(self._backend_table(table))
            entry[2] = bits
        return entry

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except LookupFailure:
            raise
        except Exception as err:
            failure = _translate(err)
            if failure is None:
                raise
            raise failure from err

    # -- the adapter methods -------------------------------------------------------------

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        layer, model, _ = self._entry(table)
        if model is None:
            out = self._call(layer, ids)
            return self._to_numpy(out)
        return self._call(lambda x: model.predict(x, verbose=0), ids)

    # -- reproduction ----------------------------------------------------------------------

    def snippet(self, op: str, args: dict[str, str]) -> str:
        return _snippet(self.backend, self.mode, op, args, self.name)


class KerasEmbedding(KerasModelPredict):
    """The layer called directly: lookup, grad (the backend's own autodiff) and
    lookup_mask_zero (``mask_zero=True``, mask from ``layer.compute_mask``)."""

    def __init__(self):
        super().__init__("eager")

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        layer, _, _ = self._entry(table)
        return self._call(getattr(self, f"_grad_{self.backend}"), layer, ids, upstream)

    def _grad_tensorflow(self, layer, ids, upstream):
        tf = self._tf
        var = layer.embeddings.value  # the tf.Variable behind the Keras variable
        up = tf.constant(upstream)
        with tf.GradientTape() as tape:
            tape.watch(var)
            loss = tf.reduce_sum(layer(ids) * up)
        g = tape.gradient(loss, var)
        if g is None:  # no path from the table to the loss
            return np.zeros_like(_table_of(layer))
        return self._to_numpy(tf.convert_to_tensor(g))

    def _grad_torch(self, layer, ids, upstream):
        torch = self._torch
        var = layer.embeddings.value  # the torch Parameter behind the Keras variable
        up = self._backend_table(np.asarray(upstream))
        with torch.enable_grad():
            loss = (layer(ids) * up).sum()
            (g,) = torch.autograd.grad(loss, var, allow_unused=True)
        if g is None:
            return np.zeros_like(_table_of(layer))
        return self._to_numpy(g)

    def _grad_jax(self, layer, ids, upstream):
        jax, jnp = self._jax, self._jnp
        up = jnp.asarray(upstream)
        ids_t = self._keras.ops.convert_to_tensor(ids)

        def loss(w):
            out, _ = layer.stateless_call([w], [], ids_t)
            return jnp.sum(out * up)

        return self._to_numpy(jax.grad(loss)(layer.embeddings.value))

    def lookup_mask_zero(self, table: np.ndarray, ids: np.ndarray):
        ids = np.asarray(ids)
        layer, _, _ = self._entry(table, mask_zero=True)

        def run(x):
            x = self._keras.ops.convert_to_tensor(x)
            return layer(x), layer.compute_mask(x)

        out, mask = self._call(run, ids)
        return self._to_numpy(out), self._to_numpy(mask)


def _snippet(b: str, mode: str, op: str, args: dict[str, str], name: str) -> str:
    lines = [
        "import os",
        f"os.environ['KERAS_BACKEND'] = {b!r}",
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')",
        "import numpy as np",
        "import ml_dtypes",
        "import keras",
        f"assert keras.backend.backend() == {b!r}",
    ]
    lines += [f"{k} = {v}" for k, v in args.items()]
    mask_zero = op == "lookup_mask_zero"
    lines += [
        "layer = keras.layers.Embedding(input_dim=table.shape[0], output_dim=table.shape[1], "
        f"dtype=table.dtype.name{', mask_zero=True' if mask_zero else ''})",
        "layer.build()",
    ]
    if b == "torch":
        lines += [
            "import torch",
            "# load the weights bit-exactly (Keras's NumPy->torch route casts bfloat16",
            "# through float32, which canonicalises NaN payloads)",
            "if table.dtype == ml_dtypes.bfloat16:",
            "    layer.embeddings.assign(torch.from_numpy(table.view(np.int16)).view(torch.bfloat16))",
            "else:",
            "    layer.embeddings.assign(torch.from_numpy(table))",
            "def to_numpy(x):",
            "    x = x.detach().cpu()",
            "    if x.dtype == torch.bfloat16:",
            "        return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)",
            "    return x.numpy()",
        ]
    else:
        lines += [
            "layer.embeddings.assign(table)",
            "to_numpy = keras.ops.convert_to_numpy",
        ]
    if op == "lookup" and mode != "eager":
        lines += [
            "class Wrapper(keras.Model):",
            "    def __init__(self, layer):",
            "        super().__init__()",
            "        self.embedding = layer",
            "    def call(self, x):",
            "        return self.embedding(x)",
            "model = Wrapper(layer)",
            f"model.compile(jit_compile={mode == 'jit'})",
            "out = model.predict(ids, verbose=0)",
        ]
    elif op == "lookup":
        lines += ["out = to_numpy(layer(ids))"]
    elif op == "lookup_mask_zero":
        lines += [
            "x = keras.ops.convert_to_tensor(ids)",
            "out = to_numpy(layer(x))",
            "mask = to_numpy(layer.compute_mask(x))",
            "print('mask', repr(mask))",
        ]
    elif op == "grad":
        lines += _GRAD_SNIPPETS[b]
    else:
        raise ValueError(f"{name} has no snippet for {op!r}")
    lines += [
        "print(out.dtype, out.shape)",
        "print(repr(out))",
        "print('bits', out.view(f'u{out.dtype.itemsize}').tolist())",
    ]
    return "\n".join(lines) + "\n"


def _table_of(layer) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(layer.embeddings)


_GRAD_SNIPPETS = {
    "tensorflow": [
        "import tensorflow as tf",
        "var = layer.embeddings.value",
        "with tf.GradientTape() as tape:",
        "    tape.watch(var)",
        "    loss = tf.reduce_sum(layer(ids) * tf.constant(upstream))",
        "out = tf.convert_to_tensor(tape.gradient(loss, var)).numpy()",
    ],
    "torch": [
        "var = layer.embeddings.value",
        "up = torch.from_numpy(upstream.view(np.int16)).view(torch.bfloat16) "
        "if upstream.dtype == ml_dtypes.bfloat16 else torch.from_numpy(upstream)",
        "loss = (layer(ids) * up).sum()",
        "(g,) = torch.autograd.grad(loss, var)",
        "out = to_numpy(g)",
    ],
    "jax": [
        "import jax, jax.numpy as jnp",
        "x = keras.ops.convert_to_tensor(ids)",
        "def loss(w):",
        "    out, _ = layer.stateless_call([w], [], x)",
        "    return jnp.sum(out * jnp.asarray(upstream))",
        "out = np.asarray(jax.grad(loss)(layer.embeddings.value))",
    ],
}


def _wrap_model(keras, layer):
    class EmbeddingModel(keras.Model):
        def __init__(self, embedding):
            super().__init__()
            self.embedding = embedding

        def call(self, x):
            return self.embedding(x)

    return EmbeddingModel(layer)


# -- registry factories ------------------------------------------------------------------

def embedding() -> KerasEmbedding:
    return KerasEmbedding()


def model_predict() -> KerasModelPredict:
    return KerasModelPredict("predict")


def model_predict_jit() -> KerasModelPredict:
    return KerasModelPredict("jit")
