"""Facts of the CPU that a framework's compiled code depends on, for adapters'
``environment()`` (declared divergences condition on them with ``when``).

XLA converts float32 to bfloat16 with the CPU's own instruction where it has one
(AVX512_BF16's vcvtneps2bf16, which flushes subnormals and quiets a NaN keeping its
payload) and in software otherwise (subnormals kept, every NaN made the canonical
0x7fc0 with its sign): the same program's bfloat16 bits depend on the machine.
"""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def facts() -> dict[str, int]:
    """The CPU features that decide a framework's bfloat16 arithmetic (as 0 or 1)."""
    have = flags()
    return {"cpu.avx512_bf16": int("avx512_bf16" in have), "cpu.amx_bf16": int("amx_bf16" in have),
            "cpu.avx512_core": int({"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= have)}
