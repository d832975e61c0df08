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

OpenVINO is imported lazily: importing this module imports no framework.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from embedding_conformance.adapters.contract import Description, LookupFailure, methods_of
from embedding_conformance.adapters.onnx.exports import ExportedBags, bag_snippet_source, exporter_capabilities, exports_for, load_source, snippet_source, translated
from embedding_conformance.adapters.onnx.exports import classify as onnx_classify

RUNNERS = {
    "openvino": '''\
core = ov.Core()


def run(model, feeds):
    compiled = core.compile_model(core.read_model(io.BytesIO(model.SerializeToString())), "CPU")
    out = compiled(feeds)[compiled.output(0)]
    if compiled.output(0).get_element_type() == ov.Type.bf16:  # bfloat16 bits in a float16-typed array
        out = out.view(np.uint16).view(ml_dtypes.bfloat16)
    return np.asarray(out)
''',
}
RUNNER_IMPORTS = {"openvino": ["import io", "import openvino as ov"]}

CAPABILITIES = exporter_capabilities("torch.onnx", ("onnx", "onnxscript", "torch"), (
    "Core.read_model of the exported ONNX model (io.BytesIO), Core.compile_model(model, 'CPU') with "
    "the CPU plugin's default properties; the table is a constant of the compiled model",
))


def classify(exc: BaseException) -> LookupFailure | None:
    """The contract failure an exception of the export or of OpenVINO stands for."""
    return onnx_classify(exc)


_runner: dict[str, Any] = {}


def child_run(model, feeds) -> np.ndarray:
    """Runs in the child process: the very ``run`` a snippet prints."""
    run = _runner.get("run")
    if run is None:
        run = _runner["run"] = load_source(RUNNERS["openvino"], ["import numpy as np", "import ml_dtypes",
                                                                *RUNNER_IMPORTS["openvino"]])["run"]
    return run(model, feeds)


class OpenVinoLookup(ExportedBags):
    name = "openvino[torch.onnx]"
    framework = "openvino"
    capabilities = CAPABILITIES

    def __init__(self):
        from embedding_conformance.adapters.toolkit.isolation import Isolated

        # OpenVINO's CPU plugin kills its process with SIGFPE on some valid inputs: every
        # compile and run happens in a child process (adapters/toolkit/isolation.py), so the worker
        # it shares with the other torch.onnx columns (and their exports) survives it
        self._run = Isolated(__name__, "child_run", preload=("openvino",), label="OpenVINO (CPU plugin)")
        self._run.ready()
        self._exports = exports_for("torch.onnx")

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        try:
            model, feeds = self._exports.model(table, ids)
            return self._run(model, feeds)
        except Exception as exc:
            raise translated(exc, ids) from None

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op in ("lookup_bags", "lookup_bags_padded"):
            return bag_snippet_source("openvino", args, op == "lookup_bags_padded", RUNNERS, RUNNER_IMPORTS)
        if op != "lookup":
            raise ValueError(f"{self.name} has no operation {op!r}")
        return snippet_source("openvino", "torch.onnx", args, RUNNERS, RUNNER_IMPORTS)


def describe(name: str) -> Description:
    return Description(methods_of(OpenVinoLookup), CAPABILITIES)


def openvino_torch() -> OpenVinoLookup:
    return OpenVinoLookup()
