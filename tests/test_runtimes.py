"""The deployment-runtime adapters (ONNX, OpenVINO, MLX, array_api_strict, numpy.take):
their modules import no framework, each built adapter matches its static description,
a framework that kills its process is a result and not the end of the worker, and the
cached torch.onnx export (new tables through ONNXProgram.apply_weights) runs the model a
fresh export gives."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from adapters import registry
from adapters.isolation import Isolated, ProcessKilled
from tests.runner import ROOT

RUNTIME_MODULES = ("adapters.onnx_adapter", "adapters.openvino_adapter", "adapters.mlx_adapter",
                   "adapters.array_api_adapter", "adapters.numpy_take_adapter", "adapters.isolation")
FRAMEWORKS = ("torch", "tensorflow", "onnx", "onnxruntime", "onnxscript", "openvino", "mlx", "array_api_strict",
              "tf2onnx", "keras", "jax")
RUNTIME_BUILTINS = [b for b in registry.BUILTINS if b.factory.partition(":")[0] in RUNTIME_MODULES]


def test_importing_the_runtime_adapter_modules_imports_no_framework():
    code = textwrap.dedent(f"""
        import sys
        for name in {RUNTIME_MODULES!r}:
            __import__(name)
        from adapters import registry
        for b in registry.BUILTINS:
            b.describe()
        print("LOADED", sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout


@pytest.mark.parametrize("builtin", RUNTIME_BUILTINS, ids=lambda b: b.name)
def test_each_runtime_adapter_matches_its_description(builtin):
    if builtin.missing():
        pytest.skip(builtin.missing())
    adapter = registry.load_object(builtin.factory)
    assert adapter.name == builtin.name and adapter.framework == builtin.framework
    assert builtin.describe().mismatch(adapter) is None


def test_every_runtime_builtin_is_in_a_worker_group_of_its_own_framework():
    groups = {b.name: b.group for b in RUNTIME_BUILTINS}
    assert groups["numpy.take"] is None  # NumPy only, like the oracle's own column
    heavy = {g for n, g in groups.items() if n != "numpy.take"}
    assert heavy == {"onnx", "tf2onnx", "openvino", "mlx", "array_api_strict"}
    existing = {b.group for b in registry.BUILTINS if b not in RUNTIME_BUILTINS}
    assert not heavy & existing


def test_a_missing_runtime_names_its_own_distribution():
    mlx = registry.BY_NAME["mlx.core.take"]
    fake = registry.Builtin(mlx.name, mlx.factory, ("not_an_installed_framework_xyz",), ("not-an-installed-framework-xyz",),
                            "x")
    assert "pip install not-an-installed-framework-xyz" in fake.missing()
    onnx = registry.BY_NAME["onnxruntime[torch.onnx]"]
    assert set(onnx.imports) >= {"onnx", "onnxscript", "onnxruntime", "torch"}


# --- a framework that kills its process ------------------------------------------------------

def dies(how: str) -> str:
    if how == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how == "raise":
        raise ValueError("a framework error")
    return how


def test_a_call_that_kills_its_child_is_process_killed_and_the_next_call_runs():
    call = Isolated(__name__, "dies", label="dies")
    try:
        assert call("fine") == "fine"
        with pytest.raises(ProcessKilled, match="dies killed its process: signal 11"):
            call("segv")
        with pytest.raises(ValueError, match="a framework error"):
            call("raise")
        assert call("again") == "again" and call.restarts == 1
    finally:
        call.close()


def test_a_child_whose_framework_does_not_import_is_an_import_error():
    call = Isolated(__name__, "dies", preload=("not_an_installed_framework_xyz",))
    with pytest.raises(ImportError, match="not_an_installed_framework_xyz"):
        call.ready()


# --- the cached torch.onnx export ---------------------------------------------------------------

def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.mark.skipif(not _have("torch", "onnx", "onnxscript", "onnxruntime"), reason="needs torch.onnx and onnxruntime")
def test_apply_weights_gives_the_model_a_fresh_export_gives():
    import ml_dtypes

    from adapters import onnx_adapter

    exports = onnx_adapter.Exports("torch.onnx")
    rng = np.random.default_rng(0)
    ids = np.array([[0, 2], [-1, 1]], dtype=np.int64)
    for dtype in (np.float32, ml_dtypes.bfloat16):
        for _ in range(2):  # the first export, then a table set by apply_weights
            table = rng.standard_normal((3, 2)).astype(dtype)
            cached, feeds = exports.model(table, ids)
            fresh = onnx_adapter.Exports("torch.onnx").model(table, ids)[0]
            assert cached.SerializeToString() == fresh.SerializeToString()
    assert exports.exports == 2  # one per signature
