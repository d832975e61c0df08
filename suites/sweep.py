"""Exploration: run the suite under several random seeds and print only the departures
no declaration explains (an unacknowledged ``violates``, a ``stale`` declaration, an
``error``), each with the seed and the input that found it.

    python -m suites.sweep --seeds 5 [--adapters NAME[,NAME...]] [--summary FILE] [pytest args...]

``--seeds N`` draws N fresh random seeds; ``--seed S`` (repeatable) runs the seeds given.
Each seed is one run of the suite in the ``default`` profile (random, the pool of
signatures drawn from the seed too); the gate (the ``ci`` profile) is the derandomized
half. Exit status 1 when anything new was found, so a scheduled job goes red on it;
``--summary FILE`` also writes the findings as Markdown (a CI job summary)."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .statuses import gate_failing

ROOT = Path(__file__).resolve().parent.parent


def _records(report_dir: Path) -> list[dict]:
    path = report_dir / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run_seed(seed: int, adapters: str | None, extra: list[str], out: Path) -> tuple[list[dict], float, int]:
    """One run of the suite under ``seed``: its records, its seconds and pytest's exit code."""
    cmd = [sys.executable, "-m", "pytest", "suites", "-p", "no:cacheprovider", "-q", "--hypothesis-profile=default",
           f"--hypothesis-seed={seed}", f"--report-dir={out}", *extra]
    if adapters:
        cmd.append(f"--adapters={adapters}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("CI", None)  # CI=true selects the derandomized profile; a sweep is the random one
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return _records(out), time.perf_counter() - start, proc.returncode


def unexplained(records: list[dict]) -> list[dict]:
    return [r for r in records if gate_failing(r)]


def describe(seed: int, rec: dict) -> str:
    what = rec.get("detail") or rec.get("reason") or ""
    lines = [f"seed {seed}: {rec['adapter']} on {rec['clause']}: {rec['status']}: {what[:600]}"]
    if rec.get("example"):
        lines += ["  input (found by " + str(rec.get("found_by", "search")) + "):"]
        lines += ["    " + line for line in rec["example"].splitlines()[:40]]
    if rec.get("witness"):
        lines += ["  as a witness: " + json.dumps({"clause": rec["clause"], **rec["witness"]})[:2000]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suites.sweep", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=0, metavar="N", help="run N fresh random seeds")
    p.add_argument("--seed", type=int, action="append", default=[], metavar="S", help="run seed S (repeatable)")
    p.add_argument("--adapters", default=None, metavar="NAME[,NAME...]", help="built-in adapters (default: all)")
    p.add_argument("--summary", type=Path, default=None, metavar="FILE", help="also write the findings as Markdown")
    args, extra = p.parse_known_args(argv)
    seeds = list(args.seed) + [secrets.randbelow(2**32) for _ in range(args.seeds)]
    if not seeds:
        p.error("give --seeds N or --seed S")
    found: list[tuple[int, dict]] = []
    lines = []
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        for seed in seeds:
            records, seconds, code = run_seed(seed, args.adapters, extra, Path(tmp) / str(seed))
            new = unexplained(records)
            found += [(seed, r) for r in new]
            status = f"{len(records)} checks, {len(new)} unexplained" if records else f"no results (pytest exit {code})"
            line = f"seed {seed}: {status} ({seconds:.0f} s)"
            lines.append(line)
            print(line, flush=True)
            if not records:
                found.append((seed, {"adapter": "(the run)", "clause": "-", "status": "error",
                                     "reason": f"pytest exited {code} without writing results"}))
    if found:
        print("\nDepartures no declaration explains:\n")
        for seed, rec in found:
            print(describe(seed, rec) + "\n")
    else:
        print(f"\nNothing unexplained under seeds {', '.join(map(str, seeds))}.")
    if args.summary is not None:
        body = ["# Seed sweep", "", *[f"- {line}" for line in lines], ""]
        body += (["## Departures no declaration explains", ""] + [f"```\n{describe(s, r)}\n```" for s, r in found]
                 if found else ["Nothing unexplained."])
        args.summary.write_text("\n".join(body) + "\n", encoding="utf-8")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
