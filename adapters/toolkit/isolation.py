"""Calls into a framework that may kill its own process (MLX reads past a table for
an out-of-range id and, far enough past it, dies of SIGSEGV: ml-explore/mlx#206).

``Isolated(module, function, preload, label)`` runs ``module.function(*args)`` in a child
process of its own (which imports the ``preload`` modules first), kept for every
call until one kills it. What the function returns or raises comes back as it was
(the exception re-raised here, to be classified by the adapter); a call that kills
the child raises :class:`ProcessKilled` (no contract kind: it counts against the
adapter, as a crash of the framework should) and the next call gets a new child.
So the departure is a result of its check, and the worker process with every later
check of its group survives it.

The child is forked from the adapter's process before the framework is imported
there (the child imports it), so nothing of the framework's state is shared.
"""
from __future__ import annotations

import faulthandler
import importlib
import multiprocessing
import os
import signal
from typing import Any


class ProcessKilled(RuntimeError):
    """The framework's call killed the process it ran in."""


def _child(conn, module: str, function: str, preload: tuple[str, ...]) -> None:
    # the parent reports a killed child; a traceback dump of it (pytest enables
    # faulthandler) would only add noise to its output
    faulthandler.disable()
    try:
        for name in preload:
            importlib.import_module(name)
        fn = getattr(importlib.import_module(module), function)
    except BaseException as exc:  # ImportError above all: the framework is not usable here
        conn.send(("import", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", fn(*args)))
        except Exception as exc:
            try:
                conn.send(("raise", exc))
            except Exception:  # an exception that does not pickle: keep its type name and text
                conn.send(("raise", RuntimeError(f"{type(exc).__name__}: {exc}")))


class Isolated:
    def __init__(self, module: str, function: str, preload: tuple[str, ...] = (), label: str = ""):
        self.module, self.function, self.preload = module, function, preload
        self.label = label or f"{module}.{function}"
        self._pid: int | None = None
        self._conn = None
        self.restarts = 0  # children started after one was killed

    def _start(self) -> None:
        # a bare fork: a framework worker is a daemonic process, which multiprocessing
        # does not let have children
        parent, child = multiprocessing.Pipe()
        pid = os.fork()
        if pid == 0:  # the child: serve until the pipe closes, never return into the caller
            code = 0
            try:
                parent.close()
                _child(child, self.module, self.function, self.preload)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child.close()
        self._pid, self._conn = pid, parent
        kind, detail = parent.recv()
        if kind == "import":
            self.close()
            raise ImportError(f"{self.module} could not import its framework: {detail}")

    def ready(self) -> None:
        """Start the child now (an ImportError here makes the adapter unavailable)."""
        if self._pid is None:
            self._start()

    def __call__(self, *args: Any) -> Any:
        if self._pid is None:
            self._start()
        try:
            self._conn.send(args)
            kind, value = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            _, status = os.waitpid(self._pid, 0)
            self._conn.close()
            self._pid = self._conn = None
            self.restarts += 1
            how = (f"signal {os.WTERMSIG(status)} ({signal.Signals(os.WTERMSIG(status)).name})"
                   if os.WIFSIGNALED(status) else f"exit code {os.waitstatus_to_exitcode(status)}")
            raise ProcessKilled(f"{self.label} killed its process: {how}") from None
        if kind == "raise":
            raise value
        return value

    # os is bound as defaults: __del__ may run at interpreter exit, after module globals are cleared
    def close(self, _kill=os.kill, _waitpid=os.waitpid, _sigkill=signal.SIGKILL) -> None:
        if self._pid is not None:
            try:
                _kill(self._pid, _sigkill)
                _waitpid(self._pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self._conn.close()
        self._pid = self._conn = None

    def __del__(self):
        self.close()
