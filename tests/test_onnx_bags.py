"""The torch.onnx columns' bags (nn.EmbeddingBag exported with torch.onnx.export(dynamo=True)):
the cached export (new tables through ONNXProgram.apply_weights) is the model a fresh export
gives, a snippet reproduces the adapter's bits in a fresh process, and each departure declared
in adapters/onnx/declarations.toml shows on the minimal input its note names (observed with
torch 2.13.0, onnxscript 0.7.2, onnx 1.23.2, onnxruntime 1.31.1, openvino 2026.4.1)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embedding_conformance.adapters.spec import oracle
from embedding_conformance.adapters.contract import LookupFailure, OutOfRange

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("torch", "onnx", "onnxscript", "onnxruntime")),
    reason="needs torch.onnx and onnxruntime")

I64 = np.int64


def _bits(a: np.ndarray) -> list[int]:
    return a.view(f"u{a.itemsize}").ravel().tolist()


@pytest.fixture(scope="module")
def columns():
    from embedding_conformance.adapters.onnx import exports as onnx_adapter

    return {"onnxruntime": onnx_adapter.onnxruntime_torch(), "onnx.reference": onnx_adapter.reference_torch()}


def test_a_cached_bag_export_is_the_model_a_fresh_export_gives():
    from embedding_conformance.adapters.onnx import exports as onnx_adapter

    exports = onnx_adapter.Exports("torch.onnx")
    rng = np.random.default_rng(0)
    values, offsets = np.array([0, 2, 1], I64), np.array([0, 2, 3], I64)
    weights = np.ones(3, np.float32)
    for _ in range(2):  # the first export, then a table set by apply_weights
        table = rng.standard_normal((3, 2)).astype(np.float32)
        cached, feeds = exports.bags(table, values, offsets, weights, "sum")
        fresh = onnx_adapter.Exports("torch.onnx").bags(table, values, offsets, weights, "sum")[0]
        assert cached.SerializeToString() == fresh.SerializeToString()
        assert [f.name for f in cached.graph.input] == list(feeds)  # input, offsets, per_sample_weights
    assert exports.exports == 1  # one per signature


def test_a_bag_snippet_reproduces_the_adapter_standalone(columns, tmp_path):
    from embedding_conformance.suites.source import args_source

    table = np.array([[1.5, -0.0], [2.25, 3.0], [4.0, 0.5]], dtype=np.float32)
    args = {"table": table, "values": np.array([2, 0, 1], I64), "offsets": np.array([0, 0, 2, 3], I64),
            "weights": None, "combiner": "max"}
    adapter = columns["onnxruntime"]
    want = adapter.lookup_bags(**args)
    assert want.tolist() == [[0.0, 0.0], [4.0, 0.5], [2.25, 3.0]]
    code = adapter.snippet("lookup_bags", args_source(args))
    code += "\nimport sys\nsys.stdout.write('BITS ' + out.tobytes().hex() + '\\n')\n"
    (tmp_path / "snippet.py").write_text(code)
    proc = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bits = next(ln[5:] for ln in proc.stdout.splitlines() if ln.startswith("BITS "))
    assert bits == want.tobytes().hex()


@pytest.mark.parametrize("runtime", ["onnxruntime", "onnx.reference"])
def test_a_float64_table_is_pooled_in_float32(columns, runtime):
    # adapters/onnx/declarations.toml: torchlib casts the gathered rows to FLOAT (onnxruntime#16846)
    table = np.array([[1 / 3]], dtype=np.float64)
    for combiner in ("sum", "mean", "max"):
        out = columns[runtime].lookup_bags(table, np.array([0], I64), np.array([0, 1], I64), None, combiner)
        assert out.dtype == np.float64 and _bits(out) == [0x3FD5555560000000]


@pytest.mark.parametrize("runtime", ["onnxruntime", "onnx.reference"])
def test_no_bags_offsets_unchecked_ids_wrap(columns, runtime):
    bag, table = columns[runtime].lookup_bags, np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    with pytest.raises(LookupFailure):  # no bags: ConcatFromSequence of an empty sequence
        bag(table, np.zeros(0, I64), np.array([0], I64), None, "sum")
    # offsets not starting at 0: bag 0 is Slice(rows, 1, 1), a zero row
    assert bag(table, np.array([0], I64), np.array([1, 1], I64), None, "sum").tolist() == [[0.0, 0.0]]
    # ONNX Gather counts -1 from the back; -3 is out of range
    assert bag(table, np.array([-1], I64), np.array([0, 1], I64), None, "sum").tolist() == [[3.0, 4.0]]
    with pytest.raises(OutOfRange):
        bag(table, np.array([-3], I64), np.array([0, 1], I64), None, "sum")
    # padding_idx with int32 values: an invalid model
    with pytest.raises(LookupFailure):
        columns[runtime].lookup_bags_padded(table, np.array([0], np.int32), np.array([0, 1], I64), None, "sum", 0)


def test_onnxruntime_refuses_bfloat16_bags_as_its_declared_model_says(columns):
    import ml_dtypes

    table, values, offsets = np.zeros((1, 1), ml_dtypes.bfloat16), np.array([1, 0], I64), np.array([0, 0, 0, 2], I64)
    with pytest.raises(LookupFailure) as got:
        columns["onnxruntime"].lookup_bags(table, values, offsets, None, "max")
    assert type(got.value) is LookupFailure  # no kind: the session is refused before an id is read
    from embedding_conformance.adapters.spec import bags

    with pytest.raises(LookupFailure) as model:
        bags.lookup_bags(table, values, offsets, None, "max", ["onnxruntime_refuses_bfloat16"])
    assert type(model.value) is LookupFailure
    assert "onnxruntime_refuses_bfloat16" in oracle.MODELS
    # onnx.reference pools the same bfloat16 table
    assert columns["onnx.reference"].lookup_bags(table, np.array([0], I64), np.array([0, 1], I64), None,
                                                 "max").tolist() == [[0.0]]


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs openvino")
def test_openvino_cannot_read_the_exported_bag():
    # in a process of its own: the adapter forks its OpenVINO child, which must happen
    # before torch starts its threads (adapters/toolkit/isolation.py), as in a suite worker
    code = textwrap.dedent("""
        import numpy as np
        from embedding_conformance.adapters.openvino import cpu_plugin as openvino_adapter
        from embedding_conformance.adapters.contract import LookupFailure
        adapter = openvino_adapter.openvino_torch()
        table = np.arange(8, dtype=np.float32).reshape(4, 2)
        values, offsets = np.array([0, 1, 2, 3, 1]), np.array([0, 2, 2, 5])
        try:
            adapter.lookup_bags(table, values, offsets, None, "sum")
        except LookupFailure as exc:
            print("FAILED", type(exc).__name__, exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FAILED LookupFailure" in proc.stdout and "Model wasn't fully converted" in proc.stdout, proc.stdout
