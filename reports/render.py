"""Render a run (or several, merged) into one self-contained HTML page.

The page is ``out_dir/index.html``: styles and scripts inline, nothing fetched
when it opens (it works from disk), rendered by Jinja2 from
``reports/templates/*.j2``. The matrix itself is plain server-rendered HTML (one
short ``<td>`` per check); everything a cell opens to (example, expected,
actual, divergence, snippet, the bits where values print alike) is embedded once,
as JSON, and read by the script only when the cell is clicked. What it embeds is
kept small: every line of text once (snippets of one adapter share most of theirs),
a long text cut with the cut said (results.jsonl keeps it whole), each declaration
once, never a witness or a hex dump. Filters work by toggling a class or one
generated style rule, so they stay fast with thousands of checks; their state is the
URL's fragment.

Laid out for a laptop: one title line (the run's details and the legend fold away),
a toolbar (views: all, new failures only, changes; statuses; frameworks; a search over
clauses and adapters), each column's full name upright on one or two lines, and under
it the column's score: how many clauses conform, diverge as declared, fail.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import jinja2

from .compare import load_comparisons
from .merge import Matrix, build_matrix, merge_runs
from .bits import record_bits
from .results import (FAILING, LABELS, MEANINGS, PASSING, SKIPPING, STATUSES, SYMBOLS, Run, acknowledged, gate_failing,
                      read_run)

TEMPLATES = Path(__file__).with_name("templates")
PAGE = "page.html.j2"
_PASSING_ONLY = PASSING - SKIPPING  # conforms, diverges: the legend's "pass"


def render(run_or_runs: Run | Sequence[Run] | Path | str, out_dir: Path | str, *, write: bool = True) -> Any:
    """Render ``out_dir/index.html`` and return its path.

    ``run_or_runs`` is one :class:`~reports.results.Run` (from ``read_run``), a
    report directory (read with ``read_run``; ResultsError on bad input), or a
    sequence of Runs, which are merged first (a version axis: one column per
    adapter and set of versions, changed clauses marked). With ``write=False``
    the page is returned as a string and nothing is written.
    """
    if isinstance(run_or_runs, (str, os.PathLike)):
        run = read_run(run_or_runs)
    elif isinstance(run_or_runs, Run):
        run = run_or_runs
    else:
        runs = [read_run(r) if isinstance(r, (str, os.PathLike)) else r for r in run_or_runs]
        if not runs:
            raise ValueError("render() needs at least one run")
        run = runs[0] if len(runs) == 1 else merge_runs(runs)
    html = render_page(run)
    if not write:
        return html
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    tmp = out / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_page(run: Run) -> str:
    return _env().get_template(PAGE).render(**page_context(run))


_ENV: jinja2.Environment | None = None


def _env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _ENV


def page_context(run: Run) -> dict[str, Any]:
    m = build_matrix(run)
    meta = run.meta
    ncols = len(m.columns)
    changed_cells = {(ch.row, ci) for ch in m.changes for ci, _, _ in ch.cells}
    # which columns of the changed adapter: all of them, so the whole version group is outlined
    changed_groups: set[tuple[int, int]] = set()
    cols_of: dict[str, list[int]] = {}
    for col in m.columns:
        cols_of.setdefault(col.adapter, []).append(col.index)
    for ch in m.changes:
        for ci in cols_of[ch.adapter]:
            changed_groups.add((ch.row, ci))
    changed_cells |= changed_groups

    counts = {s: 0 for s in STATUSES}
    acks = 0
    missing = 0
    new = 0
    families: list[dict[str, Any]] = []
    changed_rows = m.changed_rows()
    for ri, clause in enumerate(m.clauses):
        cells = []
        for ci in range(ncols):
            rec = m.cells.get((ri, ci))
            if rec is None:
                missing += 1
                cells.append(("x", ""))
                continue
            s = rec["status"]
            counts[s] += 1
            ack = acknowledged(rec)
            acks += ack
            fresh = gate_failing(rec)
            new += fresh
            cls = f"s-{s}" + (" ack" if ack else "") + (" n" if fresh else "") + (
                " g" if (ri, ci) in changed_cells else "")
            cells.append((cls, SYMBOLS[s]))
        if not families or families[-1]["name"] != clause["family"]:
            families.append({"name": clause["family"], "rows": []})
        families[-1]["rows"].append({"index": ri, "id": clause["id"], "statement": clause.get("statement", ""),
                                     "changed": ri in changed_rows, "cells": cells})

    fw_groups, ad_groups = _header_groups(m)
    scores = [_score([rec for (ri, c), rec in m.cells.items() if c == ci]) for ci in range(ncols)]
    comparisons = [_comparison(c) for c in load_comparisons(run.dir)]
    failing = sum(1 for rec in m.cells.values() if gate_failing(rec))
    total = sum(counts.values())
    runs = meta.get("runs") or []
    incomplete = [r.get("source", "") for r in runs if not r.get("complete", True)]

    page = _PageData()
    data = {
        "statuses": list(STATUSES),
        "symbols": SYMBOLS,
        "labels": LABELS,
        "meanings": MEANINGS,
        "failing": sorted(FAILING),
        "frameworks": m.frameworks,
        "cols": [{"a": c.adapter, "f": c.framework, "v": c.versions, "d": c.device, "l": c.label, "x": c.variant,
                  "g": c.changed} for c in m.columns],
        "rows": [{"id": c["id"], "f": c["family"], "s": c.get("statement", "")} for c in m.clauses],
        "recs": [page.record(ri, ci, rec) for (ri, ci), rec in sorted(m.cells.items())],
        "changes": [{"r": ch.row, "a": ch.adapter, "c": [ci for ci, _, _ in ch.cells]} for ch in m.changes],
    }
    data["lines"] = page.lines
    data["decls"] = page.decls
    return {
        "title": "Embedding conformance report" + (" (merged)" if len(runs) > 1 else ""),
        "meta": meta,
        "env_rows": _env_rows(meta),
        "versions": sorted(meta.get("versions", {}).items()),
        "runs": runs if len(runs) > 1 else [],
        "complete": run.complete,
        "incomplete": incomplete,
        "omitted": m.omitted,
        "statuses": [{"name": s, "symbol": SYMBOLS[s], "label": LABELS[s], "meaning": MEANINGS[s],
                      "count": counts[s], "passes": s in PASSING, "group": _group(s),
                      "acknowledged": acks if s == "violates" else 0} for s in STATUSES],
        "groups": _groups(),
        "total": total,
        "failing": failing,
        "new": new,
        "failing_counts": [(s, counts[s] - (acks if s == "violates" else 0)) for s in STATUSES
                           if s in FAILING and counts[s] - (acks if s == "violates" else 0)],
        "acknowledged": acks,
        "diverging": counts["diverges"],
        "missing": missing,
        "columns": m.columns,
        "ncols": ncols,
        "nrows": len(m.clauses),
        "fw_groups": fw_groups,
        "ad_groups": ad_groups,
        "frameworks": [{"name": f, "ncols": sum(1 for c in m.columns if c.framework == f)} for f in m.frameworks],
        "families": families,
        "boundaries": _boundary_css(m, fw_groups, ad_groups),
        "multi_version": m.multi_version,
        "changes": [{"row": ch.row, "clause": ch.clause, "adapter": ch.adapter,
                     "cells": [{"col": ci, "label": m.columns[ci].label, "status": s, "symbol": SYMBOLS[s],
                                "model": " + ".join(model)} for ci, s, model in ch.cells]} for ch in m.changes],
        "data_json": _script_json(data),
        "scores": scores,
        "comparisons": comparisons,
    }


# -- the score under each column: what conforms, what departs as declared, what fails --------

def _group(status: str) -> str:
    """The legend's group of a status: pass, skip or fail (suites/statuses.py's pytest outcome)."""
    return "pass" if status in _PASSING_ONLY else "fail" if status in FAILING else "skip"


def _groups() -> list[dict[str, Any]]:
    return [{"name": g, "statuses": [s for s in STATUSES if _group(s) == g]} for g in ("pass", "skip", "fail")]


def _score(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A column's score as its author reads it: of the clauses that apply (neither skipped
    status), how many conform, how many depart exactly as declared (pass, as the legend
    says), how many fail (violate, acknowledged or not, are stale or err)."""
    by = {s: 0 for s in STATUSES}
    for r in records:
        by[r["status"]] += 1
    applicable = sum(n for s, n in by.items() if _group(s) != "skip")
    fails = sum(by[s] for s in STATUSES if _group(s) == "fail")
    out = {"conforms": by["conforms"], "diverges": by["diverges"], "fails": fails, "applicable": applicable}
    if not applicable:
        out["title"] = "no clause applies"
        return out
    parts = [f"{by['conforms']} conform", f"{by['diverges']} diverge as declared"]
    parts += [f"{by[s]} {LABELS[s]}" for s in STATUSES if _group(s) == "fail" and by[s]]
    out["title"] = f"of {applicable} applicable clauses: " + ", ".join(parts)
    out["pass_pct"] = round(100 * (by["conforms"] + by["diverges"]) / applicable)
    return out


# -- what the page embeds for the panel ----------------------------------------------------

TEXT_CAP = 12000  # characters of one text (example, snippet, ...) the page embeds; results.jsonl keeps it all
LINE_CAP = 2000  # characters of one line of it
_TEXT_KEYS = ("example", "expected", "actual", "detail", "reason", "snippet", "divergence_set_aside",
              "acknowledged_not_met")
_PLAIN_KEYS = ("source", "examples", "seconds", "found_by", "environment", "model")
_DECL_KEYS = ("model", "versions", "reference", "note", "source", "when", "intermittent", "undefined_memory", "also")


class _PageData:
    """The records as the page embeds them: long texts cut (the cut said, with where the
    whole text is), every line of text interned once (snippets of one adapter share most of
    theirs), declarations listed once and referred to by index, and never a witness."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._line_ids: dict[str, int] = {}
        self.decls: list[dict[str, Any]] = []
        self._decl_ids: dict[str, int] = {}
        self._clauses: dict | None = None

    def record(self, ri: int, ci: int, rec: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"r": ri, "c": ci, "s": rec["status"]}
        for k in _TEXT_KEYS:
            v = rec.get(k)
            if v not in (None, ""):
                out[k] = self.text(str(v))
        for k in _PLAIN_KEYS:
            v = rec.get(k)
            if v not in (None, "", []):
                out[k] = v
        for k in ("divergence", "acknowledged"):
            if rec.get(k):
                out[k] = self.declaration(rec[k])
        if gate_failing(rec):
            out["new"] = 1
        if rec["status"] in ("diverges", "violates", "stale"):
            bits = record_bits(rec, self.clauses())
            if bits is not None:
                out["bits"] = bits
        return out

    def clauses(self) -> dict | None:
        if self._clauses is None:
            try:
                from embedding_conformance.suites.catalogue import load_all

                self._clauses = load_all()
            except Exception:
                self._clauses = {}
        return self._clauses

    def text(self, text: str) -> list[Any]:
        """[line index, ...] and, when cut, a last item {"cut": characters left out}."""
        out: list[Any] = []
        used = cut = 0
        for line in text.split("\n"):
            if used >= TEXT_CAP:
                cut += len(line) + 1
                continue
            if len(line) > LINE_CAP:
                cut += len(line) - LINE_CAP
                line = line[:LINE_CAP] + "\u2026"
            used += len(line) + 1
            out.append(self._line(line))
        if cut:
            out.append({"cut": cut})
        return out

    def _line(self, line: str) -> int:
        k = self._line_ids.get(line)
        if k is None:
            k = self._line_ids[line] = len(self.lines)
            self.lines.append(line)
        return k

    def declaration(self, d: dict[str, Any]) -> int:
        slim = {k: d[k] for k in _DECL_KEYS if d.get(k) not in (None, "", [], {})}
        if d.get("behaviours"):
            slim["behaviours"] = [{k: b[k] for k in _DECL_KEYS if b.get(k) not in (None, "", [], {})}
                                  for b in d["behaviours"]]
        if d.get("failure") is not None:
            slim["failure"] = d["failure"]
        key = json.dumps(slim, sort_keys=True)
        k = self._decl_ids.get(key)
        if k is None:
            k = self._decl_ids[key] = len(self.decls)
            self.decls.append(slim)
        return k


def _comparison(c: dict[str, Any]) -> dict[str, Any]:
    rows = c["clauses"]
    return {"a": c["a"], "b": c["b"], "rows": [_porting_row(r) for r in rows],
            "differs": sum(1 for r in rows if r["verdict"] == "differs"),
            "agrees": sum(1 for r in rows if r["verdict"] == "agrees"),
            "errors": sum(1 for r in rows if r["verdict"] == "error")}


def _porting_row(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    for k in ("input", "a", "b", "reason"):
        if isinstance(out.get(k), str) and len(out[k]) > TEXT_CAP:
            out[k] = out[k][:TEXT_CAP] + f"\u2026 ({len(out[k]) - TEXT_CAP} characters more in the saved comparison)"
    return out


def _header_groups(m: Matrix) -> tuple[list[dict], list[dict]]:
    fw: list[dict] = []
    ad: list[dict] = []
    for col in m.columns:
        if fw and fw[-1]["name"] == col.framework:
            fw[-1]["n"] += 1
        else:
            fw.append({"name": col.framework, "c0": col.index, "n": 1})
        if ad and ad[-1]["name"] == col.adapter:
            ad[-1]["n"] += 1
            ad[-1]["changed"] |= col.changed
        else:
            ad.append({"name": col.adapter, "framework": col.framework, "c0": col.index, "n": 1,
                       "changed": col.changed, "label": col.label, "title": col.title,
                       "lines": name_lines(col.adapter)})
    return fw, ad


NAME_LINE = 18  # characters: a longer column name is written upright on two lines


def name_lines(name: str) -> list[str]:
    """A column's full name as one or two lines (broken after a dot or before a bracket,
    as evenly as it goes), so that it is read whole, without a tooltip."""
    if len(name) <= NAME_LINE:
        return [name]
    cuts = [i + 1 for i, ch in enumerate(name) if ch in "._" and 0 < i < len(name) - 1]
    cuts += [i for i, ch in enumerate(name) if ch == "[" and i > 0]
    if not cuts:
        cuts = [len(name) // 2]
    best = min(cuts, key=lambda i: (max(i, len(name) - i), i))
    return [name[:best], name[best:]]


def _boundary_css(m: Matrix, fw_groups: list[dict], ad_groups: list[dict]) -> str:
    """Column separators as a few nth-child rules, so no cell carries a class for them."""
    fw_starts = [g["c0"] for g in fw_groups[1:]]
    ad_starts = [g["c0"] for g in ad_groups[1:] if g["c0"] not in fw_starts]
    rules = []
    if fw_starts:
        rules.append(",".join(f"tr.cl>td:nth-child({c + 2})" for c in fw_starts)
                     + "{border-left:2px solid var(--rule-strong)}")
    if ad_starts and m.multi_version:
        rules.append(",".join(f"tr.cl>td:nth-child({c + 2})" for c in ad_starts)
                     + "{border-left:1px solid var(--rule-mid)}")
    return "\n".join(rules)


def _env_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    hyp = meta.get("hypothesis")
    rows = [
        ("Date", _date(meta.get("date", ""))),
        ("Suite revision", meta.get("revision", "")),
        ("Python", meta.get("python", "")),
        ("Platform", meta.get("platform", "")),
        ("Device", meta.get("device", "")),
        ("Hypothesis", (f"{hyp} \u00b7 " if hyp else "") + f"profile {meta.get('profile', '')} \u00b7 seed {meta.get('seed', '')}"),
    ]
    return rows


def _date(d: str) -> str:
    # "2026-11-21T23:10:00Z" -> "2026-11-21 23:10:00 UTC"; anything else as written
    if len(d) >= 19 and d[10] == "T":
        return d[:10] + " " + d[11:19] + (" UTC" if d.endswith("Z") or d.endswith("+00:00") else d[19:])
    return d


def _script_json(data: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '</script>' can end it early."""
    s = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
