"""Badges: one shields.io endpoint JSON per column family (framework) of a run, written by
the merge into ``badges/<framework>.json`` beside the page, so that a README can show
``https://img.shields.io/endpoint?url=<published page>/badges/torch.json``.

A badge counts checks the way the page's column score does (suites/statuses.py groups
them): how many pass (conform, or diverge as declared), how many fail the gate (a new
violation, a stale declaration, an error) and how many are acknowledged violations. It
is red when any check fails the gate, orange when the only failures are acknowledged,
green otherwise; a family none of whose checks ran (unavailable everywhere) is grey."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

from .results import acknowledged, gate_failing

SCHEMA_VERSION = 1  # https://shields.io/badges/endpoint-badge


def badge(framework: str, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The endpoint JSON of one framework's checks."""
    recs = [r for r in records if r["status"] not in ("not_applicable", "unavailable")]
    failing = sum(1 for r in recs if gate_failing(r))
    acked = sum(1 for r in recs if acknowledged(r))
    passing = sum(1 for r in recs if r["status"] in ("conforms", "diverges"))
    if not recs:
        return {"schemaVersion": SCHEMA_VERSION, "label": framework, "message": "not run", "color": "lightgrey"}
    parts = [f"{passing} pass"]
    if acked:
        parts.append(f"{acked} known")
    if failing:
        parts.append(f"{failing} failing")
    color = "red" if failing else "orange" if acked else "brightgreen"
    return {"schemaVersion": SCHEMA_VERSION, "label": framework, "message": " · ".join(parts), "color": color}


def _file_name(framework: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", framework).strip("-") or "unnamed"


def badges(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """File name (``torch.json``) -> endpoint JSON, one per framework, in first-seen order."""
    by_framework: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_framework.setdefault(rec.get("framework") or "unknown", []).append(rec)
    return {f"{_file_name(fw)}.json": badge(fw, recs) for fw, recs in by_framework.items()}


def write_badges(records: Iterable[dict[str, Any]], out_dir: Path | str) -> list[Path]:
    """Write ``out_dir/badges/<framework>.json``; returns the files written."""
    target = Path(out_dir) / "badges"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in badges(records).items():
        path = target / name
        path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
