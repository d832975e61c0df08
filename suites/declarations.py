"""Declarations: reviewed data saying how an adapter departs from the contract, for
which versions, and where that is documented. One file per framework folder
(``adapters/<framework>/declarations.toml``); users add their own with
``--declarations FILE`` (``--expectations`` is the same option's older name), TOML
or JSON of the same shape. Two kinds of entry, each a table array:

- ``[[divergence]]``: a *behaviour* of the adapter's data path, a list of model
  steps (``model``, adapters/spec/steps.py). It applies to every check of the adapter
  whose clause method one of its steps changes, composed with the adapter's other
  behaviours in the steps' canonical order; ``clause`` (a name, a pattern or a list)
  restricts it to the clauses where the API shows it. The check ``diverges`` while
  the adapter follows the composed model exactly (and departs from the contract),
  ``violates`` on any input where it follows neither.
- ``[[violation]]``: an *acknowledged violation*, a departure no exact model
  expresses, pinned to its ``failure`` (``{kind, message}``: a failure kind and a
  message pattern; ``{crash}``: a pattern of what the adapter raised; ``{died}``: of
  how its process died; ``{output = "any"}``: a result no input determines) on the inputs it
  concerns (``inputs``: conditions on the input's features, below) in ``clause``. The
  check stays ``violates`` (acknowledged) while that failure shows; any other
  departure on the same check is an unacknowledged ``violates``.

Every declaration carries a ``witness`` (or a list of them): an input that departs,
tried first by every search, with the clause it runs in (``clause = ...`` inside the
witness, or the declaration's one clause). ``stale`` is decided by a witness alone:
one that no longer departs (the framework fixed it, or changed it again); a random
search that merely missed is never stale. A declaration without a witness is
refused, unless it is ``intermittent = true`` (a timing or earlier calls decide it)
and its ``note`` says why no input forces it.

``versions`` (distribution -> PEP 440 specifier, or alternatives joined by ``||``: the
releases a matrix ran, ``"==2.11.0 || ==2.13.0"``) and ``when`` (a fact of the
adapter's ``environment()`` -> specifier, or ``==WORD`` for a fact that is a word, such
as an inference precision) say where a declaration holds; outside it
the adapter is held to the contract. Declarations that overlap (one step declared
twice for one check) or conflict (two steps of one group, or two acknowledgements
of one failure) are refused with a one-line error naming the file and the entries.

``inputs`` keys (all must hold; a list is "any of"; an integer condition may be a
specifier such as ``"<=4"``): ``table_dtype``, ``table_rank``, ``v`` (rows),
``row_size``, ``ids_dtype``, ``ids_rank``, ``ids_size``, ``ids`` (``out_of_range``,
``negative``, ``in_range``: which ids are present), ``table_values`` (``nan``,
``signalling_nan``, ``negative_zero``, ``subnormal``, ``infinite``: which values the
table holds), ``offsets`` (``decreasing``, ``not_csr``), ``shards``
(``fewer_rows_than_shards``, ``noncanonical``, ``empty_shard``), ``combiner``, ``strategy``,
``devices``, ``chunks`` (``empty_rank``: torch.chunk of the rows over ``devices`` ranks leaves
one empty), ``bags``, ``max_norm`` (``set``), ``weights`` (``none``, ``given``).
"""
from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from embedding_conformance.adapters import registry
from embedding_conformance.adapters.contract import FAILURES
from embedding_conformance.adapters.spec import steps as step_registry

ADAPTERS_DIR = Path(registry.__file__).parent
FILE_NAME = "declarations.toml"
KINDS = ("divergence", "violation")  # the table arrays of a declarations file
KEYS = {
    "divergence": {"adapter", "clause", "model", "versions", "reference", "note", "witness", "when", "intermittent"},
    "violation": {"adapter", "clause", "versions", "reference", "note", "witness", "when", "intermittent",
                  "failure", "inputs", "undefined_memory"},
}
REQUIRED = {
    "divergence": ("adapter", "model", "versions", "reference", "note"),
    # no model: the failure it acknowledges, on which inputs, and the write-up
    "violation": ("adapter", "clause", "versions", "reference", "note", "failure"),
}
FAILURE_FORMS = ("{ kind = KIND, message = PATTERN }, { crash = PATTERN } (what the adapter raised), "
                 "{ died = PATTERN } (how its process died) or { output = \"any\" }")
INPUT_FEATURES = ("table_dtype", "table_rank", "v", "row_size", "ids_dtype", "ids_rank", "ids_size", "ids",
                  "table_values", "offsets", "shards", "combiner", "strategy", "devices", "chunks", "bags",
                  "max_norm", "weights")
FLAGS = {"ids": ("out_of_range", "negative", "in_range"),
         "table_values": ("nan", "signalling_nan", "negative_zero", "subnormal", "infinite"),
         "offsets": ("decreasing", "not_csr"), "shards": ("fewer_rows_than_shards", "noncanonical", "empty_shard"),
         "max_norm": ("set",), "weights": ("none", "given"), "chunks": ("empty_rank",)}
EXAMPLE_WITNESS = ('witness = { clause = "rows.exact", table = { dtype = "bfloat16", bits = [[0x7f81]] }, '
                   'ids = { dtype = "int32", values = [0, 0] } }')


class DeclarationError(ValueError):
    """A declarations file that cannot be used; the message is one line naming the file,
    the entry and the valid choices."""


ExpectationsError = DeclarationError  # the older name


@dataclass(frozen=True)
class Witness:
    clause: str
    args: dict = field(hash=False, compare=False)  # the spec: argument name -> {dtype, values|bits[, shape]}
    adapters: tuple[str, ...] = ()  # the adapters it is for (names or patterns; () all the declaration's)

    def serves(self, adapter: str) -> bool:
        return not self.adapters or any(adapter == a or fnmatch.fnmatchcase(adapter, a) for a in self.adapters)

    def build(self) -> dict[str, Any]:
        return build_witness(self.args)


@dataclass(frozen=True)
class Declaration:
    kind: str  # "divergence" | "violation"
    adapters: tuple[str, ...]  # names or fnmatch patterns
    clauses: tuple[str, ...]  # names or patterns; () for a divergence: every clause its steps change
    model: tuple[str, ...]
    versions: tuple[tuple[str, str], ...]
    reference: str
    note: str
    witnesses: tuple[Witness, ...] = ()
    when: tuple[tuple[str, str], ...] = ()
    intermittent: bool = False
    failure: tuple[tuple[tuple[str, str], ...], ...] = ()  # violation: its forms (any one), each as items
    inputs: tuple[tuple[str, Any], ...] = ()
    undefined_memory: bool = False
    file: str = ""
    entry: int = 0

    @property
    def violation(self) -> bool:
        return self.kind == "violation"

    @property
    def source(self) -> str:
        """``file#N`` for a divergence, ``file#violationN`` for a violation (as records name them);
        a built-in file is named by its framework folder, ``torch/declarations.toml#3``."""
        return f"{_short_name(self.file)}#{'violation' if self.violation else ''}{self.entry}"

    @property
    def where(self) -> str:
        return f"{self.file}: {self.kind} #{self.entry}"

    def names(self, adapter: str) -> bool:
        return any(adapter == a or fnmatch.fnmatchcase(adapter, a) for a in self.adapters)

    def covers_clause(self, clause: str, method: str) -> bool:
        """Whether the declaration speaks of ``clause`` (whose adapter method is ``method``)."""
        if self.clauses and not any(clause == c or fnmatch.fnmatchcase(clause, c) for c in self.clauses):
            return False
        return self.violation or step_registry.touches(self.model, method)

    def holds_for(self, installed: dict[str, str]) -> bool:
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

    def witnesses_for(self, clause: str, adapter: str) -> list[Witness]:
        return [w for w in self.witnesses if w.clause == clause and w.serves(adapter)]

    # --- what an acknowledged violation covers ---------------------------------------

    def covers_input(self, args: dict[str, Any]) -> bool:
        return covers(dict(self.inputs), args)

    def matches_failure(self, outcome: Any) -> bool:
        """Whether an outcome (suites.assertions.Outcome) is the failure acknowledged (one of its forms)."""
        return any(_matches(dict(f), outcome) for f in self.failure)

    def dies(self) -> str | None:
        """The pattern of the process death it acknowledges, if it does."""
        return next((dict(f)["died"] for f in self.failure if "died" in dict(f)), None)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"versions": dict(self.versions), "reference": self.reference, "note": self.note,
                               "source": self.source}
        if self.violation:
            forms = [dict(f) for f in self.failure]
            out["failure"] = forms[0] if len(forms) == 1 else forms
            if self.inputs:
                out["inputs"] = dict(self.inputs)
            if self.undefined_memory:
                out["undefined_memory"] = True
        else:
            out["model"] = list(self.model)
        if self.witnesses:
            out["witness"] = [{"clause": w.clause, **({"adapter": list(w.adapters)} if w.adapters else {}), **w.args}
                              for w in self.witnesses]
        if self.when:
            out["when"] = dict(self.when)
        if self.intermittent:
            out["intermittent"] = True
        return out


def _matches(f: dict[str, str], outcome: Any) -> bool:
    if "kind" in f:
        return outcome.failure == f["kind"] and bool(re.search(f.get("message", ""), outcome.message or ""))
    for key in ("crash", "died"):
        if key in f:
            return bool(outcome.crash) and bool(re.search(f[key], outcome.crash))
    if "output" in f:
        return outcome.crash is None and outcome.failure is None
    return False


# --- input features (what an acknowledged violation's ``inputs`` reads) ---------------------

def _table(args: dict[str, Any]) -> np.ndarray | None:
    if isinstance(args.get("table"), np.ndarray):
        return args["table"]
    shards = args.get("shards")
    if isinstance(shards, list) and shards:
        return np.concatenate(shards) if all(s.shape[1:] == shards[0].shape[1:] for s in shards) else shards[0]
    return None


def _special_values(table: np.ndarray) -> set[str]:
    if table.dtype.kind not in "fV" and table.dtype.name != "bfloat16":
        return set()
    size = table.dtype.itemsize
    e_bits = {2: 8 if table.dtype.name == "bfloat16" else 5, 4: 8, 8: 11}[size]
    m_bits = 8 * size - 1 - e_bits
    bits = table.reshape(-1).view(f"u{size}").astype(object)
    exp_mask, man_mask, sign = ((1 << e_bits) - 1) << m_bits, (1 << m_bits) - 1, 1 << (8 * size - 1)
    out = set()
    for b in bits:
        e, m = b & exp_mask, b & man_mask
        if e == exp_mask and m:
            out.add("nan")
            if not m >> (m_bits - 1):
                out.add("signalling_nan")
        elif e == exp_mask:
            out.add("infinite")
        elif e == 0 and m:
            out.add("subnormal")
        elif b == sign:
            out.add("negative_zero")
    return out


def features(args: dict[str, Any]) -> dict[str, Any]:
    """The features of an input that ``inputs`` conditions read."""
    out: dict[str, Any] = {}
    table = _table(args)
    if table is not None:
        out.update(table_dtype=table.dtype.name, table_rank=table.ndim, v=int(table.shape[0]),
                   row_size=int(np.prod(table.shape[1:], dtype=np.int64)), table_values=_special_values(table))
    ids = args.get("ids", args.get("values"))
    if isinstance(ids, np.ndarray):
        out.update(ids_dtype=ids.dtype.name, ids_rank=ids.ndim, ids_size=int(ids.size))
        flags = set()
        if ids.dtype.kind in "iu" and ids.size and table is not None:
            wide = ids.astype(object) if ids.dtype == np.uint64 else ids.astype(np.int64)
            v = out["v"]
            flags |= {"out_of_range"} if (wide >= v).any() else set()
            flags |= {"negative"} if (wide < 0).any() else set()
            flags |= {"in_range"} if ((wide >= 0) & (wide < v)).any() else set()
        out["ids"] = flags
    offsets = args.get("offsets")
    if isinstance(offsets, np.ndarray):
        flags = set()
        if offsets.size > 1 and (np.diff(offsets.astype(np.int64)) < 0).any():
            flags.add("decreasing")
        n = int(np.size(ids)) if isinstance(ids, np.ndarray) else 0
        if offsets.size == 0 or offsets[0] != 0 or offsets[-1] != n or "decreasing" in flags:
            flags.add("not_csr")
        out["offsets"] = flags
        out["bags"] = max(int(offsets.size) - 1, 0)
    shards = args.get("shards")
    if isinstance(shards, list):
        from embedding_conformance.adapters.spec.partition import canonical_sizes

        sizes = [int(s.shape[0]) for s in shards]
        flags = {"fewer_rows_than_shards"} if sum(sizes) < len(sizes) else set()
        flags |= {"empty_shard"} if 0 in sizes else set()
        if shards and sizes != canonical_sizes(sum(sizes), len(sizes)):
            flags.add("noncanonical")
        out["shards"] = flags
    for key in ("combiner", "strategy"):
        if isinstance(args.get(key), str):
            out[key] = args[key]
    if "devices" in args:
        out["devices"] = n = int(args["devices"])
        v = out.get("v", 0)
        chunk = -(-v // n) if v else 0
        # torch.chunk's split of V rows over n ranks (DTensor's Shard(0)): some rank may hold none
        out["chunks"] = {"empty_rank"} if v and -(-v // chunk) < n else set()
    if "max_norm" in args:
        out["max_norm"] = {"set"} if args["max_norm"] is not None else set()
    if "weights" in args:
        out["weights"] = {"none"} if args["weights"] is None else {"given"}
    return out


def _holds(have: Any, want: Any) -> bool:
    wants = list(want) if isinstance(want, (list, tuple)) else [want]
    if isinstance(have, set):
        return any(w in have for w in wants)
    if isinstance(have, int) and not isinstance(have, bool):
        for w in wants:
            if isinstance(w, int) and have == w:
                return True
            if isinstance(w, str) and SpecifierSet(w).contains(Version(str(max(have, 0)))) and have >= 0:
                return True
        return False
    return have in wants


def covers(conditions: dict[str, Any], args: dict[str, Any]) -> bool:
    """Whether an input meets every condition (a feature the input lacks fails it)."""
    if not conditions:
        return True
    have = features(args)
    return all(k in have and _holds(have[k], v) for k, v in conditions.items())


# --- reading files ----------------------------------------------------------------------

_TEXT = re.compile(r"^(==|!=)\s*([A-Za-z_][\w.+-]*)$")  # equality with a fact that is a word (==bf16)


def _satisfies(spec: str, value: Any) -> bool:
    """Whether a version (or a fact such as a thread count) is in a PEP 440 specifier set;
    ``==WORD`` / ``!=WORD`` compare a fact that is a word (an inference precision, say)."""
    if value is None:
        return False
    if "||" in str(spec):  # alternatives: exactly the releases a matrix ran, say "==2.11.0 || ==2.13.0"
        return any(_satisfies(alt, value) for alt in str(spec).split("||"))
    text = _TEXT.match(str(spec).strip())
    if text:
        return (str(value) == text[2]) == (text[1] == "==")
    try:
        return SpecifierSet(spec).contains(Version(str(value)), prereleases=True)
    except (InvalidVersion, InvalidSpecifier):
        return False


def _check_specifiers(where: str, prefix: str, mapping: dict, what: str) -> None:
    for name, spec in mapping.items():
        for alt in str(spec).split("||"):
            if prefix and _TEXT.match(alt.strip()):
                continue
            try:
                SpecifierSet(alt.strip())
            except InvalidSpecifier:
                raise DeclarationError(f"{where}: {prefix}{name} = {spec!r} is not a {what}, nor alternatives "
                                       f"of such joined by ||") from None


def build_witness(spec: dict[str, Any]) -> dict[str, Any]:
    """Arguments from a witness: each is ``{dtype, values}`` or ``{dtype, bits}`` (the
    unsigned bit patterns of a float array, so NaN payloads are exact), optionally with a
    ``shape`` the values broadcast to; a list of such (shards); a string (a strategy or
    combiner), a number (max_norm, padding_idx, devices) or ``{none = true}``."""
    from embedding_conformance.suites.strategies import np_dtype

    def array(arr):
        dtype = np_dtype(arr["dtype"])
        if "bits" in arr:
            out = np.array(arr["bits"], dtype=f"u{dtype.itemsize}").view(dtype)
        else:
            out = np.array(arr["values"], dtype=dtype)
        if "shape" not in arr:
            return out
        shape = tuple(arr["shape"])
        if out.size == 0 and 0 in shape:  # an empty array of any shape: no values to broadcast
            return np.empty(shape, dtype=dtype)
        return np.broadcast_to(out, shape).copy()

    def arg(a):
        if isinstance(a, (str, int, float, bool)):
            return a
        if isinstance(a, dict) and a.get("none") is True:
            return None
        return [array(x) for x in a] if isinstance(a, list) else array(a)

    return {name: arg(a) for name, a in spec.items() if name not in ("clause", "adapter")}


def witness_spec(args: dict[str, Any]) -> dict[str, Any]:
    """The witness form of an input (what a declaration's ``witness`` holds): floats as
    bits, so that every payload survives a file."""
    def array(a: np.ndarray) -> dict[str, Any]:
        name = a.dtype.name
        out = ({"dtype": name, "bits": a.view(f"u{a.itemsize}").tolist()} if a.dtype.kind == "f" or name == "bfloat16"
               else {"dtype": name, "values": a.tolist()})
        if a.size == 0:
            out["shape"] = list(a.shape)
        return out

    out: dict[str, Any] = {}
    for k, v in args.items():
        if isinstance(v, np.ndarray):
            out[k] = array(v)
        elif isinstance(v, list) and all(isinstance(x, np.ndarray) for x in v):
            out[k] = [array(x) for x in v]
        elif v is None:
            out[k] = {"none": True}
        elif isinstance(v, (np.integer, np.floating)):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _check_witness_array(where: str, name: str, arr: Any) -> None:
    if not isinstance(arr, dict) or "dtype" not in arr or len(set(arr) & {"values", "bits"}) != 1 or \
            len(arr) != 2 + ("shape" in arr):
        raise DeclarationError(f"{where}: witness argument {name!r} must hold dtype and one of values, bits, and "
                               f"optionally a shape they broadcast to (or be a list of such arrays, a string, a "
                               f"number or {{ none = true }}), e.g. {EXAMPLE_WITNESS}")


def _witnesses(where: str, e: dict, clauses: tuple[str, ...], known: set[str]) -> tuple[Witness, ...]:
    raw = e.get("witness")
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) and raw and all(isinstance(w, dict) for w in raw) else [raw]
    out = []
    for w in items:
        if not isinstance(w, dict) or not w:
            raise DeclarationError(f"{where}: witness must map argument names to arrays, e.g. {EXAMPLE_WITNESS}")
        clause = w.get("clause")
        if clause is None:
            if len(clauses) != 1 or any(ch in clauses[0] for ch in "*?["):
                raise DeclarationError(f"{where}: the witness must name the clause it runs in (clause = \"...\"), "
                                       f"since the declaration speaks of {', '.join(clauses) or 'every clause'}")
            clause = clauses[0]
        if clause not in known:
            raise DeclarationError(f"{where}: the witness's clause {clause!r} is unknown; valid clauses: "
                                   f"{', '.join(sorted(known))}")
        if clauses and not any(clause == c or fnmatch.fnmatchcase(clause, c) for c in clauses):
            raise DeclarationError(f"{where}: the witness runs in {clause}, which the declaration does not speak of "
                                   f"({', '.join(clauses)})")
        adapters = w.get("adapter", ())
        adapters = (adapters,) if isinstance(adapters, str) else tuple(adapters)
        for name, arg in w.items():
            if name in ("clause", "adapter") or isinstance(arg, (str, int, float, bool)) or (isinstance(arg, dict) and arg == {"none": True}):
                continue
            for arr in (arg if isinstance(arg, list) and arg else [arg]):
                _check_witness_array(where, name, arr)
        try:
            build_witness(w)
        except (TypeError, ValueError, OverflowError, KeyError) as exc:
            raise DeclarationError(f"{where}: witness does not build arrays: {exc}") from None
        out.append(Witness(clause, {k: v for k, v in w.items() if k not in ("clause", "adapter")}, adapters))
    return tuple(out)


def _load_file(path: Path) -> dict[str, list[Any]]:
    if not path.is_file():
        raise DeclarationError(f"{path}: no such declarations file")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DeclarationError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    shape = (f"expected [[divergence]] tables (keys: {', '.join(REQUIRED['divergence'])}, witness, clause, when) "
             f"or [[violation]] tables (keys: {', '.join(REQUIRED['violation'])}, witness, inputs, when, intermittent)")
    if not isinstance(data, dict):
        raise DeclarationError(f"{path}: {shape}")
    unknown = sorted(set(data) - set(KINDS))
    if unknown:
        raise DeclarationError(f"{path}: unknown table {unknown[0]!r}; {shape}")
    out = {kind: data.get(kind, []) for kind in KINDS}
    if not all(isinstance(v, list) for v in out.values()):
        raise DeclarationError(f"{path}: {shape}")
    return out


def _names(where: str, key: str, value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(x, str) and x.strip() for x in names):
        raise DeclarationError(f"{where}: {key} must be a name or a non-empty list of names")
    return tuple(names)


def _failure(where: str, raw: Any) -> tuple[tuple[tuple[str, str], ...], ...]:
    forms = raw if isinstance(raw, list) and raw else [raw]
    out = []
    for f in forms:
        if not isinstance(f, dict) or not f or not (set(f) <= {"kind", "message"} and "kind" in f
                                                    or set(f) in ({"crash"}, {"died"}, {"output"})):
            raise DeclarationError(f"{where}: failure must be {FAILURE_FORMS}, or a list of them")
        if "kind" in f and f["kind"] not in FAILURES:
            raise DeclarationError(f"{where}: failure kind {f['kind']!r} is unknown; kinds: {', '.join(FAILURES)}")
        if "output" in f and f["output"] != "any":
            raise DeclarationError(f"{where}: failure output must be \"any\" (a result no input determines)")
        for key in ("message", "crash", "died"):
            if key in f:
                try:
                    re.compile(str(f[key]))
                except re.error as exc:
                    raise DeclarationError(f"{where}: failure {key} {f[key]!r} is not a regular expression: "
                                           f"{exc}") from None
        out.append(tuple((str(k), str(v)) for k, v in f.items()))
    return tuple(out)


def _inputs(where: str, e: dict) -> tuple[tuple[str, Any], ...]:
    conds = e.get("inputs", {})
    if not isinstance(conds, dict):
        raise DeclarationError(f"{where}: inputs must map input features to conditions, e.g. "
                               f"{{ ids = \"out_of_range\", table_dtype = [\"float64\"] }}")
    for k, v in conds.items():
        if k not in INPUT_FEATURES:
            raise DeclarationError(f"{where}: unknown input feature {k!r}; features: {', '.join(INPUT_FEATURES)}")
        for x in (v if isinstance(v, list) else [v]):
            if k in FLAGS and x not in FLAGS[k]:
                raise DeclarationError(f"{where}: inputs {k} = {x!r} is unknown; valid: {', '.join(FLAGS[k])}")
            if isinstance(x, str) and k in ("v", "row_size", "ids_size", "ids_rank", "table_rank", "devices", "bags"):
                try:
                    SpecifierSet(x)
                except InvalidSpecifier:
                    raise DeclarationError(f"{where}: inputs {k} = {x!r} is neither a number nor a specifier "
                                           f"such as '<=4'") from None
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in conds.items())


def parse(path: Path, entries: list[Any], clauses: Iterable[str], kind: str = "divergence") -> list[Declaration]:
    """The declarations of one table array of a file."""
    known = set(clauses)
    keys, required = KEYS[kind], REQUIRED[kind]
    out = []
    for n, e in enumerate(entries, 1):
        where = f"{path}: {kind} #{n}"
        if not isinstance(e, dict):
            raise DeclarationError(f"{where}: expected a table, got {type(e).__name__}")
        if kind == "violation" and "model" in e:
            raise DeclarationError(f"{where}: a [[violation]] has no model (a departure a model expresses is a "
                                   f"[[divergence]]); valid keys: {', '.join(sorted(keys))}")
        missing = [k for k in required if k not in e]
        if missing:
            raise DeclarationError(f"{where}: missing {', '.join(missing)} (required: {', '.join(required)})")
        extra = sorted(set(e) - keys)
        if extra:
            raise DeclarationError(f"{where}: unknown key {extra[0]!r}; valid keys: {', '.join(sorted(keys))}")
        adapters = _names(where, "adapter", e["adapter"])
        named = _names(where, "clause", e["clause"]) if "clause" in e else ()
        for c in named:
            if c not in known and not (any(ch in c for ch in "*?[") and fnmatch.filter(sorted(known), c)):
                raise DeclarationError(f"{where}: unknown clause {c!r}; valid clauses: {', '.join(sorted(known))}")
        model: tuple[str, ...] = ()
        if kind == "divergence":
            raw = [e["model"]] if isinstance(e["model"], str) else e["model"]
            if not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
                raise DeclarationError(f"{where}: model must be a non-empty list of model step names")
            unknown = [m for m in raw if step_registry.base(m) not in step_registry.STEPS]
            if unknown:
                raise DeclarationError(f"{where}: unknown behaviour model step {unknown[0]!r}; known steps: "
                                       f"{', '.join(step_registry.ORDER)}")
            scoped = [m for m in raw if "@" in m]
            if scoped and list(named) != ["table.load"]:
                raise DeclarationError(f"{where}: a model step scoped to a load path ({scoped[0]!r}) is for "
                                       f"clause table.load alone")
            clash = step_registry.conflict(raw)
            if clash:
                raise DeclarationError(f"{where}: steps {clash[0]} and {clash[1]} say different things of the same "
                                       f"inputs (one group); declare one")
            model = step_registry.canonical(raw)
        if not isinstance(e["note"], str) or not e["note"].strip():
            raise DeclarationError(f"{where}: note must say what departs, on which minimal input")
        versions = e["versions"]
        if not isinstance(versions, dict) or not versions:
            raise DeclarationError(f"{where}: versions must map distributions to version specifiers, e.g. "
                                   f"{{ torch = \"==2.13.0\" }}")
        _check_specifiers(where, "", versions, "version specifier (PEP 440, e.g. '>=2.16,<2.22')")
        if not isinstance(e["reference"], str) or not e["reference"].strip():
            raise DeclarationError(f"{where}: reference must name a doc, source file or issue")
        when = e.get("when", {})
        if not isinstance(when, dict):
            raise DeclarationError(f"{where}: when must map facts of the adapter's environment() to specifiers, "
                                   f"e.g. {{ \"torch.threads\" = \">=2\" }}")
        _check_specifiers(where, "when ", when, "specifier (PEP 440, e.g. '>=2', or ==WORD for a fact that is a word)")
        intermittent = e.get("intermittent", False)
        if not isinstance(intermittent, bool):
            raise DeclarationError(f"{where}: intermittent must be true or false")
        witnesses = _witnesses(where, e, named, known)
        if not witnesses and not intermittent:
            raise DeclarationError(f"{where}: no witness: give an input that departs ({EXAMPLE_WITNESS}), or "
                                   f"intermittent = true with a note saying why no input forces it")
        failure = _failure(where, e["failure"]) if kind == "violation" else ()
        undefined = e.get("undefined_memory", False)
        if not isinstance(undefined, bool):
            raise DeclarationError(f"{where}: undefined_memory must be true or false")
        out.append(Declaration(
            kind, adapters, named, model, tuple((str(k), str(v)) for k, v in versions.items()), e["reference"],
            e["note"], witnesses, tuple((str(k), str(v)) for k, v in when.items()), intermittent, failure,
            _inputs(where, e) if kind == "violation" else (), undefined, str(path), n))
    return out


def _short_name(file: str) -> str:
    """A built-in declarations file by its framework folder (torch/declarations.toml), any
    other by its name."""
    path = Path(file)
    try:
        return path.resolve().relative_to(ADAPTERS_DIR.resolve()).as_posix()
    except ValueError:
        return path.name


def builtin_files() -> list[Path]:
    """The built-in declarations: one file per framework folder."""
    return sorted(ADAPTERS_DIR.glob(f"*/{FILE_NAME}"))


def load(extra_files: Iterable[str | Path], clauses: Iterable[str]) -> list[Declaration]:
    """The users' files, then the built-in declarations."""
    clauses = list(clauses)
    found: list[Declaration] = []
    for f in [Path(p) for p in extra_files] + builtin_files():
        tables = _load_file(f)
        for kind in KINDS:
            found += parse(f, tables[kind], clauses, kind)
    return found


# --- holding declarations together --------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """The declarations that may speak of one check (adapter, versions and clause
    matched; ``when`` is held against the adapter's facts where the check runs)."""

    divergences: tuple[Declaration, ...] = ()
    violations: tuple[Declaration, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.divergences or self.violations)

    def applying(self, facts: dict[str, Any]) -> tuple["Plan", list[str]]:
        """The plan in a process with these facts, and why each declaration set aside is."""
        aside = [f"{d.source} does not apply here: {why}" for d in (*self.divergences, *self.violations)
                 if (why := d.unmet(facts))]
        return Plan(tuple(d for d in self.divergences if not d.unmet(facts)),
                    tuple(d for d in self.violations if not d.unmet(facts))), aside

    @property
    def model(self) -> tuple[str, ...]:
        return step_registry.canonical(s for d in self.divergences for s in d.model)

    def witnesses(self, clause: str, adapter: str) -> list[tuple[Declaration, Witness]]:
        return [(d, w) for d in (*self.divergences, *self.violations) for w in d.witnesses_for(clause, adapter)]


def plan_for(decls: Iterable[Declaration], adapter: str, clause: str, method: str,
             installed: dict[str, str]) -> Plan:
    divs, vios = [], []
    for d in decls:
        if d.names(adapter) and d.covers_clause(clause, method) and d.holds_for(installed):
            (vios if d.violation else divs).append(d)
    return Plan(tuple(divs), tuple(vios))


def _whens_may_overlap(a: Declaration, b: Declaration) -> bool:
    """Whether two declarations' ``when`` conditions can hold at once (different specifiers
    on one fact are taken as disjoint only where no small number or version meets both)."""
    wa, wb = dict(a.when), dict(b.when)
    for fact in set(wa) & set(wb):
        candidates = {str(x) for x in range(0, 257)} | {re.sub(r"^[<>=!~]+", "", s) for s in (wa[fact], wb[fact])}
        if not any(_satisfies(wa[fact], c) and _satisfies(wb[fact], c) for c in candidates):
            return False
    return True


def check_composition(decls: list[Declaration], adapters: dict[str, dict[str, str]],
                      clauses: dict[str, str]) -> None:
    """Refuse declarations that overlap or conflict on some check: ``adapters`` maps each
    known adapter to its installed versions, ``clauses`` each clause id to its method."""
    for name, installed in adapters.items():
        for clause, method in clauses.items():
            plan = plan_for(decls, name, clause, method, installed)
            divs = plan.divergences
            for i, a in enumerate(divs):
                for b in divs[i + 1:]:
                    if not _whens_may_overlap(a, b):
                        continue
                    shared = sorted(set(map(step_registry.base, a.model)) & set(map(step_registry.base, b.model)))
                    if shared:
                        raise DeclarationError(f"{a.where} and {b.where}: both declare step {shared[0]} for {name} "
                                               f"on {clause} (overlapping declarations); declare it once")
                    clash = step_registry.conflict((*a.model, *b.model))
                    if clash:
                        raise DeclarationError(f"{a.where} and {b.where}: steps {clash[0]} and {clash[1]} conflict "
                                               f"for {name} on {clause} (one group: they say different things of "
                                               f"the same inputs)")
            vios = plan.violations
            for i, a in enumerate(vios):
                for b in vios[i + 1:]:
                    if a.failure == b.failure and a.inputs == b.inputs and _whens_may_overlap(a, b):
                        raise DeclarationError(f"{a.where} and {b.where}: both acknowledge the same failure on the "
                                               f"same inputs for {name} on {clause} (overlapping declarations)")


def check_targets(decls: Iterable[Declaration], known: dict[str, Callable[[str], str | None]],
                  methods: dict[str, str]) -> None:
    """Refuse a declaration that can never be held against anything: an adapter pattern
    that matches no known adapter, or one that can only meet ``not_applicable`` checks.
    ``known`` maps each known adapter's name to a function giving, for a clause id, why
    the clause is not applicable to it (None: it is); ``methods`` maps clause ids to methods."""
    names = sorted(known)
    for d in decls:
        for pattern in d.adapters:
            if not any(a == pattern or fnmatch.fnmatchcase(a, pattern) for a in names):
                near = [a for a in names if a.split("[")[0] == pattern.split("[")[0]] or names
                raise DeclarationError(f"{d.where}: adapter {pattern!r} matches no known adapter (brackets in a "
                                       f"pattern are character classes: write bracketed names out); known adapters: "
                                       f"{', '.join(near)}")
        hits = [a for a in names if d.names(a)]
        spoken = [c for c, m in methods.items() if d.covers_clause(c, m)]
        if not spoken:
            raise DeclarationError(f"{d.where}: it speaks of no clause (its steps change none of the clauses' "
                                   f"methods, or its clause names none)")
        if all(known[a](c) for a in hits for c in spoken):
            a, c = hits[0], spoken[0]
            raise DeclarationError(f"{d.where}: every clause it speaks of is not applicable to {', '.join(hits)} "
                                   f"(e.g. {c}: {known[a](c)}), so it could only attach to not_applicable checks")
        for w in d.witnesses:
            served = [a for a in hits if w.serves(a)]
            if not served:
                raise DeclarationError(f"{d.where}: a witness is for {', '.join(w.adapters)}, which the declaration "
                                       f"does not name")
            if all(known[a](w.clause) for a in served):
                raise DeclarationError(f"{d.where}: its witness runs in {w.clause}, which is not applicable to "
                                       f"{', '.join(served)} ({known[served[0]](w.clause)})")
