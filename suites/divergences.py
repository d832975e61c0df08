"""Declared divergences: reviewed data saying which adapter follows which behaviour
model on which clause, for which versions, and where that is documented.

Built-in declarations live in ``suites/divergences/*.toml``; users add their own
with ``--expectations FILE`` (TOML or JSON of the same shape), which take
precedence. A malformed file is an ExpectationsError whose one-line message
names the file, the entry and the valid choices.
"""
from __future__ import annotations

import fnmatch
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

BUILTIN_DIR = Path(__file__).with_name("divergences")
KEYS = {"adapter", "clause", "model", "versions", "reference", "note", "witness", "when"}
REQUIRED = ("adapter", "clause", "model", "versions", "reference")


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
        out = {"model": list(self.model), "versions": dict(self.versions), "reference": self.reference,
               "note": self.note, "source": self.source}
        if self.witness:
            out["witness"] = self.witness
        if self.when:
            out["when"] = dict(self.when)
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

    from suites.strategies import np_dtype

    def array(arr):
        dtype = np_dtype(arr["dtype"])
        if "bits" in arr:
            return np.array(arr["bits"], dtype=f"u{dtype.itemsize}").view(dtype)
        return np.array(arr["values"], dtype=dtype)

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
    except (TypeError, ValueError, OverflowError) as exc:
        raise ExpectationsError(f"{where}: witness does not build arrays: {exc}") from None


def _check_witness_array(where: str, name: str, arr: Any, shape: str) -> None:
    if not isinstance(arr, dict) or "dtype" not in arr or len(set(arr) & {"values", "bits"}) != 1 or len(arr) != 2:
        raise ExpectationsError(f"{where}: witness argument {name!r} must hold dtype and one of values, bits "
                                f"(or be a list of such arrays, or a string), e.g. {shape}")


def _load_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ExpectationsError(f"{path}: no such expectations file")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ExpectationsError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    entries = data.get("divergence", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ExpectationsError(f"{path}: expected a list of [[divergence]] tables (keys: {', '.join(REQUIRED)}, note)")
    return entries


def parse(path: Path, entries: list[Any], clauses: Iterable[str], models: Iterable[str]) -> list[Divergence]:
    clauses, models = set(clauses), set(models)
    out = []
    for n, e in enumerate(entries, 1):
        where = f"{path}: divergence #{n}"
        if not isinstance(e, dict):
            raise ExpectationsError(f"{where}: expected a table, got {type(e).__name__}")
        missing = [k for k in REQUIRED if k not in e]
        if missing:
            raise ExpectationsError(f"{where}: missing {', '.join(missing)} (required: {', '.join(REQUIRED)})")
        extra = sorted(set(e) - KEYS)
        if extra:
            raise ExpectationsError(f"{where}: unknown key {extra[0]!r}; valid keys: {', '.join(sorted(KEYS))}")
        if e["clause"] not in clauses:
            raise ExpectationsError(f"{where}: unknown clause {e['clause']!r}; valid clauses: {', '.join(sorted(clauses))}")
        model = e["model"]
        if isinstance(model, str):
            model = [model]
        if not isinstance(model, list) or not model or not all(isinstance(m, str) for m in model):
            raise ExpectationsError(f"{where}: model must be a non-empty list of model names")
        unknown = [m for m in model if m not in models]
        if unknown:
            raise ExpectationsError(f"{where}: unknown behaviour model {unknown[0]!r}; known models: {', '.join(sorted(models))}")
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
        out.append(Divergence(str(e["adapter"]), e["clause"], tuple(model),
                              tuple((str(k), str(v)) for k, v in versions.items()),
                              e["reference"], str(e.get("note", "")), f"{path.name}#{n}", e.get("witness"),
                              tuple((str(k), str(v)) for k, v in when.items())))
    return out


def load(extra_files: Iterable[str | Path], clauses: Iterable[str], models: Iterable[str]) -> list[Divergence]:
    """User files first (they override), then the built-in declarations."""
    clauses, models = list(clauses), list(models)
    found: list[Divergence] = []
    for f in [Path(p) for p in extra_files] + sorted(BUILTIN_DIR.glob("*.toml")):
        found += parse(f, _load_file(f), clauses, models)
    return found


def declared(divs: list[Divergence], adapter: str, clause: str, installed: dict[str, str]) -> Divergence | None:
    for d in divs:
        if d.holds_for(adapter, clause, installed):
            return d
    return None
