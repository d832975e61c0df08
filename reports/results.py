"""Read and validate a run's results: ``DIR/results.jsonl`` and ``DIR/run.json``.

The format is described in the project's results schema: one JSON object per
line in ``results.jsonl`` (one per check: adapter x clause) and one object in
``run.json`` (the run's environment, clause catalogue and adapters). Writing is
done by the pytest plugin; this module only reads.

Every problem with the input is a :class:`ResultsError` whose message is one
line naming the file, the line and the problem, for example::

    ci/torch-2.13/results.jsonl:7: invalid JSON: Expecting ',' delimiter (column 41)

A report must never claim more than it read, so nothing here repairs input:
a truncated last line, a record with a missing key or an unknown status is an
error, not a skipped line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

RESULTS = "results.jsonl"
RUN = "run.json"

from embedding_conformance.suites.statuses import ALL, FAILING, SKIPPING, acknowledged, gate_failing  # noqa: F401 (re-exported)
from embedding_conformance.suites.statuses import PASSING as _PASSING

# Display order: the passing statuses, then the skipped, then the failing (suites/statuses.py
# defines them, with their symbols, labels and meanings; a page counts a skip as passing)
_ORDERED = [s for s in ALL if s.name in _PASSING] + [s for s in ALL if s.name in SKIPPING] + \
    [s for s in ALL if s.name in FAILING]
STATUSES = tuple(s.name for s in _ORDERED)
PASSING = _PASSING | SKIPPING
SYMBOLS = {s.name: s.symbol for s in ALL}
LABELS = {s.name: s.label for s in ALL}
MEANINGS = {s.name: s.meaning for s in ALL}

RUN_REQUIRED = ("python", "platform", "device", "revision", "profile", "seed", "date", "versions", "clauses",
                "adapters", "complete")
_RUN_TEXT = ("python", "platform", "device", "revision", "profile", "date", "hypothesis")


class ResultsError(ValueError):
    """Input that cannot be read as a run's results. The message is one line."""

    def __init__(self, path: Path | str, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = _one_line(problem)
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {self.problem}")


@dataclass
class Run:
    """One run's results, validated. ``records`` are plain dicts in file order,
    with ``family`` and ``statement`` filled in from the clause id and catalogue."""

    dir: Path | None
    meta: dict[str, Any]
    records: list[dict[str, Any]]
    sources: list[str] = field(default_factory=list)  # for a merged run: the directories it joins

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    @property
    def clauses(self) -> list[dict[str, str]]:
        return self.meta["clauses"]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for r in self.records:
            out[r["status"]] += 1
        return out


def read_run(dir: Path | str) -> Run:
    """Read ``dir/run.json`` and ``dir/results.jsonl``; ResultsError on any problem."""
    d = Path(dir)
    if not d.exists():
        raise ResultsError(d, None, "no such directory")
    if not d.is_dir():
        raise ResultsError(d, None, "not a directory (expected a report directory holding run.json and results.jsonl)")
    meta = read_meta(d / RUN)
    records = read_records(d / RESULTS)
    _reconcile(meta, records)
    return Run(dir=d, meta=meta, records=records)


# -- run.json -----------------------------------------------------------------

def read_meta(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    if not text.strip():
        raise ResultsError(path, None, "file is empty (the run wrote no metadata)")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        rest = text[e.pos:].rstrip()
        if e.pos >= len(text.rstrip()) or (e.msg.startswith("Unterminated string") and "\n" not in rest):
            raise ResultsError(path, e.lineno, f"truncated JSON: the file ends before the object closes ({e.msg})") from None
        raise ResultsError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(meta, dict):
        raise ResultsError(path, 1, f"expected a JSON object, got {_kind(meta)}")

    def fail(key: str, problem: str) -> ResultsError:
        return ResultsError(path, _line_of(text, f'"{key}"'), problem)

    for key in RUN_REQUIRED:
        if key not in meta:
            raise ResultsError(path, 1, f"missing key {key!r}")
    for key in _RUN_TEXT:
        if key in meta and not isinstance(meta[key], str):
            raise fail(key, f"key {key!r} must be a string, got {_kind(meta[key])}")
    if isinstance(meta["seed"], (int, float)) and not isinstance(meta["seed"], bool):
        meta["seed"] = str(meta["seed"])
    if not isinstance(meta["seed"], str):
        raise fail("seed", f"key 'seed' must be a string, got {_kind(meta['seed'])}")
    if not isinstance(meta["complete"], bool):
        raise fail("complete", f"key 'complete' must be true or false, got {_kind(meta['complete'])}")
    problem = _versions_problem(meta["versions"])
    if problem:
        raise fail("versions", f"key 'versions' {problem}")

    if not isinstance(meta["clauses"], list):
        raise fail("clauses", f"key 'clauses' must be a list, got {_kind(meta['clauses'])}")
    seen: set[str] = set()
    for i, c in enumerate(meta["clauses"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not c["id"]:
            raise fail("clauses", f"clauses[{i}] must be an object with a non-empty string 'id'")
        if c["id"] in seen:
            raise fail("clauses", f"clauses[{i}]: clause {c['id']!r} is listed twice")
        seen.add(c["id"])
        if not isinstance(c.get("statement", ""), str) or not isinstance(c.get("family", ""), str):
            raise fail("clauses", f"clauses[{i}] ({c['id']}): 'statement' and 'family' must be strings")
        c.setdefault("family", c["id"].split(".")[0])
        c.setdefault("statement", "")

    if not isinstance(meta["adapters"], list):
        raise fail("adapters", f"key 'adapters' must be a list, got {_kind(meta['adapters'])}")
    for i, a in enumerate(meta["adapters"]):
        if not isinstance(a, dict) or not isinstance(a.get("name"), str) or not a["name"]:
            raise fail("adapters", f"adapters[{i}] must be an object with a non-empty string 'name'")
        if not isinstance(a.get("framework", ""), str):
            raise fail("adapters", f"adapters[{i}] ({a['name']}): 'framework' must be a string")
        problem = _versions_problem(a.get("versions", {}))
        if problem:
            raise fail("adapters", f"adapters[{i}] ({a['name']}): 'versions' {problem}")

    runs = meta.get("runs")  # present in a merged run.json: the runs it joins
    if runs is not None and (not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs)):
        raise fail("runs", "key 'runs' must be a list of objects")
    return meta


# -- results.jsonl ---------------------------------------------------------------

def read_records(path: Path) -> list[dict[str, Any]]:
    text = _read_text(path)
    if not text.strip():
        raise ResultsError(path, None, "file is empty (no checks were recorded)")
    lines = text.split("\n")
    ends_mid_line = not text.endswith("\n")
    records: list[dict[str, Any]] = []
    first_seen: dict[tuple, int] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if ends_mid_line and n == len(lines):
                raise ResultsError(path, n, "truncated record: the file ends in the middle of this line "
                                            "(was the run interrupted while writing?)") from None
            raise ResultsError(path, n, f"invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(rec, dict):
            raise ResultsError(path, n, f"expected a JSON object, got {_kind(rec)}")
        _check_record(rec, path, n)
        key = record_key(rec)
        if key in first_seen:
            raise ResultsError(path, n, f"duplicate record for adapter {rec['adapter']!r}, clause {rec['clause']!r} "
                                        f"(first at line {first_seen[key]})")
        first_seen[key] = n
        records.append(rec)
    return records


def record_key(rec: dict[str, Any]) -> tuple:
    """What makes a record unique: one check of one adapter at one set of versions."""
    return (rec["adapter"], versions_key(rec["versions"]), rec.get("device") or "", rec.get("variant") or "",
            rec["clause"])


def versions_key(versions: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(versions.items()))


def outcome(rec: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """What a change between versions is judged on: the status and the behaviour model
    (an acknowledged violation counts as the model "acknowledged")."""
    div = rec.get("divergence") or {}
    return rec["status"], tuple(div.get("model") or ()) + (("acknowledged",) if rec.get("acknowledged") else ())


def score(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A column's score: of the clauses that apply to it (neither not_applicable nor
    unavailable), how many conform."""
    applicable = [r for r in records if r["status"] not in ("not_applicable", "unavailable")]
    conforms = sum(1 for r in applicable if r["status"] == "conforms")
    return {"conforms": conforms, "applicable": len(applicable),
            "share": round(conforms / len(applicable), 4) if applicable else None}


SCHEMA = Path(__file__).with_name("results.schema.json")
_VALIDATOR = None


def _validator():
    """The results schema's validator (reports/results.schema.json: the record's one owner)."""
    global _VALIDATOR
    if _VALIDATOR is None:
        from jsonschema import Draft202012Validator

        _VALIDATOR = Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    return _VALIDATOR


def schema_problem(rec: dict[str, Any]) -> str | None:
    """Why a record does not fit the schema, in one line (None: it fits)."""
    errors = sorted(_validator().iter_errors(rec), key=lambda e: (e.validator != "required", len(e.absolute_path)))
    if not errors:
        return None
    e = errors[0]
    where = ".".join(str(p) for p in e.absolute_path)
    if e.validator == "required":
        missing = next(k for k in e.validator_value if k not in e.instance)
        return f"missing key {'.'.join(filter(None, [where, missing]))!r}"
    if e.validator == "enum" and where == "status":
        return f"key 'status' is {_short(e.instance)}, expected one of {', '.join(STATUSES)}"
    if e.validator == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        return f"unknown key {extra[0]!r}{' in ' + where if where else ''} (see reports/results.schema.json)"
    return f"key {where!r}: {e.message[:200]}"


def _check_record(rec: dict[str, Any], path: Path, n: int) -> None:
    div = rec.get("divergence")
    if isinstance(div, dict) and isinstance(div.get("model"), str):  # an older writer's single model
        div["model"] = [div["model"]]
    problem = schema_problem(rec)
    if problem:
        raise ResultsError(path, n, problem)
    rec["family"] = rec.get("family") or rec["clause"].split(".")[0]


def _reconcile(meta: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Fill statements from the catalogue; extend the catalogue with clauses that
    only the records name (in the order first seen), so no record is dropped."""
    catalogue = {c["id"]: c for c in meta["clauses"]}
    for rec in records:
        c = catalogue.get(rec["clause"])
        if c is None:
            c = {"id": rec["clause"], "family": rec["family"], "statement": rec.get("statement") or ""}
            meta["clauses"].append(c)
            catalogue[c["id"]] = c
        elif not c.get("statement") and rec.get("statement"):
            c["statement"] = rec["statement"]
        if not rec.get("statement"):
            rec["statement"] = c.get("statement", "")


# -- helpers ----------------------------------------------------------------------

def _read_text(path: Path) -> str:
    if not path.exists():
        raise ResultsError(path, None, "file not found")
    if not path.is_file():
        raise ResultsError(path, None, "not a regular file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ResultsError(path, line, f"not UTF-8 text (byte {e.start} is {data[e.start]:#04x}); "
                                       f"the file is corrupt or not a results file") from None


def _versions_problem(v: Any) -> str | None:
    if not isinstance(v, dict):
        return f"must be an object mapping distribution to version, got {_kind(v)}"
    for k, val in v.items():
        if not isinstance(val, str):
            return f"must map distribution to a version string; {k!r} maps to {_kind(val)}"
    return None


def _line_of(text: str, needle: str) -> int:
    i = text.find(needle)
    return text.count("\n", 0, i) + 1 if i >= 0 else 1


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(v), type(v).__name__)


def _short(v: Any, limit: int = 60) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 1] + "\u2026"


def _one_line(s: str) -> str:
    return " ".join(s.split())


def iter_statuses() -> Iterable[tuple[str, str, str, bool]]:
    """(status, symbol, label, passes) in display order."""
    for s in STATUSES:
        yield s, SYMBOLS[s], LABELS[s], s in PASSING
