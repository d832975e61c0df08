"""The benchmark: ``python -m suites.bench [--report-dir DIR] [--skip-full] [--xdist]``.

Prints, and writes to DIR/bench.json:
- the wall time of the full default run and of the ci-profile run (every built-in
  adapter and clause, imports included), and of ``--adapters numpy``;
- per adapter: examples per second, ids checked per second, and the cost per
  example split into generating it, calling the framework, and comparing and
  recording (from the timings each check records);
- the time to import each framework in a fresh process;
- with ``--xdist``: the full run with ``-n 2`` and its speed-up.
Measured here, never asserted in a timed test.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("numpy", "torch", "tensorflow", "keras", "tf_keras", "jax", "flax")


def import_time(module: str) -> float | None:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    try:
        return round(float(proc.stdout.strip().splitlines()[-1]), 3)
    except (ValueError, IndexError):
        return None


def timed_run(out: Path, *args: str) -> tuple[float, list[dict]]:
    cmd = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider", f"--report-dir={out}", *args]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.perf_counter() - start
    path = out / "results.jsonl"
    records = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []
    return round(wall, 2), records


def per_adapter(records: list[dict]) -> dict[str, dict]:
    acc: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    per_example: dict[str, list[float]] = defaultdict(list)
    for r in records:
        t = r.get("timing")
        if not t or not r.get("examples"):
            continue
        a = acc[r["adapter"]]
        a["examples"] += r["examples"]
        a["ids"] += t["ids"]
        a["seconds"] += r["seconds"]
        a["call"] += t["call"]
        a["check"] += t["check"]
        # the suite's own cost per example in this check: everything but the call
        per_example[r["adapter"]].append((r["seconds"] - t["call"]) / r["examples"])
    out = {}
    for name, a in acc.items():
        n = a["examples"]
        gen = a["seconds"] - a["call"] - a["check"]
        out[name] = {
            "examples": int(n),
            "examples_per_s": round(n / a["seconds"], 1) if a["seconds"] else None,
            "ids_per_s": round(a["ids"] / a["seconds"], 1) if a["seconds"] else None,
            "ms_per_example": {
                "generate": round(1000 * gen / n, 3),
                "call": round(1000 * a["call"] / n, 3),
                "compare_and_record": round(1000 * a["check"] / n, 3),
            },
            "suite_ms_per_example_median": round(1000 * statistics.median(per_example[name]), 3),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m suites.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--report-dir", default="reports/latest", type=Path)
    ap.add_argument("--skip-full", action="store_true", help="only the numpy run and import times")
    ap.add_argument("--xdist", action="store_true", help="also time the full run with -n 2")
    args = ap.parse_args(argv)
    base = args.report_dir / "bench"
    result: dict = {"imports_s": {m: import_time(m) for m in FRAMEWORKS}}
    wall, recs = timed_run(base / "numpy", "--adapters=numpy")
    result["numpy_run_s"] = wall
    result["numpy"] = per_adapter(recs).get("numpy")
    if not args.skip_full:
        wall, recs = timed_run(base / "default")
        result["full_default_run_s"], result["checks"] = wall, len(recs)
        result["per_adapter"] = per_adapter(recs)
        result["full_ci_run_s"], _ = timed_run(base / "ci", "--hypothesis-profile=ci")
        if args.xdist:
            result["full_default_run_n2_s"], _ = timed_run(base / "n2", "-n", "2", "--dist", "loadgroup")
            result["n2_speedup"] = round(result["full_default_run_s"] / result["full_default_run_n2_s"], 2)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    (args.report_dir / "bench.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
