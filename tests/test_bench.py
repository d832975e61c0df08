"""The benchmark runs and writes what it promises (its figures are measured, never
asserted here: a timed test is a flaky test)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from embedding_conformance.suites.bench import IMPORTS
from embedding_conformance.suites.catalogue import load_all
from tests.runner import ROOT


def test_the_quick_benchmark_writes_its_figures(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "embedding_conformance.suites.bench", "--quick", f"--report-dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    assert set(result["machine_speed_s"]) == {"before", "after"}
    assert set(result["imports_s"]) == set(IMPORTS) and all(isinstance(t, float) for t in result["imports_s"].values())
    assert result["numpy_run_s"] > 0 and result["numpy"]["examples"] >= 100 * 27
    assert set(result["generate_ms_per_example"]) == set(load_all())
    targets = {t["target"]: t for t in result["targets"]}
    assert "oracle adapter >= 750 examples/s" in targets and "--adapters numpy < 10 s" in targets
    assert "met" in proc.stdout or "NOT MET" in proc.stdout


def test_a_cold_run_starts_from_an_empty_temp_directory(tmp_path):
    # torch.compile's precompiled headers live under the temp directory whatever
    # TORCHINDUCTOR_CACHE_DIR says: both must point into the fresh one
    from embedding_conformance.suites.bench import fresh_caches

    env = fresh_caches(str(tmp_path))
    assert env["TMPDIR"] == str(tmp_path)
    assert env["TORCHINDUCTOR_CACHE_DIR"].startswith(str(tmp_path))


def test_a_run_that_does_not_run_the_suite_is_a_failure_not_a_figure(tmp_path):
    import pytest

    from embedding_conformance.suites.bench import RunFailed, timed_run

    with pytest.raises(RunFailed, match=r"exited 4 without results: .*unknown adapter 'nosuch'"):
        timed_run(tmp_path, "--adapters=nosuch")


def test_a_failed_run_keeps_what_was_measured_and_exits_1(tmp_path, monkeypatch, capsys):
    from embedding_conformance.suites import bench

    def broken(out, *args, env=None):
        raise bench.RunFailed("pytest --adapters=numpy exited 3 without results: INTERNALERROR")

    monkeypatch.setattr(bench, "machine_speed", lambda: 0.2)
    monkeypatch.setattr(bench, "import_time", lambda statement, env: 0.1)
    monkeypatch.setattr(bench, "timed_run", broken)
    assert bench.main(["--quick", f"--report-dir={tmp_path}"]) == 1
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["failed"].startswith("pytest --adapters=numpy exited 3")
    assert set(result["imports_s"]) == set(IMPORTS) and result["machine_speed_s"] == {"before": 0.2}
    assert "numpy_run_s" not in result and result["targets"] == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: a benchmark run failed") and "INTERNALERROR" in err[0]


def test_every_ci_run_starts_with_empty_caches_and_the_warm_run_takes_the_cold_ones(tmp_path, monkeypatch):
    # a ci run in the caches of the ci run before it measures the caches, not itself
    from embedding_conformance.suites import bench

    seen: list[tuple[str, str, bool]] = []

    def fake(out, *args, env=None):
        tmp = env["TMPDIR"]
        seen.append((out.name, tmp, bool(os.listdir(tmp))))
        open(os.path.join(tmp, "kernel.so"), "w").close()  # what a run leaves behind
        return 1.0, [{"adapter": "numpy", "clause": "rows.exact", "status": "conforms", "examples": 100}]

    monkeypatch.setattr(bench, "timed_run", fake)
    monkeypatch.setattr(bench, "_full", lambda result, key, wall, recs: result.setdefault(key, {}))
    bench.full_runs({}, tmp_path, repeat=1)
    runs = {name: (tmp, cached) for name, tmp, cached in seen}
    assert [name for name, _, _ in seen] == ["cold", "warm", "ci", "ci-w1", "ci-n2"]
    assert runs["warm"] == (runs["cold"][0], True)
    assert not any(runs[n][1] for n in ("cold", "ci", "ci-w1", "ci-n2"))
    assert len({runs[n][0] for n in ("cold", "ci", "ci-w1", "ci-n2")}) == 4
    assert not any(os.path.exists(tmp) for tmp, _ in runs.values())  # none left behind
