"""JAX adapters: ``jax.numpy.take`` (eager) and ``jax.numpy.take[jit]``.

Both call ``jnp.take(table, ids, axis=0)`` with its default ``mode`` (None, which
for ``take`` means "fill": out-of-bound ids give NaN rows, negative ids in [-V, -1]
wrap once). JAX is used as a user gets it by default: ``jax_enable_x64`` is left
off, so JAX itself narrows int64/uint64 ids to int32/uint32 and float64 tables to
float32. The adapter hands over the NumPy inputs unchanged and reports what comes
back; those narrowings are the framework's answer (see suites/divergences/jax.toml).

JAX is imported lazily: importing this module does not import jax.
"""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.contract import (Call, Capabilities, Description, FLOAT_DTYPES, INT_DTYPES, InvalidIds, InvalidTable, LookupFailure,
                       OutOfRange, Translate, methods_of)

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


def to_numpy(out) -> np.ndarray:
    # jax.Array -> numpy through JAX's own buffer protocol; bfloat16 arrives as
    # ml_dtypes.bfloat16 (the dtype JAX itself uses), bits unchanged.
    return np.asarray(out)


def jax_capabilities(**changes) -> Capabilities:
    return Capabilities(
        table_dtypes=FLOAT_DTYPES,
        table_ndims=(1, 2, 3, 4),
        id_dtypes=INT_DTYPES,
        distributions=("jax", "jaxlib"),
        notes=(_TAKE_NOTE, _X64_NOTE),
    ).narrowed(**changes)


def _fmt_snippet(body: list[str], args: dict[str, str], preamble: list[str]) -> str:
    lines = ["import numpy as np", "import ml_dtypes", *preamble,
             "# jax_enable_x64 is left at its default (False), as in the adapter"]
    lines += [f"{k} = {v}" for k, v in args.items()]
    lines += body
    lines += [
        "out = np.asarray(out)",
        "result = out",
        "print(out.dtype, out.shape)",
        "print(repr(out))",
        "if out.dtype.kind == 'f' or out.dtype.name == 'bfloat16':",
        "    print([hex(b) for b in out.view(f'u{out.dtype.itemsize}').ravel().tolist()])",
    ]
    return "\n".join(lines) + "\n"


class JaxTake:
    framework = "jax"

    def __init__(self, jit: bool):
        import jax
        import jax.numpy as jnp

        self.jit = jit
        self.name = "jax.numpy.take[jit]" if jit else "jax.numpy.take"
        self.capabilities = jax_capabilities()

        def take(table, ids):
            return jnp.take(table, ids, axis=0)

        def loss(table, ids, upstream):
            return jnp.sum(jnp.take(table, ids, axis=0) * upstream)

        if jit:
            # jax.jit caches one compiled executable per (shape, dtype) signature
            self._take = jax.jit(take)
            self._grad = jax.jit(jax.grad(loss))
        else:
            self._take = take
            self._grad = jax.grad(loss)

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    def _call(self, fn, *args):
        with Translate(translate_jax_error, catch=(ValueError, IndexError, TypeError)):
            return to_numpy(fn(*args))

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self._call(self._take, table, ids)

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        return self._call(self._grad, table, ids, upstream)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        preamble = ["import jax", "import jax.numpy as jnp"]
        if op == "lookup":
            fn = ["def take(table, ids):", "    return jnp.take(table, ids, axis=0)"]
            call = "take(table, ids)"
        elif op == "grad":
            fn = ["def loss(table, ids, upstream):",
                  "    return jnp.sum(jnp.take(table, ids, axis=0) * upstream)",
                  "take_grad = jax.grad(loss)"]
            call = "take_grad(table, ids, upstream)"
        else:
            raise ValueError(f"{self.name} has no operation {op!r}")
        if self.jit:
            fn.append("take = jax.jit(take)" if op == "lookup" else "take_grad = jax.jit(take_grad)")
        return _fmt_snippet(fn + [f"out = {call}"], args, preamble)


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
