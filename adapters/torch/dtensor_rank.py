"""The rank processes of the DTensor adapters' gloo process group
(adapters/torch/dtensor.py): ``python -m embedding_conformance.adapters.torch.dtensor_rank ADDRESS PARENT_PID``.

That process is a *zygote*: it imports torch and torch.distributed once (seconds of
CPU), connects back to the pool that started it (a multiprocessing Listener at
ADDRESS, the authkey in the environment) and then, on each ``("spawn", world,
init_method, timeout, address)``, forks ``world`` ranks, so that starting the ranks afresh after
a failure costs a fork and a gloo rendezvous, not four imports of torch.

A rank connects to the pool, joins the gloo process group, builds a DeviceMesh of the
first n ranks for every n in 1..world (new_group is collective: every rank builds every
mesh), and serves requests: run the text handed over (with the torch prelude,
adapters/torch/source.py) on the mesh of n ranks and the given NumPy arrays, and answer
with the ``out`` it binds (NumPy, bit for bit) or the exception it raised. Ranks outside
the mesh answer ``idle``.

Nothing outlives the pool's process: the zygote dies with its parent and the ranks with
the zygote (PR_SET_PDEATHSIG, Linux), and end of file on a connection ends its process
too. Ctrl-C in a terminal reaches the whole process group; these processes ignore it and
leave the teardown to the pool, which kills them.
"""
from __future__ import annotations

import ctypes
import datetime
import os
import pickle
import signal
import sys


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)


def _answer_of(exc: BaseException) -> tuple:
    try:
        pickle.dumps(exc)
        kept = exc
    except Exception:
        kept = None
    return ("raised", type(exc).__module__, type(exc).__qualname__, str(exc), kept)


def _serve_rank(address: str, authkey: bytes, rank: int, world: int, init_method: str, timeout: float) -> None:
    from multiprocessing.connection import Client

    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import DeviceMesh

    from embedding_conformance.adapters.torch.embedding import Built
    from embedding_conformance.adapters.torch.source import TORCH

    conn = Client(address, authkey=authkey)
    torch.set_num_threads(1)  # four ranks share the machine's cores
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout))
    meshes = {n: DeviceMesh("cpu", list(range(n))) for n in range(1, world + 1)}
    compiled = Built("compiled")  # [compile]: one compiled function per signature, kept across requests
    to_numpy = TORCH.helper("to_numpy")
    conn.send(("ready", rank, os.getpid(), {"torch.threads": torch.get_num_threads()}))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "exit":
            break
        if msg[0] in ("die", "hang"):  # the infrastructure tests: a rank that dies or hangs mid-request
            if rank == msg[1]:
                if msg[0] == "die":
                    os.kill(os.getpid(), signal.SIGKILL)
                signal.pause()
            conn.send(("idle",))
            continue
        # the text handed over, the NumPy arrays it runs on; [compile]: the signature and the text
        # of its first call, which compiles the function its later calls are given
        _, n, source, arrays, *signature = msg
        if rank >= n:
            conn.send(("idle",))
            continue
        try:
            if signature:
                key, first = signature[0]
                ns = compiled.run(key, lambda build: first if build else source, mesh=meshes[n], **arrays)
            else:
                ns = TORCH.run(source, mesh=meshes[n], **arrays)
            out = ns["out"]
            if isinstance(out, Exception):  # the call raised (kept): the framework's answer
                raise out
            answer = ("ok", tuple(to_numpy(t) for t in out) if isinstance(out, tuple) else to_numpy(out))
        except Exception as exc:  # the framework's answer, sent back to be classified
            answer = _answer_of(exc)
        conn.send(answer)


def main(address: str, parent: int) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from multiprocessing.connection import Client

    authkey = bytes.fromhex(os.environ["CONFORMANCE_RANK_AUTHKEY"])
    # everything a rank needs, imported once before any fork
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import torch.distributed  # noqa: F401
    import torch.distributed.device_mesh  # noqa: F401
    import torch.distributed.tensor.parallel  # noqa: F401

    import embedding_conformance.adapters.torch.embedding  # noqa: F401
    from embedding_conformance.adapters.torch.source import TORCH

    TORCH.base()  # the prelude every request's text runs with

    conn = Client(address, authkey=authkey)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # ranks are reaped as they exit: no zombies
    conn.send(("zygote", os.getpid()))
    me = os.getpid()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg[0] != "spawn":
            break
        _, world, init_method, timeout, address = msg  # each spawn has a listener of its own
        pids = []
        for rank in range(world):
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                conn.close()
                code = 0
                try:
                    _die_with_parent(me)
                    _serve_rank(address, authkey, rank, world, init_method, timeout)
                except BaseException:  # noqa: BLE001 - say why in the log, then go
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)  # no interpreter teardown, no gloo destructors
            pids.append(pid)
        conn.send(("spawned", pids))
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
