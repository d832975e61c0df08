"""Writing a run: results.jsonl (one record per check), run.json (what the run
was), then the HTML page. Files are written whole to a temporary name and
renamed, so an interrupted write never leaves half a results file behind.

A pytest plugin of its own (entry point embedding_conformance_reports): it gathers the
records the conformance plugin's checks leave on their reports (from xdist workers
too), names their junit test cases, and writes the run when the session ends."""
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

import pytest

from embedding_conformance.suites.statuses import STATUSES


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

    from embedding_conformance.suites.catalogue import CLAUSES

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
    from embedding_conformance.suites.catalogue import CLAUSES

    out = conf.report_dir
    out.mkdir(parents=True, exist_ok=True)
    order = {name: i for i, name in enumerate(conf.entries)}
    records = sorted(conf.records, key=lambda r: (CLAUSES[r["clause"]].order, order.get(r["adapter"], 1 << 30)))
    # the results first: whatever fails after them (the metadata, the page) must not lose them
    _atomic_write(out / "results.jsonl", "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records))
    meta = run_metadata(conf, records, complete)
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


# -- the pytest plugin ------------------------------------------------------------------

def _junit_names(config, report, record: dict) -> None:
    """--junitxml: a check's testcase is named by its clause, its class by its adapter
    (set where junitxml writes, the xdist controller included)."""
    if config is None or not getattr(config.option, "xmlpath", None):
        return
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is not None:
        reporter = xml.node_reporter(report)
        reporter.add_attribute("classname", record["adapter"])
        reporter.add_attribute("name", record["clause"])


class Recorder:
    """Gathers records (from xdist workers too) and writes the report at the end."""

    def __init__(self, conf, config=None):
        self.conf, self.config = conf, config

    def pytest_runtest_logreport(self, report):
        for key, value in getattr(report, "user_properties", ()):
            if key == "conformance" and report.when == "call":
                value = json.loads(value) if isinstance(value, str) else value  # JSON text on the wire
                self.conf.records.append(value)
                _junit_names(self.config, report, value)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        self._write(session)

    def _write(self, session) -> None:
        conf, config = self.conf, session.config
        if hasattr(config, "workerinput") or not (conf.records or conf.collected) or config.option.collectonly:
            return  # an xdist worker (the controller writes), or no check ran: keep the last report
        complete = len(conf.records) >= conf.collected and not session.shouldfail and not session.shouldstop
        write_run(conf, complete=complete, terminal=config.pluginmanager.get_plugin("terminalreporter"))


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Record the run the conformance plugin set up (nothing when it did not)."""
    from embedding_conformance.suites.plugin import STASH

    conf = config.stash.get(STASH, None)
    if conf is not None:
        config.pluginmanager.register(Recorder(conf, config), "conformance-recorder")
