"""PyTorch DTensor adapters: ``torch.nn.Embedding`` parallelised with
``torch.distributed.tensor.parallel.RowwiseParallel`` (the table sharded by rows) and
``ColwiseParallel`` (by columns) over 2 and 3 gloo ranks, run for real.

The ranks are processes (adapters/torch/dtensor_rank.py) that a :class:`RankPool` starts once
in the process hosting the adapters (the suite's ``torch-distributed`` worker) and
reuses for every check: a world of 4 ranks with a DeviceMesh of the first n ranks for
every n in 1..4, so the 2-rank and 3-rank adapters and ``lookup_on_devices`` (1 to 4
ranks) share it. Each call sends every rank the same source lines (the ones a snippet
prints) and arrays; the ranks of the mesh build the module as the tensor-parallel
docs show (``parallelize_module(nn.Embedding.from_pretrained(weight), mesh, style)``,
RowwiseParallel with ``input_layouts=Replicate()`` since the ids are whole on every
rank, both with ``output_layouts=Replicate()`` so every rank holds the whole result)
and call it; rank 0's answer is the adapter's. ``CompiledDTensorEmbedding`` (2 ranks, lookups
only, not a built-in column) calls the parallelised module through ``torch.compile``.

What can go wrong with ranks, and what the adapter reports:
- every rank raises the same framework error: rank 0's, classified as torch_adapter does;
- some ranks raise while the others wait in a collective (the ranks disagree): a
  LookupFailure naming both, after ``DESYNC_GRACE`` seconds; the pool is restarted;
- a rank dies (its connection closes) or does not answer in ``ANSWER_TIMEOUT`` seconds:
  the pool is killed; inside a suite worker the worker then exits with
  ``EXIT_RANK_DIED`` / ``EXIT_RANK_HUNG``, so that suites/hosts.py replays the check with
  its journal and reports the input that did it (a crash record); elsewhere
  :class:`RankFailure` is raised (it counts against the adapter).
The pool is torn down when its process exits: the zygote dies with its parent and the
ranks with the zygote (PR_SET_PDEATHSIG), and ``close`` (atexit) ends them in an orderly way.
Ranks are forked by a zygote process that imported torch once, so starting them afresh after
a failure costs about 1.5 s instead of four imports of torch (5-20 s on this machine).

Torch is imported lazily (only the ranks import torch.distributed).
"""
from __future__ import annotations

import functools

import atexit
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Listener, wait
from pathlib import Path
from typing import Any

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, Description, LookupFailure, methods_of
from embedding_conformance.adapters.torch.embedding import _BASE_NOTES, _ID_DTYPES, _failure, _shape_key, kept
from embedding_conformance.adapters.torch.inductor import fresh_compile
from embedding_conformance.adapters.torch.source import TORCH

WORLD = 4  # ranks in the pool: meshes of 1..4 ranks
GLOO_TIMEOUT = float(os.environ.get("CONFORMANCE_GLOO_TIMEOUT", "10"))  # a collective's limit in a rank
ANSWER_TIMEOUT = float(os.environ.get("CONFORMANCE_RANK_TIMEOUT", "20"))  # one request's limit
DESYNC_GRACE = 3.0  # after one rank raised, how long the others may take to answer
START_TIMEOUT = 120.0
EXIT_RANK_DIED, EXIT_RANK_HUNG = 86, 87  # a suite worker's exit codes (suites/hosts.py names them)

STYLES = {
    "Rowwise": "RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate())",
    "Colwise": "ColwiseParallel(output_layouts=Replicate())",
}


class RankFailure(RuntimeError):
    """A rank process died or hung: the engine's failure, not a lookup's answer."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RankPool:
    """``WORLD`` rank processes joined in one gloo process group, fed through pipes; forked
    by a zygote process that imported torch once (adapters/torch/dtensor_rank.py)."""

    def __init__(self, world: int = WORLD, gloo_timeout: float = GLOO_TIMEOUT, answer_timeout: float = ANSWER_TIMEOUT):
        self.world, self.gloo_timeout, self.answer_timeout = world, gloo_timeout, answer_timeout
        self.zygote: subprocess.Popen | None = None
        self._zconn: Any = None
        self.pids: list[int] = []  # the ranks' process ids
        self.conns: list[Any] = []
        self.facts: dict[str, int] = {}
        self.starts = 0  # how many times ranks were forked (a restart after a failure counts)
        self._dir: str | None = None
        self._authkey = secrets.token_bytes(16)
        self._lock = threading.Lock()

    def processes(self) -> list[int]:
        """Every process the pool runs: the zygote and the ranks."""
        return ([self.zygote.pid] if self.zygote is not None else []) + list(self.pids)

    def _log_tail(self) -> str:
        try:
            text = Path(self._dir, "ranks.log").read_text(errors="replace")
        except (OSError, TypeError):
            return ""
        lines = [ln for ln in text.splitlines() if ln.strip() and "arning" not in ln]
        return " | ".join(lines[-3:])[-600:]

    def _listen(self, tag: str):
        address = os.path.join(self._dir, f"{tag}.sock")
        return Listener(address, family="AF_UNIX", authkey=self._authkey), address

    def _connections(self, listener, n: int) -> list:
        accepted: list = []

        def accept():
            try:
                for _ in range(n):
                    accepted.append(listener.accept())
            except OSError:
                pass

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        t.join(START_TIMEOUT)
        listener.close()  # unblocks accept() if a process never connected
        t.join(5)
        return accepted

    def _start_zygote(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="conformance-ranks-")
        listener, address = self._listen("zygote")
        env = {**os.environ, "CONFORMANCE_RANK_AUTHKEY": self._authkey.hex(), "OMP_NUM_THREADS": "1",
               # the parent's import path: the zygote imports this package as the parent did
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with open(os.path.join(self._dir, "ranks.log"), "wb") as log:
            self.zygote = subprocess.Popen([sys.executable, "-m", "embedding_conformance.adapters.torch.dtensor_rank", address, str(os.getpid())],
                                           cwd=self._dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT)
        conns = self._connections(listener, 1)
        if not conns or not conns[0].poll(START_TIMEOUT):
            tail = self._log_tail()
            self.close()
            raise RuntimeError(f"the rank zygote did not start: {tail}")
        self._zconn = conns[0]
        self._zconn.recv()

    def _spawn(self) -> None:
        listener, address = self._listen(f"ranks{self.starts}")
        self.starts += 1
        init = f"tcp://127.0.0.1:{_free_port()}"
        self._zconn.send(("spawn", self.world, init, self.gloo_timeout, address))
        _, self.pids = self._zconn.recv()
        conns: dict[int, Any] = {}
        deadline = time.monotonic() + START_TIMEOUT
        for c in self._connections(listener, self.world):
            if not c.poll(max(0.0, deadline - time.monotonic())):
                break
            try:
                _, rank, _pid, self.facts = c.recv()
            except (EOFError, OSError):
                break
            conns[rank] = c
        if len(conns) != self.world:
            tail = self._log_tail()
            self.close()
            raise RuntimeError(f"the gloo ranks did not start ({len(conns)} of {self.world} ready): {tail}")
        self.conns = [conns[r] for r in range(self.world)]

    def start(self) -> None:
        if self.zygote is None or self.zygote.poll() is not None:
            self.close()
            self._start_zygote()
        self._spawn()

    def alive(self) -> bool:
        if self.zygote is None or self.zygote.poll() is not None or not self.pids:
            return False
        for pid in self.pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
        return True

    def request(self, msg: tuple) -> list:
        """Send ``msg`` to every rank and gather their answers (ranks started if need be)."""
        with self._lock:
            if not self.alive():
                self._stop_ranks()
                self.start()
            for c in self.conns:
                c.send(msg)
            return self._gather()

    def _gather(self) -> list:
        answers: dict[int, tuple] = {}
        index = {id(c): r for r, c in enumerate(self.conns)}
        deadline = time.monotonic() + self.answer_timeout
        raised_at = None
        while len(answers) < self.world:
            limit = deadline if raised_at is None else min(deadline, raised_at + DESYNC_GRACE)
            ready = wait([c for r, c in enumerate(self.conns) if r not in answers], max(0.0, limit - time.monotonic()))
            if not ready:
                break
            for c in ready:
                r = index[id(c)]
                try:
                    answers[r] = c.recv()
                except (EOFError, OSError):
                    self._died(r)
                if answers[r][0] == "raised" and raised_at is None:
                    raised_at = time.monotonic()
        missing = [r for r in range(self.world) if r not in answers]
        if not missing:
            return [answers[r] for r in range(self.world)]
        self._stop_ranks()  # whatever happened, these ranks are of no more use; the next request forks new ones
        if raised_at is not None:
            # a rank raised while the others wait in a collective: they would wait out the
            # gloo timeout, and their group is no use after it
            first = min(r for r in answers if answers[r][0] == "raised")
            _, mod, cls, text, _ = answers[first]
            raise LookupFailure(
                f"the ranks disagree: rank {first} raised {cls}: {text.splitlines()[0][:300]}, while rank"
                f"{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} waited in a collective "
                f"(no answer in {DESYNC_GRACE:.0f} s; the ranks were started afresh)")
        raise RankFailure(f"rank{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of the gloo process "
                          f"group did not answer within {self.answer_timeout:.0f} s (hung); the ranks were stopped",
                          EXIT_RANK_HUNG)

    def _died(self, rank: int) -> None:
        time.sleep(0.2)  # let it finish writing its last words
        tail = self._log_tail()
        self._stop_ranks()
        raise RankFailure(f"rank {rank} of the gloo process group died" + (f" ({tail})" if tail else "")
                          + "; the ranks were stopped", EXIT_RANK_DIED)

    def _stop_ranks(self) -> None:
        for c in self.conns:
            try:
                c.send(("exit",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for pid in self.pids:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.01)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for c in self.conns:
            c.close()
        self.pids, self.conns = [], []

    def close(self) -> None:
        """Stop the ranks and the zygote; no process stays behind."""
        self._stop_ranks()
        if self._zconn is not None:
            self._zconn.close()
            self._zconn = None
        if self.zygote is not None:
            if self.zygote.poll() is None:
                self.zygote.kill()
            self.zygote.wait()
            self.zygote = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


_POOL: RankPool | None = None


def pool() -> RankPool:
    """The process's rank pool, shared by every DTensor adapter in it (started on first use)."""
    global _POOL
    if _POOL is None:
        _POOL = RankPool()
        atexit.register(_POOL.close)
    return _POOL


def _in_suite_worker() -> bool:
    return multiprocessing.current_process().name.startswith("conformance-")


# --- the source every rank runs (and a snippet's ranks print) ------------------------------

def _text(style: str, op: str, compiled: bool = False, build: bool = False) -> str:
    """What each rank of the mesh ``mesh`` runs on the NumPy ``weight`` and ``ids`` (and
    ``upstream``) it is handed: the module built and parallelised as the tensor-parallel docs
    show, called, ``out`` its outcome (``kept``). [compile]: the parallelised module called
    through torch.compile, a function per signature (as the compiled adapters: ``Built``),
    compiled by the text of the signature's first call (``build``) and kept by the rank."""
    lines = ["from torch.distributed.tensor import Replicate",
             f"from torch.distributed.tensor.parallel import {style}Parallel, parallelize_module",
             "ids, weight = to_torch(ids, copy=True), to_torch(weight, copy=True)"]
    if compiled and build:
        lines += fresh_compile("embed", "layer, ids", "layer(ids)", None)
    call = [f"layer = torch.nn.Embedding.from_pretrained(weight, freeze={op != 'grad'})",
            f"layer = parallelize_module(layer, mesh, {STYLES[style]})",
            "out = compiled(layer, ids)" if compiled else "out = layer(ids)"]
    if op == "grad":
        call += ["out.backward(to_torch(upstream, copy=True))",
                 "grad = layer.weight.grad  # a DTensor; None when nothing flowed back (no ids)",
                 "out = grad.full_tensor() if grad is not None else torch.zeros_like(weight)"]
    return "\n".join(lines + kept(call))


# a snippet's rank: joins a gloo process group of WORLD ranks and reads what it is handed (before
# the prelude, as the environment it runs in), runs the text, then writes its answer
_RANK_SETUP = [
    "import datetime, os, pickle, sys",
    "import torch.distributed as dist",
    "from torch.distributed.device_mesh import DeviceMesh",
    "rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])",
    "dist.init_process_group('gloo', rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))",
    "mesh = DeviceMesh('cpu', list(range(world)))",
    "with open(sys.argv[1], 'rb') as f:",
    "    given = pickle.load(f)",
]
_RANK_ANSWER = [
    "answer = ('raised', out) if isinstance(out, Exception) else ('ok', to_numpy(out))",
    "with open(f'{sys.argv[2]}.{rank}.part', 'wb') as f:",
    "    pickle.dump(answer, f)",
    "os.replace(f'{sys.argv[2]}.{rank}.part', f'{sys.argv[2]}.{rank}')",
    "os._exit(0)",
]


def capabilities(style: str, ranks: int) -> Capabilities:
    return Capabilities(table_ndims=(2,), id_dtypes=_ID_DTYPES, notes=_BASE_NOTES + (
        f"parallelize_module(nn.Embedding.from_pretrained(weight), mesh, {STYLES[style]}) on a DeviceMesh of "
        f"{ranks} gloo ranks (processes on this CPU); every rank is given the whole table and the ids, rank 0's "
        f"result is reported",
        "the ranks are a world of 4 processes started once per run; lookup_on_devices uses a mesh of its first "
        "1 to 4 ranks",
        "a rank that dies or hangs is a crash of the adapter (the suite replays the check and reports the input); "
        "ranks that disagree (one raises, the others wait in a collective) are a LookupFailure",
    ))


class DTensorEmbedding:
    framework = "torch"
    compiled = False

    def __init__(self, style: str, ranks: int):
        self.style, self.ranks = style, ranks
        self.name = f"torch.distributed.tensor.parallel.{style}Parallel[{ranks}-rank]"
        self.capabilities = capabilities(style, ranks)
        # each operation's text (of a signature's later calls, for [compile]) and of a signature's first call
        self._sources = {op: _text(style, op, self.compiled) for op in ("lookup", "grad")}
        self._first = {op: _text(style, op, self.compiled, build=True) for op in ("lookup", "grad")}

    def environment(self) -> dict[str, int]:
        return {"torch.threads": 1, "dtensor.ranks": self.ranks}  # each rank runs one thread (dtensor_rank.py)

    def _ask(self, msg: tuple) -> list:
        """Every rank's answer to ``msg``; a rank that died or hung ends a suite worker."""
        try:
            return pool().request(msg)
        except RankFailure as exc:
            if _in_suite_worker():  # let suites/hosts.py replay the check and report its input
                sys.stderr.write(f"{self.name}: {exc}\n")
                sys.stderr.flush()
                os._exit(exc.exit_code)
            raise

    def _run(self, op: str, n: int, arrays: dict[str, np.ndarray]):
        msg: tuple = ("run", n, TORCH.handed_over(self._sources[op]), arrays)
        if self.compiled:  # the ranks keep a compiled function per signature
            weight, ids = arrays["weight"], arrays["ids"]
            key = (weight.dtype.name, ids.dtype.name, ids.ndim, n, _shape_key(ids.shape, weight.shape))
            msg += ((key, TORCH.handed_over(self._first[op])),)
        first = self._ask(msg)[0]
        if first[0] == "ok":
            return first[1]
        _, mod, cls, text, exc = first
        if exc is None:
            exc = RuntimeError(f"{mod}.{cls}: {text}")
        failure = _failure(exc)
        if failure is None:
            raise exc
        raise failure

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self._run("lookup", self.ranks, {"weight": table, "ids": ids})

    def lookup_on_devices(self, table: np.ndarray, ids: np.ndarray, devices: int) -> np.ndarray:
        return self._run("lookup", int(devices), {"weight": table, "ids": ids})

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        return self._run("grad", self.ranks, {"weight": table, "ids": ids, "upstream": upstream})

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in ("lookup", "lookup_on_devices", "grad"):
            raise ValueError(f"{self.name} has no operation {op!r}")
        world = "devices" if op == "lookup_on_devices" else str(self.ranks)
        names = {"ids": "ids", "weight": "table"} | ({"upstream": "upstream"} if op == "grad" else {})
        given = [f"{', '.join(names)} = {', '.join(f'given[{n!r}]' for n in names)}"]
        rank_program = TORCH.snippet({}, self._first["grad" if op == "grad" else "lookup"], _RANK_ANSWER,
                                     before=_RANK_SETUP + given)
        lines = ["import os, pickle, socket, subprocess, sys, tempfile, time",
                 "import numpy as np", "import ml_dtypes"]
        lines += [f"{k} = {v}" for k, v in args.items()]
        lines += [
            f"WORLD = {world}  # gloo ranks, each a process running RANK_PROGRAM",
            f"RANK_PROGRAM = {rank_program!r}",
            "work = tempfile.mkdtemp()",
            "program, given, answer = (os.path.join(work, n) for n in ('rank.py', 'given.pickle', 'answer.pickle'))",
            "with open(program, 'w') as f:",
            "    f.write(RANK_PROGRAM)",
            "with open(given, 'wb') as f:",
            f"    pickle.dump({{{', '.join(f'{n!r}: {v}' for n, v in names.items())}}}, f)",
            "with socket.socket() as s:",
            "    s.bind(('127.0.0.1', 0))",
            "    port = s.getsockname()[1]",
            "ranks = [subprocess.Popen([sys.executable, program, given, answer],",
            "                          env={**os.environ, 'RANK': str(r), 'WORLD_SIZE': str(WORLD),",
            "                               'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port)})",
            "         for r in range(WORLD)]",
            "def answered():",
            "    out = {}",
            "    for r in range(WORLD):",
            "        if os.path.exists(f'{answer}.{r}'):",
            "            with open(f'{answer}.{r}', 'rb') as f:",
            "                out[r] = pickle.load(f)",
            "    return out",
            "# every rank answers, or one raises while the others wait in a collective (then stop them)",
            "deadline = time.monotonic() + 300",
            "while len(got := answered()) < WORLD and time.monotonic() < deadline:",
            "    if any(kind == 'raised' for kind, _ in got.values()):",
            "        time.sleep(3)",
            "        got = answered()",
            "        break",
            "    time.sleep(0.1)",
            "for p in ranks:",
            "    p.kill()",
            "# a rank that raised and exited leaves the others' collective without a peer (gloo: 'Connection",
            "# closed by peer'): the ranks disagree, as when they are left waiting",
            "lost = lambda v: any(w in str(v) for w in ('Connection closed by peer', 'Connection reset by peer'))",
            "own = [r for r in sorted(got) if got[r][0] == 'raised' and not lost(got[r][1])]",
            "if len(got) < WORLD or (own and any(got[r][0] == 'raised' and lost(got[r][1]) for r in got)):",
            "    first = own[0]",
            "    raise RuntimeError(f'the ranks disagree: rank {first} raised {type(got[first][1]).__name__}: '",
            "                       f'{got[first][1]}, while the others waited in a collective')",
            "kind, value = got[0]",
            "if kind == 'raised':",
            "    raise value  # what rank 0 raised",
            "result = value",
            "print(result.dtype, result.shape)",
            "print(repr(result))",
            "print('bits =', repr(result.view(f'u{result.dtype.itemsize}')))",
        ]
        return "\n".join(lines) + "\n"


class CompiledDTensorEmbedding(DTensorEmbedding):
    """The parallelised module called through ``torch.compile`` (inductor, CPU), lookups only:
    every signature is an inductor compile in each rank (1-3 s on this CPU), so gradients and
    device counts stay with the eager columns. Not a built-in column (a rank was lost on one
    attempt of a check and not on its replay: hypothesis calls that flaky, see
    adapters/torch/declarations.toml); plug it in with
    ``--adapter embedding_conformance.adapters.torch.dtensor:rowwise_2_compile`` (or ``colwise_2_compile``)."""

    compiled = True
    lookup_on_devices = None  # type: ignore[assignment]
    grad = None  # type: ignore[assignment]

    def __init__(self, style: str, ranks: int):
        super().__init__(style, ranks)
        self.name += "[compile]"
        self.capabilities = compiled_capabilities(style, ranks)


def compiled_capabilities(style: str, ranks: int) -> Capabilities:
    caps = capabilities(style, ranks)
    return caps.narrowed(notes=caps.notes + (
        "[compile]: the parallelised module called through torch.compile(dynamic=True) (inductor), one compiled "
        "function per signature so that dynamo never falls back to eager; lookups only",))


_KINDS = {f"torch.distributed.tensor.parallel.{s}Parallel[{n}-rank]": (s, n)
          for s in ("Rowwise", "Colwise") for n in (2, 3)}


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing torch."""
    if name.endswith("[compile]"):
        style, n = _KINDS[name.removesuffix("[compile]")]
        return Description(methods_of(CompiledDTensorEmbedding), compiled_capabilities(style, n))
    return Description(methods_of(DTensorEmbedding), capabilities(*_KINDS[name]))


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a torch exception stands for (a snippet's replay uses it); ranks
    that disagree are a framework failure of no contract kind, as the adapter reports them."""
    if str(exc).startswith("the ranks disagree"):
        return LookupFailure(str(exc)[:500])
    return _failure(exc)


# the built-in columns' zero-argument factories (the registry names them)
rowwise_2 = functools.partial(DTensorEmbedding, "Rowwise", 2)
rowwise_3 = functools.partial(DTensorEmbedding, "Rowwise", 3)
colwise_2 = functools.partial(DTensorEmbedding, "Colwise", 2)
colwise_3 = functools.partial(DTensorEmbedding, "Colwise", 3)


def rowwise_2_compile() -> DTensorEmbedding:
    return CompiledDTensorEmbedding("Rowwise", 2)


def colwise_2_compile() -> DTensorEmbedding:
    return CompiledDTensorEmbedding("Colwise", 2)
