"""The pytest plugin: options, one test per (clause, adapter), the workers' lifetime
(the run is written by embedding_conformance.reports.recording, a plugin of its own).

Imports no framework: built-ins are described by data (adapters.registry) and
run in worker processes; only a third-party adapter's own module is imported here.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import secrets
import time
import zlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest

from embedding_conformance.adapters import registry
from embedding_conformance.adapters.spec import oracle
from embedding_conformance.adapters.contract import capabilities_of, methods_of

from . import declarations as decl
from . import engine
from .catalogue import CLAUSES, family_clauses, load_all
from .hosts import BuiltinHost, Job, LocalHost, WorkerHost, set_parallelism
from .statuses import PASSING, SKIPPING

# --hypothesis-profile NAME is read by hypothesis's own pytest plugin, which refuses
# a name it does not know: register the suite's profiles it lacks ("thorough")
for _name in engine.PROFILES:
    try:
        hypothesis.settings.get_profile(_name)
    except hypothesis.errors.InvalidArgument:
        hypothesis.settings.register_profile(_name, max_examples=engine.PROFILES[_name]["max_examples"])

ENTRY_POINT_GROUP = "embedding_conformance.adapters"
STASH = pytest.StashKey["Conformance"]()


def pytest_addoption(parser):
    g = parser.getgroup("embedding-conformance")
    g.addoption("--adapters", default=None, metavar="NAME[,NAME...]",
                help="built-in adapters to run (a prefix selects a family, e.g. 'keras', 'tf', '[xla]'); default: all")
    g.addoption("--adapter", action="append", default=[], metavar="MODULE:ATTR",
                help="a third-party adapter, or a zero-argument factory of one (repeatable)")
    g.addoption("--declarations", "--expectations", action="append", default=[], metavar="FILE", dest="declarations",
                help="your own declarations (TOML or JSON, as adapters/<framework>/declarations.toml), beside the "
                     "built-in ones; --expectations is its older name")
    g.addoption("--report-dir", default="reports/latest", metavar="DIR",
                help="where results.jsonl, run.json and index.html are written (default: reports/latest)")
    g.addoption("--check-timeout", type=float, default=600.0, metavar="SECONDS",
                help="a worker that does not finish one check in this time is stopped (status error)")
    g.addoption("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                help="framework worker processes computing checks at once in a run without xdist "
                     "(default: the number of CPUs); 1 runs one check at a time")


@dataclass
class Entry:
    """One adapter column: its name, versions and where its checks run."""

    name: str
    framework: str
    versions: dict[str, str]
    host: Any = None
    group: str = "local"
    unavailable: str | None = None
    adapter: Any = None  # a third-party adapter object (built-ins live in their workers)


@dataclass
class Conformance:
    entries: dict[str, Entry]
    declared: list
    profile: str
    seed: int | None
    report_dir: Path
    records: list[dict] = field(default_factory=list)
    collected: int = 0
    workers: dict[str, WorkerHost] = field(default_factory=dict)
    pending: dict[tuple[str, str], Future] = field(default_factory=dict)  # submitted ahead, by (adapter, clause)

    def job(self, entry: Entry, clause_id: str) -> Job:
        clause = CLAUSES[clause_id]
        plan = decl.plan_for(self.declared, entry.name, clause_id, clause.method, entry.versions)
        seed = None if self.seed is None else (self.seed ^ zlib.crc32(f"{entry.name}|{clause_id}".encode())) & 0xFFFFFFFF
        return Job(clause_id, self.profile, seed, plan, run_seed=self.seed or 0)

    def run(self, entry: Entry, clause_id: str) -> dict:
        clause = CLAUSES[clause_id]
        base = {"adapter": entry.name, "framework": entry.framework, "clause": clause.id, "family": clause.family,
                "statement": clause.statement, "versions": entry.versions, "device": "cpu"}
        if clause.tolerance:
            base["tolerance"] = clause.tolerance
        if entry.unavailable:
            return {**base, "status": "unavailable", "reason": entry.unavailable, "examples": 0, "seconds": 0.0}
        job = self.job(entry, clause_id)
        fut = self.pending.pop((entry.name, clause_id), None)
        rec = {**base, **(fut.result() if fut is not None else entry.host.run(job))}
        return describe_declarations(rec, job.plan)

    def stop(self) -> None:
        """Ask every worker to exit; they shut down together, while the report is written."""
        for w in self.workers.values():
            w.stop()

    def reap(self, grace: float = 1.0) -> None:
        """Wait ``grace`` seconds in all for the workers to exit, then kill the rest:
        every result is in, and a framework's interpreter teardown (seconds, for some)
        has nothing left to save."""
        deadline = time.monotonic() + grace
        for w in self.workers.values():
            w.reap(max(0.0, deadline - time.monotonic()))


# --- configuration ----------------------------------------------------------------

def _profile(config) -> str:
    chosen = config.getoption("hypothesis_profile", default=None)
    if chosen:
        return chosen
    return "ci" if os.environ.get("CI") else "default"


def _third_party(spec: str) -> Entry:
    module = spec.partition(":")[0]
    try:
        obj = registry.load_object(spec)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise pytest.UsageError(f"--adapter {spec}: no module named {exc.name!r} (give MODULE:ATTR of an importable module)")
        return Entry(spec, spec, {}, unavailable=f"{spec} needs {exc.name!r}, which is not installed")
    except (AttributeError, ValueError) as exc:
        raise pytest.UsageError(f"--adapter {spec}: {exc} (give MODULE:ATTR naming an adapter or a zero-argument factory)")
    except Exception as exc:  # the factory raised: its checks are errors, the run goes on
        def fail(exc=exc):
            raise exc
        return Entry(spec, spec, {}, host=LocalHost(fail))
    name = getattr(obj, "name", spec)
    framework = getattr(obj, "framework", "") or ""
    caps = capabilities_of(obj)
    return Entry(str(name), str(framework), registry.versions((framework, *caps.distributions, "numpy")),
                 host=LocalHost(lambda obj=obj: obj), adapter=obj)


def _entries(config, timeout: float) -> tuple[dict[str, Entry], dict[str, WorkerHost]]:
    try:
        chosen = registry.select(config.getoption("adapters"))
    except ValueError as exc:
        raise pytest.UsageError(f"--adapters: {exc}") from None
    only_third_party = bool(config.getoption("adapter")) and not config.getoption("adapters")
    entries: dict[str, Entry] = {}
    workers: dict[str, WorkerHost] = {}
    for b in ([] if only_third_party else chosen):
        e = Entry(b.name, b.framework, registry.versions((*b.distributions, "numpy")), group=b.group or "local")
        e.unavailable = b.missing()
        if e.unavailable is None:
            if b.group is None:
                e.host = LocalHost(lambda b=b: registry.load_object(b.factory))
            else:
                w = workers.setdefault(b.group, WorkerHost(b.group, dict(b.env), timeout))
                e.host = BuiltinHost(b, w)
        entries[b.name] = e
    specs = list(config.getoption("adapter"))
    if not config.getoption("adapters") and not only_third_party:
        specs += [ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    for spec in specs:
        e = _third_party(spec)
        if e.name in entries:
            raise pytest.UsageError(f"--adapter {spec}: adapter name {e.name!r} is already taken")
        entries[e.name] = e
    return entries, workers


def _known(entries: dict[str, Entry]) -> dict[str, Any]:
    """Every adapter a declaration may name (all built-ins, selected or not, and this
    run's third-party ones), each as a function giving why a clause is not
    applicable to it: built-ins from their static descriptions (no framework import)."""
    known: dict[str, Any] = {}
    for b in registry.BUILTINS:
        d = b.describe()
        known[b.name] = lambda c, d=d: CLAUSES[c].not_applicable(d.methods, d.capabilities)
    for e in entries.values():
        if e.adapter is not None:
            known[e.name] = lambda c, a=e.adapter: CLAUSES[c].not_applicable(methods_of(a), capabilities_of(a), a)
    return known


def pytest_configure(config):
    config.addinivalue_line("markers", "conformance: a check of one adapter against one clause")
    clauses = load_all()
    if config.getoption("workers") < 1:
        raise pytest.UsageError(f"--workers: must be at least 1, not {config.getoption('workers')}")
    entries, workers = _entries(config, config.getoption("check_timeout"))
    try:
        declared = decl.load(config.getoption("declarations"), clauses)
        methods = {c.id: c.method for c in clauses.values()}
        decl.check_targets(declared, _known(entries), methods)
        decl.check_composition(declared, _installed(entries), methods)
    except decl.DeclarationError as exc:
        raise pytest.UsageError(f"declarations: {exc}") from None
    profile = _profile(config)
    seed = config.getoption("hypothesis_seed", default=None)
    if seed is None and profile != "ci":
        seed = secrets.randbelow(2**32)
    conf = Conformance(entries, declared, profile, None if profile == "ci" else int(seed),
                       Path(config.getoption("report_dir")), workers=workers)
    config.stash[STASH] = conf


def _installed(entries: dict[str, Entry]) -> dict[str, dict[str, str]]:
    """Every adapter a declaration may name, with the versions it runs with here."""
    out = {b.name: registry.versions((*b.distributions, "numpy")) for b in registry.BUILTINS}
    out.update({e.name: e.versions for e in entries.values()})
    return out


def describe_declarations(rec: dict, plan: Any) -> dict:
    """The record's account of its declarations: ``divergence`` (the composed behaviour,
    where the check diverges, is stale or breaks it) and ``acknowledged`` (the violation
    it met), from the plan the check ran under; the engine named which applied."""
    applied = set(rec.get("declarations", ()))
    divs_ = [d for d in (plan.divergences if plan else ()) if d.source in applied]
    acks = [d for d in (plan.violations if plan else ()) if d.source in set(rec.get("acknowledgements", ()))]
    rec["divergence"] = None
    if divs_ and rec["status"] in ("diverges", "stale", "violates") and not acks:
        rec["divergence"] = composed(divs_)
    if rec["status"] == "stale" and not divs_:
        stale = [d for d in (plan.violations if plan else ()) if d.source in applied]
        rec["divergence"] = composed(stale) if stale else None
    if acks and rec["status"] == "violates":
        rec["acknowledged"] = acks[0].as_dict()
        if len(acks) > 1:
            rec["acknowledged"]["also"] = [a.source for a in acks[1:]]
    return rec


def composed(decls: list) -> dict[str, Any]:
    """Several declarations as the one behaviour a check was held to."""
    from embedding_conformance.adapters.spec import steps

    versions: dict[str, str] = {}
    for d in decls:
        for dist, spec in d.versions:
            versions[dist] = spec if dist not in versions or versions[dist] == spec else f"{versions[dist]}; {spec}"
    out = {"model": list(steps.canonical(s for d in decls for s in d.model)), "versions": versions,
           "reference": " ; ".join(dict.fromkeys(d.reference for d in decls)),
           "note": "\n".join(f"{d.source}: {d.note}" for d in decls),
           "source": ", ".join(d.source for d in decls),
           "behaviours": [d.as_dict() for d in decls]}
    when = {fact: spec for d in decls for fact, spec in d.when}
    if when:  # the conditions under which the composed behaviour applies (all of them held)
        out["when"] = when
    return out


def pytest_generate_tests(metafunc):
    if "check" not in metafunc.fixturenames:
        return
    conf = metafunc.config.stash.get(STASH, None)
    clauses = family_clauses(metafunc.module)
    params = [pytest.param((c.id, name), id=f"{c.id}|{name}") for c in clauses for name in conf.entries]
    metafunc.parametrize("check", params, indirect=True)


class Check:
    def __init__(self, conf: Conformance, entry: Entry, clause_id: str, item):
        self.conf, self.entry, self.clause_id, self.item = conf, entry, clause_id, item

    def run(self) -> None:
        record = self.conf.run(self.entry, self.clause_id)
        # as JSON text: xdist's wire format (execnet) refuses some of a record's values (an int
        # below -2**31 in a witness, say); the record is JSON by its schema anyway
        self.item.user_properties.append(("conformance", json.dumps(record, default=str)))
        status = record["status"]
        if status in PASSING:
            return
        text = record.get("reason") or record.get("detail") or ""
        if status in SKIPPING:
            pytest.skip(f"{status}: {text}")
        ack = record.get("acknowledged")
        if status == "violates" and ack:
            # known and written up: red in the report, an expected failure for pytest
            pytest.xfail(f"acknowledged violation ({ack['source']}: {ack['reference']}): {text[:300]}")
        lines = [f"{status}: {self.entry.name} on {self.clause_id}: {text}"]
        if record.get("example"):
            lines += ["minimal example:", record["example"]]
        pytest.fail("\n".join(lines), pytrace=False)


@pytest.fixture
def check(request):
    clause_id, name = request.param
    conf = request.config.stash[STASH]
    return Check(conf, conf.entries[name], clause_id, request.node)


def pytest_collection_modifyitems(config, items):
    conf = config.stash.get(STASH, None)
    if conf is None:
        return
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs is not None and "check" in cs.params:
            item.add_marker(pytest.mark.conformance)
            conf.collected += 1


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``-n N`` and ``--dist loadgroup``: every check of one framework group on one
    xdist worker (suites/distribution.py). An explicit ``--dist load`` is left alone."""
    dist = config.getvalue("dist")
    explicit = any(a in ("--dist", "-d") or a.startswith("--dist=") for a in config.invocation_params.args)
    if dist == "loadgroup" or (dist == "load" and not explicit):
        from .distribution import FrameworkScheduling

        return FrameworkScheduling(config, log)
    return None


def _distributed(config) -> bool:
    return (hasattr(config, "workerinput") or bool(config.getoption("numprocesses", None))
            or getattr(config.option, "dist", "no") != "no")


def pytest_collection_finish(session):
    """Without xdist, submit every framework check now, in item order: the workers
    compute ahead while the items consume their results one by one."""
    config = session.config
    conf = config.stash.get(STASH, None)
    n = config.getoption("workers")
    if conf is None or n <= 1 or config.option.collectonly or _distributed(config):
        return
    set_parallelism(n)
    for item in session.items:
        cs = getattr(item, "callspec", None)
        if cs is None or "check" not in cs.params:
            continue
        clause_id, name = cs.params["check"]
        entry = conf.entries[name]
        if isinstance(entry.host, BuiltinHost) and not entry.unavailable and (name, clause_id) not in conf.pending:
            conf.pending[(name, clause_id)] = entry.host.submit(conf.job(entry, clause_id))


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session, exitstatus):
    """Ask every worker to exit before the report is written (embedding_conformance.reports'
    own plugin writes it), and reap them after: they shut down while it is written."""
    conf = session.config.stash.get(STASH, None)
    if conf is not None:
        conf.stop()
    try:
        yield
    finally:
        if conf is not None:
            conf.reap()
