"""Where checks run. Built-in framework adapters run in a worker process per
framework (per Keras backend, since Keras fixes its backend per process): each
process imports only its framework, and one that crashes or hangs costs only its
own checks (status ``error``); the next check starts a fresh worker. The numpy
oracle and third-party adapters run in the pytest process.

A worker that dies during a check (a framework's abort or segfault) is not the end
of it: the check is replayed in a fresh worker that writes each example to a journal
file before the adapter sees it; if that worker dies too, the last example journaled
is the input that killed it, and the check ``violates`` with it (not shrunk), its
snippet written by a third worker. One that hangs is stopped (``error``).

A worker's checks can also be submitted ahead (``submit``): a thread per worker
feeds them to it in order, and slots shared by all workers bound how many compute
at once, so one pytest process keeps every core busy; a freed slot goes to the
worker with the most work left, so that no worker is left computing alone at the end.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import re
import sys
import tempfile
import threading
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Callable

from embedding_conformance.adapters import registry
from embedding_conformance.adapters.contract import check_adapter

from . import engine
from .catalogue import load_all


@dataclass(frozen=True)
class Job:
    clause: str
    profile: str
    seed: int | None  # this check's seed (None: derandomized)
    plan: Any | None  # the declarations that may speak of the check (suites.declarations.Plan)
    run_seed: int = 0  # the run's seed, which draws the signature pool every check of the run shares
    journal: str | None = None  # a crashed check's replay: where each example is written first
    skip_deaths: bool = False  # a replay after an acknowledged death: the inputs it covers are not called


@dataclass(frozen=True)
class SnippetJob:
    """Ask a worker for an adapter's reproduction snippet of one call."""
    method: str
    inputs: dict


@dataclass(frozen=True)
class CallJob:
    """One call of an adapter method on given inputs (reports.compare): its outcome's fields."""
    method: str
    inputs: dict


def run_job(adapter: Any, job: Job | SnippetJob | CallJob) -> dict:
    if isinstance(job, SnippetJob):
        return {"snippet": engine.snippet_of(adapter, job.method, job.inputs)}
    if isinstance(job, CallJob):
        if not callable(getattr(adapter, job.method, None)):
            return {"crash": f"the adapter has no {job.method}()"}
        outcome = engine.call(adapter, job.method, job.inputs)
        return {"value": outcome.value, "failure": outcome.failure, "message": outcome.message, "crash": outcome.crash}
    clause = load_all()[job.clause]
    rec = engine.run_check(adapter, clause, profile=job.profile, seed=job.seed, plan=job.plan,
                           run_seed=job.run_seed, journal=job.journal, skip_deaths=job.skip_deaths)
    caps = getattr(adapter, "capabilities", None)
    rec["device"] = getattr(caps, "device", "cpu")
    return rec


class LocalHost:
    """Runs checks in this process on an adapter built once, lazily."""

    def __init__(self, build: Callable[[], Any]):
        self._build, self._adapter, self._failure = build, None, None

    def adapter(self) -> Any:
        if self._adapter is None and self._failure is None:
            try:
                self._adapter = self._build()
                check_adapter(self._adapter)
            except Exception as exc:
                self._failure = f"the adapter could not be built: {type(exc).__name__}: {exc}"
        return self._adapter

    def run(self, job: Job) -> dict:
        adapter = self.adapter()
        if adapter is None:
            return {"status": "error", "reason": self._failure}
        return run_job(adapter, job)

    def close(self) -> None:
        pass


class Slots:
    """At most ``n`` submitted checks compute at once, across all workers. A freed
    slot goes to the waiting worker with the most work left (``WorkerHost.backlog``):
    taking turns instead, the worker with the most checks would finish last, alone,
    with the other cores idle."""

    def __init__(self, n: int):
        self._free = max(1, n)
        self._cv = threading.Condition()
        self._waiting: list = []
        self._granted: set = set()

    def acquire(self, host: "WorkerHost") -> None:
        with self._cv:
            self._waiting.append(host)
            self._grant()
            while host not in self._granted:
                self._cv.wait()
            self._granted.discard(host)

    def release(self) -> None:
        with self._cv:
            self._free += 1
            self._grant()

    def _grant(self) -> None:  # with the lock held
        while self._free and self._waiting:
            best = max(self._waiting, key=lambda h: h.backlog())
            self._waiting.remove(best)
            self._granted.add(best)
            self._free -= 1
        self._cv.notify_all()


_slots = Slots(os.cpu_count() or 1)
_starting = threading.Lock()  # a start edits os.environ, which every thread shares


def set_parallelism(n: int) -> None:
    """At most ``n`` submitted checks compute at once, across all workers."""
    global _slots
    _slots = Slots(n)


# --- the worker side ----------------------------------------------------------------

def _serve(conn, group: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    adapters: dict[str, Any] = {}
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            msg = None
        if msg is None:
            # every result is sent: skip the interpreter's teardown (TensorFlow's alone
            # takes ~0.5 s of CPU) while the report is being written
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        spec, job = msg
        try:
            if spec not in adapters:
                try:
                    adapters[spec] = registry.load_object(spec)
                    check_adapter(adapters[spec])
                    problem = _undescribed(spec, adapters[spec])
                    if problem:
                        adapters[spec] = {"status": "error", "reason": problem}
                except ImportError as exc:
                    adapters[spec] = {"status": "unavailable", "reason": f"import failed: {exc}"}
                except Exception as exc:
                    adapters[spec] = {"status": "error", "reason": f"the adapter could not be built: {type(exc).__name__}: {exc}",
                                      "detail": traceback.format_exc(limit=-4)[-1500:]}
            a = adapters[spec]
            conn.send(dict(a) if isinstance(a, dict) else run_job(a, job))
        except Exception as exc:  # never die silently: report and keep serving
            conn.send({"status": "error", "reason": f"worker: {type(exc).__name__}: {exc}",
                       "detail": traceback.format_exc(limit=-4)[-1500:]})


def _undescribed(spec: str, adapter: Any) -> str | None:
    """Why a built-in adapter differs from its static description (what declarations
    are checked against before a run), or None."""
    builtin = registry.BY_NAME.get(getattr(adapter, "name", None))
    if builtin is None or builtin.factory != spec:
        return None
    problem = builtin.describe().mismatch(adapter)
    return None if problem is None else (
        f"{builtin.name} does not match its static description (adapters' describe()): {problem}")


class WorkerHost:
    """A worker process for one group of built-ins, started on first use."""

    def __init__(self, group: str, env: dict[str, str], timeout: float):
        self.group, self.env, self.timeout = group, env, timeout
        self.proc = None
        self.conn = None
        self._queue: queue.Queue | None = None
        self._busy = threading.Lock()  # held while the feeding thread talks to the process
        self._closed = False

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        with _starting:
            saved = {k: os.environ.get(k) for k in self.env}
            os.environ.update(self.env)  # the child inherits the environment at start
            try:
                self.proc = ctx.Process(target=_serve, args=(child, self.group), name=f"conformance-{self.group}",
                                        daemon=True)
                self.proc.start()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        child.close()
        self.conn = parent

    def run_spec(self, spec: str, job: Job | SnippetJob | CallJob) -> dict:
        rec = self._ask(spec, job)
        died = rec.pop("_died", None)
        if died is None or not isinstance(job, Job) or job.journal is not None:
            return rec
        # the framework killed its process: replay the check, each example journaled first
        fd, journal = tempfile.mkstemp(prefix="conformance-journal-", suffix=".pickle")
        os.close(fd)
        try:
            again = self._ask(spec, replace(job, journal=journal))
            died_again = again.pop("_died", None)
            if died_again is None:  # it did not die twice: say so beside what the replay found
                again["detail"] = (f"the first attempt's worker died (exit code {died}); the replay did not. "
                                   + (again.get("detail") or ""))
                return again
            crash = self._crash_record(spec, job, journal, died_again)
        finally:
            os.unlink(journal)
        return self._acknowledged_death(spec, job, crash)

    def _acknowledged_death(self, spec: str, job: Job, crash: dict) -> dict:
        """A death an acknowledged violation covers (its ``died`` failure, on its inputs) is
        that violation; the check's other inputs are then held to the contract in a run
        that does not call the adapter on the covered ones."""
        inputs = crash.pop("_inputs", None)
        plan = job.plan
        ack = next((a for a in (plan.violations if plan else ()) if a.dies()
                    and re.search(a.dies(), crash.get("actual", "")) and inputs is not None
                    and a.covers_input(inputs)), None)
        if ack is None:
            return crash
        rest = self._ask(spec, replace(job, skip_deaths=True))
        if rest.pop("_died", None) is not None:  # another input killed it: not what was acknowledged
            rest["detail"] = f"{ack.source} acknowledges a death on other inputs; this one is not covered. " + \
                (rest.get("detail") or rest.get("reason") or "")
            return {**crash, "detail": rest["detail"]}
        if rest.get("status") == "violates" and not rest.get("acknowledgements"):
            return rest  # an unacknowledged departure elsewhere on the check
        if rest.get("status") == "error":
            return rest
        out = {**rest, **{k: crash[k] for k in ("example", "witness", "expected", "actual", "observed", "snippet",
                                                "found_by") if k in crash}}
        out["status"] = "violates"
        out["acknowledgements"] = sorted({ack.source, *rest.get("acknowledgements", [])})
        out["detail"] = f"acknowledged ({ack.source}): {crash.get('detail', '')}"
        return out

    def _crash_record(self, spec: str, job: Job, journal: str, code) -> dict:
        clause = load_all()[job.clause]
        try:
            with open(journal, "rb") as f:
                inputs = pickle.load(f)
        except Exception:  # nothing journaled: it died before any example
            return {"status": "error", "reason": f"the {self.group} worker process died (exit code {code}) before its "
                                                 f"first example, twice; the next check starts a new one"}
        name = {"-6": "SIGABRT", "-11": "SIGSEGV", "-9": "SIGKILL", "-4": "SIGILL",
                # adapters/torch/dtensor.py: the worker exits so when a rank of its process group fails
                "86": "a rank of its gloo process group died", "87": "a rank of its gloo process group hung"}.get(
            str(code), "")
        what = f"the {self.group} worker process died (exit code {code}{', ' + name if name else ''}) on this input"
        builtin = next((b for b in registry.BUILTINS if b.factory == spec), None)
        caps = builtin.describe().capabilities if builtin is not None else None
        snippet = self._ask(spec, SnippetJob(clause.method, inputs)).get("snippet")
        return {**engine.crash_record(clause, inputs, caps, what, snippet), "_inputs": inputs}

    def _ask(self, spec: str, job: Job | SnippetJob | CallJob) -> dict:
        """One request to the worker (started if need be); a death is ``{"_died": exit code}``."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        try:
            self.conn.send((spec, job))
            if not self.conn.poll(self.timeout):
                self._kill()
                return {"status": "error", "reason": f"the {self.group} worker did not answer within {self.timeout:.0f} s "
                                                     f"(hung); it was stopped and the next check starts a new one"}
            return self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = None
            if self.proc is not None:
                # the pipe closes a moment before the process is reaped: wait for its exit code
                self.proc.join(5)
                code = self.proc.exitcode
            self._kill()
            return {"status": "error", "_died": code,
                    "reason": f"the {self.group} worker process died (exit code {code}) during this check; the next "
                              f"check starts a new one"}

    def backlog(self) -> int:
        """Work left: the checks queued, and the one waiting for a slot. Counted, not
        timed: a worker's costs come in bursts (its imports, the first check of each
        method compiles), so its seconds per check so far say little about the rest;
        measured on the full run, counts balance the workers better (51 s against 54 s
        for a moving average of seconds)."""
        return self._queue.qsize() + 1 if self._queue is not None else 0

    @property
    def feeding(self) -> bool:
        """Whether a thread owns this worker's pipe (then every check goes through ``submit``)."""
        return self._queue is not None

    def submit(self, spec: str, job: Job) -> Future:
        """Queue a check; the future's result is ``run_spec``'s record."""
        fut: Future = Future()
        if self._queue is None:
            self._queue = queue.Queue()
            # a daemon thread, not an executor's: a check still computing must not block exit
            threading.Thread(target=self._feed, name=f"conformance-{self.group}-feed", daemon=True).start()
        self._queue.put((fut, spec, job))
        return fut

    def _feed(self) -> None:
        while (item := self._queue.get()) is not None:
            fut, spec, job = item
            if not fut.set_running_or_notify_cancel():
                continue
            slots = _slots  # release the slot acquired even if set_parallelism replaces them
            slots.acquire(self)
            try:
                with self._busy:
                    rec = ({"status": "error", "reason": f"the {self.group} worker was closed before this check ran"}
                           if self._closed else self.run_spec(spec, job))
            except Exception as exc:
                rec = {"status": "error", "reason": f"worker host: {type(exc).__name__}: {exc}",
                       "detail": traceback.format_exc(limit=-4)[-1500:]}
            finally:
                slots.release()
            fut.set_result(rec)

    def _kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.reap(10.0)

    def stop(self) -> None:
        """Cancel what has not started and ask the process to exit, without waiting
        for it (``reap`` waits): stopping every worker first lets them exit together."""
        self._closed = True
        if self._queue is not None:
            while True:  # cancel what has not started, then stop the thread
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
            self._queue.put(None)
        if not self._busy.acquire(blocking=False):
            # a check is computing (the run was stopped early): nobody waits for it, and
            # killing the process makes its pipe read EOF, so the thread finishes
            self._kill()
            return
        try:
            if self.proc is not None and self.proc.is_alive():
                try:
                    self.conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
        finally:
            self._busy.release()

    def reap(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a stopped process to exit, then kill it."""
        if self.proc is not None and self.proc.is_alive():
            self.proc.join(timeout)
        self._kill()


class BuiltinHost:
    """A built-in adapter hosted by its group's worker."""

    def __init__(self, builtin: registry.Builtin, worker: WorkerHost):
        self.builtin, self.worker = builtin, worker

    def run(self, job: Job) -> dict:
        if self.worker.feeding:  # never talk to the process beside its thread
            return self.submit(job).result()
        return self.worker.run_spec(self.builtin.factory, job)

    def submit(self, job: Job) -> Future:
        return self.worker.submit(self.builtin.factory, job)

    def close(self) -> None:
        pass
