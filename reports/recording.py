"""Writing a run: results.jsonl (one record per check), run.json (what the run
was), then the HTML page. Files are written whole to a temporary name and
renamed, so an interrupted write never leaves half a results file behind."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from suites.statuses import STATUSES


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def revision() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        rev = out.stdout.strip()
        if rev:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def run_metadata(conf, records: list[dict], complete: bool) -> dict[str, Any]:
    import hypothesis

    from .results import score

    from suites.catalogue import CLAUSES

    versions: dict[str, str] = {}
    for e in conf.entries.values():
        versions.update(e.versions)
    devices = sorted({r.get("device", "cpu") for r in records}) or ["cpu"]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": ", ".join(devices),
        "revision": revision(),
        "profile": conf.profile,
        "seed": "derandomized" if conf.seed is None else str(conf.seed),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hypothesis": hypothesis.__version__,
        "versions": dict(sorted(versions.items())),
        "clauses": [{"id": c.id, "family": c.family, "statement": c.statement, "tolerance": c.tolerance}
                    for c in sorted(CLAUSES.values(), key=lambda c: c.order)],
        "adapters": [{"name": e.name, "framework": e.framework, "versions": e.versions,
                      "score": score([r for r in records if r["adapter"] == e.name])} for e in conf.entries.values()],
        "complete": complete,
        "argv": sys.argv[1:],
    }


def write_run(conf, *, complete: bool, terminal=None) -> Path:
    from suites.catalogue import CLAUSES

    out = conf.report_dir
    out.mkdir(parents=True, exist_ok=True)
    order = {name: i for i, name in enumerate(conf.entries)}
    records = sorted(conf.records, key=lambda r: (CLAUSES[r["clause"]].order, order.get(r["adapter"], 1 << 30)))
    meta = run_metadata(conf, records, complete)
    _atomic_write(out / "results.jsonl", "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records))
    _atomic_write(out / "run.json", json.dumps(meta, indent=1, sort_keys=True))
    page, problem = None, None
    try:
        from .render import render

        page = render(out, out)
    except Exception as exc:  # the results stay; say why the page is missing
        problem = f"{type(exc).__name__}: {exc}"
    if terminal is not None:
        _summary(terminal, records, out, page, problem)
    return out


def _summary(tr, records: list[dict], out: Path, page, problem) -> None:
    counts = Counter(r["status"] for r in records)
    by_adapter: dict[str, Counter] = {}
    for r in records:
        by_adapter.setdefault(r["adapter"], Counter())[r["status"]] += 1
    tr.write_sep("=", "embedding conformance")
    width = max((len(a) for a in by_adapter), default=10)
    for adapter, c in by_adapter.items():
        tr.write_line(f"{adapter:<{width}}  " + "  ".join(f"{s} {c[s]}" for s in STATUSES if c[s]))
    tr.write_line(f"{len(records)} checks: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s]))
    tr.write_line(f"results: {out / 'results.jsonl'}")
    if page:
        tr.write_line(f"report:  {page}")
    elif problem:
        tr.write_line(f"report:  not rendered ({problem})")
