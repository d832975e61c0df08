"""ONNX adapters: a lookup exported to ONNX the way models get there, run by an
ONNX runtime. One column per (runtime, exporter):

- exporters: ``torch.onnx`` -- ``torch.onnx.export(nn.Embedding.from_pretrained(table),
  (ids,), dynamo=True)`` (torch 2.13's exporter, onnxscript underneath), the table
  baked into the model as the initializer ``weight``; ``tf2onnx`` --
  ``tf2onnx.convert.from_function`` of a ``tf.function`` calling
  ``tf.nn.embedding_lookup(params, ids)``, the table an input of the model;
- runtimes: ``onnxruntime`` (CPU execution provider) and ``onnx.reference`` (the
  ONNX specification's own evaluator); OpenVINO is adapters/openvino/cpu_plugin.py.

The torch.onnx columns also pool (``lookup_bags``, ``lookup_bags_padded``): the
export of ``nn.EmbeddingBag.from_pretrained(table, mode=combiner,
include_last_offset=True[, padding_idx=p])`` called with (values, offsets[,
per_sample_weights]), the contract's CSR offsets handed over as they are (B + 1 of
them, as adapters/torch_bag_adapter.ModuleBag does); values, offsets and weights are
inputs of the model, the table its initializer ``weight``. torchlib writes the bag as
a Gather of the rows followed by an ONNX Loop over the bags (a Slice and a
ReduceSum/Mean/Max per bag, a constant zero row for an empty one).

Both exporters write an ONNX ``Gather(axis=0)``, whose rules are the ONNX spec's:
negative indices count from the back, and out-of-range handling is each runtime's.

Exports are cached per signature (table dtype and shape, ids dtype and shape: the
export is static, the exporter's default), failures included, and shared by the
columns of one exporter in a process. With torch.onnx the
table is a weight: a later example of the same signature sets its values with
``ONNXProgram.apply_weights`` (torch.onnx's documented way of giving an exported
program new weights) instead of exporting again; a snippet exports afresh. The
runtime calls are written once, as source (``RUNNERS``): the adapter executes the
very functions a snippet prints.

Every framework is imported lazily: importing this module imports none.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, Description, FLOAT_DTYPES, LookupFailure, OutOfRange, methods_of

# --- the code a snippet prints and the adapter runs ------------------------------------

HELPERS = '''\
def to_torch(a):
    a = np.asarray(a).copy(order="C")
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)
'''

EXPORTERS = {
    "torch.onnx": '''\
def export(table, ids):
    # nn.Embedding holding the table, exported with torch.onnx's dynamo exporter
    layer = torch.nn.Embedding.from_pretrained(to_torch(table)).eval()
    program = torch.onnx.export(layer, (to_torch(ids),), dynamo=True, verbose=False)
    return program
''',
    "tf2onnx": '''\
def export(table, ids):
    # tf.nn.embedding_lookup in a tf.function, converted by tf2onnx
    spec = (tf.TensorSpec(table.shape, tf.as_dtype(table.dtype), name="params"),
            tf.TensorSpec(ids.shape, tf.as_dtype(ids.dtype), name="ids"))

    @tf.function(input_signature=spec, autograph=False)  # no Python control flow to convert
    def lookup(params, ids):
        return tf.nn.embedding_lookup(params, ids)

    model, _ = tf2onnx.convert.from_function(lookup, input_signature=spec)
    return model
''',
}
# the pooled lookup (torch.onnx only: tf2onnx has no bag of its own to convert)
BAG_EXPORTER = '''\
def export_bags(table, values, offsets, weights, combiner, padding_idx=None):
    # nn.EmbeddingBag holding the table; offsets in CSR form (B + 1 of them:
    # include_last_offset=True); exported with torch.onnx's dynamo exporter
    layer = torch.nn.EmbeddingBag.from_pretrained(to_torch(table), mode=combiner, include_last_offset=True,
                                                  padding_idx=padding_idx).eval()
    args = (to_torch(values), to_torch(offsets)) + (() if weights is None else (to_torch(weights),))
    return torch.onnx.export(layer, args, dynamo=True, verbose=False)


def bag_feeds(model, values, offsets, weights):
    # the model's inputs, in the order the module takes them: input, offsets[, per_sample_weights]
    arrays = [values, offsets] + ([] if weights is None else [weights])
    return {i.name: a for i, a in zip(model.graph.input, arrays)}
'''
# what each exporter's snippet imports, and how its model and feeds are had
EXPORT_IMPORTS = {"torch.onnx": ["import torch"],
                  "tf2onnx": ["import tensorflow as tf", "import tf2onnx"]}
MODEL_OF = {"torch.onnx": "program.model_proto", "tf2onnx": "program"}
FEEDS_OF = {"torch.onnx": '{program.model_proto.graph.input[0].name: ids}',
            "tf2onnx": '{"params": table, "ids": ids}'}

RUNNERS = {
    "onnxruntime": '''\
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
def run(model, feeds):
    return np.asarray(ReferenceEvaluator(model).run(None, feeds)[0])
''',
}
RUNNER_IMPORTS = {"onnxruntime": ["import ctypes", "import onnx", "import onnxruntime as ort"],
                  "onnx.reference": ["from onnx.reference import ReferenceEvaluator"]}


def snippet_source(runtime: str, exporter: str, args: dict[str, str], runners: dict[str, str] = RUNNERS,
                   runner_imports: dict[str, list[str]] = RUNNER_IMPORTS) -> str:
    """Standalone code: export (afresh, with this very table), run, bind ``result``."""
    lines = ["import numpy as np", "import ml_dtypes", *EXPORT_IMPORTS[exporter], *runner_imports[runtime], ""]
    lines += [HELPERS, EXPORTERS[exporter], runners[runtime]]
    lines += [f"{k} = {v}" for k, v in args.items()]
    lines += [
        "program = export(table, ids)",
        f"out = run({MODEL_OF[exporter]}, {FEEDS_OF[exporter]})",
        "result = out",
        "print(out.dtype, out.shape)",
        "print(repr(out))",
        "if out.dtype.kind == 'f' or out.dtype == ml_dtypes.bfloat16:",
        "    print([hex(b) for b in out.view(f'u{out.itemsize}').ravel().tolist()])",
    ]
    return "\n".join(lines) + "\n"


def bag_snippet_source(runtime: str, args: dict[str, str], padded: bool, runners: dict[str, str] = RUNNERS,
                       runner_imports: dict[str, list[str]] = RUNNER_IMPORTS) -> str:
    """Standalone code for a pooled lookup: export (afresh, with this very table), run,
    bind ``result``."""
    lines = ["import numpy as np", "import ml_dtypes", *EXPORT_IMPORTS["torch.onnx"], *runner_imports[runtime], ""]
    lines += [HELPERS, BAG_EXPORTER, runners[runtime]]
    lines += [f"{k} = {v}" for k, v in args.items()]
    pad = ", padding_idx" if padded else ""
    lines += [
        f"program = export_bags(table, values, offsets, weights, combiner{pad})",
        "out = run(program.model_proto, bag_feeds(program.model_proto, values, offsets, weights))",
        "result = out",
        "print(out.dtype, out.shape)",
        "print(repr(out))",
        "if out.dtype.kind == 'f' or out.dtype == ml_dtypes.bfloat16:",
        "    print([hex(b) for b in out.view(f'u{out.itemsize}').ravel().tolist()])",
    ]
    return "\n".join(lines) + "\n"


def load_source(source: str, imports: list[str]) -> dict[str, Any]:
    """Execute snippet source (imports, then definitions) and return its namespace."""
    ns: dict[str, Any] = {"__name__": "embedding_conformance.adapters.onnx_snippet"}
    exec(compile("\n".join(imports) + "\n" + source, "<onnx_adapter source>", "exec"), ns)
    return ns


# --- failures ----------------------------------------------------------------------

# (exception type name, message substring, failure): each runtime's words for an id
# outside the table
_RUNTIME_MESSAGES: tuple[tuple[str, str, type[LookupFailure]], ...] = (
    # onnxruntime's Gather kernel (CPU EP): "indices element out of data bounds, idx=4
    # must be within the inclusive range [-4,3]"
    ("InvalidArgument", "indices element out of data bounds", OutOfRange),
    # onnx.reference's Gather is numpy.take
    ("IndexError", "out of bounds for axis", OutOfRange),
    ("IndexError", "non-empty take from an empty", OutOfRange),
    # onnxruntime refuses a feed whose dtype is not the one the model declares (tf2onnx
    # declares a bfloat16 input as float16): a framework failure, no contract kind
    ("InvalidArgument", "Unexpected input data type", LookupFailure),
    # onnxruntime refuses the model itself (tf2onnx writes a Gather with int16 indices,
    # which the ONNX Gather does not take): a framework failure, no contract kind
    ("InvalidGraph", "This is an invalid model", LookupFailure),
    # OpenVINO's ONNX frontend cannot read the model (a Gather from an initializer with
    # no rows): a framework failure, no contract kind
    ("RuntimeError", "Model wasn't fully converted", LookupFailure),
    # the exported EmbeddingBag with no bags (offsets [0]): its Loop still runs once and
    # ConcatFromSequence meets an empty sequence (onnxruntime: "Must have 1 or more
    # inputs"; onnx.reference: numpy.concatenate's "need at least one array"): no kind
    ("Fail", "Must have 1 or more inputs", LookupFailure),
    ("ValueError", "need at least one array to concatenate", LookupFailure),
    # onnxruntime's CPU provider has no kernel for an op of the model in this dtype (the
    # exported EmbeddingBag's Mul on bfloat16 rows): the session is refused, no kind
    ("NotImplemented", "Could not find an implementation for", LookupFailure),
    # the exported EmbeddingBag with a padding_idx and int32 values compares an int32 id
    # with the int64 padding id: an invalid model (onnxruntime's type inference refuses it,
    # onnx.reference's Equal its inputs), no kind
    ("Fail", "[TypeInferenceError]", LookupFailure),
    ("RuntimeTypeError", "Input type mismatch", LookupFailure),
)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure an exporter's or a runtime's exception stands for (the call's
    ids' dtype is what TensorFlow's dtype errors are read against)."""
    if isinstance(exc, LookupFailure):
        return exc
    text = str(exc)
    for type_name, needle, cls in _RUNTIME_MESSAGES:
        if type(exc).__name__ == type_name and needle in text:
            line = next(ln for ln in text.splitlines() if needle in ln).strip()
            return cls(f"{type(exc).__name__}: {line}"[:500])
    if type(exc).__module__.startswith("torch"):
        # torch.onnx.export wraps what the module raised while torch.export traced it;
        # its summary carries torch's own message (float or int16 ids, ...); the bag
        # adapter's classify reads nn.EmbeddingBag's messages and then nn.Embedding's
        from embedding_conformance.adapters.torch.embedding_bag import classify as torch_classify

        return torch_classify(exc, call)
    # tf2onnx traces the tf.function: TensorFlow's own errors (a TypeError naming the
    # ids' dtype among GatherV2's allowed ones, ...)
    from embedding_conformance.adapters.tensorflow.embedding_lookup import translate

    return translate(exc, call.ids_dtype)


def translated(exc: Exception, ids: np.ndarray) -> Exception:
    """What an adapter raises for ``exc``: its contract failure, or ``exc`` itself."""
    if isinstance(exc, LookupFailure):
        return exc
    failure = classify(exc, Call(ids))
    if failure is None:
        return exc
    failure.__cause__ = exc
    return failure


# --- capabilities -------------------------------------------------------------------

_TORCH_NOTES = (
    "torch.onnx: nn.Embedding.from_pretrained(table) exported with torch.onnx.export(dynamo=True): "
    "a 2-D weight, int32 or int64 ids (what nn.Embedding takes; torch refuses others while exporting)",
    "one static export per signature (dtypes and shapes); later tables of that signature are set with "
    "ONNXProgram.apply_weights",
    "bags: nn.EmbeddingBag.from_pretrained(table, mode=..., include_last_offset=True) exported the same way, "
    "one export per (table, values, offsets, weights signature, mode, padding_idx); torch has no sqrtn combiner, "
    "per_sample_weights is documented for mode='sum' only",
)
_TF2ONNX_NOTES = (
    "tf2onnx: tf2onnx.convert.from_function of tf.function(tf.nn.embedding_lookup(params, ids)) with "
    "params and ids as inputs; ids int16, int32 or int64 (what TensorFlow's GatherV2 takes)",
    "one conversion per signature (dtypes and shapes)",
)
_RUNTIME_NOTES = {
    "onnxruntime": "onnxruntime.InferenceSession(providers=['CPUExecutionProvider']); bfloat16 crosses "
                   "as OrtValue bits (OrtValue.numpy() has no bfloat16)",
    "onnx.reference": "onnx.reference.ReferenceEvaluator: the ONNX specification's Python evaluator",
}
_DISTRIBUTIONS = {"torch.onnx": ("onnx", "onnxscript", "torch"), "tf2onnx": ("tf2onnx", "onnx", "tensorflow")}
_FRAMEWORK = {"onnxruntime": "onnxruntime", "onnx.reference": "onnx"}


def exporter_capabilities(exporter: str, distributions: tuple[str, ...], notes: tuple[str, ...]) -> Capabilities:
    if exporter == "torch.onnx":
        # combiners: nn.EmbeddingBag's modes (no sqrtn), weights with sum only, as
        # adapters/torch_bag_adapter declares for the eager module
        return Capabilities(table_dtypes=FLOAT_DTYPES, table_ndims=(2,), id_dtypes=("int32", "int64"),
                            combiners=("sum", "mean", "max"), weighted_combiners=("sum",),
                            distributions=distributions, notes=_TORCH_NOTES + notes)
    return Capabilities(table_dtypes=FLOAT_DTYPES, id_dtypes=("int16", "int32", "int64"),
                        distributions=distributions, notes=_TF2ONNX_NOTES + notes)


def _capabilities(runtime: str, exporter: str) -> Capabilities:
    dists = tuple(d for d in (_FRAMEWORK[runtime], *_DISTRIBUTIONS[exporter]) if d != _FRAMEWORK[runtime])
    return exporter_capabilities(exporter, dists, (_RUNTIME_NOTES[runtime],))


# --- exports, cached per signature -------------------------------------------------------

class Exports:
    """An exporter's models, one per signature. ``model(table, ids)`` returns the ONNX
    model for this table (and the feeds it takes), or raises the export's failure."""

    def __init__(self, exporter: str):
        self.exporter = exporter
        imports = ["import numpy as np", "import ml_dtypes", *EXPORT_IMPORTS[exporter]]
        self._export: Callable = load_source(HELPERS + EXPORTERS[exporter], imports)["export"]
        bag_ns = load_source(HELPERS + BAG_EXPORTER, imports) if exporter == "torch.onnx" else {}
        self._export_bags: Callable | None = bag_ns.get("export_bags")
        self._bag_feeds: Callable | None = bag_ns.get("bag_feeds")
        if exporter == "torch.onnx":
            import logging

            # fake tensors log the meta kernel's refusal of float ids (an export that fails
            # as InvalidIds, a result) with its whole traceback: ~700 lines a run
            logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
        self._to_torch = load_source(HELPERS, ["import numpy as np", "import ml_dtypes", "import torch"])[
            "to_torch"] if exporter == "torch.onnx" else None
        self._cache: dict[tuple, Any] = {}
        self.exports = 0  # exports made (failed ones included): one per signature
        self.seconds = 0.0  # time spent exporting

    def _program(self, key: tuple, export: Callable[[], Any], table: np.ndarray):
        """The cached export of ``key`` holding ``table`` (exported now if new), or the
        export's failure raised."""
        import time

        fresh = key not in self._cache
        if fresh:
            t0 = time.perf_counter()
            try:
                self._cache[key] = export()
            except Exception as exc:  # a failing export fails for every example of its signature
                self._cache[key] = exc
            self.exports += 1
            self.seconds += time.perf_counter() - t0
        program = self._cache[key]
        if isinstance(program, Exception):
            raise program
        if self.exporter == "torch.onnx" and not fresh:
            # the documented way of giving an exported program new weights
            program.apply_weights({"weight": self._to_torch(table)})
        return program

    def model(self, table: np.ndarray, ids: np.ndarray):
        key = (table.dtype.str, table.dtype.name, table.shape, ids.dtype.str, ids.shape)
        program = self._program(key, lambda: self._export(table, ids), table)
        if self.exporter == "torch.onnx":
            model = program.model_proto
            return model, {model.graph.input[0].name: ids}
        return program, {"params": table, "ids": ids}

    def bags(self, table, values, offsets, weights, combiner, padding_idx=None):
        """The exported nn.EmbeddingBag for this table and its feeds (torch.onnx only).
        The signature: dtypes and shapes of the table, values, offsets and weights (or
        none), the mode and the padding id, all static in the export; offsets, values and
        weights are the model's inputs, so only the table is set anew."""
        if self._export_bags is None:
            raise ValueError(f"{self.exporter} exports no bag")

        def sig(a):
            return None if a is None else (a.dtype.str, a.dtype.name, a.shape)

        key = ("bags", sig(table), sig(values), sig(offsets), sig(weights), combiner, padding_idx)
        program = self._program(key, lambda: self._export_bags(table, values, offsets, weights, combiner, padding_idx),
                                table)
        model = program.model_proto
        return model, self._bag_feeds(model, values, offsets, weights)


_SHARED: dict[str, Exports] = {}


def exports_for(exporter: str) -> Exports:
    """One cache per exporter and process: the onnxruntime and onnx.reference columns of an
    exporter share a worker, so each signature is exported once for both."""
    if exporter not in _SHARED:
        _SHARED[exporter] = Exports(exporter)
    return _SHARED[exporter]


class OnnxLookup:
    """One (runtime, exporter) column."""

    def __init__(self, runtime: str, exporter: str):
        self.runtime, self.exporter = runtime, exporter
        self.name = f"{runtime}[{exporter}]"
        self.framework = _FRAMEWORK[runtime]
        self.capabilities = _capabilities(runtime, exporter)
        self._exports = exports_for(exporter)
        self._run = load_source(RUNNERS[runtime], ["import numpy as np", "import ml_dtypes",
                                                   *RUNNER_IMPORTS[runtime]])["run"]
        if runtime == "onnxruntime":
            import onnxruntime

            # errors only (no log line per refused id: the exception says it); logging alone
            onnxruntime.set_default_logger_severity(3)

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        try:
            model, feeds = self._exports.model(table, ids)
            return np.asarray(self._run(model, feeds))
        except Exception as exc:
            raise translated(exc, ids) from None

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op != "lookup":
            raise ValueError(f"{self.name} has no operation {op!r}")
        return snippet_source(self.runtime, self.exporter, args)


class ExportedBags:
    """lookup_bags through nn.EmbeddingBag's torch.onnx export (``self._exports``), run
    by the column's runtime (``self._run``): shared by the ONNX and OpenVINO columns."""

    def _bags(self, table, values, offsets, weights, combiner, padding_idx=None) -> np.ndarray:
        try:
            model, feeds = self._exports.bags(table, values, offsets, weights, combiner, padding_idx)
            return np.asarray(self._run(model, feeds))
        except Exception as exc:
            raise translated(exc, values) from None

    def lookup_bags(self, table, values, offsets, weights, combiner):
        return self._bags(table, values, offsets, weights, combiner)

    def lookup_bags_padded(self, table, values, offsets, weights, combiner, padding_idx):
        return self._bags(table, values, offsets, weights, combiner, int(padding_idx))


class TorchOnnxLookup(ExportedBags, OnnxLookup):
    """A torch.onnx column: nn.Embedding's export for lookups, nn.EmbeddingBag's for bags."""

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op in ("lookup_bags", "lookup_bags_padded"):
            return bag_snippet_source(self.runtime, args, op == "lookup_bags_padded")
        return super().snippet(op, args)


_CLASSES = {"torch.onnx": TorchOnnxLookup, "tf2onnx": OnnxLookup}
_COLUMNS = {f"{r}[{e}]": (r, e) for r in ("onnxruntime", "onnx.reference") for e in ("torch.onnx", "tf2onnx")}


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing any framework."""
    runtime, exporter = _COLUMNS[name]
    return Description(methods_of(_CLASSES[exporter]), _capabilities(runtime, exporter))


def onnxruntime_torch() -> OnnxLookup:
    return TorchOnnxLookup("onnxruntime", "torch.onnx")


def reference_torch() -> OnnxLookup:
    return TorchOnnxLookup("onnx.reference", "torch.onnx")


def onnxruntime_tf2onnx() -> OnnxLookup:
    return OnnxLookup("onnxruntime", "tf2onnx")


def reference_tf2onnx() -> OnnxLookup:
    return OnnxLookup("onnx.reference", "tf2onnx")
