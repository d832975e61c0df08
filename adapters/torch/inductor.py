"""Readying torch.compile's inductor backend on CPU, once per process.

Before its first C++ kernel, inductor picks a vector ISA (AVX-512 VNNI, AVX-512,
AVX2, ...): for each ISA the CPU's flags list, it builds a test program with that
ISA's compiler flags and loads it in a child Python (torch/_inductor/cpu_vec_isa.py,
``VecISA.check_build`` and ``_probe_load``), and takes the first that works. That
costs 5-6 s of CPU in a process on a machine that has compiled nothing yet (the
programs land in the temp directory) and about 1 s in every later process.

``ready()`` takes the first ISA the CPU's flags list without those test programs
(``config.cpp.vec_isa_ok = True``) and proves it by compiling and running one
lookup, whose kernel is built with that ISA's flags and loaded like every later
one. That ISA is the one inductor's own probing picks whenever that lookup works:
the same flags, the same first candidate. Should the lookup fail, the flags are
untrusted again (inductor probes the usual way) and the lookup retried. A user's
own ``TORCHINDUCTOR_VEC_ISA_OK`` (or ``ATEN_CPU_CAPABILITY``) is left as it is.
"""
from __future__ import annotations

import threading

from embedding_conformance.adapters.torch.source import TORCH

_lock = threading.Lock()
_outcome: tuple[str | None, str] | None = None  # (why inductor cannot run, or None; the ISA note)


def _probe(torch) -> None:
    # the compiled adapter's function (a code object of its own per run, so a failed attempt
    # leaves dynamo nothing to reuse), called once
    out = TORCH.run(compile_embed("inductor", max_norm=False) + ["out = compiled(ids, weight)"],
                    ids=torch.tensor([1, 0]), weight=torch.arange(6, dtype=torch.float32).reshape(3, 2))["out"]
    if out.tolist() != [[2.0, 3.0], [0.0, 1.0]]:
        raise RuntimeError(f"inductor probe returned {out.tolist()}")


def ready() -> tuple[str | None, str]:
    """Ready inductor in this process: ``(None, note)`` when it compiles and runs a
    lookup, ``(reason, note)`` when it cannot; ``note`` says how the ISA was chosen."""
    global _outcome
    with _lock:
        if _outcome is not None:
            return _outcome
        import torch
        from torch._inductor import config, cpu_vec_isa

        user_choice = config.cpp.vec_isa_ok
        if user_choice is None:  # the user has not chosen: the CPU's flags, else inductor's probing
            attempts = [(True, TRUSTED), (None, "by inductor's own probing")]
        else:
            attempts = [(user_choice, f"as set (config.cpp.vec_isa_ok={user_choice})")]
        reason = None
        for value, how in attempts:
            config.cpp.vec_isa_ok = value
            cpu_vec_isa.valid_vec_isa_list.cache_clear()
            if reason is not None:  # perhaps the flags promise more than the compiler or loader gives
                how += f" (the CPU's flags failed: {reason})"
            try:
                _probe(torch)
                reason = None
                break
            except Exception as exc:
                reason = _reason(exc)
        _outcome = (reason, _note(cpu_vec_isa, how))
        return _outcome


TRUSTED = ("the first the CPU's flags list, proven by one compiled lookup (config.cpp.vec_isa_ok=True, "
           "which skips inductor's test program per ISA)")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


def _note(cpu_vec_isa, how: str) -> str:
    return f"inductor's vector ISA: {cpu_vec_isa.pick_vec_isa()}, {how}"


def fresh_compile(fn: str, params: str, body: str, backend: str | None) -> list[str]:
    """Lines defining ``fn(params)`` (returning ``body``) with a code object of its own and
    compiling it as ``compiled``. Dynamo keeps its graphs, and counts recompiles, per code
    object, so a function compiled once per signature needs one each: every run of these lines
    (whose text is compiled once) would otherwise define the same one."""
    how = "dynamic=True" + ("" if backend is None else f", backend={backend!r}")
    return [f"def {fn}({params}):", f"    return {body}",
            f"{fn}.__code__ = {fn}.__code__.replace()  # a code object of this signature's own",
            f"compiled = torch.compile({fn}, {how})"]


def compile_embed(backend: str, max_norm: bool) -> list[str]:
    """``compiled``: a function calling ``F.embedding`` on ``ids``, ``weight`` (and ``max_norm``),
    under torch.compile (the compiled adapter's, one per signature; the probe's)."""
    if max_norm:
        return fresh_compile("embed", "ids, weight, max_norm", "F.embedding(ids, weight, max_norm=max_norm)", backend)
    return fresh_compile("embed", "ids, weight", "F.embedding(ids, weight)", backend)
