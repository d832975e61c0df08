"""Bug reports worth filing: ``python -m reports findings [RUN_DIR...] --out DIR``.

One Markdown report per *behaviour*: a declared behaviour is one declaration (its source,
``adapters/torch/declarations.toml#3`` say, as the record's ``divergence`` or
``acknowledged`` names it), reported once with every clause and column it shows on; a
departure nothing declares is a behaviour of its own per framework and clause. Each
report says what the behaviour is worth to a maintainer, from the declaration's
reference:

- **documented**: the reference is documentation (a docs site, or a documentation file in
  a repository): a choice the framework states, listed with its link, not worth filing;
- **known upstream**: the reference is a tracker issue or pull request;
- **candidates to file**: read from the source (the reference is a source file) or not declared
  at all: no documentation or issue is known to the suite for it.

Each report holds a standalone repro that *asserts* the departure (it exits non-zero once
the behaviour no longer reproduces), with the adapter's snippet trimmed to the helpers
this input needs; with replay on (the default) the repro is replayed in a fresh process
first, and a report says truthfully whether it was (``replay``).

``--summary FILE`` writes FINDINGS.md: a short index of every behaviour by what it is
worth, with the compact repros of those worth filing (what the project's own test
replays); the full reports are generated on demand into ``--out``.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .replay import judge, observed_parts, replay, reproduced
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
_TRACKER = re.compile(r"https?://(?:github\.com|gitlab\.com)/[^/\s]+/[^/\s]+/(?:-/)?(?:issues|pull|merge_requests)/\d+")
_URL = re.compile(r"https?://[^\s;,)]+")
_CODE_HOSTS = ("github.com", "gitlab.com", "raw.githubusercontent.com", "bitbucket.org", "googlesource.com")
_DOC_FILE = re.compile(r"\.(md|rst|txt|html?)(#.*)?$", re.I)

DOCUMENTED, KNOWN, FROM_SOURCE, UNDECLARED = "documented", "known upstream", "read from source", "undeclared"
CATEGORIES = (FROM_SOURCE, UNDECLARED, KNOWN, DOCUMENTED)  # index order: what is worth filing first
WORTH_FILING = (FROM_SOURCE, UNDECLARED)
_KINDS = ("out_of_range", "invalid_ids", "invalid_table", "invalid_shards", "invalid_offsets", "lookup_failure")
SUMMARY_REPRO_MAX = 12_000  # characters: a longer repro is left to the report, out of FINDINGS.md


def _failure_kind(text: str) -> str | None:
    """The contract failure kind an expected/actual description names, or None (rows)."""
    head = text.split(" ", 1)[0]
    return head if head in _KINDS else None


def problem_of(clause: str) -> str:
    for key in (clause, ".".join(clause.split(".")[:2]), clause.split(".")[0]):
        if key in _PROBLEM:
            return _PROBLEM[key]
    return f"departs from {clause}"


def category_of(decl: dict[str, Any] | None) -> tuple[str, str | None]:
    """What a behaviour is worth, from its declaration's reference: (category, the link that
    says so). A tracker issue anywhere in the reference or note: known upstream; else a
    documentation page: documented; else (a source file, or nothing): read from source."""
    if not decl:
        return UNDECLARED, None
    text = f"{decl.get('reference', '')} {decl.get('note', '')}"
    m = _TRACKER.search(text)
    if m:
        return KNOWN, m.group(0)
    for url in _URL.findall(decl.get("reference", "")):
        host = url.split("/")[2].lower()
        path = url.split("?", 1)[0]
        if not any(host == h or host.endswith("." + h) for h in _CODE_HOSTS) or _DOC_FILE.search(path):
            return DOCUMENTED, url
    return FROM_SOURCE, (_URL.findall(decl.get("reference", "")) or [None])[0]


@dataclass
class Finding:
    """One behaviour and every record it shows in."""

    key: str  # the declaration's source, or "undeclared:<framework>:<clause>"
    framework: str
    kind: str  # "declared divergence", "acknowledged violation", "undeclared"
    declaration: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    replayed: str | None = None  # why the repro is not written (None: it is, or was not replayed)
    replay: str = "not replayed"  # "not replayed", "reproduced", or what the replay gave
    path: Path | None = None
    smaller: dict | None = None  # the record on a smaller input, once a replay showed it departs alike

    @property
    def record(self) -> dict:
        """The record whose repro the report shows: one with a snippet, this behaviour alone
        (not composed with another), the shortest (or the same on a smaller input, replayed)."""
        if self.smaller is not None:
            return self.smaller
        return self.recorded

    @property
    def recorded(self) -> dict:
        def cost(r: dict) -> tuple:
            div = r.get("divergence") or {}
            alone = len(div.get("behaviours") or ()) <= 1
            return (not r.get("snippet"), not r.get("observed"), not alone, len(r.get("snippet") or ""),
                    r["adapter"], r["clause"])

        return min(self.records, key=cost)

    @property
    def adapters(self) -> list[str]:
        return sorted({r["adapter"] for r in self.records})

    @property
    def clauses(self) -> list[str]:
        return sorted({r["clause"] for r in self.records})

    @property
    def category(self) -> str:
        return category_of(self.declaration)[0] if self.kind != "undeclared" else UNDECLARED

    @property
    def link(self) -> str | None:
        return category_of(self.declaration)[1] if self.kind != "undeclared" else None

    @property
    def worth_filing(self) -> bool:
        return self.category in WORTH_FILING

    @property
    def tracker(self) -> str | None:
        return self.link if self.category == KNOWN else None

    @property
    def documented(self) -> bool:
        return self.category == DOCUMENTED

    @property
    def what(self) -> str:
        return what_of(self.record)

    @property
    def headline(self) -> str:
        return headline(self.declaration.get("note") or "") or self.what

    @property
    def title(self) -> str:
        more = f" (and {len(self.adapters) - 1} more)" if len(self.adapters) > 1 else ""
        return f"{self.adapters[0]}{more}: {self.headline}"

    @property
    def slug(self) -> str:
        raw = self.key.replace("declarations.toml", "").replace(".toml", "")
        if not raw.startswith("undeclared"):
            raw = f"{self.framework}-{raw}"
        return re.sub(r"[^A-Za-z0-9]+", "-", raw).strip("-").lower()[:100]

    @property
    def behaviour(self) -> str:
        model = self.declaration.get("model")
        return self.kind + (f" ({' + '.join(model)})" if model else "")


def what_of(rec: dict) -> str:
    """What goes wrong, from what came back: a crash, a failure where the contract gives
    rows (or another kind of failure), else the clause's own departure."""
    if "died" in (rec.get("observed") or {}):
        return "kills the process"
    if "crash" in (rec.get("observed") or {}):
        return "raises an exception that is no contract failure"
    expected, actual = _failure_kind(rec.get("expected", "")), _failure_kind(rec.get("actual", ""))
    if actual and not expected:
        return "fails on valid input" if actual == "lookup_failure" else f"raises {actual} on valid input"
    if actual and expected and actual != expected:
        return f"raises {actual} where the contract says {expected}"
    return problem_of(rec["clause"])


def headline(note: str, width: int = 110) -> str:
    """A declaration's first clause, cut at a word: what a report is titled by."""
    first = re.split(r"; |\.\s+(?=[A-Z])|\n", note or "")[0].strip()
    return first if len(first) <= width else first[:width].rsplit(" ", 1)[0] + " ..."


def _sources(d: dict) -> list[tuple[str, dict]]:
    """The declarations a record's divergence or acknowledgement is made of: (source, dict)."""
    if d.get("behaviours"):
        return [(b.get("source") or d.get("source") or "?", b) for b in d["behaviours"]]
    srcs = [s.strip() for s in (d.get("source") or "").split(",") if s.strip()]
    return [(s, d) for s in srcs] or [("?", d)]


def departures(runs: Iterable[Run]) -> list[Finding]:
    """Every departure of the runs, one Finding per behaviour (declaration), listing every
    record it shows in; a violation nothing declares is one per framework and clause."""
    groups: dict[tuple, Finding] = {}
    for run in runs:
        for rec in run.records:
            if rec["status"] not in ("diverges", "violates") or not rec.get("example"):
                continue
            if rec["status"] == "violates" and rec.get("acknowledged"):
                ack = rec["acknowledged"]
                keys = [(s, d, "acknowledged violation") for s, d in _sources(ack)]
                keys += [(s, {"source": s}, "acknowledged violation") for s in ack.get("also") or ()]
            elif rec["status"] == "diverges" and rec.get("divergence"):
                keys = [(s, d, "declared divergence") for s, d in _sources(rec["divergence"])]
            else:
                keys = [(f"undeclared:{rec['framework']}:{rec['clause']}", {}, "undeclared")]
            for key, decl, kind in keys:
                # a source names its file only ("declarations.toml#3", one per framework folder): the
                # declaration's own words tell two files' entries of one number apart
                ident = (key, decl.get("reference", ""), tuple(decl.get("model") or ()), decl.get("note", "")[:200])
                f = groups.get(ident)
                if f is None:
                    f = groups[ident] = Finding(key=key, framework=rec["framework"], kind=kind, declaration=decl)
                elif not f.declaration.get("reference") and decl.get("reference"):
                    f.declaration = decl
                f.records.append(rec)
    # an entry named only by another's ``also`` (no reference of its own here): the same
    # declaration as the entry of that source in that framework which has one
    found = list(groups.values())
    full = {(f.key, f.framework): f for f in found if f.declaration.get("reference")}
    for f in [f for f in found if not f.declaration.get("reference") and f.kind != "undeclared"]:
        home = full.get((f.key, f.framework))
        if home is not None and home is not f:
            home.records.extend(r for r in f.records if not any(r is x for x in home.records))
            found.remove(f)
    return sorted(found, key=lambda f: (CATEGORIES.index(f.category), f.framework, f.key))


# -- the repro: the adapter's snippet, trimmed, asserting the departure ----------------------

def repro(rec: dict) -> str | None:
    """A standalone script that reproduces ``rec`` and asserts it: it exits non-zero once
    the framework no longer does what the suite saw (and binds ``result``, as a snippet
    does, for a replay). None without a snippet."""
    snippet = rec.get("snippet")
    if not snippet or snippet.startswith("# the adapter could not write a snippet"):
        return None
    bf16 = "bfloat16" in (rec.get("example") or "") or "bfloat16" in json.dumps(rec.get("observed") or {})
    code = trim(snippet, keep_bfloat16=bf16)
    obs = rec.get("observed") or {}
    ack = rec.get("acknowledged") or {}
    if "died" in obs:
        return code.rstrip() + ("\n# the departure: the process dies on this call (the suite saw: "
                                f"{_comment(obs['died'])}); an exit without a crash means it no longer reproduces\n")
    if "crash" in obs:
        wrapped = _wrap_failure(code)
        if wrapped is None:
            return code
        return wrapped + (f"# the departure: the call raises an exception no contract failure names (the suite saw: "
                          f"{_comment(obs['crash'], 120)})\n"
                          "assert isinstance(result, BaseException), f'no longer raises: {result!r}'\n")
    parts = observed_parts(obs)
    if len(parts) == 1 and "failure" in parts[0]:
        wrapped = _wrap_failure(code)
        if wrapped is None:
            return code
        expected = rec.get("expected") or "rows"
        return wrapped + (
            f"# the departure: the call raises (the suite read it as {parts[0]['failure']}) where the contract "
            f"says {_comment(expected, 120)}\n"
            "assert isinstance(result, BaseException), f'no longer raises: {result!r}'\n")
    lines = ["# the departure, as the suite saw it: exits non-zero once it no longer reproduces",
             "got = result if isinstance(result, tuple) else (result,)",
             f"assert len(got) == {len(parts)}, len(got)"]
    hashed = False
    for k, p in enumerate(parts):
        if "failure" in p:
            lines.append(f"assert isinstance(got[{k}], BaseException), got[{k}]  # {p['failure']}")
            continue
        shape = tuple(p.get("shape") or ())
        lines.append(f"assert (np.asarray(got[{k}]).dtype.name, np.asarray(got[{k}]).shape) == "
                     f"({p.get('dtype')!r}, {shape!r})")
        hex_text = p.get("hex")
        if not hex_text or ack.get("undefined_memory"):
            continue
        if len(hex_text) <= 96:
            lines.append(f"assert np.asarray(got[{k}]).tobytes().hex() == {hex_text!r}, "
                         f"np.asarray(got[{k}]).tobytes().hex()")
        else:
            digest = hashlib.sha256(bytes.fromhex(hex_text)).hexdigest()[:16]
            lines.append(f"assert hashlib.sha256(np.asarray(got[{k}]).tobytes()).hexdigest()[:16] == {digest!r}"
                         f"  # its {len(hex_text) // 2} bytes")
            hashed = True
    if ack.get("intermittent"):
        lines.insert(0, "# (an intermittent violation: no input forces it, so a run may not meet it)")
    return code.rstrip() + "\n" + ("import hashlib\n" if hashed else "") + "\n".join(lines) + "\n"


def smaller_record(rec: dict) -> dict | None:
    """``rec`` on a smaller input: its large table with the rows no id can reach zeroed
    (``suites.source.unreached_zeroed``), the example and snippet rewritten to match; None
    when there is none. Only a replay can say it departs alike: the caller replays it."""
    from embedding_conformance.suites.source import args_source, unreached_zeroed

    from .bits import parse_example

    example, snippet = rec.get("example") or "", rec.get("snippet") or ""
    if "table = " not in example or len(example) < 2000 or not snippet:
        return None
    try:
        args = parse_example(example)
        small = unreached_zeroed(args)
    except Exception:
        return None
    if small is None:
        return None
    before, after = f"table = {args_source(args)['table']}", f"table = {args_source(small)['table']}"
    if before not in snippet or before not in example:
        return None
    return {**rec, "example": example.replace(before, after), "snippet": snippet.replace(before, after)}


def _comment(text: str, limit: int = 160) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def trim(snippet: str, keep_bfloat16: bool = True) -> str:
    """The snippet without what this input does not need: helper functions nothing calls,
    bfloat16-only branches when no bfloat16 is involved, and the lines that print bits
    (the assertion says what matters). Statements are dropped whole, the rest kept verbatim."""
    try:
        tree = ast.parse(snippet)
    except SyntaxError:
        return snippet
    drop: list[tuple[int, int]] = []

    def span(node: ast.AST) -> tuple[int, int]:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return first, node.end_lineno or node.lineno

    def bf16_only(node: ast.AST) -> bool:
        return isinstance(node, ast.If) and not node.orelse and "bfloat16" in ast.get_source_segment(snippet, node.test)

    def prints_bits(node: ast.AST) -> bool:
        src = ast.get_source_segment(snippet, node) or ""
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "print":
            return "hex" in src or "bits" in src or "view(" in src
        return isinstance(node, ast.If) and not node.orelse and all(prints_bits(n) for n in node.body)

    for node in ast.walk(tree):
        for body_name in ("body", "orelse"):
            children = getattr(node, body_name, None)
            for child in children if isinstance(children, list) else []:
                if not keep_bfloat16 and bf16_only(child):
                    drop.append(span(child))
    for node in tree.body:
        if prints_bits(node):
            drop.append(span(node))
    # helpers nothing calls (after the drops above: a bfloat16 converter only its branch used)
    kept_source = _without(snippet, drop)
    try:
        kept_tree = ast.parse(kept_source)
    except SyntaxError:
        return snippet
    for _ in range(3):
        names = {n.id for n in ast.walk(kept_tree) if isinstance(n, ast.Name)} | {
            n.attr for n in ast.walk(kept_tree) if isinstance(n, ast.Attribute)}
        text_refs = kept_source
        unused = [n for n in kept_tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                  and n.name not in names and text_refs.count(n.name) == 1]
        if not unused:
            break
        kept_source = _without(kept_source, [span(n) for n in unused])
        kept_tree = ast.parse(kept_source)
    return re.sub(r"\n{3,}", "\n\n", kept_source)


def _without(source: str, spans: list[tuple[int, int]]) -> str:
    lines = source.split("\n")
    gone = set()
    for a, b in spans:
        gone.update(range(a - 1, b))
    out = [ln for i, ln in enumerate(lines) if i not in gone]
    # a body left empty by the drops gets a `pass`
    text = "\n".join(out)
    try:
        ast.parse(text)
        return text
    except SyntaxError:
        return source


def _wrap_failure(code: str) -> str | None:
    """The snippet's statements after its imports inside ``try``, what it raises bound to
    ``result``; None when it cannot be indented safely (a multi-line string)."""
    if '"""' in code or "'''" in code:
        return None
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    start = None
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        src = ast.get_source_segment(code, node) or ""
        if src.startswith("os.environ"):
            continue
        start = node.lineno
        break
    if start is None:
        return None
    lines = code.rstrip("\n").split("\n")
    head, body = lines[: start - 1], lines[start - 1:]
    out = head + ["try:"] + ["    " + ln if ln.strip() else "" for ln in body]
    out += ["except Exception as error:  # the departure: what it raises", "    result = error", ""]
    text = "\n".join(out)
    try:
        ast.parse(text)
    except SyntaxError:
        return None
    return text


# -- a report ----------------------------------------------------------------------------------

def _where(f: Finding) -> list[str]:
    """Where the behaviour shows: each clause with the columns it shows in."""
    by: dict[str, set[str]] = {}
    for r in f.records:
        by.setdefault(r["clause"], set()).add(r["adapter"])
    return [f"- `{c}`: " + ", ".join(f"`{a}`" for a in sorted(adapters)) for c, adapters in sorted(by.items())]


def _status_line(f: Finding) -> str:
    if f.category == DOCUMENTED:
        return f"documented ({f.link}): a behaviour the framework states, not worth filing"
    if f.category == KNOWN:
        return f"known upstream: {f.link}"
    if f.category == FROM_SOURCE:
        return ("a candidate to file: its declaration cites source code" + (f" ({f.link})" if f.link else "")
                + ", no documentation or tracker issue; check the framework's documentation before filing")
    return ("a candidate to file: nothing declares it, no documentation or tracker issue is known to the suite for "
            "it; check the framework's documentation before filing")


def report(f: Finding, meta: dict) -> str:
    """One behaviour as a Markdown bug report."""
    rec, decl = f.record, f.declaration
    versions = ", ".join(f"{d} {v}" for d, v in sorted(rec["versions"].items()))
    code = repro(rec)
    lines = [f"# {f.title}", "",
             f"- **What it is worth**: {_status_line(f)}",
             f"- **Behaviour**: {f.behaviour}" + (f", declared in `{f.key}`" if f.kind != "undeclared" else ""),
             f"- **Versions**: {versions} (Python {meta.get('python', '?')}, {meta.get('platform', '?')})",
             f"- **Shows in** {len(f.records)} check{'s' if len(f.records) != 1 else ''} "
             f"({len(f.clauses)} clause{'s' if len(f.clauses) != 1 else ''}, {len(f.adapters)} "
             f"column{'s' if len(f.adapters) != 1 else ''}):", *["  " + w for w in _where(f)], ""]
    if decl.get("note"):
        lines += ["## The behaviour", "", decl["note"], ""]
    lines += ["## What happens", "", f"On `{rec['clause']}` in `{rec['adapter']}`: {rec.get('detail') or ''}", ""]
    if code:
        lines += ["## Minimal reproduction", "",
                  "Runs on its own (no test suite) and asserts the departure: it exits non-zero once it no longer "
                  "reproduces. " + _replay_sentence(f), "", "```python", code.rstrip(), "```", ""]
    lines += [f"**Expected** (the contract): {rec.get('expected', '')}", "",
              f"**Actual**: {rec.get('actual', '')}", "",
              "## What it contradicts", "",
              *[f"- `{c}`: {_statement(f, c)}" for c in f.clauses]]
    if decl.get("reference"):
        lines.append(f"- {decl['reference']}")
    lines += ["", "## Known upstream", "",
              f"Tracked as {f.tracker}." if f.tracker else
              f"Documented: {f.link}." if f.documented else
              "No tracker issue or documentation is cited for this: a candidate to file once the framework's "
              "documentation is checked.",
              "", f"<sub>Found by embedding-conformance {meta.get('revision', '')}, profile {meta.get('profile', '')}, "
                  f"seed {meta.get('seed', '')}, {meta.get('date', '')}.</sub>", ""]
    return "\n".join(lines)


def _statement(f: Finding, clause: str) -> str:
    return next((r.get("statement") or "" for r in f.records if r["clause"] == clause), "")


def _replay_sentence(f: Finding) -> str:
    if f.replay == "reproduced":
        return "It was replayed in a fresh process, and reproduced, before this report was written."
    if f.replay == "not replayed":
        return "It was not replayed for this report (written with --no-replay)."
    return f"It was replayed in a fresh process before this report was written: {f.replay}."


def _printed(rec: dict, bytes_kept: bool = True) -> str:
    """What the repro gave, for the replay to compare with (without the bytes of a result
    that reads memory no input determines: its dtype and shape only)."""
    parts = observed_parts(rec["observed"]) if not {"crash", "died"} & set(rec["observed"]) else [rec["observed"]]
    if not bytes_kept:
        parts = [{k: v for k, v in p.items() if k != "hex"} for p in parts]
    return json.dumps(parts)


# -- FINDINGS.md: the index ----------------------------------------------------------------------

def summary(found: list[Finding], command: str | None = None) -> str:
    """FINDINGS.md: every behaviour by what it is worth, in a few lines each; the compact
    repros of those worth filing (folded, each with the outcome it gave, a JSON line the
    project's test compares its replay with)."""
    command = command or "python -m reports findings reports/latest --out reports/findings --summary FINDINGS.md"
    by = {c: [f for f in found if f.category == c] for c in CATEGORIES}
    n_checks = len({id(r) for f in found for r in f.records})
    lines = ["# Findings", "",
             f"{len(found)} behaviours in {n_checks} departing checks, one entry per behaviour (a declaration, or a "
             "departure nothing declares, with every clause and column it shows in): "
             f"{len(by[FROM_SOURCE]) + len(by[UNDECLARED])} candidates to file, {len(by[KNOWN])} known upstream, "
             f"{len(by[DOCUMENTED])} documented. Full reports, one per behaviour, are written on demand: "
             f"`{command}` (after a full run; `--no-replay` skips replaying the repros first).", "",
             "What a behaviour is worth is read from its declaration's reference: a documentation page "
             "(**documented**: the framework states it, not worth filing), a tracker issue (**known upstream**), a "
             "source file (**read from source**: a candidate to file, once the framework's documentation is checked), "
             "or no declaration (**undeclared**: likewise). "
             "Each repro below asserts its departure (it exits non-zero once it no longer reproduces); "
             "`tests/test_findings.py` replays every one.", ""]
    sections = [("Candidates to file", by[FROM_SOURCE] + by[UNDECLARED]), ("Known upstream", by[KNOWN]),
                ("Documented", by[DOCUMENTED])]
    n = 0
    numbers: dict[int, int] = {}
    for title, fs in sections:
        lines += [f"## {title} ({len(fs)})", "", "| # | behaviour | declared in | shows in | link |",
                  "| --- | --- | --- | --- | --- |"]
        for f in fs:
            n += 1
            numbers[id(f)] = n
            shows = f"{len(f.clauses)} clause{'s' if len(f.clauses) != 1 else ''} × {len(f.adapters)} column" + (
                "s" if len(f.adapters) != 1 else "")
            declared = f"`{f.key}`" if f.kind != "undeclared" else "nothing"
            name = _md_cell(f.title)
            if f.worth_filing:
                name = f"[{name}](#f{n})"
            lines.append(f"| {n} | {name} | {declared} | {shows} | {f.link or ''} |")
        lines.append("")
    lines += ["## Repros of the candidates to file", ""]
    for f in sections[0][1]:
        rec = f.record
        code = repro(rec)
        k = numbers[id(f)]
        lines += [f'<a id="f{k}"></a>', "", f"### {k}. {_md_text(f.title)}", "",
                  f"{f.behaviour}; {_status_line(f)}. Shows in " + "; ".join(
                      f"`{c}` ({', '.join(sorted({r['adapter'] for r in f.records if r['clause'] == c}))})"
                      for c in f.clauses), ""]
        if not code or not rec.get("observed"):
            lines += ["No standalone repro: the adapter writes no snippet for this.", ""]
            continue
        if (rec.get("acknowledged") or {}).get("intermittent"):
            lines += ["Intermittent (no input forces it): its repro is in the full report, not replayed here.", ""]
            continue
        if len(code) > SUMMARY_REPRO_MAX:
            lines += [f"Its repro ({len(code) // 1000} KB, a large input) is in the full report.", ""]
            continue
        lines += ["<details><summary>repro</summary>", "",
                  f"<!-- adapter: {rec['adapter']} clause: {rec['clause']} -->",
                  "```python", code.rstrip(), "```", "",
                  "Gave:", "", "```json", _printed(rec, bytes_kept=not (rec.get("acknowledged") or {}).get(
                      "undefined_memory")), "```", "", "</details>", ""]
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return _md_text(text).replace("|", "\\|")


def _md_text(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


# -- writing -------------------------------------------------------------------------------------

def _say(progress: Callable[[str], None] | None, text: str) -> None:
    if progress is not None:
        progress(text)


def write_findings(dirs: list[Path], out: Path, summary_path: Path | None = None, replay_them: bool = True,
                   progress: Callable[[str], None] | None = None) -> list[Finding]:
    """Read the runs, group their departures by behaviour, replay each repro (unless
    ``replay_them`` is false), write one report per behaviour into ``out`` with an index
    (README.md) and, given ``summary_path``, FINDINGS.md; ``progress`` is told each step."""
    t0 = time.perf_counter()
    runs = []
    for d in dirs:
        _say(progress, f"reading {d}")
        runs.append(read_run(d))
    found = departures(runs)
    n_checks = len({id(r) for f in found for r in f.records})
    _say(progress, f"{n_checks} departing checks: {len(found)} behaviours "
                   f"({sum(f.worth_filing for f in found)} candidates to file)")
    if replay_them:
        _replay_all(found, progress)
    out.mkdir(parents=True, exist_ok=True)
    meta = runs[0].meta if runs else {}
    index = ["# Departures, one report per behaviour", "",
             "| report | worth | declared in | shows in | replay |", "| --- | --- | --- | --- | --- |"]
    skipped = []
    taken: set[str] = set()
    for f in found:
        if f.replayed is not None:
            skipped.append(f"- {_md_text(f.title)} (`{f.key}`): not written, {f.replayed}")
            continue
        name, k = f.slug, 1
        while name in taken:  # two files' entries of one number in one framework
            k += 1
            name = f"{f.slug}-{k}"
        taken.add(name)
        f.path = out / f"{name}.md"
        f.path.write_text(report(f, meta), encoding="utf-8")
        index.append(f"| [{_md_cell(f.title)}]({f.path.name}) | {f.category} | "
                     f"{'`' + f.key + '`' if f.kind != 'undeclared' else 'nothing'} | "
                     f"{len(f.clauses)} clauses × {len(f.adapters)} columns | {f.replay} |")
    if skipped:
        index += ["", "Not written (the repro did not reproduce, or there is none):", ""] + skipped
    (out / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    if summary_path is not None:
        summary_path.write_text(summary([f for f in found if f.replayed is None]), encoding="utf-8")
    _say(progress, f"wrote {sum(1 for f in found if f.path)} reports in {out} ({time.perf_counter() - t0:.0f} s)")
    return found


def _replay_all(found: list[Finding], progress: Callable[[str], None] | None) -> None:
    """Replay each behaviour's repro in a fresh process (one per framework group, groups in
    parallel), telling ``progress`` as each group finishes."""
    from embedding_conformance.adapters import registry

    jobs: list[tuple[Finding, dict]] = []
    for f in found:
        rec = f.record
        code = repro(rec)
        if not code or not rec.get("observed") or rec["adapter"] not in registry.BY_NAME or rec["adapter"] == "numpy":
            f.replayed = "no standalone snippet to replay"
            continue
        jobs.append((f, {**rec, "snippet": code}))
        small = smaller_record(rec)
        if small is not None and repro(small):
            jobs.append((f, {**small, "snippet": repro(small), "_smaller": small}))
    groups: dict[tuple, list[tuple[Finding, dict]]] = {}
    for f, job in jobs:
        b = registry.BY_NAME[job["adapter"]]
        groups.setdefault((b.group, b.env), []).append((f, job))
    n_smaller = sum(1 for _, j in jobs if "_smaller" in j)
    _say(progress, f"replaying {len(jobs) - n_smaller} repros (and {n_smaller} on smaller inputs) in "
                   f"{len(groups)} framework processes")
    done = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="findings-replay-") as tmp, \
            ThreadPoolExecutor(max_workers=2) as pool:
        futures = {pool.submit(replay, [j for _, j in items], Path(tmp) / f"g{n}"): items
                   for n, items in enumerate(groups.values())}
        for fut in as_completed(futures):
            items = futures[fut]
            try:
                results = fut.result()
            except Exception as exc:  # a group that could not run: its findings say so
                results = [{"raised": f"{type(exc).__name__}: {exc}"}] * len(items)
            for (f, job), got in zip(items, results):
                if "_smaller" in job:  # the smaller input: shown instead when it departs alike
                    if judge(job, got) is None and reproduced(job, got):
                        f.smaller = job["_smaller"]
                    continue
                f.replayed = judge(job, got)
                f.replay = "reproduced" if reproduced(job, got) else (
                    "it did not reproduce this time (declared intermittent: no input forces it)"
                    if f.replayed is None else f"it did not reproduce ({f.replayed})")
            done += len(items)
            mine = [f for f, j in items if "_smaller" not in j]
            _say(progress, f"replayed {done}/{len(jobs)} repros ({items[0][1]['adapter']} and its process: "
                           f"{sum(f.replay == 'reproduced' for f in mine)}/{len(mine)} reproduced; "
                           f"{time.perf_counter() - t0:.0f} s)")


def stderr_progress(text: str) -> None:
    print(f"findings: {text}", file=sys.stderr, flush=True)


# -- FINDINGS.md, read back (tests/test_findings.py) ------------------------------------------

_ENTRY = re.compile(r"<!-- adapter: (?P<adapter>\S+) clause: (?P<clause>\S+) -->\n```python\n(?P<snippet>.*?)\n```"
                    r"\n\nGave:\n\n```json\n(?P<gave>.*?)\n```", re.S)


def read_summary(text: str) -> list[dict[str, Any]]:
    """The entries of a FINDINGS.md, as records replay() and judge() take."""
    out = []
    for m in _ENTRY.finditer(text):
        parts = json.loads(m["gave"])
        observed = parts[0] if len(parts) == 1 and {"crash", "died"} & set(parts[0]) else {"parts": parts}
        out.append({"adapter": m["adapter"], "clause": m["clause"], "snippet": m["snippet"] + "\n",
                    "observed": observed})
    return out
