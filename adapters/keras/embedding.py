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
adapters/keras/declarations.toml, not something the adapter may route around.) The
other documented ways (``weights=``, ``embeddings.assign``) are the table.load
clause's (``lookup_loaded``). Every call runs the source its snippet prints
(adapters/keras/source.py): layers and models are kept per (op, V, D, dtype), the
first call of each runs the whole text, later ones only the rest (the weights set
again only when the table's bits change). Nothing here imports keras or a backend at
module level.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict

import numpy as np

from embedding_conformance.adapters.jax.source import lines_of, run_stages
from embedding_conformance.adapters.keras.source import KERAS, before
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
_CACHE_SIZE = 128  # built layers/models kept per op (LRU)

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


# -- the source each call runs and its snippet prints (adapters/keras/source.py) ----------------

_BUILD = ("layer = keras.layers.Embedding(input_dim=table.shape[0], output_dim=table.shape[1], "
          "dtype=table.dtype.name, embeddings_initializer='zeros'{extra})")
_BUILT = [_BUILD.format(extra=""), "layer.build()"]
_SET = ["layer.set_weights([table])"]  # the documented way to load a table
# table.load: the documented ways of giving the layer a table
_LOAD_SOURCE = {
    "set_weights": _BUILT + _SET,
    "weights=": [_BUILD.format(extra=", weights=table")],  # an argument since Keras 3.3.0
    "assign": _BUILT + ["layer.embeddings.assign(table)"],
}
_PATHS = {repr(p): p for p in _LOAD_SOURCE}  # a snippet's `path` argument (its source) -> the path
_WEIGHTS_ARG_SINCE = "3.3.0"
_MODEL = [
    "class EmbeddingModel(keras.Model):",
    "    def __init__(self, embedding):",
    "        super().__init__()",
    "        self.embedding = embedding",
    "",
    "    def call(self, x):",
    "        return self.embedding(x)",
    "",
    "model = EmbeddingModel(layer)",
    "model.compile(jit_compile={jit})",
]
_PREDICT = {"predict_on_batch": "out = model.predict_on_batch(ids)", "predict": "out = model.predict(ids, verbose=0)"}
_GRAD = {  # the backend's own autodiff, d sum(layer(ids) * upstream) / d table
    "tensorflow": ["var = layer.embeddings.value  # the tf.Variable behind the Keras variable",
                   "up = tf.constant(upstream)",
                   "with tf.GradientTape() as tape:",
                   "    tape.watch(var)",
                   "    loss = tf.reduce_sum(layer(ids) * up)",
                   "out = tape.gradient(loss, var)  # IndexedSlices, densified by to_numpy"],
    "torch": ["var = layer.embeddings.value  # the torch Parameter behind the Keras variable",
              "up = to_torch(upstream)",
              "with torch.enable_grad():",
              "    loss = (layer(ids) * up).sum()",
              "    (out,) = torch.autograd.grad(loss, var)"],
    "jax": ["x = keras.ops.convert_to_tensor(ids)",
            "up = jnp.asarray(upstream)",
            "def loss(w):",
            "    out, _ = layer.stateless_call([w], [], x)",
            "    return jnp.sum(out * up)",
            "out = jax.grad(loss)(layer.embeddings.value)"],
}
_MASK = ["x = keras.ops.convert_to_tensor(ids)", "out, mask = layer(x), layer.compute_mask(x)"]


def _stages(backend: str, mode: str, via: str) -> dict[str, list[list[str]]]:
    """Each op's stages: the layer (and model) built once per op and table shape and dtype,
    the table set when its bits change, the call."""
    if mode != "eager":
        return {"lookup": [_BUILT + [ln.format(jit=mode == "jit") for ln in _MODEL], _SET, [_PREDICT[via]]]}
    return {
        "lookup": [_BUILT, _SET, ["out = layer(ids)"]],
        "grad": [_BUILT, _SET, _GRAD[backend]],
        "lookup_mask_zero": [[_BUILD.format(extra=", mask_zero=True"), "layer.build()"], _SET, _MASK],
        **{f"load {p}": [lines + ["out = layer(ids)"]] for p, lines in _LOAD_SOURCE.items()},  # a fresh layer each call
    }


class _KerasBase:
    framework = "keras"
    mode = "eager"
    via = "predict_on_batch"

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras  # the backend is whatever KERAS_BACKEND chose for this process

        self.backend = keras.backend.backend()
        self.name = f"keras.layers.Embedding[{self.backend}]{_SUFFIX[self.mode]}"
        self._source = KERAS[self.backend]
        self._stages = _stages(self.backend, self.mode, self.via)
        self._to_numpy = self._source.helper("to_numpy")  # imports the backend
        self._cache: dict[str, OrderedDict] = {}  # op -> key -> {"made": layer (and model), "bits": table bits}
        self.capabilities = self._capabilities()

    def _capabilities(self) -> Capabilities:
        caps = capabilities(self.backend, self.mode, via=self.via)
        if self.backend == "jax" and self._source.helper("jax").config.jax_enable_x64:  # not the default: say so
            caps = caps.narrowed(notes=caps.notes + ("jax_enable_x64 is on in this process",))
        return caps

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    def _ready(self) -> None:
        """Called before a layer is built."""

    def _call(self, op: str, table: np.ndarray, **args) -> dict:
        """Run ``op``'s source from its first stage not already done for this table: a layer
        and model kept per (op, V, D, dtype) (LRU), the weights set again only when the
        table's bits change. A failure nobody can classify drops the kept layer (a failed
        predict can leave a Keras model unusable, see KerasModel)."""
        if not isinstance(table, np.ndarray) or table.ndim != 2:
            raise InvalidTable("keras.layers.Embedding takes a 2-D (input_dim, output_dim) "
                               f"table, got shape {getattr(table, 'shape', None)}")
        stages = self._stages[op]
        # kept per op: the first call of an op runs the whole text its snippet prints
        cache = self._cache.setdefault(op, OrderedDict())
        key, bits = (table.shape, table.dtype.name), _bits_key(table)
        entry = cache.get(key) if len(stages) > 1 else None
        if entry is None:
            start, made = 0, {}
            self._ready()
        else:
            cache.move_to_end(key)
            start, made = (2 if entry["bits"] == bits else 1), entry["made"]

        def done(k: int, ns: dict) -> None:
            if k == 0 and len(stages) > 1:
                cache[key] = {"made": {n: ns[n] for n in ("layer", "model") if n in ns}, "bits": None}
                while len(cache) > _CACHE_SIZE:
                    cache.popitem(last=False)
            elif k == 1:
                cache[key]["bits"] = bits

        try:
            return run_stages(self._source, stages, start, done, **made, table=table, **args)
        except LookupFailure:
            raise
        except Exception as err:
            failure = _translate(err)
            if failure is None:
                cache.pop(key, None)
                raise
            raise failure from err

    # -- reproduction ----------------------------------------------------------------------

    def snippet(self, op: str, args: dict[str, str]) -> str:
        key = f"load {_PATHS[args['path']]}" if op == "lookup_loaded" and self.mode == "eager" else op
        if key not in self._stages:
            raise ValueError(f"{self.name} has no snippet for {op!r}")
        tail = ["result = (show('out', out), show('mask', mask))"] if op == "lookup_mask_zero" else [
            "result = show('out', out)"]
        return self._source.snippet(args, lines_of(self._stages[key]), tail, before=before(self.backend))


class KerasEmbedding(_KerasBase):
    """``keras.layers.Embedding`` called directly: lookup, grad (the backend's own
    autodiff) and lookup_mask_zero (``mask_zero=True``; ``layer.compute_mask``)."""

    mode = "eager"

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self._to_numpy(self._call("lookup", table, ids=np.asarray(ids))["out"])

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        ns = self._call("grad", table, ids=np.asarray(ids), upstream=np.asarray(upstream))
        return self._to_numpy(ns["out"])

    def lookup_loaded(self, table: np.ndarray, ids: np.ndarray, path: str) -> np.ndarray:
        """table.load: a fresh layer whose table is set through ``path``."""
        if path not in self.capabilities.load_paths:
            raise ValueError(f"{self.name} has no load path {path!r}; it takes {', '.join(self.capabilities.load_paths)}")
        return self._to_numpy(self._call(f"load {path}", table, ids=np.asarray(ids))["out"])

    def lookup_mask_zero(self, table: np.ndarray, ids: np.ndarray):
        ns = self._call("lookup_mask_zero", table, ids=np.asarray(ids))
        return self._to_numpy(ns["out"]), self._to_numpy(ns["mask"])


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

    def _ready(self) -> None:
        if self.backend == "torch" and self.mode == "jit":
            from embedding_conformance.adapters.torch import inductor

            inductor.ready()  # the vector ISA from the CPU's flags, proven by one lookup

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        # Keras already returns NumPy (its own conversion)
        return self._to_numpy(self._call("lookup", table, ids=np.asarray(ids))["out"])


# -- capabilities, as data -------------------------------------------------------------------



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


# -- registry factories ----------------------------------------------------------------------

def embedding() -> KerasEmbedding:
    return KerasEmbedding()


def model_predict() -> KerasModel:
    return KerasModel("predict")


def model_predict_jit() -> KerasModel:
    return KerasModel("jit")
