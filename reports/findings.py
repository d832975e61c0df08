"""Upstream-ready bug reports: ``python -m reports findings [RUN_DIR...] --out DIR``.

One Markdown report per departure: per framework, clause and behaviour (the declared
model, an acknowledged violation, or nothing declared), the adapters that show it
listed together. Each report holds a title a maintainer would accept, the versions,
the minimal standalone repro (the record's snippet, replayed in a fresh process to
confirm it still reproduces before the report is written), what the contract expected
and what came back, the documentation or source it contradicts, and the tracker issue
already known for it (the declaration's reference) or that none is.

``--summary FILE`` also writes the departures no tracker records (FINDINGS.md), each with
its repro and the outcome it printed, for the project's own test to replay.
"""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .replay import judge, observed_parts, replay
from .results import Run, read_run

# what a departure from each clause family is, for a title (the clause's own statement says
# what was expected)
_PROBLEM = {
    "shape": "returns the wrong output shape",
    "dtype": "returns rows of another dtype than the table's",
    "rows": "changes the bits of the rows it looks up",
    "ids.dtypes": "mishandles ids of some integer dtypes",
    "ids.float": "accepts float or bool ids instead of rejecting them",
    "ids.out_of_range": "does not reject an id >= num_embeddings",
    "ids.negative": "does not reject a negative id",
    "ids.int64_wide": "narrows int64 ids past 2**31",
    "table.empty": "mishandles a table with no rows or rows of size 0",
    "table.load": "does not keep the bits of a table loaded the documented way",
    "seed": "departs on a documented worked example",
    "partition": "routes ids of a sharded table wrongly",
    "grad": "computes the gradient with respect to the table wrongly",
    "padding": "mishandles padding_idx",
    "max_norm": "mishandles max_norm",
    "lookup.atomic": "changes the table during a lookup that fails",
    "mask": "computes the mask of mask_zero wrongly",
    "onehot": "differs from one_hot(ids) @ table on a finite table",
    "bag": "pools a bag lookup wrongly",
}
_TRACKER = re.compile(r"https://github\.com/[^/]+/[^/]+/(issues|pull)/\d+")
# a reference to documentation: the behaviour is documented, a choice, not an unknown
_DOCS = re.compile(r"https://(docs\.|www\.tensorflow\.org/api_docs|keras\.io|openxla\.org/xla/operation_semantics|data-apis\.org|onnx\.ai)")


_KINDS = ("out_of_range", "invalid_ids", "invalid_table", "invalid_shards", "invalid_offsets", "lookup_failure")


def _failure_kind(text: str) -> str | None:
    """The contract failure kind an expected/actual description names, or None (rows)."""
    head = text.split(" ", 1)[0]
    return head if head in _KINDS else None


def problem_of(clause: str) -> str:
    for key in (clause, ".".join(clause.split(".")[:2]), clause.split(".")[0]):
        if key in _PROBLEM:
            return _PROBLEM[key]
    return f"departs from {clause}"


@dataclass
class Finding:
    framework: str
    clause: str
    behaviour: str  # "model a + b", "acknowledged violation", "undeclared"
    records: list[dict] = field(default_factory=list)
    replayed: str | None = None  # None: reproduced; else why not
    path: Path | None = None

    @property
    def record(self) -> dict:
        return self.records[0]

    @property
    def adapters(self) -> list[str]:
        return sorted({r["adapter"] for r in self.records})

    @property
    def declaration(self) -> dict:
        return self.record.get("divergence") or self.record.get("acknowledged") or {}

    @property
    def tracker(self) -> str | None:
        m = _TRACKER.search(self.declaration.get("reference", "") + " " + self.declaration.get("note", ""))
        return m.group(0) if m else None

    @property
    def documented(self) -> bool:
        return bool(_DOCS.match(self.declaration.get("reference", "")))

    @property
    def what(self) -> str:
        """What goes wrong, from what came back: a crash, a failure where the contract gives
        rows (or another kind of failure), else the clause's own departure."""
        rec = self.record
        if "crash" in (rec.get("observed") or {}):
            return "kills the process"
        expected, actual = _failure_kind(rec.get("expected", "")), _failure_kind(rec.get("actual", ""))
        if actual and not expected:
            return "fails on valid input" if actual == "lookup_failure" else f"raises {actual} on valid input"
        if actual and expected and actual != expected:
            return f"raises {actual} where the contract says {expected}"
        return problem_of(self.clause)

    @property
    def title(self) -> str:
        more = f" (and {len(self.adapters) - 1} more)" if len(self.adapters) > 1 else ""
        return f"{self.adapters[0]}{more}: {self.what}"

    @property
    def slug(self) -> str:
        raw = f"{self.framework}-{self.clause}-{self.behaviour}-{self.adapters[0]}"
        return re.sub(r"[^A-Za-z0-9]+", "-", raw).strip("-").lower()[:120]


def departures(runs: Iterable[Run]) -> list[Finding]:
    """Every departure of the runs, grouped per framework, clause and behaviour; a group's
    first record is the one with a snippet (the repro)."""
    groups: dict[tuple, Finding] = {}
    for run in runs:
        for rec in run.records:
            if rec["status"] not in ("diverges", "violates") or not rec.get("example"):
                continue
            if rec.get("acknowledged"):
                behaviour = "acknowledged violation"
            elif rec.get("divergence"):
                behaviour = "model " + " + ".join(rec["divergence"].get("model") or ())
            else:
                behaviour = "undeclared"
            key = (rec["framework"], rec["clause"], behaviour)
            groups.setdefault(key, Finding(*key)).records.append(rec)
    for f in groups.values():
        f.records.sort(key=lambda r: (not r.get("snippet"), r["adapter"]))
    return sorted(groups.values(), key=lambda f: (f.framework, f.clause, f.behaviour))


def report(f: Finding, meta: dict) -> str:
    """One finding as a Markdown bug report."""
    rec, decl = f.record, f.declaration
    versions = ", ".join(f"{d} {v}" for d, v in sorted(rec["versions"].items()))
    lines = [f"# {f.title}", "",
             f"- **Versions**: {versions} (Python {meta.get('python', '?')}, {meta.get('platform', '?')})",
             "- **API**: " + ", ".join(f"`{a}`" for a in f.adapters),
             f"- **Behaviour**: {f.behaviour}", "",
             "## What happens", "", rec.get("detail") or "", "",
             "## Minimal reproduction", "",
             "Runs on its own (no test suite), and was replayed in a fresh process to confirm it still "
             "reproduces before this report was written. It binds `result` to what came back.", "",
             "```python", (rec.get("snippet") or "").rstrip(), "```", "",
             f"**Expected** (the contract): {rec.get('expected', '')}", "",
             f"**Actual**: {rec.get('actual', '')}", "",
             "## What it contradicts", "",
             f"- `{f.clause}`: {rec.get('statement', '')}"]
    if decl.get("reference"):
        lines.append(f"- {decl['reference']}")
    if decl.get("note"):
        lines += ["", decl["note"]]
    lines += ["", "## Known upstream", ""]
    lines.append(f"Tracked as {f.tracker}." if f.tracker else
                 "No tracker issue is known to the suite for this: worth filing.")
    lines += ["", f"<sub>Found by embedding-conformance {meta.get('revision', '')}, profile {meta.get('profile', '')}, "
                  f"seed {meta.get('seed', '')}, {meta.get('date', '')}.</sub>", ""]
    return "\n".join(lines)


def _printed(rec: dict) -> str:
    parts = observed_parts(rec["observed"]) if "crash" not in rec["observed"] else [rec["observed"]]
    return json.dumps(parts)


def summary(found: list[Finding]) -> str:
    """FINDINGS.md: the departures no tracker records, one section per declared behaviour (a
    declaration's entry, or an undeclared departure) with every clause it shows on, each
    with its repro and the outcome it gave (a JSON line the project's test compares the
    replay with)."""
    untracked = [f for f in found if f.tracker is None and not f.documented and f.replayed is None
                 and f.record.get("snippet")]
    groups: dict[tuple, list[Finding]] = {}
    for f in untracked:
        key = (f.framework, f.declaration.get("source") or f.behaviour, tuple(f.adapters))
        groups.setdefault(key, []).append(f)
    lines = ["# Findings no tracker records", "",
             "Departures this suite found that no upstream issue records and no documentation states (read "
             "from source, or not explained anywhere): one section per behaviour, with every clause it shows "
             f"on. {len(groups)} behaviours, {len(untracked)} clause repros. Each repro runs on its own "
             "and binds `result`; the block after it is what that gave (per result: a failure kind, or "
             "dtype, shape and bytes). `tests/test_findings.py` replays every one. Regenerate with "
             "`python -m reports findings reports/latest --out reports/findings --summary FINDINGS.md` "
             "after a full run.", ""]
    lines += [f"{n}. [{fs[0].adapters[0]}{_more(fs[0])}: {_headline(fs[0])}](#{n}) ({len(fs)} clauses)"
              for n, fs in enumerate(groups.values(), 1)]
    lines.append("")
    for n, fs in enumerate(groups.values(), 1):
        first, decl = fs[0], fs[0].declaration
        versions = ", ".join(f"{d} {v}" for d, v in sorted(first.record["versions"].items()))
        lines += [f'<a id="{n}"></a>', "", f"## {n}. {first.adapters[0]}{_more(first)}: {_headline(first)}", "",
                  f"{', '.join(f'`{a}`' for a in first.adapters)} · {versions} · {first.behaviour}", ""]
        if decl.get("source"):
            lines += [f"Declared in `{decl['source']}`: {decl.get('reference', '')}", ""]
        if decl.get("note"):
            lines += [decl["note"], ""]
        for f in fs:
            rec = f.record
            lines += [f"### `{f.clause}`: {f.what}", "", (rec.get("detail") or "")[:600], "",
                      "<details><summary>repro</summary>", "",
                      f"<!-- adapter: {rec['adapter']} clause: {rec['clause']} -->",
                      "```python", rec["snippet"].rstrip(), "```", "",
                      "Gave:", "", "```json", _printed(rec), "```", "", "</details>", ""]
    return "\n".join(lines)


def _headline(f: Finding, width: int = 110) -> str:
    """A section's title: what the declaration's note says first (its first clause, cut at a
    word), else the behaviour (the model chain, or 'undeclared')."""
    note = re.split(r"; |\.\s+(?=[A-Z])", f.declaration.get("note") or "")[0].strip()
    if not note:
        return f.behaviour
    return note if len(note) <= width else note[:width].rsplit(" ", 1)[0] + " ..."


def _more(f: Finding) -> str:
    return f" (and {len(f.adapters) - 1} more)" if len(f.adapters) > 1 else ""


def write_findings(dirs: list[Path], out: Path, summary_path: Path | None = None, replay_them: bool = True) -> list[Finding]:
    runs = [read_run(d) for d in dirs]
    found = departures(runs)
    if replay_them:
        reps = [f for f in found if f.record.get("snippet") and f.record.get("observed")
                and f.record["adapter"] != "numpy"]
        from embedding_conformance.adapters import registry

        reps = [f for f in reps if f.record["adapter"] in registry.BY_NAME]
        with tempfile.TemporaryDirectory(prefix="findings-replay-") as tmp:
            results = replay([f.record for f in reps], Path(tmp))
        for f, got in zip(reps, results):
            f.replayed = judge(f.record, got)
        for f in found:
            if f not in reps:
                f.replayed = "no standalone snippet to replay"
    out.mkdir(parents=True, exist_ok=True)
    meta = runs[0].meta if runs else {}
    index = ["# Departures", "", "| finding | framework | clause | behaviour | tracker |", "| --- | --- | --- | --- | --- |"]
    skipped = []
    for f in found:
        if f.replayed is not None:
            skipped.append(f"- {f.title} (`{f.clause}`, {f.behaviour}): not written, {f.replayed}")
            continue
        f.path = out / f"{f.slug}.md"
        f.path.write_text(report(f, meta), encoding="utf-8")
        index.append(f"| [{f.title}]({f.path.name}) | {f.framework} | `{f.clause}` | {f.behaviour} | "
                     f"{f.tracker or 'none known'} |")
    if skipped:
        index += ["", "Not written (the repro did not reproduce, or there is none):", ""] + skipped
    (out / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    if summary_path is not None:
        summary_path.write_text(summary(found), encoding="utf-8")
    return found


# -- FINDINGS.md, read back (tests/test_findings.py) ------------------------------------------

_ENTRY = re.compile(r"<!-- adapter: (?P<adapter>\S+) clause: (?P<clause>\S+) -->\n```python\n(?P<snippet>.*?)\n```"
                    r"\n\nGave:\n\n```json\n(?P<gave>.*?)\n```", re.S)


def read_summary(text: str) -> list[dict[str, Any]]:
    """The entries of a FINDINGS.md, as records replay() and judge() take."""
    out = []
    for m in _ENTRY.finditer(text):
        parts = json.loads(m["gave"])
        observed = parts[0] if len(parts) == 1 and "crash" in parts[0] else {"parts": parts}
        out.append({"adapter": m["adapter"], "clause": m["clause"], "snippet": m["snippet"] + "\n",
                    "observed": observed})
    return out
