"""Findings and the porting view: ``python -m reports findings`` writes one upstream-ready
report per departure, each repro replayed first; FINDINGS.md, the departures no tracker
records, still reproduces; ``python -m reports compare`` runs both adapters and shows
where they differ, with an input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from embedding_conformance.reports.findings import read_summary
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


def test_findings_writes_one_replayed_report_per_departure(numpy_run, tmp_path):
    out, records = numpy_run
    proc = _cli("findings", str(out), "--out", str(tmp_path / "f"), "--summary", str(tmp_path / "F.md"))
    assert proc.returncode == 0, proc.stderr
    departures = {(r["clause"], json.dumps((r.get("divergence") or {}).get("model"))) for r in records
                  if r["status"] in ("diverges", "violates") and r["adapter"] == "numpy.take"}
    reports = sorted((tmp_path / "f").glob("*.md"))
    written = [p for p in reports if p.name != "README.md"]
    assert len(written) == len(departures) > 0
    text = written[0].read_text()
    for part in ("# numpy.take", "## Minimal reproduction", "```python", "**Expected**", "**Actual**",
                 "## What it contradicts", "## Known upstream"):
        assert part in text, part
    assert "Versions" in text and "numpy 2" in text


def test_findings_skips_a_repro_that_no_longer_reproduces(numpy_run, tmp_path):
    out, records = numpy_run
    broken = [dict(r, snippet=r["snippet"].replace("np.take(", "(lambda t, i, axis: t[0:0])(")) if r.get("snippet")
              and r["adapter"] == "numpy.take" else r for r in records]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in broken))
    (tmp_path / "run" / "run.json").write_text((out / "run.json").read_text())
    proc = _cli("findings", str(tmp_path / "run"), "--out", str(tmp_path / "f"))
    assert proc.returncode == 0, proc.stderr
    assert "0 reports of" in proc.stdout and "not written" in (tmp_path / "f" / "README.md").read_text()


def test_every_finding_in_FINDINGS_md_still_reproduces(tmp_path):
    entries = read_summary(FINDINGS.read_text(encoding="utf-8"))
    assert entries, "FINDINGS.md lists no repro"
    results = replay(entries, tmp_path)
    wrong = [w for e, got in zip(entries, results) if (w := judge(e, got))]
    SCORES.append(f"FINDINGS.md: {len(entries) - len(wrong)}/{len(entries)} repros reproduce")
    assert not wrong, "\n".join(wrong)


def test_compare_runs_both_adapters_and_shows_where_they_differ(numpy_run):
    out, _ = numpy_run
    proc = _cli("compare", "numpy", "numpy.take", str(out))
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((out / "compare" / "numpy--numpy.take.json").read_text())
    rows = {r["clause"]: r for r in saved["clauses"]}
    # numpy.take wraps negative ids where the oracle refuses them: an input shows it
    assert rows["ids.negative"]["verdict"] == "differs" and "ids = " in rows["ids.negative"]["input"]
    assert "out_of_range" in rows["ids.negative"]["a"] and "out_of_range" not in rows["ids.negative"]["b"]
    assert rows["rows.exact"]["verdict"] == "agrees" and rows["rows.exact"]["tried"] > 1
    assert "differs  ids.negative" in proc.stdout
    page = (out / "index.html").read_text()
    assert "Porting views" in page and "numpy.take" in page


def test_compare_refuses_an_unknown_adapter_in_one_line(numpy_run):
    out, _ = numpy_run
    proc = _cli("compare", "numpy", "nosuch.embedding", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "unknown adapter 'nosuch.embedding'" in proc.stderr and "torch.nn.Embedding" in proc.stderr
