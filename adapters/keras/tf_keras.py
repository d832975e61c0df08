"""tf-keras (Keras 2) adapters: ``tf_keras.layers.Embedding`` and its one-hot variant.

The layer is built as a user builds it (``tf_keras.layers.Embedding(V, D,
dtype=<table dtype>, embeddings_initializer="zeros")``: the table replaces the
initial weights, so no random initializer runs), ``use_one_hot_matmul=True`` for ``[one_hot]``,
``mask_zero=True`` for the mask), then its ``embeddings`` variable is assigned the
given table; layers are cached per (V, D, dtype, variant) because building is slow.
Ids are handed to the layer as the NumPy array given. The layer itself casts every
id dtype other than int32/int64 to int32 (``tf.cast``: floats truncate toward zero,
bool -> 0/1, uint32/uint64 wrap to int32) and then calls ``tf.nn.embedding_lookup``
(CPU: ids outside [0, V) raise) or, for ``[one_hot]``, ``tf.matmul(tf.one_hot(ids,
V), embeddings)`` (arithmetic: see suites/divergences/tf_keras.toml; 0-d ids fail in
MatMul, which takes only rank >= 2 operands: reported as InvalidIds).

TensorFlow is imported lazily, with TF_CPP_MIN_LOG_LEVEL=3 set first.
"""
from __future__ import annotations

import os
import re
import sys

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.contract import Call, Capabilities, Description, FLOAT_DTYPES, INT_DTYPES, InvalidIds, InvalidTable, OutOfRange

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


def _import_tf():
    if "tensorflow" not in sys.modules:  # the log level is read when TensorFlow loads
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    import tf_keras

    return tf, tf_keras


# table.load: the documented ways of giving the layer a table, as the lines a snippet prints
_BUILD = ("layer = tf_keras.layers.Embedding(table.shape[0], table.shape[1], dtype=table.dtype.name, "
          "embeddings_initializer='zeros'{extra})")
_LOAD_SOURCE = {
    "set_weights": "\n".join([_BUILD.format(extra="{options}"), "layer.build((None,))", "layer.set_weights([table])"]),
    "weights=": _BUILD.format(extra="{options}, weights=[table]"),
    "assign": "\n".join([_BUILD.format(extra="{options}"), "layer.build((None,))", "layer.embeddings.assign(table)"]),
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
        load_paths=() if one_hot else tuple(_LOAD_SOURCE),
        distributions=("tf-keras", "tensorflow", "tensorflow-cpu"),
        notes=tuple(notes),
    )


class TfKerasEmbedding:
    framework = "tf-keras"

    def __init__(self, one_hot: bool):
        self._tf, self._keras = _import_tf()
        self.one_hot = one_hot
        self.name = "tf_keras.layers.Embedding[one_hot]" if one_hot else "tf_keras.layers.Embedding"
        self.capabilities = capabilities(one_hot)
        self._layers: dict[tuple, object] = {}
        if one_hot:
            self.lookup_loaded = None  # table.load is the plain layer's clause

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    # --- framework objects ------------------------------------------------------

    def _layer(self, table: np.ndarray, mask_zero: bool = False):
        if table.ndim != 2:
            raise InvalidTable(f"tf_keras.layers.Embedding takes a 2-D (input_dim, output_dim) table, "
                               f"got rank {table.ndim}")
        dtype = table.dtype.name  # "float16", "bfloat16", "float32", "float64"
        key = (table.shape, dtype, mask_zero)
        layer = self._layers.get(key)
        if layer is None:
            layer = self._load("set_weights", table, mask_zero)
            self._layers[key] = layer
        else:
            layer.set_weights([table])  # the documented way to load a table
        return layer

    def _options(self, mask_zero: bool) -> str:
        return (", use_one_hot_matmul=True" if self.one_hot else "") + (", mask_zero=True" if mask_zero else "")

    def _load(self, path: str, table: np.ndarray, mask_zero: bool = False):
        """A layer holding ``table``, loaded through ``path`` (the lines a snippet prints)."""
        ns = {"tf_keras": self._keras, "table": table}
        try:
            exec(_LOAD_SOURCE[path].format(options=self._options(mask_zero)), ns)
        except ValueError as exc:
            if "should be positive" in str(exc):
                raise InvalidTable(str(exc)) from exc
            raise
        return ns["layer"]

    def lookup_loaded(self, table: np.ndarray, ids: np.ndarray, path: str) -> np.ndarray:
        if path not in self.capabilities.load_paths:
            raise ValueError(f"{self.name} has no load path {path!r}; it takes {', '.join(self.capabilities.load_paths)}")
        if table.ndim != 2:
            raise InvalidTable(f"tf_keras.layers.Embedding takes a 2-D table, got rank {table.ndim}")
        layer = self._load(path, table)
        return self._run(lambda: layer(ids)).numpy()

    def _translate(self, exc: BaseException) -> BaseException | None:
        msg = str(exc)
        if isinstance(exc, self._tf.errors.InvalidArgumentError) and _OUT_OF_RANGE.search(msg):
            return OutOfRange(_OUT_OF_RANGE.search(msg).group(0))
        if self.one_hot and isinstance(exc, self._tf.errors.InvalidArgumentError) and _MATMUL_RANK.search(msg):
            # the ids' rank is what went wrong: one_hot of 0-d ids is a vector, which MatMul refuses
            return InvalidIds(f"ids of rank 0: tf.matmul(tf.one_hot(ids, V), embeddings) needs rank >= 2 "
                              f"operands ({_MATMUL_RANK.search(msg).group(0)})")
        return None

    def _run(self, fn):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - re-raised unless classified
            failure = self._translate(exc)
            if failure is None:
                raise
            raise failure from exc

    # --- adapter API --------------------------------------------------------------

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        layer = self._layer(table)
        return self._run(lambda: layer(ids)).numpy()

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        tf = self._tf
        layer = self._layer(table)

        def run():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(ids) * upstream)
            g = tape.gradient(loss, layer.embeddings)
            # IndexedSlices (embedding_lookup) -> dense with TF's own conversion
            # (unsorted_segment_sum, so duplicates accumulate); None -> zeros
            return tf.zeros_like(layer.embeddings) if g is None else tf.convert_to_tensor(g)

        return self._run(run).numpy()

    def lookup_mask_zero(self, table: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        layer = self._layer(table, mask_zero=True)
        out = self._run(lambda: layer(ids))
        mask = layer.compute_mask(ids)
        return out.numpy(), np.asarray(mask)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        path = eval(args["path"]) if op == "lookup_loaded" else "set_weights"
        lines = [
            "import os",
            "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'",
            "import numpy as np",
            "import ml_dtypes",
            "import tensorflow as tf",
            "import tf_keras",
            *(f"{k} = {v}" for k, v in args.items()),
            _LOAD_SOURCE[path].format(options=self._options(op == "lookup_mask_zero")),
        ]
        if op in ("lookup", "lookup_loaded"):
            lines += ["out = layer(ids).numpy()", "result = out"]
        elif op == "lookup_mask_zero":
            lines += ["out = layer(ids).numpy()", "mask = np.asarray(layer.compute_mask(ids))",
                      "print('mask', mask)", "result = (out, mask)"]
        elif op == "grad":
            lines += [
                "with tf.GradientTape() as tape:",
                "    loss = tf.reduce_sum(layer(ids) * upstream)",
                "g = tape.gradient(loss, layer.embeddings)",
                "out = tf.convert_to_tensor(g).numpy()",
                "result = out",
            ]
        else:
            raise ValueError(f"{self.name} has no operation {op!r}")
        lines += [
            "print(out.dtype, out.shape)",
            "print(repr(out))",
            "print([hex(b) for b in out.view(f'u{out.dtype.itemsize}').ravel().tolist()])",
        ]
        return "\n".join(lines) + "\n"


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing TensorFlow."""
    one_hot = name.endswith("[one_hot]")
    methods = ("lookup", "grad", "lookup_mask_zero") + (() if one_hot else ("lookup_loaded",))
    return Description(methods, capabilities(one_hot))


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a tf_keras exception stands for (a snippet's replay uses
    it); MatMul's rank error can only come from the [one_hot] variant."""
    adapter = TfKerasEmbedding.__new__(TfKerasEmbedding)
    adapter._tf, adapter.one_hot = _import_tf()[0], True
    return adapter._translate(exc)


def embedding() -> TfKerasEmbedding:
    return TfKerasEmbedding(one_hot=False)


def embedding_one_hot() -> TfKerasEmbedding:
    return TfKerasEmbedding(one_hot=True)
