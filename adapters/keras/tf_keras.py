"""tf-keras (Keras 2) adapters: ``tf_keras.layers.Embedding`` and its one-hot variant.

The layer is built as a user builds it (``tf_keras.layers.Embedding(V, D,
dtype=<table dtype>, embeddings_initializer="zeros")``: the table replaces the
initial weights, so no random initializer runs), ``use_one_hot_matmul=True`` for ``[one_hot]``,
``mask_zero=True`` for the mask), then its ``embeddings`` variable is assigned the
given table; layers are kept per (method, V, D, dtype) because building is slow.
Ids are handed to the layer as the NumPy array given. The layer itself casts every
id dtype other than int32/int64 to int32 (``tf.cast``: floats truncate toward zero,
bool -> 0/1, uint32/uint64 wrap to int32) and then calls ``tf.nn.embedding_lookup``
(CPU: ids outside [0, V) raise) or, for ``[one_hot]``, ``tf.matmul(tf.one_hot(ids,
V), embeddings)`` (arithmetic: see adapters/keras/declarations.toml; 0-d ids fail in
MatMul, which takes only rank >= 2 operands: reported as InvalidIds).

Each call runs from the source text its snippet prints, with the TensorFlow prelude
(adapters/tensorflow/source.py) and ``import tf_keras``. TensorFlow is imported lazily,
with TF_CPP_MIN_LOG_LEVEL=3 set first (unless set already).
"""
from __future__ import annotations

import re

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.toolkit.source import Source
from embedding_conformance.adapters.contract import (Call, Capabilities, Description, FLOAT_DTYPES, INT_DTYPES, InvalidIds, InvalidTable,
                                                     LookupFailure, OutOfRange, Translate)
from embedding_conformance.adapters.tensorflow.source import PRELUDE, Kept

SOURCE = Source("tf_keras", PRELUDE + "import tf_keras\n")

_OUT_OF_RANGE = re.compile(r"indices(\[[\d,]*\])? = -?\d+ is not in \[0, \d+\)")
# [one_hot] with 0-d ids: tf.one_hot gives a rank-1 tensor and tf.matmul takes only rank >= 2
# operands; oneDNN's _MklMatMul (float32, bfloat16) and Eigen's MatMul (float16, float64) word it
# differently
_MATMUL_RANK = re.compile(r"In\[0\] ndims must be >= 2|In\[0\] and In\[1\] has different ndims: \[\d+\] vs")
_CAST_NOTE = ("Embedding.call casts ids of any dtype but int32/int64 to int32 (tf.cast): float ids "
              "truncate toward zero, bool ids become 0/1, uint32/uint64 ids wrap to int32")
_EMPTY_NOTE = ("min_rows=1, empty_rows=False: Embedding.__init__ raises ValueError 'Both `input_dim` and "
               "`output_dim` should be positive' unless input_dim > 0 and output_dim > 0 "
               "(tf_keras/layers/core/embedding.py), so no table with V == 0 or rows of size 0 can be built")

# table.load: the documented ways of giving the layer a table, as a user writes them
_MAKE = ("layer = tf_keras.layers.Embedding(table.shape[0], table.shape[1], dtype=table.dtype.name, "
         "embeddings_initializer='zeros'{options})")
_LOAD_PATHS = ("set_weights", "weights=", "assign")
_PATH_OF = {repr(p): p for p in _LOAD_PATHS}  # a snippet's `path` argument, as source
_RELOAD = "layer.set_weights([table])"  # a kept layer is given each table the documented way


def _load(path: str, options: str) -> list[str]:
    """The lines that build a layer (``options``: its constructor's own) holding ``table``."""
    if path == "weights=":
        return [_MAKE.format(options=options + ", weights=[table]")]
    load = {"set_weights": _RELOAD, "assign": "layer.embeddings.assign(table)"}[path]
    return [_MAKE.format(options=options), "layer.build((None,))", load]


# each method's call of the layer; ids are handed to it as the NumPy array given
_CALLS = {
    "lookup": ["out = layer(ids)"],
    "lookup_loaded": ["out = layer(ids)"],
    "lookup_mask_zero": ["out = layer(ids)", "mask = layer.compute_mask(ids)"],
    "grad": [
        "with tf.GradientTape() as tape:",
        "    loss = tf.reduce_sum(layer(ids) * upstream)",
        "g = tape.gradient(loss, layer.embeddings)",
        "# IndexedSlices (embedding_lookup) -> dense with TF's own conversion (unsorted_segment_sum,",
        "# so duplicates accumulate); None -> zeros",
        "out = tf.zeros_like(layer.embeddings) if g is None else tf.convert_to_tensor(g)",
    ],
}


def capabilities(one_hot: bool) -> Capabilities:
    """What tf_keras.layers.Embedding takes: static data, no import."""
    notes = ["Embedding holds an (input_dim, output_dim) matrix: 2-D tables only", _CAST_NOTE, _EMPTY_NOTE,
             "the table is loaded with layer.set_weights([table]), the documented way"]
    if one_hot:
        notes.append("use_one_hot_matmul=True computes tf.matmul(tf.one_hot(ids, V, dtype), embeddings): "
                     "out-of-range ids give +0.0 rows, -0.0 becomes +0.0, NaN/Inf anywhere in a column "
                     "poisons that column, subnormals flush to zero (not float16); 0-d ids fail in MatMul "
                     "(tf.matmul takes rank >= 2 operands; the layer documents 2-D (batch_size, input_length) "
                     "input), reported as InvalidIds")
    else:
        notes.append("eager CPU tf.nn.embedding_lookup (ResourceGather) raises InvalidArgumentError for ids "
                     "outside [0, V)")
    return Capabilities(
        table_dtypes=FLOAT_DTYPES,
        table_ndims=(2,),
        id_dtypes=INT_DTYPES,
        min_rows=1,
        empty_rows=False,
        load_paths=() if one_hot else _LOAD_PATHS,
        distributions=("tf-keras", "tensorflow", "tensorflow-cpu"),
        notes=tuple(notes),
    )


def _translate(exc: BaseException, one_hot: bool) -> LookupFailure | None:
    msg = str(exc)
    if isinstance(exc, ValueError) and "should be positive" in msg:
        return InvalidTable(msg)  # Embedding.__init__: V == 0 or rows of size 0
    if not isinstance(exc, SOURCE.helper("tf").errors.InvalidArgumentError):
        return None
    if m := _OUT_OF_RANGE.search(msg):
        return OutOfRange(m.group(0))
    if one_hot and (m := _MATMUL_RANK.search(msg)):
        # the ids' rank is what went wrong: one_hot of 0-d ids is a vector, which MatMul refuses
        return InvalidIds(f"ids of rank 0: tf.matmul(tf.one_hot(ids, V), embeddings) needs rank >= 2 "
                          f"operands ({m.group(0)})")
    return None


class TfKerasEmbedding:
    framework = "tf-keras"

    def __init__(self, one_hot: bool):
        SOURCE.base()  # imports TensorFlow and tf_keras
        self.one_hot = one_hot
        self.name = "tf_keras.layers.Embedding[one_hot]" if one_hot else "tf_keras.layers.Embedding"
        self.capabilities = capabilities(one_hot)
        self._layers = Kept(SOURCE, "layer")  # per (method, shape, dtype)
        if one_hot:
            self.lookup_loaded = None  # table.load is the plain layer's clause

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    def _first(self, method: str, path: str = "set_weights") -> list[str]:
        """A method's whole text: the layer built as a user builds it, loaded, called."""
        options = (", use_one_hot_matmul=True" if self.one_hot else "") + (
            ", mask_zero=True" if method == "lookup_mask_zero" else "")
        return [*_load(path, options), *_CALLS[method]]

    def _run(self, method: str, table: np.ndarray, **names) -> dict:
        if table.ndim != 2:
            raise InvalidTable(f"tf_keras.layers.Embedding takes a 2-D (input_dim, output_dim) table, "
                               f"got rank {table.ndim}")
        with Translate(lambda exc: _translate(exc, self.one_hot)):
            return self._layers.run((method, table.shape, table.dtype.name), self._first(method),
                                    [_RELOAD, *_CALLS[method]], table=table, **names)

    # --- adapter API --------------------------------------------------------------

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return SOURCE.helper("to_numpy")(self._run("lookup", table, ids=ids)["out"])

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        return SOURCE.helper("to_numpy")(self._run("grad", table, ids=ids, upstream=upstream)["out"])

    def lookup_mask_zero(self, table: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ns, to_numpy = self._run("lookup_mask_zero", table, ids=ids), SOURCE.helper("to_numpy")
        return to_numpy(ns["out"]), to_numpy(ns["mask"])

    def lookup_loaded(self, table: np.ndarray, ids: np.ndarray, path: str) -> np.ndarray:
        if path not in self.capabilities.load_paths:
            raise ValueError(f"{self.name} has no load path {path!r}; it takes {', '.join(self.capabilities.load_paths)}")
        if table.ndim != 2:
            raise InvalidTable(f"tf_keras.layers.Embedding takes a 2-D table, got rank {table.ndim}")
        with Translate(lambda exc: _translate(exc, self.one_hot)):  # a new layer per load: nothing kept
            ns = SOURCE.run(self._first("lookup_loaded", path), table=table, ids=ids)
        return SOURCE.helper("to_numpy")(ns["out"])

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in describe(self.name).methods:
            raise ValueError(f"{self.name} has no operation {op!r}")
        path = _PATH_OF[args["path"]] if op == "lookup_loaded" else "set_weights"
        tail = (["result = (show('out', out), show('mask', mask))"] if op == "lookup_mask_zero"
                else ["result = show('out', out)"])
        return SOURCE.snippet(args, self._first(op, path), tail)


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing TensorFlow."""
    one_hot = name.endswith("[one_hot]")
    methods = ("lookup", "grad", "lookup_mask_zero") + (() if one_hot else ("lookup_loaded",))
    return Description(methods, capabilities(one_hot))


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a tf_keras exception stands for (a snippet's replay uses
    it); MatMul's rank error can only come from the [one_hot] variant."""
    return _translate(exc, one_hot=True)


def embedding() -> TfKerasEmbedding:
    return TfKerasEmbedding(one_hot=False)


def embedding_one_hot() -> TfKerasEmbedding:
    return TfKerasEmbedding(one_hot=True)
