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
layer's float32 variables. Each call runs from the source text its snippet prints, with
the TensorFlow prelude (adapters/tensorflow/source.py), ``import keras`` and ``import
keras_rs``. Imports nothing at module import.
"""
from __future__ import annotations

from embedding_conformance.adapters.contract import Call, Capabilities, Description, INT_DTYPES, InvalidOffsets, LookupFailure
from embedding_conformance.adapters.tensorflow.embedding_lookup import translate as _translate_lookup
from embedding_conformance.adapters.tensorflow.source import PRELUDE, Kept, translating
from embedding_conformance.adapters.toolkit.source import Source

SOURCE = Source("keras_rs", PRELUDE + "import keras\nimport keras_rs\n")
# Keras fixes its backend when it is imported: a snippet sets it first (the adapter's
# worker is started with it)
_BACKEND = ["import os", "os.environ['KERAS_BACKEND'] = 'tensorflow'"]

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


# the bags as the layer documents them for TensorFlow: ragged, weights with the same row splits
_INPUTS = [
    "ids = tf.RaggedTensor.from_row_splits(to_tf(values), to_tf(offsets))",
    "w = None if weights is None else tf.RaggedTensor.from_row_splits(to_tf(weights), to_tf(offsets))",
]
# the layer as a user builds it, once per (V, D, combiner); each table is loaded with set_weights
_BUILD = [
    "V, D = table.shape",
    "table_config = keras_rs.layers.TableConfig(name='table', vocabulary_size=V, embedding_dim=D, "
    "combiner=combiner, placement='default_device')",
    "feature = keras_rs.layers.FeatureConfig(name='feature', table=table_config, input_shape=(None, None), "
    "output_shape=(None, D))",
    "layer = keras_rs.layers.DistributedEmbedding(feature)",
    "layer.build((None, None))",
]
_LOAD = "layer.set_weights([table])"
_CALLS = {
    "lookup_bags": ["out = keras.ops.convert_to_numpy(layer(ids, weights=w))"],
    "grad_bags": [
        "var = layer.trainable_variables[0]",
        "with tf.GradientTape() as tape:",
        "    loss = tf.reduce_sum(layer(ids, weights=w) * to_tf(upstream))",
        "out = tf.convert_to_tensor(tape.gradient(loss, var))",
    ],
}


def _first(method: str) -> list[str]:
    """A method's whole text (its snippet's): the inputs, the layer built and loaded, the call."""
    return [*_INPUTS, *_BUILD, _LOAD, *_CALLS[method]]


class DistributedEmbeddingBag:
    name = "keras_rs.layers.DistributedEmbedding[tensorflow]"
    framework = "keras-rs"
    capabilities = CAPS

    def __init__(self):
        try:
            SOURCE.base()  # imports TensorFlow, keras and keras_rs
        except AttributeError as exc:
            # keras-rs reads TensorFlow APIs at import that older releases lack (0.4.0:
            # tf.tpu.experimental.embedding.SparseCoreEmbeddingConfig): the layer cannot exist here
            import tensorflow as tf

            raise ImportError(f"keras_rs cannot be imported with tensorflow {tf.__version__}: {exc}") from exc
        backend = SOURCE.helper("keras").backend.backend()
        if backend != "tensorflow":
            raise ImportError(f"keras's backend is {backend}, not tensorflow (set KERAS_BACKEND)")
        self._layers = Kept(SOURCE, "layer")  # per (method, V, D, combiner)

    def _run(self, method: str, table, values, **names):
        key = (method, table.shape[0], table.shape[1], names["combiner"])
        with translating(translate, values):
            ns = self._layers.run(key, _first(method), [*_INPUTS, _LOAD, *_CALLS[method]],
                                  table=table, values=values, **names)
        return SOURCE.helper("to_numpy")(ns["out"])

    def lookup_bags(self, table, values, offsets, weights, combiner):
        return self._run("lookup_bags", table, values, offsets=offsets, weights=weights, combiner=combiner)

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        return self._run("grad_bags", table, values, offsets=offsets, weights=weights, combiner=combiner,
                         upstream=upstream)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in _CALLS:
            raise ValueError(f"{self.name} has no operation {op!r}")
        return SOURCE.snippet(args, _first(op), before=_BACKEND)


def describe(name: str) -> Description:
    return Description(("lookup_bags", "grad_bags"), CAPS)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    return translate(exc, call.ids_dtype)


def distributed_embedding() -> DistributedEmbeddingBag:
    return DistributedEmbeddingBag()
