"""The porting view: ``python -m reports compare ADAPTER_A ADAPTER_B [RUN_DIR]``.

What changes if a model moves from one API to another: for every clause, both adapters
are run on the same inputs (the examples their records hold, then inputs drawn from the
clause's own strategy under each adapter's capabilities), and the first input on which
their outcomes differ is the clause's evidence. Outcomes are the same when they fail with
the same kind, or return the same dtype, shape and bits; where the clause does arithmetic,
when both are within its tolerance of the contract. A clause where no input tried tells
them apart is one where they agree (with how many inputs were tried); statuses alone are
never taken for a difference.

Each clause is tried on inputs that test it (the examples shrunk against it, then its own
strategy's; a declaration's witness, written for another purpose, last), and a difference
only in a table's bits on a clause that is not about them is checked again on plain
values. Where the values print alike the bits are shown; a call on which the suite itself
broke is that clause's ``error``, never a difference; printed lines are capped.

Writes RUN_DIR/compare/<A>--<B>.json, which the report page shows as a porting view.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from .results import Run

FRESH = 12  # inputs drawn from the strategy per clause, on top of the records' examples
_UNCOMPARABLE = {"not_applicable", "unavailable"}


def parse_example(source: str | None) -> dict[str, Any] | None:
    """A record's ``example`` (Python source binding the arguments) back into arrays."""
    if not source:
        return None
    import ml_dtypes

    ns: dict[str, Any] = {"np": np, "ml_dtypes": ml_dtypes}
    exec(source, ns)  # the suite's own source (suites/source.py), read from its own results
    return {k: v for k, v in ns.items() if k not in ("np", "ml_dtypes", "__builtins__")}


class _Caller:
    """Runs one adapter's calls where the suite runs its checks (a worker per framework)."""

    def __init__(self, name: str, timeout: float = 600):
        from embedding_conformance.adapters import registry
        from embedding_conformance.suites.hosts import BuiltinHost, LocalHost, WorkerHost

        b = registry.BY_NAME.get(name)
        if b is None:
            valid = ", ".join(x.name for x in registry.BUILTINS)
            raise ValueError(f"unknown adapter {name!r}; valid adapters: {valid}")
        self.name, self.builtin = name, b
        self.description = b.describe()
        if b.group is None:
            self.host = LocalHost(lambda: registry.load_object(b.factory))
            self.worker = None
        else:
            self.worker = WorkerHost(b.group, dict(b.env), timeout)
            self.host = BuiltinHost(b, self.worker)

    def call(self, method: str, inputs: dict) -> dict:
        from embedding_conformance.suites.hosts import CallJob

        return self.host.run(CallJob(method, inputs))

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


class SuiteError(Exception):
    """The suite (or its worker) broke on a call: not an outcome of the adapter."""


def _outcome(d: dict):
    from embedding_conformance.suites.assertions import Outcome

    if d.get("_died") is not None:  # the adapter killed its worker: its outcome, a crash
        return Outcome(crash=d.get("reason") or "the worker died")
    if d.get("status") == "error":  # the suite or its worker broke (a KeyError in the suite, a hang)
        raise SuiteError(d.get("reason") or "the suite broke")
    crash = d.get("crash") or ""
    if crash.startswith("the adapter raised builtins.KeyError"):  # the adapter's own lookup of its input
        raise SuiteError(f"{crash} (the adapter's own code, on an input it was not written for)")
    return Outcome(value=d.get("value"), failure=d.get("failure"), message=d.get("message") or "", crash=d.get("crash"))


def _bits(o) -> tuple:
    if o.crash:
        return ("crash",)
    if o.failure:
        return ("failure", o.failure)
    vals = o.value if isinstance(o.value, tuple) else (o.value,)
    return tuple(("failure", v.kind) if not isinstance(v, np.ndarray) else (v.dtype.name, v.shape, v.tobytes())
                 for v in vals)


def _same(clause, inputs: dict, oa, ob) -> bool:
    if _bits(oa) == _bits(ob):
        return True
    if not clause.tolerance or oa.crash or ob.crash:
        return False
    # arithmetic: the same when both are within the clause's tolerance of the contract
    from embedding_conformance.suites.engine import expected_outcome

    from embedding_conformance.adapters.contract import Capabilities

    try:
        expected = expected_outcome(clause, inputs, (), Capabilities())
    except Exception as exc:  # the oracle broke: the suite's error, not a difference
        raise SuiteError(f"the oracle broke: {type(exc).__name__}: {exc}") from None
    return clause.compare(expected, oa) is None and clause.compare(expected, ob) is None


def _draw(strategy, n: int) -> list[dict]:
    from hypothesis import HealthCheck, Phase, given, settings

    out: list[dict] = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(args):
        out.append(args)

    collect()
    return out[:n]


def _candidates(clause, records: list[dict | None], callers: list[_Caller]) -> list[dict]:
    """Inputs for one clause, the ones that test it first: the examples the search shrank
    against this very clause, then inputs drawn from the clause's own strategy (under each
    adapter's capabilities), and last a declaration's witness or a pinned input (an input
    written for another purpose, often another clause's: tried only when nothing else tells
    the adapters apart)."""
    from embedding_conformance.suites.signatures import make_pool

    searched, planted = [], []
    for rec in records:
        for key in ("example", "model_example"):
            args = parse_example((rec or {}).get(key))
            if args is not None:
                (planted if (rec or {}).get("found_by") in ("witness", "pin") else searched).append(args)
    drawn = []
    for c in callers:  # inputs each adapter takes, so that neither is only ever fed the other's
        caps = c.description.capabilities
        if clause.not_applicable(c.description.methods, caps) is None:
            drawn += _draw(clause.cases(caps, make_pool(caps, 16, 0)), FRESH // len(callers))
    return searched + drawn + planted


def _takes(caps, inputs: dict) -> bool:
    """Whether an input is within an adapter's declared capabilities (its ids and table dtypes, ranks)."""
    tables = [inputs["table"]] if isinstance(inputs.get("table"), np.ndarray) else list(inputs.get("shards") or [])
    ids = inputs.get("ids", inputs.get("values"))
    ok_ids = not isinstance(ids, np.ndarray) or ids.dtype.kind not in "iu" or ids.dtype.name in caps.id_dtypes
    return ok_ids and all(t.dtype.name in caps.table_dtypes and t.ndim in caps.table_ndims for t in tables)


def _callable(caps, inputs: dict) -> bool:
    """Whether an adapter can be called with an input at all: a load path it has (an input
    naming another API's way of loading a table is not a behaviour of this one)."""
    path = inputs.get("path")
    return path is None or path in tuple(caps.load_paths or ())


# the clauses that are about a table's bits: elsewhere a difference in them is theirs, not the clause's
_BITS_CLAUSES = ("rows.", "table.load", "dtype.")


def _plain(inputs: dict) -> dict | None:
    """The same input with every float table replaced by plain values of its dtype and shape
    (zero, but for the rows the ids can reach, numbered: no NaN payload, signed zero or
    subnormal), or None when it has none."""
    from embedding_conformance.suites.source import plain_table

    ids = inputs.get("ids", inputs.get("values"))
    out, changed = dict(inputs), False
    v = inputs.get("table")
    if isinstance(v, np.ndarray) and v.dtype.kind not in "iub" and v.size:
        out["table"] = plain_table(v, ids)
        changed = True
    shards = inputs.get("shards")
    if isinstance(shards, list) and shards and all(isinstance(x, np.ndarray) for x in shards):
        out["shards"] = [plain_table(x, None) if x.dtype.kind not in "iub" and x.size else x for x in shards]
        changed = changed or any(x.dtype.kind not in "iub" for x in shards)
    return out if changed else None


def _smaller(inputs: dict) -> dict:
    """The input with a large table's unreachable rows zeroed, when that is what it is: the
    same departure on a smaller example (tried, and kept only if the outcomes still differ)."""
    from embedding_conformance.suites.source import unreached_zeroed

    return unreached_zeroed(inputs) or inputs


def _describe(o) -> str:
    return _one_line(o.describe(), 600)


def _one_line(text: str, limit: int) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: limit - 1] + "\u2026"


def _evidence(inputs: dict, oa, ob) -> dict:
    from embedding_conformance.suites.source import example_source

    from .bits import outcome_words, table

    out = {"input": example_source(inputs), "a": _describe(oa), "b": _describe(ob)}
    wa, wb = outcome_words(oa.value), outcome_words(ob.value)
    if out["a"] == out["b"] and wa and wb and wa[0] == wb[0]:  # the values print alike: their bits
        shape = next(list(v.shape) for v in (oa.value if isinstance(oa.value, tuple) else (oa.value,))
                     if isinstance(v, np.ndarray))
        out["bits"] = table(wa[0], shape, wa[1], wb[1])
    return out


def compare(a: str, b: str, run: Run | None, out_dir: Path | None = None) -> dict:
    """Both adapters on every clause; the result as written to ``out_dir``."""
    from embedding_conformance.suites.catalogue import load_all

    clauses = load_all()
    recs = {(r["adapter"], r["clause"]): r for r in (run.records if run else [])}
    callers = [_Caller(a), _Caller(b)]
    rows = []
    try:
        for cid, clause in clauses.items():
            ra, rb = recs.get((a, cid)), recs.get((b, cid))
            status = [r["status"] if r else None for r in (ra, rb)]
            reasons = [clause.not_applicable(c.description.methods, c.description.capabilities) for c in callers]
            if any(reasons) or any(s in _UNCOMPARABLE for s in status if s):
                rows.append({"clause": cid, "verdict": "not comparable", "status_a": status[0], "status_b": status[1],
                             "reason": next(r for r in reasons + [f"a status of {status}"] if r)})
                continue
            row = {"clause": cid, "statement": clause.statement, "status_a": status[0], "status_b": status[1]}
            try:
                row.update(_compare_clause(clause, [ra, rb], callers))
            except SuiteError as exc:
                row.update(verdict="error", reason=f"the suite broke, not a difference: {_one_line(str(exc), 300)}")
            rows.append(row)
    finally:
        for c in callers:
            c.close()
    result = {"a": a, "b": b, "run": str(run.dir) if run and run.dir else None, "clauses": rows}
    if out_dir is not None:
        out = Path(out_dir) / "compare"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{_safe(a)}--{_safe(b)}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def _compare_clause(clause, records: list[dict | None], callers: list[_Caller]) -> dict:
    """The first input on which the two adapters' outcomes differ, tried in the order of
    ``_candidates``; a difference only in a table's bits (a NaN payload) on a clause that
    is not about them is the bits clauses' difference: then the same input with plain
    tables is tried, and the difference counts only if it stays."""
    tried, through_bits = 0, None
    candidates = [x for x in _candidates(clause, records, callers)
                  if all(_callable(c.description.capabilities, x) for c in callers)]
    if not candidates:
        return {"tried": 0, "verdict": "not comparable",
                "reason": "no input both adapters can be called with (a load path they share, say)"}
    # inputs both APIs take first: a difference in behaviour before one in capabilities
    both = [all(_takes(c.description.capabilities, x) for c in callers) for x in candidates]
    ordered = [x for x, ok in zip(candidates, both) if ok] + [x for x, ok in zip(candidates, both) if not ok]

    def outcomes(inputs):
        return (_outcome(callers[0].call(clause.method, inputs)), _outcome(callers[1].call(clause.method, inputs)))

    for inputs in ordered:
        tried += 1
        oa, ob = outcomes(inputs)
        if _same(clause, inputs, oa, ob):
            continue
        if not clause.id.startswith(_BITS_CLAUSES):
            plain = _plain(inputs)
            if plain is not None:
                pa, pb = outcomes(plain)
                if _same(clause, plain, pa, pb):
                    through_bits = through_bits or _evidence(inputs, oa, ob)
                    continue
                inputs, oa, ob = plain, pa, pb
        small = _smaller(inputs)
        if small is not inputs:
            sa, sb = outcomes(small)
            if not _same(clause, small, sa, sb):
                inputs, oa, ob = small, sa, sb
        return {"tried": tried, "verdict": "differs", **_evidence(inputs, oa, ob)}
    out = {"tried": tried, "verdict": "agrees"}
    if through_bits is not None:
        out["reason"] = ("they differ only in the bits of the table's values (a NaN payload, a subnormal): "
                         "the rows clauses' difference, not this clause's")
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


LINE_MAX = 160  # characters of one printed line
INPUT_LINES = 12


def text(result: dict) -> str:
    """The comparison for a terminal: one block per differing clause, every line capped."""
    rows = result["clauses"]
    differ = [r for r in rows if r["verdict"] == "differs"]
    agree = [r for r in rows if r["verdict"] == "agrees"]
    errors = [r for r in rows if r["verdict"] == "error"]
    out = [f"{result['a']} -> {result['b']}: {len(differ)} clauses differ, {len(agree)} agree, "
           f"{len(errors)} not compared (suite error), "
           f"{len(rows) - len(differ) - len(agree) - len(errors)} not comparable", ""]
    for r in differ:
        lines = r["input"].splitlines()
        out += [f"differs  {r['clause']}", "  input:", *("    " + ln for ln in lines[:INPUT_LINES])]
        if len(lines) > INPUT_LINES:
            out.append(f"    ... ({len(lines) - INPUT_LINES} more lines)")
        out += [f"  {result['a']}: {r['a']}", f"  {result['b']}: {r['b']}"]
        if r.get("bits"):
            b = r["bits"]
            out.append(f"  bits ({b['dtype']}, the values print alike; {b['differ']} of {b['total']} elements differ):")
            out += [f"    {i:<10} {x:<20} {y}{'   <- differs' if d else ''}" for i, x, y, _, d in b["rows"][:12]]
        out.append("")
    for r in errors:
        out += [f"error    {r['clause']}: {r.get('reason', '')}", ""]
    import textwrap

    agreed = ", ".join(f"{r['clause']} ({r['tried']} inputs{'; ' + r['reason'] if r.get('reason') else ''})"
                       for r in agree)
    out += textwrap.wrap("agrees   " + agreed, LINE_MAX, subsequent_indent="         ", break_on_hyphens=False)
    return "\n".join(_cap(line) for line in "\n".join(out).split("\n"))


def _cap(line: str) -> str:
    if len(line) <= LINE_MAX:
        return line
    keep = LINE_MAX - 28
    return line[:keep] + f"\u2026 ({len(line) - keep} characters more)"


def load_comparisons(run_dir: Path | None) -> list[dict]:
    """The comparisons saved beside a run, for the page."""
    if run_dir is None or not (Path(run_dir) / "compare").is_dir():
        return []
    out = []
    for path in sorted((Path(run_dir) / "compare").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("clauses"), list):
            out.append(data)
    return out
