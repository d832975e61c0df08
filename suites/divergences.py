"""Declared departures: reviewed data saying which adapter departs from the contract
on which clauses, for which versions, and where that is documented.

Two kinds of entry, each a table array in the same file:

- ``[[divergence]]``: the adapter follows a behaviour ``model`` exactly (the check
  ``diverges`` while it does, ``violates`` when it follows neither the contract nor
  the model, ``stale`` when it conforms again);
- ``[[violation]]``: an *acknowledged violation*, a departure no exact model
  expresses (a crash on valid input, a result that depends on the value). No model;
  a ``note`` with the minimal input is required. The check stays ``violates`` (pytest
  reports it as an expected failure) and turns ``stale`` when it no longer departs,
  unless it is ``intermittent = true``: a departure that needs the state earlier calls
  left or a timing, which no witness can force; a run that does not meet it reports
  the check as it found it, with ``acknowledged_not_met`` saying so.

``adapter`` and ``clause`` each take one name or a list (a pattern: fnmatch, whose
brackets are character classes, so bracketed adapter names are written out).
Built-in declarations live in ``suites/divergences/*.toml``; users add their own
with ``--expectations FILE`` (TOML or JSON of the same shape), which take
precedence. A malformed file is an ExpectationsError whose one-line message names
the file, the entry and the valid choices; so is an entry that names no known
adapter, or one that can only meet ``not_applicable`` checks (``check_targets``).
"""
from __future__ import annotations

import fnmatch
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

BUILTIN_DIR = Path(__file__).with_name("divergences")
KINDS = ("divergence", "violation")  # the table arrays of an expectations file
KEYS = {
    "divergence": {"adapter", "clause", "model", "versions", "reference", "note", "witness", "when"},
    "violation": {"adapter", "clause", "versions", "reference", "note", "witness", "when", "intermittent"},
}
REQUIRED = {
    "divergence": ("adapter", "clause", "model", "versions", "reference"),
    # no model: the note is the write-up (what departs, on which minimal input)
    "violation": ("adapter", "clause", "versions", "reference", "note"),
}


class ExpectationsError(ValueError):
    pass


@dataclass(frozen=True)
class Divergence:
    adapter: str  # exact name or fnmatch pattern
    clause: str
    model: tuple[str, ...]
    versions: tuple[tuple[str, str], ...]  # (distribution, PEP 440 specifier)
    reference: str
    note: str = ""
    source: str = field(default="", compare=False)  # file:entry, for messages
    # an input known to expose the divergence, tried first by every search (a
    # hypothesis explicit example): a rare departure is then found on every run,
    # and a fix upstream turns the declaration stale for certain
    witness: dict | None = field(default=None, compare=False, hash=False)
    # facts of the adapter's process (its environment(): thread counts, ...) the
    # divergence needs, as PEP 440 specifiers; where one is unmet the adapter is
    # held to the contract itself
    when: tuple[tuple[str, str], ...] = ()
    # an acknowledged violation: no model, the check stays `violates`
    violation: bool = False
    file: str = field(default="", compare=False)  # the file's path, for messages
    # a violation that no witness can force (it needs earlier calls' state or a timing):
    # not meeting it in a run proves nothing, so it never makes the check stale
    intermittent: bool = False

    @property
    def kind(self) -> str:
        return "violation" if self.violation else "divergence"

    def witness_args(self) -> dict[str, Any] | None:
        return build_witness(self.witness) if self.witness else None

    def holds_for(self, adapter: str, clause: str, installed: dict[str, str]) -> bool:
        if clause != self.clause or not (adapter == self.adapter or fnmatch.fnmatchcase(adapter, self.adapter)):
            return False
        return all(_satisfies(spec, installed.get(dist)) for dist, spec in self.versions)

    def unmet(self, facts: dict[str, Any]) -> str | None:
        """Why the ``when`` conditions fail in a process with these facts, or None."""
        for fact, spec in self.when:
            have = facts.get(fact)
            if have is None:
                return f"it needs {fact} {spec}, which the adapter does not report"
            if not _satisfies(spec, have):
                return f"it needs {fact} {spec}, and this process has {fact} = {have}"
        return None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"versions": dict(self.versions), "reference": self.reference,
                               "note": self.note, "source": self.source}
        if not self.violation:
            out["model"] = list(self.model)
        if self.witness:
            out["witness"] = self.witness
        if self.when:
            out["when"] = dict(self.when)
        if self.intermittent:
            out["intermittent"] = True
        return out


def _satisfies(spec: str, value: Any) -> bool:
    """Whether a version (or a fact such as a thread count) is in a PEP 440 specifier set."""
    if value is None:
        return False
    try:
        return SpecifierSet(spec).contains(Version(str(value)), prereleases=True)
    except InvalidVersion:
        return False


def _check_specifiers(where: str, prefix: str, mapping: dict, what: str) -> None:
    """One-line error for the first value of ``mapping`` that is not a specifier set
    (``prefix`` names the key it sits under in the error: "" or "when ")."""
    for name, spec in mapping.items():
        try:
            SpecifierSet(str(spec))
        except InvalidSpecifier:
            raise ExpectationsError(f"{where}: {prefix}{name} = {spec!r} is not a {what}") from None


def build_witness(spec: dict[str, Any]) -> dict[str, Any]:
    """Arguments from a witness: each is ``{dtype, values}`` or ``{dtype, bits}``
    (the unsigned bit patterns of a float array, so NaN payloads are exact)."""
    import numpy as np

    from embedding_conformance.suites.strategies import np_dtype

    def array(arr):
        dtype = np_dtype(arr["dtype"])
        if "bits" in arr:
            out = np.array(arr["bits"], dtype=f"u{dtype.itemsize}").view(dtype)
        else:
            out = np.array(arr["values"], dtype=dtype)
        # `shape`: the values broadcast to it (a large table of one repeated row, empty ids of any shape)
        return np.broadcast_to(out, tuple(arr["shape"])).copy() if "shape" in arr else out

    # an argument is an array, a list of arrays (shards) or a plain string (a strategy)
    return {name: arg if isinstance(arg, str) else [array(a) for a in arg] if isinstance(arg, list) else array(arg)
            for name, arg in spec.items()}


def _check_witness(where: str, w: Any) -> None:
    shape = "witness = { table = { dtype = \"bfloat16\", bits = [[0x7f81]] }, ids = { dtype = \"int32\", values = [0, 0] } }"
    if not isinstance(w, dict) or not w:
        raise ExpectationsError(f"{where}: witness must map argument names to arrays, e.g. {shape}")
    for name, arg in w.items():
        if isinstance(arg, str):
            continue
        for arr in (arg if isinstance(arg, list) and arg else [arg]):
            _check_witness_array(where, name, arr, shape)
    try:
        build_witness(w)
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        raise ExpectationsError(f"{where}: witness does not build arrays: {exc}") from None


def _check_witness_array(where: str, name: str, arr: Any, shape: str) -> None:
    if not isinstance(arr, dict) or "dtype" not in arr or len(set(arr) & {"values", "bits"}) != 1 or \
            len(arr) != 2 + ("shape" in arr):
        raise ExpectationsError(f"{where}: witness argument {name!r} must hold dtype and one of values, bits, and "
                                f"optionally a shape they broadcast to (or be a list of such arrays, or a string), "
                                f"e.g. {shape}")


def _load_file(path: Path) -> dict[str, list[Any]]:
    """The file's entries by kind (``divergence``, ``violation``)."""
    if not path.is_file():
        raise ExpectationsError(f"{path}: no such expectations file")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ExpectationsError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    shape = (f"expected [[divergence]] tables (keys: {', '.join(REQUIRED['divergence'])}, note, witness, when) "
             f"or [[violation]] tables (keys: {', '.join(REQUIRED['violation'])}, witness, when, intermittent)")
    if not isinstance(data, dict):
        raise ExpectationsError(f"{path}: {shape}")
    unknown = sorted(set(data) - set(KINDS))
    if unknown:
        raise ExpectationsError(f"{path}: unknown table {unknown[0]!r}; {shape}")
    out = {kind: data.get(kind, []) for kind in KINDS}
    if not all(isinstance(v, list) for v in out.values()):
        raise ExpectationsError(f"{path}: {shape}")
    return out


def _names(where: str, key: str, value: Any) -> list[str]:
    """One name or a non-empty list of names."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(x, str) and x.strip() for x in names):
        raise ExpectationsError(f"{where}: {key} must be a name or a non-empty list of names")
    return names


def parse(path: Path, entries: list[Any], clauses: Iterable[str], models: Iterable[str],
          kind: str = "divergence") -> list[Divergence]:
    """The declarations of one table array of a file, one per (adapter, clause) named."""
    clauses, models = set(clauses), set(models)
    keys, required = KEYS[kind], REQUIRED[kind]
    out = []
    for n, e in enumerate(entries, 1):
        where = f"{path}: {kind} #{n}"
        if not isinstance(e, dict):
            raise ExpectationsError(f"{where}: expected a table, got {type(e).__name__}")
        if kind == "violation" and "model" in e:
            raise ExpectationsError(f"{where}: a [[violation]] has no model (a departure a model expresses is a "
                                    f"[[divergence]]); valid keys: {', '.join(sorted(keys))}")
        missing = [k for k in required if k not in e]
        if missing:
            raise ExpectationsError(f"{where}: missing {', '.join(missing)} (required: {', '.join(required)})")
        extra = sorted(set(e) - keys)
        if extra:
            raise ExpectationsError(f"{where}: unknown key {extra[0]!r}; valid keys: {', '.join(sorted(keys))}")
        adapters = _names(where, "adapter", e["adapter"])
        named = _names(where, "clause", e["clause"])
        for c in named:
            if c not in clauses:
                raise ExpectationsError(f"{where}: unknown clause {c!r}; valid clauses: {', '.join(sorted(clauses))}")
        model: Any = []
        if kind == "divergence":
            model = e["model"]
            if isinstance(model, str):
                model = [model]
            if not isinstance(model, list) or not model or not all(isinstance(m, str) for m in model):
                raise ExpectationsError(f"{where}: model must be a non-empty list of model names")
            unknown = [m for m in model if m.partition("@")[0] not in models]
            scoped = [m for m in model if "@" in m]
            if scoped and named != ["table.load"]:
                raise ExpectationsError(f"{where}: a model step scoped to a load path ({scoped[0]!r}) is for "
                                        f"clause table.load alone")
            if unknown:
                raise ExpectationsError(f"{where}: unknown behaviour model {unknown[0]!r}; known models: {', '.join(sorted(models))}")
        elif not isinstance(e["note"], str) or not e["note"].strip():
            raise ExpectationsError(f"{where}: note must say what departs, on which minimal input")
        versions = e["versions"]
        if not isinstance(versions, dict) or not versions:
            raise ExpectationsError(f"{where}: versions must map distributions to version specifiers, e.g. {{ torch = \">=2.0\" }}")
        _check_specifiers(where, "", versions, "version specifier (PEP 440, e.g. '>=2.16,<2.22')")
        if not isinstance(e["reference"], str) or not e["reference"].strip():
            raise ExpectationsError(f"{where}: reference must name a doc, source file or issue")
        if "witness" in e:
            _check_witness(where, e["witness"])
        when = e.get("when", {})
        if not isinstance(when, dict):
            raise ExpectationsError(f"{where}: when must map facts of the adapter's environment() to specifiers, "
                                    f"e.g. {{ \"torch.threads\" = \">=2\" }}")
        _check_specifiers(where, "when ", when, "specifier (PEP 440, e.g. '>=2')")
        intermittent = e.get("intermittent", False)
        if not isinstance(intermittent, bool):
            raise ExpectationsError(f"{where}: intermittent must be true or false")
        source = f"{path.name}#{n}" if kind == "divergence" else f"{path.name}#{kind}{n}"
        for adapter in adapters:
            for c in named:
                out.append(Divergence(adapter, c, tuple(model),
                                      tuple((str(k), str(v)) for k, v in versions.items()),
                                      e["reference"], str(e.get("note", "")), source, e.get("witness"),
                                      tuple((str(k), str(v)) for k, v in when.items()), kind == "violation",
                                      str(path), intermittent))
    return out


def load(extra_files: Iterable[str | Path], clauses: Iterable[str], models: Iterable[str]) -> list[Divergence]:
    """User files first (they override), then the built-in declarations."""
    clauses, models = list(clauses), list(models)
    found: list[Divergence] = []
    for f in [Path(p) for p in extra_files] + sorted(BUILTIN_DIR.glob("*.toml")):
        tables = _load_file(f)
        for kind in KINDS:
            found += parse(f, tables[kind], clauses, models, kind)
    return found


def _where(d: Divergence) -> str:
    entry = d.source.partition("#")[2]
    return f"{d.file or d.source.partition('#')[0]}: {d.kind} #{entry.removeprefix('violation')}"


def check_targets(divs: Iterable[Divergence], known: dict[str, Callable[[str], str | None]]) -> None:
    """Refuse a declaration that can never be held against anything: an adapter
    pattern that matches no known adapter, or an (adapter, clause) that can only meet
    ``not_applicable`` checks. ``known`` maps each known adapter's name to a function
    giving, for a clause id, why the clause is not applicable to it (None: it is)."""
    names = sorted(known)
    for d in divs:
        hits = [a for a in names if a == d.adapter or fnmatch.fnmatchcase(a, d.adapter)]
        if not hits:
            near = [a for a in names if a.split("[")[0] == d.adapter.split("[")[0]] or names
            raise ExpectationsError(f"{_where(d)}: adapter {d.adapter!r} matches no known adapter "
                                    f"(brackets in a pattern are character classes: write bracketed names out); "
                                    f"known adapters: {', '.join(near)}")
        reasons = {a: known[a](d.clause) for a in hits}
        if all(reasons.values()):
            a, why = next(iter(reasons.items()))
            raise ExpectationsError(f"{_where(d)}: {d.clause} is not applicable to {', '.join(hits)} ({why}), so "
                                    f"this declaration could only attach to not_applicable checks")


def declared(divs: list[Divergence], adapter: str, clause: str, installed: dict[str, str]) -> Divergence | None:
    for d in divs:
        if d.holds_for(adapter, clause, installed):
            return d
    return None
