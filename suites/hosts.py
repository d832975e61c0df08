"""Where checks run. Built-in framework adapters run in a worker process per
framework (per Keras backend, since Keras fixes its backend per process): each
process imports only its framework, and one that crashes or hangs costs only its
own checks (status ``error``); the next check starts a fresh worker. The numpy
oracle and third-party adapters run in the pytest process.

A worker's checks can also be submitted ahead (``submit``): a thread per worker
feeds them to it in order, and a slot semaphore shared by all workers bounds how
many compute at once, so one pytest process keeps every core busy.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import traceback
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from adapters import registry
from adapters.contract import check_adapter

from . import engine
from .catalogue import load_all


@dataclass(frozen=True)
class Job:
    clause: str
    profile: str
    seed: int | None
    divergence: Any | None


def run_job(adapter: Any, job: Job) -> dict:
    clause = load_all()[job.clause]
    rec = engine.run_check(adapter, clause, profile=job.profile, seed=job.seed, divergence=job.divergence)
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


_slots = threading.BoundedSemaphore(os.cpu_count() or 1)
_starting = threading.Lock()  # a start edits os.environ, which every thread shares


def set_parallelism(n: int) -> None:
    """At most ``n`` submitted checks compute at once, across all workers."""
    global _slots
    _slots = threading.BoundedSemaphore(max(1, n))


# --- the worker side ----------------------------------------------------------------

def _serve(conn, group: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    adapters: dict[str, Any] = {}
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        spec, job = msg
        try:
            if spec not in adapters:
                try:
                    adapters[spec] = registry.load_object(spec)
                    check_adapter(adapters[spec])
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

    def run_spec(self, spec: str, job: Job) -> dict:
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
            return {"status": "error", "reason": f"the {self.group} worker process died (exit code {code}) during this "
                                                 f"check; the next check starts a new one"}

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
            slots = _slots  # release the semaphore acquired even if set_parallelism replaces it
            with slots, self._busy:
                try:
                    rec = ({"status": "error", "reason": f"the {self.group} worker was closed before this check ran"}
                           if self._closed else self.run_spec(spec, job))
                except Exception as exc:
                    rec = {"status": "error", "reason": f"worker host: {type(exc).__name__}: {exc}",
                           "detail": traceback.format_exc(limit=-4)[-1500:]}
            fut.set_result(rec)

    def _kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5)
        self.proc = None

    def close(self) -> None:
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
                    self.proc.join(10)
                except (OSError, BrokenPipeError):
                    pass
            self._kill()
        finally:
            self._busy.release()


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
