"""OpenVINO adapter: ``openvino[torch.onnx]``, the ONNX model that torch.onnx exports
from ``nn.Embedding`` (adapters/onnx/exports.py: the same export, cached per
signature, new tables set with ``ONNXProgram.apply_weights``), read with
``Core.read_model`` (the model's bytes in an ``io.BytesIO``, which OpenVINO's docs
name as a model source; ``openvino.convert_model`` of the same takes 0.1-0.2 s a
call against 3-7 ms), compiled for the CPU plugin with
``Core.compile_model(model, "CPU")`` and run. The table is a constant of the
compiled model, as in a deployed one.

Bags (``lookup_bags``, ``lookup_bags_padded``) run the torch.onnx export of
``nn.EmbeddingBag`` (adapters/onnx/exports.py: ``export_bags``, cached per signature
as well) the same way.

The output arrives as a NumPy array; a bfloat16 output arrives in an array typed
float16 holding bfloat16 bits (NumPy has no bfloat16), which is read as
ml_dtypes.bfloat16, bits unchanged.

The calls are the torch.onnx call texts (adapters/onnx/source.py), run here with the cached
exports and ``run`` bound to the child's, which runs the ``run`` of ``RUNNERS`` below: a
snippet prints the torch.onnx prelude, that ``run`` and the same texts.

OpenVINO is imported lazily: importing this module imports no framework.
"""
from __future__ import annotations

from embedding_conformance.adapters.contract import Call, Description, LookupFailure, methods_of
from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.onnx.exports import ExportedBags, ExportedColumn, exporter_capabilities, exports_for
from embedding_conformance.adapters.onnx.exports import classify as onnx_classify
from embedding_conformance.adapters.onnx.source import printed_source, runtime_source

_RUNNER = '''\
import io
import openvino as ov

core = ov.Core()
CONFIG = {config}


def run(model, feeds):
    compiled = core.compile_model(core.read_model(io.BytesIO(model.SerializeToString())), "CPU", CONFIG)
    out = compiled(feeds)[compiled.output(0)]
    if compiled.output(0).get_element_type() == ov.Type.bf16:  # bfloat16 bits in a float16-typed array
        out = out.view(np.uint16).view(ml_dtypes.bfloat16)
    return np.asarray(out)
'''
# the CPU plugin's properties: its defaults, as users get it, and its documented f32 precision hint
# ("To infer the model in f32 precision instead of half-precision on targets with native
# half-precision support, set the ov::hint::inference_precision to ov::element::f32")
CONFIGS = {"openvino": {}, "openvino[f32]": {"INFERENCE_PRECISION_HINT": "f32"}}
RUNNERS = {key: _RUNNER.format(config=repr(config)) for key, config in CONFIGS.items()}
# what the child runs ``run`` with (each CONFIG's Core made once per child); snippets
# print the torch.onnx prelude and the same ``run``
SOURCES = {key: runtime_source(key, runner) for key, runner in RUNNERS.items()}

CAPABILITIES = exporter_capabilities("torch.onnx", ("onnx", "onnxscript", "torch"), (
    "Core.read_model of the exported ONNX model (io.BytesIO), Core.compile_model(model, 'CPU') with "
    "the CPU plugin's default properties; the table is a constant of the compiled model",
))


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure an exception of the export or of OpenVINO stands for."""
    return onnx_classify(exc, call)


def child(op: str, key: str, *args):
    """Runs in the child process: the column's ``run`` (the very ``run`` a snippet prints) or
    ``facts``."""
    if op == "facts":
        return child_facts(CONFIGS[key])
    return SOURCES[key].helper("run")(*args)


def child_facts(config: dict) -> dict[str, int | str]:
    """What the CPU plugin decides by the machine: the inference precision it resolves for these
    properties (read from a compiled probe: the plugin-wide property is resolved only at
    compile time), and whether it holds bfloat16 / float16 constants natively (its capabilities:
    BF16, or WINOGRAD for AVX-512, mean native bfloat16; FP16 native float16)."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    caps = set(core.get_property("CPU", props.device.capabilities))
    p = ov.opset13.parameter([1], ov.Type.f32)
    probe = core.compile_model(ov.Model([ov.opset13.relu(p)], [p]), "CPU", config)
    return {"openvino.inference_precision": probe.get_property(hints.inference_precision).get_type_name(),
            "openvino.bf16_native": int(bool(caps & {"BF16", "WINOGRAD"})),
            "openvino.f16_native": int("FP16" in caps), **cpu.facts()}


class OpenVinoLookup(ExportedBags, ExportedColumn):
    name = "openvino[torch.onnx]"
    framework = "openvino"
    capabilities = CAPABILITIES
    exporter = "torch.onnx"
    runner = "openvino"

    def __init__(self):
        from embedding_conformance.adapters.toolkit.isolation import Isolated

        # OpenVINO's CPU plugin kills its process with SIGFPE on some valid inputs: every
        # compile and run happens in a child process (adapters/toolkit/isolation.py), so the worker
        # it shares with the other torch.onnx columns (and their exports) survives it
        self._child = Isolated(__name__, "child", preload=("openvino",), label="OpenVINO (CPU plugin)")
        self._child.ready()
        self._exports = exports_for("torch.onnx")
        self._printed = printed_source("torch.onnx", self.name, RUNNERS[self.runner])
        self._facts: dict | None = None

    def _run(self, model, feeds):
        # ``run`` as the call texts see it here: the child's
        return self._child("run", self.runner, model, feeds)

    def environment(self) -> dict[str, int | str]:
        if self._facts is None:
            self._facts = self._child("facts", self.runner)
        return self._facts


class OpenVinoLookupF32(OpenVinoLookup):
    """The same with the CPU plugin's documented f32 inference precision hint."""

    name = "openvino[torch.onnx][f32]"
    runner = "openvino[f32]"


def describe(name: str) -> Description:
    return Description(methods_of(OpenVinoLookup), CAPABILITIES)


def openvino_torch() -> OpenVinoLookup:
    return OpenVinoLookup()


def openvino_torch_f32() -> OpenVinoLookupF32:
    return OpenVinoLookupF32()
