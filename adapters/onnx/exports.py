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
them, as adapters/torch/embedding_bag.ModuleBag does); values, offsets and weights are
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
program new weights) instead of exporting again; a snippet exports afresh. Every
call is written once, as source (adapters/onnx/source.py): the adapter executes the
very texts a snippet prints, ``export`` standing for the cache there.

Every framework is imported lazily: importing this module imports none.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, Description, FLOAT_DTYPES, LookupFailure, OutOfRange, methods_of
from embedding_conformance.adapters.onnx.source import CALLS, EXPORTERS, RUNNERS, TAIL, printed_source, runtime_source
from embedding_conformance.adapters.toolkit.source import Source

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
        # adapters/torch/embedding_bag.py declares for the eager module
        return Capabilities(table_dtypes=FLOAT_DTYPES, table_ndims=(2,), id_dtypes=("int32", "int64"),
                            combiners=("sum", "mean", "max"), weighted_combiners=("sum",),
                            distributions=distributions, notes=_TORCH_NOTES + notes)
    return Capabilities(table_dtypes=FLOAT_DTYPES, id_dtypes=("int16", "int32", "int64"),
                        distributions=distributions, notes=_TF2ONNX_NOTES + notes)


def _capabilities(runtime: str, exporter: str) -> Capabilities:
    dists = tuple(d for d in (_FRAMEWORK[runtime], *_DISTRIBUTIONS[exporter]) if d != _FRAMEWORK[runtime])
    return exporter_capabilities(exporter, dists, (_RUNTIME_NOTES[runtime],))


# --- exports, cached per signature -------------------------------------------------------

# how a cached torch.onnx program gets a later example's table: the documented way of giving
# an exported program new weights
_APPLY_WEIGHTS = 'program.apply_weights({"weight": to_torch(table, copy=True)})'


def _model_and_feeds(model, feeds):
    """``run`` for a call text whose model and feeds are wanted, not its output."""
    return model, feeds


class Exports:
    """An exporter's models, one per signature, and its call texts (adapters/onnx/source.py)
    executed with them: ``export``/``export_bags`` stand for the cache there."""

    def __init__(self, exporter: str):
        self.exporter = exporter
        self.source = EXPORTERS[exporter]
        self.source.base()  # the exporter's frameworks are imported with the adapter
        if exporter == "torch.onnx":
            import logging

            # fake tensors log the meta kernel's refusal of float ids (an export that fails
            # as InvalidIds, a result) with its whole traceback: ~700 lines a run
            logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
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
            self.source.run(_APPLY_WEIGHTS, program=program, table=table)
        return program

    def export(self, table: np.ndarray, ids: np.ndarray):
        """The prelude's ``export(table, ids)``, made once per signature (dtypes and shapes:
        the export is static, the exporter's default)."""
        key = (table.dtype.str, table.dtype.name, table.shape, ids.dtype.str, ids.shape)
        return self._program(key, lambda: self.source.helper("export")(table, ids), table)

    def export_bags(self, table, values, offsets, weights, combiner, padding_idx=None):
        """The prelude's ``export_bags``, made once per signature: dtypes and shapes of the
        table, values, offsets and weights (or none), the mode and the padding id, all static
        in the export; offsets, values and weights are the model's inputs, so only the table
        is set anew."""
        def sig(a):
            return None if a is None else (a.dtype.str, a.dtype.name, a.shape)

        key = ("bags", sig(table), sig(values), sig(offsets), sig(weights), combiner, padding_idx)
        return self._program(key, lambda: self.source.helper("export_bags")(
            table, values, offsets, weights, combiner, padding_idx), table)

    def call(self, op: str, run: Callable, **names: Any) -> Any:
        """Execute ``op``'s call text with the cached exports and the column's ``run``: its ``out``."""
        lines = CALLS[self.exporter].get(op)
        if lines is None:
            raise ValueError(f"{self.exporter} exports no {op}")
        return self.source.run(lines, export=self.export, export_bags=self.export_bags, run=run, **names)["out"]

    def model(self, table: np.ndarray, ids: np.ndarray):
        """The ONNX model the lookup's call text runs for this table, and its feeds."""
        return self.call("lookup", _model_and_feeds, table=table, ids=ids)

    def bags(self, table, values, offsets, weights, combiner, padding_idx=None):
        """The exported nn.EmbeddingBag the bag's call text runs for this table, and its feeds."""
        op, pad = ("lookup_bags", {}) if padding_idx is None else ("lookup_bags_padded", {"padding_idx": padding_idx})
        return self.call(op, _model_and_feeds, table=table, values=values, offsets=offsets, weights=weights,
                         combiner=combiner, **pad)


_SHARED: dict[str, Exports] = {}


def exports_for(exporter: str) -> Exports:
    """One cache per exporter and process: the onnxruntime and onnx.reference columns of an
    exporter share a worker, so each signature is exported once for both."""
    if exporter not in _SHARED:
        _SHARED[exporter] = Exports(exporter)
    return _SHARED[exporter]


class ExportedColumn:
    """A column of an exporter's model run by a runtime: ``exporter``, ``_exports`` (its
    cache), ``_run`` (the runtime's ``run``) and ``_printed`` (the Source its snippets are
    printed with) are the subclass's. Shared by the ONNX and OpenVINO columns."""

    exporter: str
    name: str

    def _call(self, op: str, ids: np.ndarray, /, **names: Any) -> np.ndarray:
        """``op``'s call text run with ``names``; a failure read against ``ids`` (the lookup's ids,
        the bag's values)."""
        try:
            return np.asarray(self._exports.call(op, self._run, **names))
        except Exception as exc:
            raise translated(exc, ids) from None

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self._call("lookup", ids, table=table, ids=ids)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        """The exporter's prelude, the runtime's ``run``, the call text: it exports afresh."""
        if op not in CALLS[self.exporter]:
            raise ValueError(f"{self.name} has no operation {op!r}")
        return self._printed.snippet(args, CALLS[self.exporter][op], TAIL)


class ExportedBags:
    """lookup_bags through nn.EmbeddingBag's torch.onnx export, for an ExportedColumn."""

    def lookup_bags(self, table, values, offsets, weights, combiner):
        return self._call("lookup_bags", values, table=table, values=values, offsets=offsets, weights=weights,
                          combiner=combiner)

    def lookup_bags_padded(self, table, values, offsets, weights, combiner, padding_idx):
        return self._call("lookup_bags_padded", values, table=table, values=values, offsets=offsets, weights=weights,
                          combiner=combiner, padding_idx=int(padding_idx))


_RUNTIMES: dict[str, Source] = {}


def _runtime(name: str) -> Source:
    """One Source per runtime and process (each compiles its texts once)."""
    if name not in _RUNTIMES:
        _RUNTIMES[name] = runtime_source(name, RUNNERS[name])
    return _RUNTIMES[name]


class OnnxLookup(ExportedColumn):
    """One (runtime, exporter) column."""

    def __init__(self, runtime: str, exporter: str):
        self.runtime, self.exporter = runtime, exporter
        self.name = f"{runtime}[{exporter}]"
        self.framework = _FRAMEWORK[runtime]
        self.capabilities = _capabilities(runtime, exporter)
        self._exports = exports_for(exporter)
        self._run = _runtime(runtime).helper("run")  # imports the runtime now
        self._printed = printed_source(exporter, self.name, RUNNERS[runtime])
        if runtime == "onnxruntime":
            import onnxruntime

            # errors only (no log line per refused id: the exception says it); logging alone
            onnxruntime.set_default_logger_severity(3)


class TorchOnnxLookup(ExportedBags, OnnxLookup):
    """A torch.onnx column: nn.Embedding's export for lookups, nn.EmbeddingBag's for bags."""


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
