"""Runs the conformance suite as a user does (pytest in a fresh process) and reads
what it wrote."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_suite(*args: str, report_dir: Path, profile: str = "ci", timeout: float = 1800, env: dict | None = None):
    cmd = [sys.executable, "-m", "pytest", "suites", "-p", "no:cacheprovider", "-q",
           f"--report-dir={report_dir}", f"--hypothesis-profile={profile}", *args]
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)
    return proc, read_records(report_dir)


def read_records(report_dir: Path) -> list[dict]:
    path = Path(report_dir) / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_check(records: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["adapter"], r["clause"]): r for r in records}
