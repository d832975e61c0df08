"""Findings and the porting view: ``python -m reports findings`` writes one upstream-ready
report per behaviour (a declaration, with every clause and column it shows in), each repro
asserting its departure and replayed first; FINDINGS.md, a short index, lists every
behaviour by what it is worth and holds the repros of those worth filing, which still
reproduce; ``python -m reports compare`` runs both adapters and shows where they differ,
with an input that tests the clause."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from embedding_conformance.reports.findings import (DOCUMENTED, FROM_SOURCE, KNOWN, UNDECLARED, category_of,
                                                    read_summary, repro, trim)
from embedding_conformance.reports.replay import judge, replay
from tests.conftest import SCORES
from tests.runner import ROOT, run_suite

FINDINGS = ROOT / "FINDINGS.md"


def _cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reports", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory):
    """The oracle and NumPy's own indexing (which wraps negative ids, declared): a run with
    departures, repros that replay without any framework."""
    out = tmp_path_factory.mktemp("run")
    proc, records = run_suite("--adapters=numpy,numpy.take", report_dir=out)
    assert records, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, records


def _behaviours(records) -> set:
    """The declarations the run's departures show, one per behaviour."""
    out = set()
    for r in records:
        if r["status"] in ("diverges", "violates") and r.get("example"):
            d = r.get("acknowledged") or r.get("divergence")
            out.add((d or {}).get("source") or f"undeclared:{r['framework']}:{r['clause']}")
    return out


def test_findings_writes_one_replayed_report_per_behaviour(numpy_run, tmp_path):
    out, records = numpy_run
    proc = _cli("findings", str(out), "--out", str(tmp_path / "f"), "--summary", str(tmp_path / "F.md"))
    assert proc.returncode == 0, proc.stderr
    # progress on stderr while it works
    assert "findings: reading" in proc.stderr and "replayed 1/1 repros" in proc.stderr, proc.stderr
    written = [p for p in sorted((tmp_path / "f").glob("*.md")) if p.name != "README.md"]
    assert len(written) == len(_behaviours(records)) == 1  # numpy.take's one declaration, on 5 clauses
    text = written[0].read_text()
    for part in ("# numpy.take", "## Minimal reproduction", "```python", "**Expected**", "**Actual**",
                 "## What it contradicts", "## Known upstream", "**What it is worth**", "**Shows in**"):
        assert part in text, part
    shows = [r["clause"] for r in records if r["adapter"] == "numpy.take" and r["status"] == "diverges"]
    assert len(shows) > 1 and all(f"`{c}`" in text for c in shows)  # one report, every clause it shows in
    assert "replayed in a fresh process, and reproduced" in text
    assert "Versions" in text and "numpy 2" in text
    index = (tmp_path / "F.md").read_text()
    assert len(index) < 300_000 and read_summary(index)


def test_no_replay_claims_no_replay(numpy_run, tmp_path):
    out, _ = numpy_run
    proc = _cli("findings", str(out), "--out", str(tmp_path / "f"), "--no-replay")
    assert proc.returncode == 0, proc.stderr
    for p in (tmp_path / "f").glob("*.md"):
        text = p.read_text()
        assert "reproduced" not in text.replace("no longer reproduces", ""), p
        if p.name != "README.md":
            assert "not replayed for this report (written with --no-replay)" in text


def test_each_repro_asserts_its_departure(numpy_run, tmp_path):
    """A repro exits 0 while the behaviour reproduces and non-zero once it does not."""
    _, records = numpy_run
    rec = next(r for r in records if r["adapter"] == "numpy.take" and r["clause"] == "ids.negative")
    code = repro(rec)
    assert "assert " in code
    script = tmp_path / "repro.py"
    script.write_text(code)
    ok = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    script.write_text(code.replace("np.take(", "(lambda t, i, axis: np.zeros_like(t[:1]))("))  # "fixed"
    fixed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert fixed.returncode != 0 and "AssertionError" in fixed.stderr


def test_a_repro_that_raises_is_asserted_without_failing_when_it_reproduces(tmp_path):
    rec = {"adapter": "x", "clause": "ids.dtypes", "example": "ids = np.array([1])",
           "snippet": "import numpy as np\nids = np.array([1])\nout = np.zeros(2)[ids.astype(float)]\nresult = out\n",
           "observed": {"failure": "invalid_ids"}, "expected": "float64[1] [0.]"}
    script = tmp_path / "r.py"
    script.write_text(repro(rec))
    assert subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60).returncode == 0
    script.write_text(repro(rec).replace("ids.astype(float)", "ids"))
    assert subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60).returncode != 0


def test_trim_keeps_only_the_helpers_the_input_needs():
    snippet = ("import numpy as np\nimport ml_dtypes\nimport torch\n\n"
               "def to_torch(a):\n    a = np.asarray(a)\n    if a.dtype == ml_dtypes.bfloat16:\n"
               "        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)\n    return torch.from_numpy(a)\n\n"
               "def unused(a):\n    return a\n\n"
               "table = np.zeros((2, 1), dtype=np.float32)\nout = to_torch(table).numpy()\nresult = out\n"
               "print(repr(out))\nprint([hex(b) for b in out.view('u4').ravel().tolist()])\n")
    trimmed = trim(snippet, keep_bfloat16=False)
    assert "def unused" not in trimmed and "bfloat16" not in trimmed.split("def to_torch")[1]
    assert "print(repr(out))" in trimmed and "hex(b)" not in trimmed
    assert "def to_torch" in trimmed and "result = out" in trimmed
    assert "bfloat16" in trim(snippet, keep_bfloat16=True)


@pytest.mark.parametrize("reference, category", [
    ("https://data-apis.org/array-api/latest/API_specification/generated/array_api.take.html", DOCUMENTED),
    ("https://docs.jax.dev/en/latest/default_dtypes.html", DOCUMENTED),
    ("https://github.com/microsoft/onnxruntime/blob/v1.31.1/docs/OperatorKernels.md", DOCUMENTED),
    ("https://github.com/pytorch/pytorch/issues/130725", KNOWN),
    ("https://github.com/openxla/xla/pull/35740", KNOWN),
    ("https://github.com/jax-ml/jax/blob/jax-v0.10.2/jax/_src/numpy/indexing.py#L703-L723", FROM_SOURCE),
])
def test_what_a_behaviour_is_worth_comes_from_its_reference(reference, category):
    assert category_of({"reference": reference})[0] == category
    assert category_of({})[0] == UNDECLARED


def test_every_finding_in_FINDINGS_md_still_reproduces(tmp_path):
    text = FINDINGS.read_text(encoding="utf-8")
    assert len(text.encode()) <= 300_000, "FINDINGS.md is an index: at most 300 KB"
    entries = read_summary(text)
    assert entries, "FINDINGS.md lists no repro"
    results = replay(entries, tmp_path)
    wrong = [w for e, got in zip(entries, results) if (w := judge(e, got))]
    SCORES.append(f"FINDINGS.md: {len(entries) - len(wrong)}/{len(entries)} repros reproduce")
    assert not wrong, "\n".join(wrong)


def test_compare_runs_both_adapters_and_shows_where_they_differ(numpy_run):
    out, _ = numpy_run
    proc = _cli("compare", "numpy", "numpy.take", str(out))
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= 160
    saved = json.loads((out / "compare" / "numpy--numpy.take.json").read_text())
    rows = {r["clause"]: r for r in saved["clauses"]}
    # numpy.take wraps negative ids where the oracle refuses them: an input shows it
    assert rows["ids.negative"]["verdict"] == "differs" and "ids = " in rows["ids.negative"]["input"]
    assert "out_of_range" in rows["ids.negative"]["a"] and "out_of_range" not in rows["ids.negative"]["b"]
    assert rows["rows.exact"]["verdict"] == "agrees" and rows["rows.exact"]["tried"] > 1
    assert "differs  ids.negative" in proc.stdout
    page = (out / "index.html").read_text()
    assert "Porting views" in page and "numpy.take" in page


def test_compare_shows_bits_reports_suite_errors_and_caps_lines():
    from embedding_conformance.reports import compare as cmp
    from embedding_conformance.suites.catalogue import load_all

    clause = load_all()["rows.exact"]

    class Fake:
        def __init__(self, answer):
            self.answer = answer
            self.description = type("D", (), {"capabilities": __import__(
                "embedding_conformance.adapters.contract", fromlist=["Capabilities"]).Capabilities(),
                "methods": ("lookup",)})()

        def call(self, method, inputs):
            return self.answer(inputs)

    quiet = lambda x: {"value": np.frombuffer(bytes.fromhex("017e"), dtype=np.float16).reshape(1), "failure": None}
    payload = lambda x: {"value": np.frombuffer(bytes.fromhex("017c"), dtype=np.float16).reshape(1), "failure": None}
    rec = {"example": "table = np.frombuffer(bytes.fromhex('017c'), dtype=np.float16).reshape((1,))\n"
                      "ids = np.array(0, dtype=np.int32)", "found_by": "search"}
    row = cmp._compare_clause(clause, [rec, rec], [Fake(payload), Fake(quiet)])
    assert row["verdict"] == "differs" and row["a"] == row["b"]  # nan and nan
    assert row["bits"]["rows"][0][1:3] == ["0x7c01", "0x7e01"]
    broken = lambda x: {"status": "error", "reason": "worker: KeyError: 'table'"}
    with pytest.raises(cmp.SuiteError):
        cmp._compare_clause(clause, [rec, rec], [Fake(payload), Fake(broken)])
    text = cmp.text({"a": "A", "b": "B", "clauses": [
        {"clause": "rows.exact", "verdict": "differs", "input": "table = np.array([" + "1.0, " * 100_000 + "])",
         "a": "x" * 900, "b": "y", "bits": row["bits"]},
        {"clause": "ids.dtypes", "verdict": "error", "reason": "the suite broke, not a difference: KeyError"}]})
    assert max(len(line) for line in text.splitlines()) <= 160
    assert "error    ids.dtypes" in text and "1 clauses differ" in text and "1 not compared (suite error)" in text
    assert "0x7e01" in text


def test_compare_refuses_an_unknown_adapter_in_one_line(numpy_run):
    out, _ = numpy_run
    proc = _cli("compare", "numpy", "nosuch.embedding", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "unknown adapter 'nosuch.embedding'" in proc.stderr and "torch.nn.Embedding" in proc.stderr


def test_a_large_table_repro_is_offered_on_the_rows_its_ids_reach():
    from embedding_conformance.reports.findings import smaller_record
    from embedding_conformance.suites.source import example_source

    table = np.random.default_rng(2).standard_normal((40000, 1)).astype(np.float32)
    example = example_source({"table": table, "ids": np.array([40000, 3], dtype=np.int64)})
    rec = {"adapter": "numpy.take", "clause": "ids.out_of_range", "example": example,
           "snippet": "import numpy as np\n" + example + "\nresult = np.take(table, ids, axis=0, mode='clip')\n",
           "observed": {"dtype": "float32", "shape": [2, 1]}}
    small = smaller_record(rec)
    assert small is not None and len(small["snippet"]) < 1000 < len(rec["snippet"])
    assert small["example"].startswith("table = np.zeros((40000, 1), dtype=np.float32)\ntable[[")
    ns: dict = {}
    exec(small["snippet"], ns)
    exec(rec["snippet"], (full := {}))
    assert ns["result"].tobytes() == full["result"].tobytes()  # the rows it reads are kept bit for bit
