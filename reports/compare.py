"""The porting view: ``python -m reports compare ADAPTER_A ADAPTER_B [RUN_DIR]``.

What changes if a model moves from one API to another: for every clause, both adapters
are run on the same inputs (the examples their records hold, then inputs drawn from the
clause's own strategy under each adapter's capabilities), and the first input on which
their outcomes differ is the clause's evidence. Outcomes are the same when they fail with
the same kind, or return the same dtype, shape and bits; where the clause does arithmetic,
when both are within its tolerance of the contract. A clause where no input tried tells
them apart is one where they agree (with how many inputs were tried); statuses alone are
never taken for a difference.

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


def _outcome(d: dict):
    from embedding_conformance.suites.assertions import Outcome

    if d.get("_died") is not None or d.get("status") == "error":
        return Outcome(crash=d.get("reason") or "the worker died")
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

    expected = expected_outcome(clause, inputs, (), Capabilities())
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
    from embedding_conformance.suites.signatures import make_pool

    found = []
    for rec in records:
        for key in ("example", "model_example"):
            args = parse_example((rec or {}).get(key))
            if args is not None:
                found.append(args)
    for c in callers:  # inputs each adapter takes, so that neither is only ever fed the other's
        caps = c.description.capabilities
        if clause.not_applicable(c.description.methods, caps) is None:
            found += _draw(clause.cases(caps, make_pool(caps, 16, 0)), FRESH // len(callers))
    return found


def _takes(caps, inputs: dict) -> bool:
    """Whether an input is within an adapter's declared capabilities (its ids and table dtypes, ranks)."""
    tables = [inputs["table"]] if isinstance(inputs.get("table"), np.ndarray) else list(inputs.get("shards") or [])
    ids = inputs.get("ids", inputs.get("values"))
    ok_ids = not isinstance(ids, np.ndarray) or ids.dtype.kind not in "iu" or ids.dtype.name in caps.id_dtypes
    return ok_ids and all(t.dtype.name in caps.table_dtypes and t.ndim in caps.table_ndims for t in tables)


def _describe(o) -> str:
    return o.describe()[:600]


def compare(a: str, b: str, run: Run | None, out_dir: Path | None = None) -> dict:
    """Both adapters on every clause; the result as written to ``out_dir``."""
    from embedding_conformance.suites.catalogue import load_all
    from embedding_conformance.suites.source import example_source

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
            tried, evidence = 0, None
            candidates = _candidates(clause, [ra, rb], callers)
            # inputs both APIs take first: a difference in behaviour before one in capabilities
            both = [all(_takes(c.description.capabilities, x) for c in callers) for x in candidates]
            for inputs in [x for x, ok in zip(candidates, both) if ok] + [x for x, ok in zip(candidates, both) if not ok]:
                tried += 1
                oa = _outcome(callers[0].call(clause.method, inputs))
                ob = _outcome(callers[1].call(clause.method, inputs))
                if not _same(clause, inputs, oa, ob):
                    evidence = {"input": example_source(inputs), "a": _describe(oa), "b": _describe(ob)}
                    break
            row = {"clause": cid, "statement": clause.statement, "status_a": status[0], "status_b": status[1],
                   "tried": tried, "verdict": "differs" if evidence else "agrees"}
            if evidence:
                row.update(evidence)
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


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def text(result: dict) -> str:
    rows = result["clauses"]
    differ = [r for r in rows if r["verdict"] == "differs"]
    agree = [r for r in rows if r["verdict"] == "agrees"]
    out = [f"{result['a']} -> {result['b']}: {len(differ)} clauses differ, {len(agree)} agree, "
           f"{len(rows) - len(differ) - len(agree)} not comparable", ""]
    for r in differ:
        out += [f"differs  {r['clause']}", "  input:", *("    " + ln for ln in r["input"].splitlines()[:12]),
                f"  {result['a']}: {r['a']}", f"  {result['b']}: {r['b']}", ""]
    out.append("agrees   " + ", ".join(f"{r['clause']} ({r['tried']} inputs)" for r in agree))
    return "\n".join(out)


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
