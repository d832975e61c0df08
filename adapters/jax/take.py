"""JAX adapters: ``jax.numpy.take`` (eager) and ``jax.numpy.take[jit]``.

Both call ``jnp.take(table, ids, axis=0)`` with its default ``mode`` (None, which
for ``take`` means "fill": out-of-bound ids give NaN rows, negative ids in [-V, -1]
wrap once). JAX is used as a user gets it by default: ``jax_enable_x64`` is left
off, so JAX itself narrows int64/uint64 ids to int32/uint32 and float64 tables to
float32. The adapter hands over the NumPy inputs unchanged and reports what comes
back; those narrowings are the framework's answer (see adapters/jax/declarations.toml).

JAX is imported lazily: importing this module does not import jax.
"""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.contract import (Call, Capabilities, Description, FLOAT_DTYPES, INT_DTYPES, InvalidIds, InvalidTable, LookupFailure,
                       OutOfRange, Translate, methods_of)
from embedding_conformance.adapters.jax.source import JAX, Staged

_X64_NOTE = ("jax_enable_x64 is left at its default (False), as users get it: JAX narrows "
             "int64/uint64 ids to int32/uint32 (mod 2**32) and float64 tables to float32")
_TAKE_NOTE = "jnp.take's default mode (None -> 'fill'): out-of-bound ids give NaN rows, ids in [-V,-1] wrap"


def translate_jax_error(exc: BaseException) -> BaseException | None:
    """The adapters.contract failure that ``exc`` (raised by jnp.take / nnx.Embed)
    stands for, judged by its message; None when it cannot be classified."""
    msg = str(exc)
    if isinstance(exc, ValueError) and ("must have an integer type" in msg
                                        or "must be an integer or unsigned integer" in msg):
        return InvalidIds(msg)
    if isinstance(exc, IndexError) and "from an empty axis" in msg:
        # a non-empty take from a table with V == 0: every id is outside [0, 0)
        return OutOfRange(msg)
    if isinstance(exc, ValueError) and "out of bounds for array of dimension 0" in msg:
        return InvalidTable(msg)
    if isinstance(exc, ValueError) and "Cannot broadcast to shape with fewer dimensions" in msg:
        # flax.nnx.Embed broadcasts a one-row table to ids.shape + (D,): 0-d ids cannot
        # take it, a framework failure of no contract kind
        return LookupFailure(msg)
    return None


def jax_capabilities(**changes) -> Capabilities:
    return Capabilities(
        table_dtypes=FLOAT_DTYPES,
        table_ndims=(1, 2, 3, 4),
        id_dtypes=INT_DTYPES,
        distributions=("jax", "jaxlib"),
        notes=(_TAKE_NOTE, _X64_NOTE),
    ).narrowed(**changes)


_FN = {"lookup": "take", "grad": "take_grad"}  # the function each op's source makes


def _stages(op: str, jit: bool) -> list[list[str]]:
    """The source of ``op``: the function, made once per adapter (jitted, JAX caches one
    executable per signature on it), then the call."""
    if op == "lookup":
        fn = ["def take(table, ids):", "    return jnp.take(table, ids, axis=0)"] + (["take = jax.jit(take)"] if jit else [])
        return [fn, ["out = take(table, ids)"]]
    fn = ["def loss(table, ids, upstream):", "    return jnp.sum(jnp.take(table, ids, axis=0) * upstream)",
          "take_grad = jax.jit(jax.grad(loss))" if jit else "take_grad = jax.grad(loss)"]
    return [fn, ["out = take_grad(table, ids, upstream)"]]


class JaxTake:
    framework = "jax"

    def __init__(self, jit: bool):
        self.jit = jit
        self.name = "jax.numpy.take[jit]" if jit else "jax.numpy.take"
        self.capabilities = jax_capabilities()
        self._calls = Staged(JAX, {op: _stages(op, jit) for op in _FN}, {op: [(fn,)] for op, fn in _FN.items()})
        self._to_numpy = JAX.helper("to_numpy")  # imports jax

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    def _call(self, op: str, **args) -> np.ndarray:
        with Translate(translate_jax_error, catch=(ValueError, IndexError, TypeError)):
            return self._to_numpy(self._calls.run(op, (None,), **args)["out"])  # (None,): one function per adapter

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self._call("lookup", table=table, ids=ids)

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        return self._call("grad", table=table, ids=ids, upstream=upstream)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in _FN:
            raise ValueError(f"{self.name} has no operation {op!r}")
        return self._calls.snippet(op, args)


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing jax."""
    return Description(methods_of(JaxTake), jax_capabilities())


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a JAX exception stands for (a snippet's replay uses it)."""
    return translate_jax_error(exc)


def take() -> JaxTake:
    return JaxTake(jit=False)


def take_jit() -> JaxTake:
    return JaxTake(jit=True)
