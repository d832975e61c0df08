"""One check: an adapter held against one clause, ending in one status.

Search for a counterexample to the contract. None found: ``conforms`` (``stale``
if a divergence is declared). Found: its shrunk form is the example; then hold
the adapter against its declared model, on that example and over fresh ones:
it holds, ``diverges``; it does not, or nothing is declared, ``violates``.
This module runs in whichever process hosts the adapter; it returns plain dicts.
"""
from __future__ import annotations

import copy
import inspect
import pickle
import time
import traceback
from typing import Any, Sequence

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
from hypothesis import seed as hyp_seed
from hypothesis.errors import FlakyFailure, FlakyStrategyDefinition, HypothesisException

from embedding_conformance.adapters.contract import Capabilities, LookupFailure, capabilities_of, environment_of, methods_of

from .assertions import Outcome, invoke
from .catalogue import Clause
from .signatures import make_pool
from .source import args_source, example_source

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


class Search:
    """Hypothesis search for an input where the adapter departs from ``model``."""

    def __init__(self, adapter: Any, clause: Clause, cfg: settings, seed: int | None, witness: dict | None = None,
                 journal: str | None = None):
        self.adapter, self.clause, self.cfg, self.seed = adapter, clause, cfg, seed
        self.witness = witness
        # a file each example is written to before the adapter sees it: if the call kills
        # the process, the input that did it survives (suites.hosts replays a crashed check so)
        self.journal = open(journal, "wb") if journal else None
        self.examples = 0
        self.caps = capabilities_of(adapter)
        # where the time goes: the adapter's call, and the oracle plus comparison;
        # the rest of a search is generating examples (and hypothesis itself)
        self.t_call = self.t_check = 0.0
        self.ids = 0

    def run(self, strategy, model: Sequence[str]) -> Counterexample | None:
        def probe(args):
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
            t1 = time.perf_counter()
            expected = expected_outcome(self.clause, args, model, self.caps)
            problem = self.clause.compare(expected, actual)
            self.t_check += time.perf_counter() - t1
            self.t_call += t1 - t0
            if problem:
                raise Counterexample(args, expected, actual, problem)

        test = given(strategy)(probe)
        if self.witness is not None:  # a declared divergence's witness, tried first
            test = example(self.witness)(test)
        test = self.cfg(test)
        if self.seed is not None and not self.cfg.derandomize:
            test = hyp_seed(self.seed)(test)
        try:
            test()
        except Counterexample as found:
            return found
        return None


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


def run_check(adapter: Any, clause: Clause, *, profile: str, seed: int | None, divergence: Any | None,
              run_seed: int = 0, journal: str | None = None) -> dict:
    """Status and evidence of one check, as the fields of a results record."""
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
    if divergence is not None and divergence.when:
        unmet = divergence.unmet(facts)
        if unmet:  # e.g. a failure only multi-threaded code has: held to the contract here
            rec["divergence_set_aside"] = f"{divergence.source} does not apply here: {unmet}"
            divergence = None
    cfg = hypothesis_settings(profile)
    witness = divergence.witness_args() if divergence is not None else None
    if witness is not None and not _takes(getattr(adapter, clause.method), witness):
        witness = None  # a declaration's witness for its other clauses (no upstream, no load path)
    search = Search(adapter, clause, cfg, seed, witness, journal)
    strategy = clause.cases(caps, make_pool(caps, POOL_SIZES[profile], 0 if cfg.derandomize else run_seed))
    try:
        found = search.run(strategy, ())
        if found is None:
            if divergence is None:
                rec["status"] = "conforms"
            elif divergence.violation and divergence.intermittent:
                rec["status"] = "conforms"
                rec["acknowledged_not_met"] = (
                    f"{divergence.source} acknowledges an intermittent violation, not met in this run's "
                    f"{search.examples} examples")
            elif divergence.violation:
                rec.update(status="stale", detail=(
                    f"acknowledged as a violation ({divergence.source}), but no input departing from the contract "
                    f"was found in {search.examples} examples{' (the witness included)' if witness else ''}: "
                    f"the violation no longer reproduces for these versions"))
            else:
                rec.update(status="stale", detail=(
                    f"declared to follow model {list(divergence.model)} ({divergence.source}), but no input "
                    f"departing from the contract was found in {search.examples} examples: the declaration no "
                    f"longer holds for these versions"))
        else:
            rec.update(_evidence(adapter, clause, found))
            # the declaration's witness, or an input the generators found
            rec["found_by"] = "witness" if witness is not None and found.inputs is witness else "search"
            rec["detail"] = found.problem + diagnose(adapter, clause, found)
            if divergence is None or divergence.violation:
                # an acknowledged violation stays one: no model says what it does instead
                rec["status"] = "violates"
            else:
                rec.update(_against_model(adapter, clause, search, strategy, found, divergence))
    except FlakyFailure as exc:
        found = _first_counterexample(exc)
        if found is None:
            rec.update(status="error", reason=f"the adapter's behaviour was not reproducible (flaky): {str(exc)[:300]}")
        else:
            # the same input gave another outcome when hypothesis replayed it: a lookup's result
            # is a function of its input, so that is a departure of its own (reading memory it
            # does not own, a race), reported with the input; no model follows it
            rec.update(_evidence(adapter, clause, found), status="violates", found_by="search", detail=(
                f"not reproducible: this input departed ({found.problem}) and, replayed, came back otherwise: "
                f"the outcome is not a function of the input"))
    except FlakyStrategyDefinition as exc:
        rec.update(status="error", reason=f"the strategy was not reproducible (flaky): {str(exc)[:300]}")
    except HypothesisException as exc:
        rec.update(status="error", reason=f"hypothesis: {type(exc).__name__}: {str(exc)[:300]}")
    except Exception as exc:  # the suite itself broke: say where
        tb = traceback.format_exc(limit=-3)
        rec.update(status="error", reason=f"suite error {type(exc).__name__}: {exc}", detail=tb[-1500:])
    if search.journal is not None:
        search.journal.close()
    rec["examples"] = search.examples
    rec["seconds"] = round(time.perf_counter() - start, 4)
    rec["timing"] = {"call": round(search.t_call, 4), "check": round(search.t_check, 4), "ids": search.ids}
    return rec


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
            "expected": expected.describe(), "actual": what, "observed": {"crash": what}, "snippet": snippet,
            "detail": f"expected {expected.failure or 'rows'}, but {what} (not shrunk: the process died)"}


def _evidence(adapter: Any, clause: Clause, found: Counterexample) -> dict[str, Any]:
    snippet = snippet_of(adapter, clause.method, found.inputs)
    return {
        "example": example_source(found.inputs),
        "expected": found.expected.describe(),
        "actual": found.actual.describe(),
        "observed": observed(found.actual),
        "snippet": snippet,
    }


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


def _against_model(adapter, clause, search: Search, strategy, found: Counterexample, divergence) -> dict[str, Any]:
    """The contract was broken; does the adapter follow its declared model instead?"""
    model = divergence.model
    extra: dict[str, Any] = {}
    problem = clause.compare(expected_outcome(clause, found.inputs, model, search.caps), found.actual)
    if problem is None:
        again = search.run(strategy, model)
        if again is None:
            return {"status": "diverges"}
        problem = again.problem
        extra = {f"model_{k}": v for k, v in _evidence(adapter, clause, again).items() if k != "snippet"}
    return {"status": "violates", **extra, "detail": (
        f"departs from the contract ({found.problem}) and does not follow its declared model "
        f"{list(model)} ({divergence.source}) either: {problem}")}
