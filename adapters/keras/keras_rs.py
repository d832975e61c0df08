"""keras-rs ``DistributedEmbedding`` on CPU, Keras's TensorFlow backend (its backend is
fixed per process: group "keras-tensorflow", KERAS_BACKEND=tensorflow).

Without a TPU's SparseCore, every table is placed on the "default_device": the layer
pools with keras_rs.layers.EmbedReduce, a keras.layers.Embedding followed by the
combiner (sum, mean, sqrtn; the quotients with ops.divide_no_nan). The adapter builds
the layer the documented way, one ``TableConfig`` (vocabulary_size, embedding_dim,
combiner, placement="default_device") and one ``FeatureConfig`` per (V, D, combiner),
built once and given each table through ``set_weights`` (Keras's way of loading a
built layer's weights); the bags arrive as the ragged input the layer documents for
TensorFlow, ``tf.RaggedTensor.from_row_splits(values, offsets)``, with the weights as a
ragged tensor of the same row splits. TableConfig has no dtype: the tables are the
layer's float32 variables. Imports nothing at module import.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, Description, INT_DTYPES, InvalidOffsets, LookupFailure
from embedding_conformance.adapters.tensorflow.embedding_lookup import translate as _translate_lookup
from embedding_conformance.adapters.tensorflow.sparse import run_translated

_NOTES = (
    "table dtype float32 only: TableConfig takes no dtype, and the default-device EmbedReduce layers hold "
    "float32 variables",
    "combiners sum, mean, sqrtn (keras_rs.layers.EmbedReduce's SUPPORTED_COMBINERS); weights with each",
    "ids of every integer dtype are taken (keras.layers.Embedding casts them to int32 unless int32/int64)",
    "CPU: no SparseCore, so placement='default_device' (EmbedReduce per table)",
)
CAPS = Capabilities(table_dtypes=("float32",), table_ndims=(2,), id_dtypes=INT_DTYPES, min_rows=1,
                    combiners=("sum", "mean", "sqrtn"), weighted_combiners=("sum", "mean", "sqrtn"),
                    distributions=("keras-rs", "keras", "tensorflow"),
                    notes=_NOTES + ("a table has at least one row (vocabulary_size >= 1)",))


def translate(exc: BaseException, ids_dtype) -> LookupFailure | None:
    msg = str(exc)
    if "do not form a valid RaggedTensor" in msg:
        return InvalidOffsets(msg[:500])
    return _translate_lookup(exc, ids_dtype)


class DistributedEmbeddingBag:
    name = "keras_rs.layers.DistributedEmbedding[tensorflow]"
    framework = "keras-rs"
    capabilities = CAPS

    def __init__(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
        import tensorflow as tf
        try:
            import keras_rs
        except AttributeError as exc:
            # keras-rs reads TensorFlow APIs at import that older releases lack (0.4.0:
            # tf.tpu.experimental.embedding.SparseCoreEmbeddingConfig): the layer cannot exist here
            raise ImportError(f"keras_rs cannot be imported with tensorflow {tf.__version__}: {exc}") from exc

        if keras.backend.backend() != "tensorflow":
            raise ImportError(f"keras's backend is {keras.backend.backend()}, not tensorflow (set KERAS_BACKEND)")
        self.tf, self.keras, self.keras_rs = tf, keras, keras_rs
        self._layers: dict[tuple, Any] = {}

    def _layer(self, v: int, d: int, combiner: str):
        key = (v, d, combiner)
        layer = self._layers.get(key)
        if layer is None:
            ns = {"keras": self.keras, "keras_rs": self.keras_rs, "V": v, "D": d, "combiner": combiner}
            exec("\n".join(_BUILD), ns)
            layer = self._layers[key] = ns["layer"]
        return layer

    def _inputs(self, values, offsets, weights):
        tf = self.tf
        ids = tf.RaggedTensor.from_row_splits(tf.constant(values), tf.constant(offsets))
        w = None if weights is None else tf.RaggedTensor.from_row_splits(tf.constant(weights), tf.constant(offsets))
        return ids, w

    def _run(self, thunk, values):
        return run_translated(self.tf, thunk, values, translate)

    def lookup_bags(self, table, values, offsets, weights, combiner):
        def call():
            ids, w = self._inputs(values, offsets, weights)
            layer = self._layer(table.shape[0], table.shape[1], combiner)
            layer.set_weights([table])
            return np.asarray(self.keras.ops.convert_to_numpy(layer(ids, weights=w)))

        return self._run(call, values)

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        tf = self.tf

        def call():
            ids, w = self._inputs(values, offsets, weights)
            layer = self._layer(table.shape[0], table.shape[1], combiner)
            layer.set_weights([table])
            var = layer.trainable_variables[0]
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(ids, weights=w) * tf.constant(upstream))
            return np.asarray(tf.convert_to_tensor(tape.gradient(loss, var)).numpy())

        return self._run(call, values)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in ("lookup_bags", "grad_bags"):
            raise ValueError(f"{self.name} has no operation {op!r}")
        lines = ["import os", "os.environ['KERAS_BACKEND'] = 'tensorflow'",
                 "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')", "import numpy as np", "import ml_dtypes",
                 "import tensorflow as tf", "import keras", "import keras_rs", ""]
        lines += [f"{k} = {v}" for k, v in args.items()]
        lines += ["V, D = table.shape"] + _BUILD + [
            "layer.set_weights([table])",
            "ids = tf.RaggedTensor.from_row_splits(tf.constant(values), tf.constant(offsets))",
            "w = None if weights is None else tf.RaggedTensor.from_row_splits(tf.constant(weights), "
            "tf.constant(offsets))"]
        if op == "lookup_bags":
            lines.append("out = np.asarray(layer(ids, weights=w))")
        else:
            lines += ["with tf.GradientTape() as tape:",
                      "    loss = tf.reduce_sum(layer(ids, weights=w) * tf.constant(upstream))",
                      "out = tf.convert_to_tensor(tape.gradient(loss, layer.trainable_variables[0])).numpy()"]
        lines += ["print(out.dtype, out.shape)", "print(repr(out))", "result = out"]
        return "\n".join(lines) + "\n"


# the layer as a user builds it (the snippet prints these lines; the adapter runs them)
_BUILD = [
    "table_config = keras_rs.layers.TableConfig(name='table', vocabulary_size=V, embedding_dim=D, "
    "combiner=combiner, placement='default_device')",
    "feature = keras_rs.layers.FeatureConfig(name='feature', table=table_config, input_shape=(None, None), "
    "output_shape=(None, D))",
    "layer = keras_rs.layers.DistributedEmbedding(feature)",
    "layer.build((None, None))",
]


def describe(name: str) -> Description:
    return Description(("lookup_bags", "grad_bags"), CAPS)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    return translate(exc, call.ids_dtype)


def distributed_embedding() -> DistributedEmbeddingBag:
    return DistributedEmbeddingBag()
