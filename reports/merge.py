"""Join many runs (the cells of a CI matrix, runs on other machines or devices)
into one, and lay any run out as a matrix with a version axis.

A column is one adapter at one set of versions of its distributions (and one
device). The same adapter at the same versions in two runs is one column when
the two agree on every clause they share (the numpy adapter in every cell of a
torch matrix, say); when they disagree it becomes two columns, each labelled
with its run, so the disagreement shows as a change instead of being hidden.

A clause is *changed* for an adapter when its status or its behaviour model
differs between that adapter's columns. ``unavailable`` cells and cells a run
did not record say nothing about behaviour and are left out of that judgement.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .results import RESULTS, RUN, Run, outcome, versions_key

_ENV_KEYS = ("python", "platform", "device", "revision", "profile", "seed", "date", "hypothesis")


# -- merging runs -------------------------------------------------------------------

def merge_runs(runs: Sequence[Run], sources: Sequence[str] | None = None) -> Run:
    """One Run holding every record of ``runs``; ``sources`` label them (default: their directories)."""
    if not runs:
        raise ValueError("nothing to merge")
    if sources is None:
        sources = [_label(r, i) for i, r in enumerate(runs)]
    groups: dict[tuple, list[_Group]] = {}  # (adapter, versions, device) -> groups, one per variant
    order: list[_Group] = []
    for run, source in zip(runs, sources):
        by_key: dict[tuple, dict[str, dict]] = {}
        for rec in run.records:
            rec = dict(rec)
            rec.setdefault("source", source)
            gkey = (rec["adapter"], versions_key(rec["versions"]), rec.get("device") or "", rec.get("variant") or "")
            by_key.setdefault(gkey, {})[rec["clause"]] = rec
        for gkey, recs in by_key.items():
            candidates = groups.setdefault(gkey[:3], [])
            home = next((g for g in candidates if g.agrees(recs, gkey[3])), None)
            if home is None:
                if candidates:  # same adapter and versions, different outcome: one column per run
                    for g in candidates:
                        if not g.variant:
                            g.set_variant(g.first_source)
                home = _Group(first_source=source, variant=gkey[3] or (source if candidates else ""))
                candidates.append(home)
                order.append(home)
            home.add(recs)
    records = [rec for g in order for rec in g.records.values()]
    return Run(dir=None, meta=_merge_meta(runs, sources, records), records=records, sources=list(sources))


@dataclass
class _Group:
    first_source: str
    variant: str = ""
    records: dict[str, dict] = field(default_factory=dict)  # clause -> record

    def agrees(self, recs: dict[str, dict], variant: str) -> bool:
        if variant and self.variant and variant != self.variant:
            return False
        return all(outcome(self.records[c]) == outcome(r) for c, r in recs.items() if c in self.records)

    def add(self, recs: dict[str, dict]) -> None:
        for clause, rec in recs.items():
            if clause not in self.records:
                if self.variant:
                    rec["variant"] = self.variant
                self.records[clause] = rec

    def set_variant(self, name: str) -> None:
        self.variant = name
        for rec in self.records.values():
            rec["variant"] = name


def _merge_meta(runs: Sequence[Run], sources: Sequence[str], records: list[dict]) -> dict[str, Any]:
    leaves: list[dict[str, Any]] = []
    for run, source in zip(runs, sources):
        if run.meta.get("runs"):  # an already merged run: keep its own runs
            leaves.extend(dict(r) for r in run.meta["runs"])
        else:
            leaf = {k: run.meta.get(k) for k in _ENV_KEYS if run.meta.get(k) is not None}
            leaf.update(source=source, versions=dict(run.meta["versions"]), complete=run.complete,
                        checks=len(run.records))
            leaves.append(leaf)
    meta: dict[str, Any] = {}
    for key in _ENV_KEYS:
        values = _distinct(r.get(key) for r in leaves)
        if values or key != "hypothesis":
            meta[key] = ", ".join(values) if values else "unknown"
    versions: dict[str, list[str]] = {}
    for leaf in leaves:
        for dist, v in leaf.get("versions", {}).items():
            versions.setdefault(dist, [])
            if v not in versions[dist]:
                versions[dist].append(v)
    meta["versions"] = {d: ", ".join(sorted(vs, key=version_sort_key)) for d, vs in versions.items()}
    clauses: dict[str, dict] = {}
    for run in runs:
        for c in run.clauses:
            clauses.setdefault(c["id"], dict(c))
    meta["clauses"] = list(clauses.values())
    adapters: dict[tuple, dict] = {}
    for rec in records:
        k = (rec["adapter"], versions_key(rec["versions"]))
        adapters.setdefault(k, {"name": rec["adapter"], "framework": rec["framework"],
                                "versions": dict(rec["versions"])})
    meta["adapters"] = list(adapters.values())
    meta["complete"] = all(r.complete for r in runs)
    meta["runs"] = leaves
    return meta


def _distinct(values: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v is not None and str(v) not in out:
            out.append(str(v))
    return out


def _label(run: Run, i: int) -> str:
    return os.path.normpath(str(run.dir)) if run.dir is not None else f"run {i + 1}"


# -- writing a merged run ------------------------------------------------------------

def write_run(run: Run, out_dir: Path | str) -> None:
    """Write ``results.jsonl`` and ``run.json`` (each atomically) so the merged run reads back."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in run.records)
    _atomic_write(out / RESULTS, lines)
    _atomic_write(out / RUN, json.dumps(run.meta, ensure_ascii=False, indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- the matrix ---------------------------------------------------------------------------

@dataclass
class Column:
    index: int
    adapter: str
    framework: str
    versions: dict[str, str]
    device: str
    variant: str
    label: str = ""  # what tells this column from the adapter's other columns
    title: str = ""  # everything about it, for a tooltip
    changed: bool = False  # takes part in a change on some clause


@dataclass
class Change:
    clause: str
    adapter: str
    row: int
    cells: list[tuple[int, str, tuple[str, ...]]]  # (column, status, model) in column order


@dataclass
class Matrix:
    columns: list[Column]
    clauses: list[dict[str, str]]  # catalogue rows in display order, each with family and statement
    cells: dict[tuple[int, int], dict]  # (row, column) -> record
    changes: list[Change]
    omitted: list[str]  # columns left out of the page, and why
    frameworks: list[str]  # in display order
    multi_version: bool  # some adapter has more than one column

    def changed_rows(self) -> set[int]:
        return {c.row for c in self.changes}


def build_matrix(run: Run) -> Matrix:
    records = run.records
    adapter_order: dict[str, int] = {}
    framework_order: dict[str, int] = {}
    for a in run.meta.get("adapters", []):
        adapter_order.setdefault(a["name"], len(adapter_order))
        if a.get("framework"):
            framework_order.setdefault(a["framework"], len(framework_order))
    for rec in records:
        adapter_order.setdefault(rec["adapter"], len(adapter_order))
        framework_order.setdefault(rec["framework"], len(framework_order))

    col_recs: dict[tuple, list[dict]] = {}
    col_framework: dict[tuple, str] = {}
    for rec in records:
        key = (rec["adapter"], versions_key(rec["versions"]), rec.get("device") or "", rec.get("variant") or "")
        col_recs.setdefault(key, []).append(rec)
        col_framework.setdefault(key, rec["framework"])

    # an adapter not installed in one run but measured in another: its empty column says nothing
    omitted: list[str] = []
    measured = {k[0] for k, rs in col_recs.items() if any(r["status"] != "unavailable" for r in rs)}
    for key in list(col_recs):
        if key[0] in measured and all(r["status"] == "unavailable" for r in col_recs[key]):
            srcs = sorted({r.get("source") or "this run" for r in col_recs[key]})
            omitted.append(f"{key[0]}: unavailable in {', '.join(srcs)}")
            del col_recs[key]

    def sort_key(key: tuple) -> tuple:
        adapter, vkey, device, variant = key
        fw = col_framework[key]
        versions = dict(vkey)
        return (framework_order.get(fw, 1 << 30), adapter_order.get(adapter, 1 << 30),
                version_sort_key(versions.get(fw, "")), [version_sort_key(v) for _, v in vkey], device, variant)

    keys = sorted(col_recs, key=sort_key)
    columns = [Column(index=i, adapter=k[0], framework=col_framework[k], versions=dict(k[1]), device=k[2],
                      variant=k[3]) for i, k in enumerate(keys)]
    _label_columns(columns)

    clauses = [dict(c) for c in run.clauses]
    # rows grouped by family, families in the order they first appear, clauses in catalogue order
    fam_order: dict[str, int] = {}
    for c in clauses:
        fam_order.setdefault(c["family"], len(fam_order))
    clauses.sort(key=lambda c: fam_order[c["family"]])  # stable: keeps catalogue order inside a family
    row_of = {c["id"]: i for i, c in enumerate(clauses)}

    cells: dict[tuple[int, int], dict] = {}
    for ci, key in enumerate(keys):
        for rec in col_recs[key]:
            cells[(row_of[rec["clause"]], ci)] = rec

    changes: list[Change] = []
    by_adapter: dict[str, list[int]] = {}
    for col in columns:
        by_adapter.setdefault(col.adapter, []).append(col.index)
    for ri, c in enumerate(clauses):
        for adapter, cis in by_adapter.items():
            if len(cis) < 2:
                continue
            seen = [(ci, cells[(ri, ci)]) for ci in cis if (ri, ci) in cells]
            judged = [(ci, rec) for ci, rec in seen if rec["status"] != "unavailable"]
            if len({outcome(rec) for _, rec in judged}) > 1:
                changes.append(Change(c["id"], adapter, ri, [(ci, rec["status"], outcome(rec)[1]) for ci, rec in seen]))
                for ci in cis:
                    columns[ci].changed = True

    frameworks = []
    for col in columns:
        if col.framework not in frameworks:
            frameworks.append(col.framework)
    return Matrix(columns=columns, clauses=clauses, cells=cells, changes=changes, omitted=omitted,
                  frameworks=frameworks, multi_version=any(len(v) > 1 for v in by_adapter.values()))


def _label_columns(columns: list[Column]) -> None:
    by_adapter: dict[str, list[Column]] = {}
    for col in columns:
        by_adapter.setdefault(col.adapter, []).append(col)
    for cols in by_adapter.values():
        dists = sorted({d for c in cols for d in c.versions})
        differing = [d for d in dists if len({c.versions.get(d) for c in cols}) > 1]
        devices_differ = len({c.device for c in cols}) > 1
        for c in cols:
            if differing:
                shown = differing
            else:
                shown = [c.framework] if c.framework in c.versions else dists[:1]
            parts = []
            for d in shown:
                v = c.versions.get(d, "\u2014")
                parts.append(v if (len(shown) == 1 and d == c.framework) else f"{d} {v}")
            if not c.versions:
                parts = ["not installed"]
            if devices_differ and c.device:
                parts.append(c.device)
            if c.variant:
                parts.append(f"run {c.variant}")
            c.label = " \u00b7 ".join(parts)
            vers = ", ".join(f"{d} {v}" for d, v in sorted(c.versions.items())) or "not installed"
            c.title = f"{c.adapter} \u2014 {vers}" + (f" \u2014 {c.device}" if c.device else "") + (
                f" \u2014 from {c.variant}" if c.variant else "")


_NUM = re.compile(r"(\d+)")


def version_sort_key(v: str) -> tuple:
    """Natural order for version strings: 2.9.0 < 2.10.0 < 2.10.1; text parts after numbers."""
    parts = []
    for piece in _NUM.split(v or ""):
        if piece.isdigit():
            parts.append((1, int(piece), ""))
        elif piece:
            parts.append((0, 0, piece))
    return tuple(parts)
