"""Where checks run. Built-in framework adapters run in a worker process per
framework (per Keras backend, since Keras fixes its backend per process): each
process imports only its framework, and one that crashes or hangs costs only its
own checks (status ``error``); the next check starts a fresh worker. The numpy
oracle and third-party adapters run in the pytest process.
"""
from __future__ import annotations

import multiprocessing
import os
import traceback
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

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)  # the child inherits the environment at start
        try:
            self.proc = ctx.Process(target=_serve, args=(child, self.group), name=f"conformance-{self.group}", daemon=True)
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

    def _kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(10)
            except (OSError, BrokenPipeError):
                pass
        self._kill()


class BuiltinHost:
    """A built-in adapter hosted by its group's worker."""

    def __init__(self, builtin: registry.Builtin, worker: WorkerHost):
        self.builtin, self.worker = builtin, worker

    def run(self, job: Job) -> dict:
        return self.worker.run_spec(self.builtin.factory, job)

    def close(self) -> None:
        pass
