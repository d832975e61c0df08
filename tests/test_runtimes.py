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
import tomllib

import numpy as np
import pytest

from embedding_conformance.adapters import registry
from embedding_conformance.adapters.toolkit.isolation import Isolated, ProcessKilled
from tests.runner import ROOT

RUNTIME_MODULES = ("embedding_conformance.adapters.onnx.exports", "embedding_conformance.adapters.openvino.cpu_plugin", "embedding_conformance.adapters.mlx.take",
                   "embedding_conformance.adapters.array_api.take", "embedding_conformance.adapters.numpy.take", "embedding_conformance.adapters.toolkit.isolation")
FRAMEWORKS = ("torch", "tensorflow", "onnx", "onnxruntime", "onnxscript", "openvino", "mlx", "array_api_strict",
              "tf2onnx", "keras", "jax")
RUNTIME_BUILTINS = [b for b in registry.BUILTINS if b.factory.partition(":")[0] in RUNTIME_MODULES]


def test_importing_the_runtime_adapter_modules_imports_no_framework():
    code = textwrap.dedent(f"""
        import sys
        for name in {RUNTIME_MODULES!r}:
            __import__(name)
        from embedding_conformance.adapters import registry
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
    # OpenVINO shares the onnx worker's exports; its own calls run in a child process
    assert heavy == {"onnx", "tf2onnx", "mlx", "array_api_strict"}
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

    from embedding_conformance.adapters.onnx import exports as onnx_adapter

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


# --- the behaviour models the runtime columns are declared with: golden cases ----------------
# Each expected bit pattern is what the framework returned on this input (observed with
# openvino 2026.4.1, numpy 1.26.4 / 2.0.2 / 2.4.6, array-api-strict 2.6.1).

from embedding_conformance.adapters.spec import oracle  # noqa: E402
from embedding_conformance.adapters.contract import InvalidIds, LookupFailure  # noqa: E402


def _bits_table(dtype_name: str, bits: list[int]) -> np.ndarray:
    import ml_dtypes

    dtype = np.dtype(ml_dtypes.bfloat16) if dtype_name == "bfloat16" else np.dtype(dtype_name)
    return np.array(bits, dtype=f"u{dtype.itemsize}").view(dtype).reshape(-1, 1)


OPENVINO_CONSTANTS = [
    # a float32 / bfloat16 constant is flushed only when it holds a subnormal
    ("float32", [0x80000000, 0x3F800000], [0x80000000, 0x3F800000]),
    ("float32", [0x80000000, 0x00000001], [0x0, 0x0]),
    ("float32", [0x1, 0x7F800001, 0x807FFFFF, 0x7FC00005], [0x0, 0x7F800001, 0x0, 0x7FC00005]),
    ("bfloat16", [0x8000, 0x3F80], [0x8000, 0x3F80]),
    ("bfloat16", [0x1, 0x7F81, 0x807F, 0x7FC5], [0x0, 0x7F81, 0x0, 0x7FC5]),
    # float16 passes through float32: signalling NaNs come back quiet, subnormals stay
    ("float16", [0x8000, 0x0001, 0x7D00, 0x7C01, 0xFC01], [0x8000, 0x0001, 0x7F00, 0x7E01, 0xFE01]),
    # float64 through float32: clamped (infinities too), rounded, NaNs quieted, then flushed
    ("float64", [0x8000000000000000, 0x3FF0000000000000], [0x8000000000000000, 0x3FF0000000000000]),
    ("float64", [0x7FF4000000000000, 0xFFF7FFFF00000000, 0x8000000000000001],
     [0x7FFC000000000000, 0xFFFFFFFF00000000, 0x8000000000000000]),
    ("float64", [0x8000000000000000, 0x7E37E43C8800759C, 0xFE37E43C8800759C, 0x7FF0000000000000,
                 0xFFF0000000000001, 0x380FFFFFFFFFFFFF, 0x3690000000000000, 0x36A0000000000001,
                 0x47EFFFFFEFFFFFFF, 0x47EFFFFFF0000000, 0x8000000000000001, 0x3FD5555555555555],
     [0x0, 0x47EFFFFFE0000000, 0xC7EFFFFFE0000000, 0x47EFFFFFE0000000, 0xFFF8000000000000,
      0x3810000000000000, 0x0, 0x0, 0x47EFFFFFE0000000, 0x47EFFFFFE0000000, 0x0, 0x3FD5555560000000]),
]


# the constant steps as the CPU plugin takes them on a machine with f32 inference precision and no
# native bfloat16 (adapters/openvino/steps.py)
OPENVINO_CONSTANT_STEPS = ["openvino_f64_constants_via_f32", "openvino_f32_constants_flushed",
                           "openvino_bf16_constants_widened", "openvino_f16_constants_widened"]


@pytest.mark.parametrize("dtype_name,given,returned", OPENVINO_CONSTANTS)
def test_openvino_cpu_constants_is_what_the_cpu_plugin_returned(dtype_name, given, returned):
    table = _bits_table(dtype_name, given)
    out = oracle.lookup(table, np.arange(len(given)), OPENVINO_CONSTANT_STEPS)
    assert out.view(f"u{out.itemsize}").ravel().tolist() == returned


def _declared_openvino_model():
    # what this machine's CPU plugin does (f32 inference precision, no native bfloat16)
    with open(ROOT / "adapters" / "openvino" / "declarations.toml", "rb") as fh:
        entries = tomllib.load(fh)["divergence"]
    return [m for e in entries if "when" not in e for m in e["model"]] + ["openvino_bf16_constants_widened"]


def test_openvino_ids_run_as_int32_and_out_of_range_rows_are_zero():
    table = np.arange(6, dtype=np.float32).reshape(3, 2)
    model = _declared_openvino_model()
    ids = np.array([2**32, 2**32 + 2, -(2**32) - 1, 2**31, 2**63 - 1])
    assert oracle.lookup(table, ids, model).tolist() == [[0, 1], [4, 5], [4, 5], [0, 0], [4, 5]]
    with pytest.raises(LookupFailure):
        oracle.lookup(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), model)


def test_openvino_one_id_on_a_one_row_table_is_the_table():
    # what OpenVINO 2026.4.1 returned: its EliminateGather pass drops the Gather
    table, model = np.array([[1.0, 2.0, 3.0]], dtype=np.float32), _declared_openvino_model()
    assert oracle.lookup(table, np.array([7]), model).tolist() == [[1, 2, 3]]
    assert oracle.lookup(table, np.array([2**32 + 3]), model).tolist() == [[1, 2, 3]]
    assert oracle.lookup(table, np.array([7, 7]), model).tolist() == [[0, 0, 0], [0, 0, 0]]
    assert oracle.lookup(table, np.array([[7]]), model).tolist() == [[[0, 0, 0]]]
    assert oracle.lookup(table, np.array(7), model).tolist() == [0, 0, 0]


def test_numpy_take_models_follow_each_numpy():
    table = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    wide = np.array([2**64 - 1], dtype=np.uint64)
    assert oracle.lookup(table, wide, ["bool_as_int", "uint64_as_int64", "wrap_negative"]).tolist() == [[2, 3]]
    with pytest.raises(InvalidIds):
        oracle.lookup(table, np.array([0], dtype=np.uint64), ["uint64_ids_refused"])
    by_value = ["uint64_ids_refused_by_value", "bool_as_int", "wrap_negative"]
    assert oracle.lookup(table, np.array(1, dtype=np.uint64), by_value).tolist() == [2, 3]
    for refused in (np.array(2**63, dtype=np.uint64), np.array([1], dtype=np.uint64)):
        with pytest.raises(InvalidIds):
            oracle.lookup(table, refused, by_value)


def test_array_api_take_takes_one_dimensional_ids_only():
    table = np.array([[0.0], [1.0]], dtype=np.float64)
    model = ["ids_rank_one", "uint64_as_int64", "wrap_negative"]
    assert oracle.lookup(table, np.array([-1, 0]), model).tolist() == [[1.0], [0.0]]
    for ids in (np.array(0), np.zeros((1, 1), np.int64)):
        with pytest.raises(InvalidIds):
            oracle.lookup(table, ids, model)


def test_tf2onnx_onnxruntime_refuses_bfloat16_tables_and_int16_ids():
    import ml_dtypes

    model = ["tf2onnx_onnxruntime_refuses", "wrap_negative"]
    with pytest.raises(LookupFailure):
        oracle.lookup(np.zeros((2, 1), ml_dtypes.bfloat16), np.array([0], np.int32), model)
    with pytest.raises(LookupFailure):
        oracle.lookup(np.zeros((2, 1), np.float32), np.array([0], np.int16), model)
    # int8 ids are not the model's: TensorFlow refuses them while converting, and ids.dtypes
    # expects InvalidIds for every dtype the adapter does not declare, model or not
    assert oracle.lookup(np.zeros((2, 1), ml_dtypes.bfloat16), np.array([0], np.int8), model).shape == (1, 1)
    assert oracle.lookup(np.array([[1.0], [2.0]], np.float32), np.array([-1]), model).tolist() == [[2.0]]
