"""One check: an adapter held against one clause, ending in one status.

The declarations that speak of the check (suites/declarations.py) compose into one
model, the contract when there are none. Every example, the declarations' witnesses
and the model steps' pins first, then hypothesis's, is held against that model and
the acknowledged violations: an input the model does not give and no acknowledgement
covers (its failure, on its inputs) is the counterexample, shrunk, and the check
``violates`` with it. Otherwise: a witness that no longer departs from the contract
makes the check ``stale``; an acknowledged failure met keeps it ``violates``
(acknowledged); a departure the model explained makes it ``diverges``; none,
``conforms``. This module runs in whichever process hosts the adapter; it returns
plain dicts.
"""
from __future__ import annotations

import copy
import inspect
import pickle
import time
import traceback
from typing import Any, Callable, Sequence

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
from hypothesis import seed as hyp_seed
from hypothesis.errors import FlakyFailure, FlakyStrategyDefinition, HypothesisException

from embedding_conformance.adapters.contract import Capabilities, LookupFailure, capabilities_of, environment_of, methods_of

from .assertions import Outcome, invoke
from .catalogue import Clause
from .signatures import make_pool
from .source import args_source, example_source, unreached_zeroed

PROFILES = {
    # local runs: random, seed shown in the report
    "default": dict(max_examples=100),
    # CI: derandomized, the same examples every run
    "ci": dict(max_examples=100, derandomize=True),
    "thorough": dict(max_examples=1000),
}
# signatures per adapter and run (suites/signatures.py): a compiled adapter compiles
# about this many times per method, whatever the number of examples
POOL_SIZES = {"default": 16, "ci": 16, "thorough": 64}


class Counterexample(Exception):
    """Raised inside the search at an input where the adapter departs."""

    def __init__(self, inputs: dict[str, Any], expected: Outcome, actual: Outcome, problem: str):
        super().__init__(problem)
        self.inputs, self.expected, self.actual, self.problem = inputs, expected, actual, problem


def hypothesis_settings(profile: str) -> settings:
    return settings(
        database=None,  # a run must not depend on what earlier runs found
        deadline=None,
        print_blob=False,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
        **PROFILES[profile],
    )


def expected_outcome(clause: Clause, args: dict[str, Any], model: Sequence[str], caps) -> Outcome:
    """The oracle's answer. Only LookupFailure is an answer; anything else it raises
    is a bug in the suite and propagates. (The oracle reads ``args`` only; the
    adapter gets its own copy in ``observe``.)"""
    try:
        return Outcome(value=clause.oracle(args, model, caps))
    except LookupFailure as exc:
        return Outcome(failure=exc.kind, message=str(exc)[:300])


def observe(adapter: Any, clause: Clause, args: dict[str, Any]) -> Outcome:
    return call(adapter, clause.method, args)


def call(adapter: Any, method: str, args: dict[str, Any]) -> Outcome:
    """The outcome of one adapter call on a copy of ``args``; a call that changes its
    inputs is a crash (a lookup never changes what it is given)."""
    given_args = copy.deepcopy(args)
    outcome = invoke(getattr(adapter, method), **given_args)
    for name, value in args.items():  # a lookup never changes what it is given
        if isinstance(value, np.ndarray) and value.tobytes() != given_args[name].tobytes():
            return Outcome(crash=f"the adapter changed its input {name!r} in place")
        if isinstance(value, list) and any(
            isinstance(a, np.ndarray) and a.tobytes() != b.tobytes() for a, b in zip(value, given_args[name])
        ):
            return Outcome(crash=f"the adapter changed its input {name!r} in place")
    return outcome


class Judge:
    """What one check has seen: each example held against the composed model (the
    contract when nothing is declared) and the acknowledged violations, the first input
    that departed from the contract (and was explained), and which acknowledgements met
    their failure."""

    def __init__(self, clause: Clause, model: Sequence[str], acks: Sequence[Any], caps, skip_deaths: bool = False):
        self.clause, self.model, self.acks, self.caps = clause, tuple(model), tuple(acks), caps
        self.skip_deaths = skip_deaths  # a replay after an acknowledged death: its inputs are not called again
        self.departed: tuple[dict, Outcome, Outcome] | None = None  # (inputs, contract, actual)
        self.met: dict[Any, tuple[dict, Outcome, Outcome]] = {}  # acknowledgement -> its first input

    def dead_on(self, args: dict[str, Any]) -> Any | None:
        """The acknowledged death that covers ``args`` in a replay (the call is not made)."""
        if not self.skip_deaths:
            return None
        return next((a for a in self.acks if a.dies() and a.covers_input(args)), None)

    def __call__(self, args: dict[str, Any], actual: Outcome) -> tuple[Outcome, str] | None:
        """None when ``actual`` is what the model (or an acknowledgement) allows on ``args``;
        else (what was expected, the problem)."""
        expected = expected_outcome(self.clause, args, self.model, self.caps)
        problem = self.clause.compare(expected, actual)
        contract = expected if not self.model else None
        if problem is None:
            if self.model and self.departed is None:
                contract = expected_outcome(self.clause, args, (), self.caps)
                if self.clause.compare(contract, actual) is not None:
                    self.departed = (args, contract, actual)
            return None
        contract = contract or expected_outcome(self.clause, args, (), self.caps)
        departs = self.clause.compare(contract, actual) is not None
        if departs:
            for ack in self.acks:
                if ack.covers_input(args) and ack.matches_failure(actual):
                    self.met.setdefault(ack, (args, contract, actual))
                    if self.departed is None:
                        self.departed = (args, contract, actual)
                    return None
        if self.model and not departs:
            problem = (f"it follows the contract here, where its declared model {list(self.model)} says otherwise: "
                       f"{problem}")
        return expected, problem


class Search:
    """Hypothesis search for an input the judge does not allow."""

    def __init__(self, adapter: Any, clause: Clause, cfg: settings, seed: int | None, explicit: Sequence[dict] = (),
                 journal: str | None = None):
        self.adapter, self.clause, self.cfg, self.seed = adapter, clause, cfg, seed
        self.explicit = list(explicit)  # witnesses and pins, tried first (hypothesis explicit examples)
        # a file each example is written to before the adapter sees it: if the call kills
        # the process, the input that did it survives (suites.hosts replays a crashed check so)
        self.journal = open(journal, "wb") if journal else None
        self.examples = 0
        self.caps = capabilities_of(adapter)
        # where the time goes: the adapter's call, and the oracle plus comparison;
        # the rest of a search is generating examples (and hypothesis itself)
        self.t_call = self.t_check = 0.0
        self.ids = 0
        self.seen: dict[int, Outcome] = {}  # outcomes of the explicit examples, by identity (called once)

    def outcome(self, args: dict[str, Any]) -> Outcome:
        known = self.seen.get(id(args))
        if known is not None:
            return known
        self.examples += 1
        ids = args.get("ids")
        self.ids += ids.size if isinstance(ids, np.ndarray) else 0
        if self.journal is not None:
            self.journal.seek(0)
            self.journal.truncate()
            pickle.dump(args, self.journal)
            self.journal.flush()
        t0 = time.perf_counter()
        actual = observe(self.adapter, self.clause, args)
        self.t_call += time.perf_counter() - t0
        if any(args is e for e in self.explicit):
            self.seen[id(args)] = actual
        return actual

    def run(self, strategy, judge: Callable[[dict, Outcome], tuple[Outcome, str] | None],
            explicit: bool = True) -> Counterexample | None:
        def probe(args):
            skip = getattr(judge, "dead_on", lambda a: None)(args)
            if skip is not None:
                return
            actual = self.outcome(args)
            t1 = time.perf_counter()
            verdict = judge(args, actual)
            self.t_check += time.perf_counter() - t1
            if verdict is not None:
                raise Counterexample(args, verdict[0], actual, verdict[1])

        test = given(strategy)(probe)
        for e in reversed(self.explicit if explicit else []):  # decorators apply inside out: keep their order
            test = example(e)(test)
        test = self.cfg(test)
        if self.seed is not None and not self.cfg.derandomize:
            test = hyp_seed(self.seed)(test)
        try:
            test()
        except Counterexample as found:
            return found
        return None


def contract_judge(clause: Clause, caps) -> Callable[[dict, Outcome], tuple[Outcome, str] | None]:
    def judge(args, actual):
        expected = expected_outcome(clause, args, (), caps)
        problem = clause.compare(expected, actual)
        return None if problem is None else (expected, problem)
    return judge


def diagnose(adapter: Any, clause: Clause, found: Counterexample) -> str:
    """Which known models, if any, the unexpected outcome matches (on this example;
    several may agree on a small one)."""
    caps = capabilities_of(adapter)
    matches = []
    for model in clause.suspects:
        try:
            if clause.compare(expected_outcome(clause, found.inputs, model, caps), found.actual) is None:
                matches.append(str(list(model)))
        except Exception:
            continue
    if not matches:
        return ""
    return f"; on this example the outcome matches behaviour model{'s' if len(matches) > 1 else ''} {', '.join(matches[:4])}"


def run_check(adapter: Any, clause: Clause, *, profile: str, seed: int | None, plan: Any = None,
              run_seed: int = 0, journal: str | None = None, skip_deaths: bool = False) -> dict:
    """Status and evidence of one check, as the fields of a results record. ``plan``: the
    declarations that may speak of it (suites.declarations.Plan)."""
    from .declarations import Plan
    from .pins import pinned

    start = time.perf_counter()
    rec: dict[str, Any] = {}
    caps = capabilities_of(adapter)
    reason = clause.not_applicable(methods_of(adapter), caps, adapter)
    if reason:
        return {"status": "not_applicable", "reason": reason, "examples": 0, "seconds": 0.0}
    try:
        facts = environment_of(adapter)
    except Exception as exc:  # a broken report must not hide the check; a `when` then fails
        facts = {"environment() failed": f"{type(exc).__name__}: {exc}"[:200]}
    if facts:
        rec["environment"] = facts
    plan, aside = (plan or Plan()).applying(facts)
    if aside:  # e.g. a failure only multi-threaded code has: held to the contract here
        rec["divergence_set_aside"] = "; ".join(aside)
    model, acks = plan.model, plan.violations
    method = getattr(adapter, clause.method)
    witnesses = [(d, w.build()) for d, w in plan.witnesses(clause.id, getattr(adapter, 'name', ''))]
    witnesses = [(d, a) for d, a in witnesses if _takes(method, a)]  # a witness for another load path, say
    pins = [a for a in pinned(model, clause.id, clause.method, caps) if _takes(method, a)]
    cfg = hypothesis_settings(profile)
    search = Search(adapter, clause, cfg, seed, [a for _, a in witnesses] + pins, journal)
    judge = Judge(clause, model, acks, caps, skip_deaths)
    strategy = clause.cases(caps, make_pool(caps, POOL_SIZES[profile], 0 if cfg.derandomize else run_seed))
    try:
        stale = []
        for d, args in witnesses:  # a witness that no longer departs: its declaration is stale
            if judge.dead_on(args) is None and contract_judge(clause, caps)(args, search.outcome(args)) is None:
                stale.append(d)
        found = search.run(strategy, judge)
        if found is not None and any(found.inputs is p for p in pins):
            # a pin is a table of every special value: a smaller input the search shrinks shows it better
            smaller = search.run(strategy, judge, explicit=False)
            found = smaller if smaller is not None else found
        shown = _Smaller(search, clause, caps, model, acks)
        if stale:  # the declaration no longer holds: that is what to fix first, whatever else departs
            rec["status"] = "stale"
            rec["detail"] = "; ".join(
                f"{d.source} declares {'a violation' if d.violation else 'model ' + str(list(d.model))}, but its "
                f"witness no longer departs from the contract: the declaration no longer holds for these versions"
                for d in stale)
            if found is not None:
                rec.update(_evidence(adapter, clause, found.inputs, found.expected, found.actual))
                rec["found_by"] = _found_by(found.inputs, witnesses, pins)
                rec["detail"] += f"; and on the example shown: {found.problem}"
        elif found is not None:
            found_by = _found_by(found.inputs, witnesses, pins)
            found = shown.violation(found, judge)
            rec.update(_evidence(adapter, clause, found.inputs, found.expected, found.actual))
            rec["found_by"] = found_by
            rec["status"] = "violates"
            rec["detail"] = _violation_detail(plan, found) + diagnose(adapter, clause, found)
        elif judge.met:
            ack, (inputs, contract, actual) = next(iter(judge.met.items()))
            found_by = _found_by(inputs, witnesses, pins)
            inputs, contract, actual = shown.acknowledged(ack, inputs, contract, actual)
            rec.update(_evidence(adapter, clause, inputs, contract, actual), status="violates", found_by=found_by)
            rec["detail"] = f"acknowledged ({ack.source}): expected {contract.describe()}, got {actual.describe()}"
            rec["acknowledgements"] = [a.source for a in judge.met]
        elif judge.departed is not None:
            inputs, contract, actual = judge.departed
            if not any(inputs is e for e in search.explicit):
                # found by the search, not shrunk against the contract: the smallest departure instead
                small = search.run(strategy, contract_judge(clause, caps), explicit=False)
                if small is not None:
                    inputs, contract, actual = small.inputs, small.expected, small.actual
            found_by = _found_by(inputs, witnesses, pins)
            inputs, contract, actual = shown.divergence(inputs, contract, actual)
            rec.update(_evidence(adapter, clause, inputs, contract, actual), status="diverges", found_by=found_by)
            rec["detail"] = (f"departs from the contract as its declared model {list(model)} says: expected "
                             f"{contract.describe()}, got {actual.describe()}")
        else:
            rec["status"] = "conforms"
        unmet = [a for a in acks if a.intermittent and a not in judge.met]
        if unmet and rec["status"] != "violates":
            rec["acknowledged_not_met"] = "; ".join(
                f"{a.source} acknowledges an intermittent violation, not met in this run's {search.examples} examples"
                for a in unmet)
    except FlakyFailure as exc:
        found = _first_counterexample(exc)
        if found is None:
            rec.update(status="error", reason=f"the adapter's behaviour was not reproducible (flaky): {str(exc)[:300]}")
        else:
            # the same input gave another outcome when hypothesis replayed it: a lookup's result
            # is a function of its input, so that is a departure of its own (reading memory it
            # does not own, a race), reported with the input; no model follows it
            rec.update(_evidence(adapter, clause, found.inputs, found.expected, found.actual), status="violates",
                       found_by="search", detail=(
                           f"not reproducible: this input departed ({found.problem}) and, replayed, came back "
                           f"otherwise: the outcome is not a function of the input"))
    except FlakyStrategyDefinition as exc:
        rec.update(status="error", reason=f"the strategy was not reproducible (flaky): {str(exc)[:300]}")
    except HypothesisException as exc:
        rec.update(status="error", reason=f"hypothesis: {type(exc).__name__}: {str(exc)[:300]}")
    except Exception as exc:  # the suite itself broke: say where
        tb = traceback.format_exc(limit=-3)
        rec.update(status="error", reason=f"suite error {type(exc).__name__}: {exc}", detail=tb[-1500:])
    if search.journal is not None:
        search.journal.close()
    rec["model"] = list(model)
    rec["declarations"] = [d.source for d in (*plan.divergences, *plan.violations)]
    rec["examples"] = search.examples
    rec["seconds"] = round(time.perf_counter() - start, 4)
    rec["timing"] = {"call": round(search.t_call, 4), "check": round(search.t_check, 4), "ids": search.ids}
    return rec


class _Smaller:
    """The example a record shows: the found one, or the same input with every table row
    that no id reaches set to zero (source.unreached_zeroed) when the adapter departs the
    same way on it (same verdict, same problem kind), so that its source is np.zeros(...)
    plus the rows that matter. Never tried where a declared death could strike (a call
    that kills the process after the verdict is known would lose it)."""

    def __init__(self, search: Search, clause: Clause, caps, model, acks):
        self.search, self.clause, self.caps, self.model, self.acks = search, clause, caps, tuple(model), acks
        self.safe = not any(a.dies() for a in acks)

    def _try(self, inputs: dict) -> tuple[dict, Outcome, Outcome] | None:
        """The smaller input, the adapter's outcome on it and the contract's, or None."""
        small = unreached_zeroed(inputs) if self.safe else None
        if small is None:
            return None
        try:
            # a clause whose oracle is a table of worked examples (seed.e*) has no answer for
            # an input it does not list: such an example stays as found
            contract = expected_outcome(self.clause, small, (), self.caps)
        except KeyError:
            return None
        try:
            return small, self.search.outcome(small), contract
        except Exception:  # an adapter that breaks on the smaller input: keep the found one
            return None

    def violation(self, found: Counterexample, judge: Judge) -> Counterexample:
        got = self._try(found.inputs)
        if got is None:
            return found
        small, actual, _ = got
        verdict = Judge(self.clause, self.model, self.acks, self.caps)(small, actual)  # a fresh judge: no record kept
        if verdict is None or (actual.failure, actual.crash is None) != (found.actual.failure, found.actual.crash is None):
            return found
        return Counterexample(small, verdict[0], actual, verdict[1])

    def acknowledged(self, ack, inputs, contract, actual):
        got = self._try(inputs)
        if got is not None:
            small, small_actual, small_contract = got
            if (self.clause.compare(small_contract, small_actual) is not None and ack.covers_input(small)
                    and ack.matches_failure(small_actual)):
                return small, small_contract, small_actual
        return inputs, contract, actual

    def divergence(self, inputs, contract, actual):
        got = self._try(inputs)
        if got is not None:
            small, small_actual, small_contract = got
            modelled = expected_outcome(self.clause, small, self.model, self.caps)
            if (self.clause.compare(modelled, small_actual) is None
                    and self.clause.compare(small_contract, small_actual) is not None):
                return small, small_contract, small_actual
        return inputs, contract, actual


def _found_by(inputs: dict, witnesses, pins) -> str:
    if any(inputs is a for _, a in witnesses):
        return "witness"
    return "pin" if any(inputs is a for a in pins) else "search"


def _violation_detail(plan: Any, found: Counterexample) -> str:
    if plan.divergences:
        sources = ", ".join(d.source for d in plan.divergences)
        head = f"does not follow its declared model {list(plan.model)} ({sources}): {found.problem}"
    else:
        head = f"departs from the contract: {found.problem}"
    if plan.violations:
        head += (" (not the failure " + " nor ".join(f"{a.source} acknowledges" for a in plan.violations)
                 + " on these inputs)")
    return head


def _first_counterexample(group: BaseException) -> Counterexample | None:
    """The first departure recorded in a hypothesis FlakyFailure (an exception group)."""
    for exc in getattr(group, "exceptions", ()):
        if isinstance(exc, Counterexample):
            return exc
        inner = _first_counterexample(exc)
        if inner is not None:
            return inner
    return None


def _takes(method: Any, args: dict[str, Any]) -> bool:
    """Whether ``args`` are exactly a call of ``method``: every required parameter, no other."""
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return True
    required = {n for n, p in params.items() if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return required <= set(args) <= set(params)


def snippet_of(adapter: Any, method: str, inputs: dict[str, Any]) -> str | None:
    make = getattr(adapter, "snippet", None)
    if not callable(make):
        return None
    try:
        return make(method, args_source(inputs))
    except Exception as exc:  # a broken snippet must not hide the finding
        return f"# the adapter could not write a snippet: {type(exc).__name__}: {exc}"


def crash_record(clause: Clause, inputs: dict[str, Any], caps, what: str, snippet: str | None) -> dict[str, Any]:
    """The record of a check whose adapter killed its process on ``inputs`` (read back
    from the journal): a departure no model can follow, with the input that did it."""
    expected = expected_outcome(clause, inputs, (), caps or Capabilities())
    return {"status": "violates", "found_by": "search", "example": example_source(inputs),
            **_witness(inputs),
            "expected": expected.describe(), "actual": what, "observed": {"died": what}, "snippet": snippet,
            "detail": f"expected {expected.failure or 'rows'}, but {what} (not shrunk: the process died)"}


def _evidence(adapter: Any, clause: Clause, inputs: dict[str, Any], expected: Outcome,
              actual: Outcome) -> dict[str, Any]:
    snippet = snippet_of(adapter, clause.method, inputs)
    return {
        "example": example_source(inputs),
        **_witness(inputs),
        "expected": expected.describe(),
        "actual": actual.describe(),
        "observed": observed(actual),
        "snippet": snippet,
    }


WITNESS_MAX = 4096  # elements: a declaration's witness is a small input; a larger one is its example alone


def _witness(inputs: dict[str, Any]) -> dict[str, Any]:
    """``{"witness": ...}``, the input as a declaration's witness writes it (floats as bits),
    where it is small enough to paste into a declaration; else nothing (the example and
    the snippet still hold it)."""
    from .declarations import witness_spec

    arrays = [v for v in inputs.values() if isinstance(v, np.ndarray)]
    arrays += [x for v in inputs.values() if isinstance(v, list) for x in v if isinstance(x, np.ndarray)]
    if sum(a.size for a in arrays) > WITNESS_MAX:
        return {}
    return {"witness": witness_spec(inputs)}


def observed(outcome: Outcome) -> dict[str, Any]:
    """What came back, machine-readable, so a snippet's run can be compared to it: the
    failure kind, or each part of the result (``parts``: an array's dtype, shape and
    bytes, or a failure kind) with the first part's keys at the top as well."""
    if outcome.crash:
        return {"crash": outcome.crash}
    if outcome.failure:
        return {"failure": outcome.failure}
    parts = [observed_part(v) for v in (outcome.value if isinstance(outcome.value, tuple) else (outcome.value,))]
    return {**parts[0], "parts": parts}


def observed_part(value: Any) -> dict[str, Any]:
    """One part of a result: ``{failure}`` or ``{dtype, shape, hex}`` (no bytes past 64 KiB)."""
    if isinstance(value, LookupFailure):
        return {"failure": value.kind}
    if value.nbytes > 65536:
        return {"dtype": value.dtype.name, "shape": list(value.shape)}
    return {"dtype": value.dtype.name, "shape": list(value.shape), "hex": value.tobytes().hex()}
