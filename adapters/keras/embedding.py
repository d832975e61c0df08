"""Keras 3 ``keras.layers.Embedding`` adapters, one set per backend.

Keras fixes its backend per process (``KERAS_BACKEND`` is read when ``keras`` is
first imported), so each adapter's name is derived from ``keras.backend.backend()``:

- ``keras.layers.Embedding[<backend>]``: the layer called directly on the NumPy ids
  (``Layer.__call__`` converts them with the backend's ``convert_to_tensor``, the
  same function as ``keras.ops.convert_to_tensor``); lookup, grad, mask_zero;
- ``keras.layers.Embedding[<backend>][predict]``: a ``keras.Model`` wrapping the
  layer, ``compile(jit_compile=False)``, run through the Model's predict step;
- ``keras.layers.Embedding[<backend>][jit]``: the same with ``jit_compile=True``
  (XLA on tensorflow and jax, ``torch.compile`` on torch).

The predict step is driven with ``Model.predict_on_batch(ids)`` by default: it runs
the very function ``Model.predict`` runs (``make_predict_function``: a
``tf.function``/XLA function, ``torch.compile``-d or ``jax.jit``-ted step) on one
batch, without ``predict``'s data pipeline. Measured (4x3 float32 table, 10
int32 ids, warm, idle 2-core CPU): ``model.predict`` takes 55-60 ms per call on
tensorflow (a tf.data pipeline is set up per call; 100-230 ms under load) against
0.45 ms for ``predict_on_batch``; on torch and jax it is 0.6-1.9 ms. Besides,
``model.predict`` fails on rank-0 ids (IndexError) and on ids with zero rows
(UnboundLocalError; on jax that also leaves the model's variables purged, so every
later call fails), and hypothesis would shrink every counterexample to those. So
all three backends use ``predict_on_batch``; ``KerasModel(mode, via="predict")``
keeps ``model.predict(ids, verbose=0)`` for whoever wants exactly that.

The layer is built the documented way (``Embedding(input_dim=V, output_dim=D,
dtype=<table dtype>, embeddings_initializer="zeros")``: the table replaces the
initial weights, and on jax the default random-uniform initializer compiles an RNG
kernel per table shape, about 0.1 s a layer) and its weights loaded the documented
way, ``layer.set_weights([table])``, on every backend: what a user loading a
pretrained table does. (On torch that route carries a bfloat16 table through
float32, and every NaN comes back as 0xffff: a departure of Keras's, declared in
suites/divergences/keras.toml, not something the adapter may route around.) The
other documented ways (``weights=``, ``embeddings.assign``) are the table.load
clause's (``lookup_loaded``). Layers and models are cached per (V, D, dtype,
mask_zero) and the weights set again only when the table's bits change. Nothing
here imports keras or a backend at module level.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Any

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.contract import (
    Call,
    FLOAT_DTYPES,
    INT_DTYPES,
    Capabilities,
    Description,
    InvalidIds,
    InvalidTable,
    LookupFailure,
    OutOfRange,
    methods_of,
)

_BACKEND_DISTS = {"tensorflow": ("tensorflow",), "torch": ("torch",), "jax": ("jax", "jaxlib")}
_SUFFIX = {"eager": "", "predict": "[predict]", "jit": "[jit]"}
_CACHE_SIZE = 128  # built layers/models kept per adapter (LRU)

# What the backends raise, by what went wrong (messages, not types: tensorflow raises
# InvalidArgumentError for many things, torch RuntimeError / IndexError).
_OUT_OF_RANGE = re.compile(
    r"indices(\[[^\]]*\])? = -?\d+ is not in \[0, ?\d+\)"  # tensorflow GatherV2 (eager, graph)
    r"|index out of range in self"  # torch embedding / index_select (eager)
    r"|index out of bounds: 0 <= \w+ < \d+"  # torch.compile (inductor CPU kernel assert)
)
_INVALID_IDS = re.compile(r"Unsupported dtype for PyTorch: (u?int\d+|bool|float\d+)")
_INVALID_TABLE = re.compile(r"`(input_dim|output_dim)` must be a positive integer")


def _translate(err: BaseException) -> LookupFailure | None:
    """The contract failure for a framework exception, or None (re-raise it)."""
    if isinstance(err, LookupFailure):
        return err
    msg = str(err)
    for pattern, cls in ((_OUT_OF_RANGE, OutOfRange), (_INVALID_IDS, InvalidIds),
                         (_INVALID_TABLE, InvalidTable)):
        m = pattern.search(msg)
        if m:
            return cls(f"{type(err).__name__}: {m.group(0)}")
    return None


def _bits_key(a: np.ndarray) -> tuple:
    return (a.dtype.str, a.shape, a.tobytes())


class _KerasBase:
    framework = "keras"
    mode = "eager"

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras  # the backend is whatever KERAS_BACKEND chose for this process

        self._keras = keras
        self.backend = keras.backend.backend()
        self.name = f"keras.layers.Embedding[{self.backend}]{_SUFFIX[self.mode]}"
        self._cache: OrderedDict = OrderedDict()  # key -> [layer, model, table bits, key]
        if self.backend == "torch":
            import torch

            self._torch = torch
        elif self.backend == "tensorflow":
            import tensorflow as tf

            self._tf = tf
        elif self.backend == "jax":
            import jax
            import jax.numpy as jnp

            self._jax, self._jnp = jax, jnp
        self.capabilities = self._capabilities()

    def _capabilities(self) -> Capabilities:
        caps = capabilities(self.backend, self.mode, via=getattr(self, "via", "predict_on_batch"))
        if self.backend == "jax" and self._jax.config.jax_enable_x64:  # not the default: say so
            caps = caps.narrowed(notes=caps.notes + ("jax_enable_x64 is on in this process",))
        return caps

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    # -- backend glue ----------------------------------------------------------------------

    def _backend_tensor(self, a: np.ndarray):
        """``a`` as a tensor of the backend with the same bits (the upstream gradient
        a training step multiplies with: not a weight)."""
        if self.backend == "torch":
            torch = self._torch
            a = np.ascontiguousarray(a)
            if a.dtype.name == "bfloat16":
                return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
            return torch.from_numpy(a)
        return a  # tensorflow and jax take NumPy (incl. ml_dtypes.bfloat16) bit-exactly

    def _to_numpy(self, x) -> np.ndarray:
        if isinstance(x, (np.ndarray, np.generic)):
            return np.asarray(x)
        if self.backend == "torch":
            torch = self._torch
            x = x.detach().cpu()
            if x.dtype == torch.bfloat16:
                import ml_dtypes

                return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
            return np.asarray(x.numpy())
        if self.backend == "tensorflow":  # convert_to_tensor densifies IndexedSlices
            return np.asarray(self._tf.convert_to_tensor(x).numpy())  # 0-d: an array, not a scalar
        return np.asarray(x)  # jax: bfloat16 arrays come back as ml_dtypes.bfloat16

    # -- building and caching --------------------------------------------------------------

    def _entry(self, table: np.ndarray, mask_zero: bool = False):
        if not isinstance(table, np.ndarray) or table.ndim != 2:
            raise InvalidTable("keras.layers.Embedding takes a 2-D (input_dim, output_dim) "
                               f"table, got shape {getattr(table, 'shape', None)}")
        v, d = table.shape
        key = (v, d, table.dtype.name, mask_zero)
        entry = self._cache.get(key)
        if entry is None:
            try:
                layer = self._keras.layers.Embedding(
                    input_dim=v, output_dim=d, dtype=table.dtype.name, mask_zero=mask_zero,
                    embeddings_initializer="zeros",  # replaced by the table (see the module docstring)
                )
            except Exception as err:
                failure = _translate(err)
                if failure is None:
                    raise
                raise failure from err
            layer.build()
            entry = self._cache[key] = [layer, self._build_model(layer), None, key]
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        bits = _bits_key(table)
        if entry[2] != bits:
            entry[0].set_weights([table])  # the documented way to load a table
            entry[2] = bits
        return entry

    def _build_model(self, layer):
        return None

    def _run(self, entry, fn, *args):
        """Call ``fn``, translating framework failures; a failure nobody can classify
        is re-raised unchanged and drops the cached layer/model (a failed predict can
        leave a Keras model unusable, see KerasModel)."""
        try:
            return fn(*args)
        except LookupFailure:
            raise
        except Exception as err:
            failure = _translate(err)
            if failure is None:
                self._cache.pop(entry[3], None)
                raise
            raise failure from err

    # -- reproduction ----------------------------------------------------------------------

    def snippet(self, op: str, args: dict[str, str]) -> str:
        return _snippet(self.backend, self.mode, getattr(self, "via", None), op, args, self.name)


class KerasEmbedding(_KerasBase):
    """``keras.layers.Embedding`` called directly: lookup, grad (the backend's own
    autodiff) and lookup_mask_zero (``mask_zero=True``; ``layer.compute_mask``)."""

    mode = "eager"

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        entry = self._entry(table)
        return self._to_numpy(self._run(entry, entry[0], ids))

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        entry = self._entry(table)
        step = getattr(self, f"_grad_{self.backend}")
        return self._to_numpy(self._run(entry, step, entry[0], ids, np.asarray(upstream)))

    def _grad_tensorflow(self, layer, ids, upstream):
        tf = self._tf
        var = layer.embeddings.value  # the tf.Variable behind the Keras variable
        up = tf.constant(upstream)
        with tf.GradientTape() as tape:
            tape.watch(var)
            loss = tf.reduce_sum(layer(ids) * up)
        return tape.gradient(loss, var)  # IndexedSlices, densified by _to_numpy

    def _grad_torch(self, layer, ids, upstream):
        torch = self._torch
        var = layer.embeddings.value  # the torch Parameter behind the Keras variable
        up = self._backend_tensor(upstream)
        with torch.enable_grad():
            loss = (layer(ids) * up).sum()
            (g,) = torch.autograd.grad(loss, var)
        return g

    def _grad_jax(self, layer, ids, upstream):
        jax, jnp = self._jax, self._jnp
        x = self._keras.ops.convert_to_tensor(ids)
        up = jnp.asarray(upstream)

        def loss(w):
            out, _ = layer.stateless_call([w], [], x)
            return jnp.sum(out * up)

        return jax.grad(loss)(layer.embeddings.value)

    def lookup_loaded(self, table: np.ndarray, ids: np.ndarray, path: str) -> np.ndarray:
        """table.load: a fresh layer whose table is set through ``path``."""
        if path not in self.capabilities.load_paths:
            raise ValueError(f"{self.name} has no load path {path!r}; it takes {', '.join(self.capabilities.load_paths)}")
        if not isinstance(table, np.ndarray) or table.ndim != 2:
            raise InvalidTable(f"keras.layers.Embedding takes a 2-D table, got shape {getattr(table, 'shape', None)}")
        ns = {"keras": self._keras, "table": table}
        entry = [None, None, None, None]
        try:
            exec(_LOAD_SOURCE[path], ns)  # the very lines the snippet prints
        except Exception as err:
            failure = _translate(err)
            if failure is None:
                raise
            raise failure from err
        return self._to_numpy(self._run(entry, ns["layer"], np.asarray(ids)))

    def lookup_mask_zero(self, table: np.ndarray, ids: np.ndarray):
        ids = np.asarray(ids)
        entry = self._entry(table, mask_zero=True)
        layer = entry[0]

        def run(ids):
            x = self._keras.ops.convert_to_tensor(ids)
            return layer(x), layer.compute_mask(x)

        out, mask = self._run(entry, run, ids)
        return self._to_numpy(out), self._to_numpy(mask)


class KerasModel(_KerasBase):
    """A ``keras.Model`` wrapping the Embedding layer, compiled with
    ``jit_compile=(mode == "jit")``, run through its predict step: lookup only."""

    VIAS = ("predict_on_batch", "predict")

    def __init__(self, mode: str = "predict", via: str = "predict_on_batch",
                 torch_recompile_limit: int | None = None) -> None:
        if mode not in ("predict", "jit"):
            raise ValueError(f"unknown mode {mode!r}; one of predict, jit")
        if via not in self.VIAS:
            raise ValueError(f"unknown via {via!r}; one of {', '.join(self.VIAS)}")
        self.mode, self.via = mode, via
        super().__init__()
        if self.backend == "torch" and mode == "jit" and torch_recompile_limit:
            # torch.compile runs a frame eagerly once its code object has been recompiled
            # recompile_limit times (default 8), and Keras's predict step is one code object
            # for every model: by default only the first signatures of a process are
            # compiled (as for any user). A higher limit compiles every signature, at about
            # 2-4 s each on this 2-core CPU.
            import torch._dynamo

            cfg = torch._dynamo.config
            for knob in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
                if getattr(cfg, knob, torch_recompile_limit) < torch_recompile_limit:
                    setattr(cfg, knob, torch_recompile_limit)

    def _build_model(self, layer):
        if self.backend == "torch" and self.mode == "jit":
            from embedding_conformance.adapters.torch import inductor

            inductor.ready()  # the vector ISA from the CPU's flags, proven by one lookup
        model = _wrap_model(self._keras, layer)
        model.compile(jit_compile=(self.mode == "jit"))
        return model

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        entry = self._entry(table)
        model = entry[1]
        if self.via == "predict":
            out = self._run(entry, lambda x: model.predict(x, verbose=0), ids)
        else:
            out = self._run(entry, model.predict_on_batch, ids)
        return self._to_numpy(out)  # Keras already returns NumPy (its own conversion)


def _wrap_model(keras, layer):
    class EmbeddingModel(keras.Model):
        def __init__(self, embedding):
            super().__init__()
            self.embedding = embedding

        def call(self, x):
            return self.embedding(x)

    return EmbeddingModel(layer)


# -- capabilities, as data -------------------------------------------------------------------

_BUILD = ("layer = keras.layers.Embedding(input_dim=table.shape[0], output_dim=table.shape[1], "
          "dtype=table.dtype.name, embeddings_initializer='zeros'{extra})")
# table.load: the documented ways of giving the layer a table, as the lines a snippet prints
_LOAD_SOURCE = {
    "set_weights": "\n".join([_BUILD.format(extra=""), "layer.build()", "layer.set_weights([table])"]),
    "weights=": _BUILD.format(extra=", weights=table"),  # an argument since Keras 3.3.0
    "assign": "\n".join([_BUILD.format(extra=""), "layer.build()", "layer.embeddings.assign(table)"]),
}
_WEIGHTS_ARG_SINCE = "3.3.0"


def _load_paths() -> tuple[str, ...]:
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    try:
        has_arg = Version(version("keras")) >= Version(_WEIGHTS_ARG_SINCE)
    except PackageNotFoundError:
        has_arg = True
    return tuple(p for p in _LOAD_SOURCE if p != "weights=" or has_arg)


def capabilities(backend: str, mode: str, via: str = "predict_on_batch") -> Capabilities:
    """What keras.layers.Embedding takes on ``backend`` in ``mode``: static data, no import."""
    notes = [
        "keras.layers.Embedding holds a 2-D (input_dim, output_dim) table; input_dim and "
        "output_dim must be positive integers: no V == 0 table, no rows of size 0",
        "Embedding.call casts ids of any dtype but int32/int64 to int32 (floats truncate "
        "toward zero, bools become 0/1, uint32/uint64 wrap), then ops.take",
        "the table is loaded with layer.set_weights([table]), the documented way",
    ]
    id_dtypes = INT_DTYPES
    if backend == "tensorflow":
        notes.append("tensorflow backend: ops.take maps ids in [-V, -1] to id + V (tf.where) before tf.gather")
    if backend == "torch":
        id_dtypes = tuple(d for d in INT_DTYPES if d != "uint64")
        notes.append("torch backend: Keras's convert_to_tensor rejects uint64 ids "
                     "('Unsupported dtype for PyTorch: uint64'); Embedding.call compares the torch "
                     "dtype with the strings 'int32'/'int64', which never match, so int64 ids "
                     "are cast to int32 too; ops.take maps ids in [-V, -1] to id + V")
    if backend == "jax":
        notes.append("jax backend with jax_enable_x64 off (the default): int64 ids become int32 "
                     "and uint64 ids uint32 on conversion, and an Embedding(dtype='float64') "
                     "holds and returns float32 weights")
    if mode != "eager":
        how = ("model.predict_on_batch(ids): the step model.predict runs, on one batch"
               if via == "predict_on_batch" else "model.predict(ids, verbose=0)")
        notes.append(f"keras.Model wrapping the layer, compile(jit_compile={mode == 'jit'}); "
                     f"{how}; lookup only (grad, mask_zero and table.load are clauses of the plain layer)")
    if backend == "torch" and mode == "jit":
        notes.append("jit_compile=True is torch.compile on torch: once torch._dynamo's recompile_limit "
                     "(8 by default) is reached in a process, new input signatures run eagerly, as for any user")
    return Capabilities(
        table_dtypes=FLOAT_DTYPES,
        table_ndims=(2,),
        id_dtypes=id_dtypes,
        min_rows=1,
        empty_rows=False,
        load_paths=_load_paths() if mode == "eager" else (),
        distributions=_BACKEND_DISTS.get(backend, ()),
        notes=tuple(notes),
    )


_NAME = re.compile(r"keras\.layers\.Embedding\[(\w+)\](?:\[(\w+)\])?$")


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing keras."""
    backend, mode = _NAME.match(name).groups()
    mode = mode or "eager"
    cls = KerasEmbedding if mode == "eager" else KerasModel
    return Description(methods_of(cls), capabilities(backend, mode))


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a Keras exception stands for (a snippet's replay uses it)."""
    return _translate(exc)


# -- reproduction snippets ------------------------------------------------------------------

def _snippet(b: str, mode: str, via: str | None, op: str, args: dict[str, str], name: str) -> str:
    if op not in ("lookup", "grad", "lookup_mask_zero", "lookup_loaded") or (mode != "eager" and op != "lookup"):
        raise ValueError(f"{name} has no snippet for {op!r}")
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
    path = eval(args["path"]) if op == "lookup_loaded" else "set_weights"
    build = _LOAD_SOURCE[path]  # the lines the adapter executes (lookup: set_weights)
    if op == "lookup_mask_zero":
        build = build.replace("embeddings_initializer='zeros'", "embeddings_initializer='zeros', mask_zero=True")
    lines.append(build)
    if b == "torch":
        lines += [
            "import torch",
            "def to_torch(a):  # bit-exact, for the upstream gradient",
            "    a = np.ascontiguousarray(a)",
            "    if a.dtype == ml_dtypes.bfloat16:",
            "        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)",
            "    return torch.from_numpy(a)",
            "def to_numpy(x):  # bit-exact",
            "    x = x.detach().cpu()",
            "    if x.dtype == torch.bfloat16:",
            "        return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)",
            "    return x.numpy()",
        ]
    else:
        lines.append("to_numpy = lambda x: np.asarray(keras.ops.convert_to_numpy(x))")
    if mode != "eager":
        call = "model.predict(ids, verbose=0)" if via == "predict" else "model.predict_on_batch(ids)"
        lines += [
            "class EmbeddingModel(keras.Model):",
            "    def __init__(self, embedding):",
            "        super().__init__()",
            "        self.embedding = embedding",
            "    def call(self, x):",
            "        return self.embedding(x)",
            "model = EmbeddingModel(layer)",
            f"model.compile(jit_compile={mode == 'jit'})",
            f"out = np.asarray({call})",
            "result = out",
        ]
    elif op in ("lookup", "lookup_loaded"):
        lines += ["out = to_numpy(layer(ids))", "result = out"]
    elif op == "lookup_mask_zero":
        lines += [
            "x = keras.ops.convert_to_tensor(ids)",
            "out = to_numpy(layer(x))",
            "mask = to_numpy(layer.compute_mask(x))",
            "print('mask', repr(mask))",
            "result = (out, mask)",
        ]
    else:  # grad
        lines += _GRAD_SNIPPETS[b] + ["result = out"]
    lines += [
        "print(out.dtype, out.shape)",
        "print(repr(out))",
        "print('bits', out.view(f'u{out.dtype.itemsize}').tolist())",
    ]
    return "\n".join(lines) + "\n"


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
        "loss = (layer(ids) * to_torch(upstream)).sum()",
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


# -- registry factories ----------------------------------------------------------------------

def embedding() -> KerasEmbedding:
    return KerasEmbedding()


def model_predict() -> KerasModel:
    return KerasModel("predict")


def model_predict_jit() -> KerasModel:
    return KerasModel("jit")
