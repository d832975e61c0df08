"""The source of the exported columns (adapters/toolkit/source.py): what a snippet prints
and the adapters run.

- each exporter's prelude (``EXPORTERS``): its imports and ``export`` (``export_bags``,
  ``bag_feeds`` for torch.onnx, whose prelude starts with the torch prelude and its
  ``to_torch``); the adapter runs its call texts with it;
- each runtime's ``run(model, feeds)`` (``RUNNERS``; OpenVINO's is in
  adapters/openvino/cpu_plugin.py), run by its own ``Source`` (``runtime_source``)
  in the adapter's process or in OpenVINO's child;
- the call texts (``CALLS``): export, then run. The adapter executes them with the
  exporter's Source, ``export``/``export_bags`` bound to its cache of exports (a
  signature's first example exports, later ones get the same program with their table
  applied) and ``run`` to the column's runtime; a snippet prints the exporter's prelude,
  the runtime's ``run`` and the same texts, so it exports afresh.

Importing this module imports no framework.
"""
from __future__ import annotations

from embedding_conformance.adapters.toolkit.source import Source
from embedding_conformance.adapters.torch.source import PRELUDE as TORCH_PRELUDE

NUMPY = "import numpy as np\nimport ml_dtypes\n"

_TORCH_ONNX = TORCH_PRELUDE + '''

def export(table, ids):
    # nn.Embedding holding the table, exported with torch.onnx's dynamo exporter
    layer = torch.nn.Embedding.from_pretrained(to_torch(table, copy=True)).eval()
    return torch.onnx.export(layer, (to_torch(ids),), dynamo=True, verbose=False)


def export_bags(table, values, offsets, weights, combiner, padding_idx=None):
    # nn.EmbeddingBag holding the table; offsets in CSR form (B + 1 of them:
    # include_last_offset=True); exported with torch.onnx's dynamo exporter
    layer = torch.nn.EmbeddingBag.from_pretrained(to_torch(table, copy=True), mode=combiner,
                                                  include_last_offset=True, padding_idx=padding_idx).eval()
    args = (to_torch(values), to_torch(offsets)) + (() if weights is None else (to_torch(weights),))
    return torch.onnx.export(layer, args, dynamo=True, verbose=False)


def bag_feeds(model, values, offsets, weights):
    # the model's inputs, in the order the module takes them: input, offsets[, per_sample_weights]
    arrays = [values, offsets] + ([] if weights is None else [weights])
    return {i.name: a for i, a in zip(model.graph.input, arrays)}
'''

# TensorFlow takes the NumPy arrays as they are: no conversion, and no torch
_TF2ONNX = NUMPY + '''\
import tensorflow as tf
import tf2onnx

to_numpy = np.asarray  # the runtimes return NumPy arrays


def export(table, ids):
    # tf.nn.embedding_lookup in a tf.function, converted by tf2onnx
    spec = (tf.TensorSpec(table.shape, tf.as_dtype(table.dtype), name="params"),
            tf.TensorSpec(ids.shape, tf.as_dtype(ids.dtype), name="ids"))

    @tf.function(input_signature=spec, autograph=False)  # no Python control flow to convert
    def lookup(params, ids):
        return tf.nn.embedding_lookup(params, ids)

    model, _ = tf2onnx.convert.from_function(lookup, input_signature=spec)
    return model
'''

EXPORTERS = {"torch.onnx": Source("torch.onnx", _TORCH_ONNX), "tf2onnx": Source("tf2onnx", _TF2ONNX)}

RUNNERS = {
    "onnxruntime": '''\
import ctypes
import onnx
import onnxruntime as ort


def to_ort(a):
    a = np.asarray(a)
    a = a if a.flags.c_contiguous else a.copy(order="C")
    if a.dtype == ml_dtypes.bfloat16:  # NumPy has no bfloat16 of its own: hand ORT the bits
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(a.view(np.uint16), onnx.TensorProto.BFLOAT16)
    return ort.OrtValue.ortvalue_from_numpy(a)


def from_ort(value):
    if value.data_type() == "tensor(bfloat16)":  # OrtValue.numpy() has no bfloat16: read its bytes
        raw = ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes())
        return np.frombuffer(raw, dtype=ml_dtypes.bfloat16).reshape(value.shape()).copy()
    return value.numpy()


def run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run_with_ort_values(None, {name: to_ort(a) for name, a in feeds.items()})
    return from_ort(outputs[0])
''',
    "onnx.reference": '''\
from onnx.reference import ReferenceEvaluator


def run(model, feeds):
    return np.asarray(ReferenceEvaluator(model).run(None, feeds)[0])
''',
}


def _bags(pad: str) -> tuple[str, ...]:
    return (f"program = export_bags(table, values, offsets, weights, combiner{pad})",
            "model = program.model_proto",
            "out = run(model, bag_feeds(model, values, offsets, weights))")


# each exporter's call texts by operation: what the adapter executes and a snippet prints
CALLS = {
    "torch.onnx": {
        "lookup": ("program = export(table, ids)",
                   "model = program.model_proto",
                   "out = run(model, {model.graph.input[0].name: ids})"),
        "lookup_bags": _bags(""),
        "lookup_bags_padded": _bags(", padding_idx"),
    },
    "tf2onnx": {
        "lookup": ("model = export(table, ids)",
                   'out = run(model, {"params": table, "ids": ids})'),
    },
}
# the snippet's last lines: ``out`` is a NumPy array (ml_dtypes' bfloat16 included)
TAIL = ("print(out.dtype, out.shape)", "result = show('out', out)")


def runtime_source(name: str, runner: str) -> Source:
    """The Source a runtime's ``run`` is executed with (the adapter's process, or a child)."""
    return Source(name, NUMPY + runner)


def printed_source(exporter: str, name: str, runner: str) -> Source:
    """The Source a column's snippets are printed with: the exporter's prelude, then the
    runtime's ``run``, as a reader runs them in one script. The adapter runs the two parts
    with their own Sources (the exporter's and ``runtime_source``)."""
    return Source(name, EXPORTERS[exporter].prelude + "\n\n" + runner)
