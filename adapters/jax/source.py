"""The JAX preludes the JAX, Flax and Keras-on-JAX adapters run their calls with and their
snippets print (adapters/toolkit/source.py); ``run_stages``, a call whose set-up (a layer,
a jitted function) is kept between calls; ``Staged``, such calls by op and key.
Importing this module imports no framework; the first call does.

jax_enable_x64 is left at its default (False), as users get it, and a jax.Array comes
back through its own buffer (``np.asarray``): bfloat16 arrives as ml_dtypes.bfloat16,
bits unchanged.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from embedding_conformance.adapters.toolkit.source import Source

_IMPORTS = """\
import numpy as np
import ml_dtypes
import jax
import jax.numpy as jnp
"""
_HELPERS = """
# jax_enable_x64 is left at its default (False), as users get it
to_numpy = np.asarray  # a jax.Array's own buffer: bits unchanged, bfloat16 as ml_dtypes.bfloat16
"""


def prelude(*imports: str) -> str:
    """The JAX prelude with more import lines (flax, keras on JAX, ...)."""
    return _IMPORTS + "".join(f"{line}\n" for line in imports) + _HELPERS


_SHARDING = "from jax.sharding import Mesh, NamedSharding, PartitionSpec as P"
JAX = Source("jax", prelude())
FLAX = Source("flax", prelude("from flax import nnx"))
JAX_SHARDED = Source("jax sharded", prelude(_SHARDING))
FLAX_SHARDED = Source("flax sharded", prelude(_SHARDING, "from flax import nnx"))

DEVICES = 4  # host devices of the sharded adapters' plain clauses (the registry's XLA_FLAGS make four)
XLA_FLAGS = f"--xla_force_host_platform_device_count={DEVICES}"
# what a sharded snippet sets before its imports (after `import os`), as the worker group does
SET_DEVICES = f"os.environ['XLA_FLAGS'] = {XLA_FLAGS!r}  # four host devices, before jax is imported"


def run_stages(source: Source, stages: Sequence[Sequence[str]], start: int, done: Callable[[int, dict], None],
               **names: Any) -> dict[str, Any]:
    """Run ``stages[start:]`` (each a list of source lines) as one text, with ``names``
    bound (among them what the stages before ``start`` made in an earlier call). A call
    that finds nothing kept runs the whole text, the one its snippet prints; a later call
    the rest of it. ``done(k, ns)`` is told of each stage k that completed, also when a
    later one raised: a first call that fails still leaves its layer to be kept, as when
    set-up and call ran apart."""
    ns: dict[str, Any] = {}
    try:
        source.run(lines_of(stages[start:]), ns, **names)
    except BaseException as exc:
        line = _line_of(exc, ns)
        end = 0
        for k in range(start, len(stages)):
            end += sum(ln.count("\n") + 1 for ln in stages[k])
            if line is None or end >= line:
                break
            done(k, ns)
        raise
    for k in range(start, len(stages)):
        done(k, ns)
    return ns


def _line_of(exc: BaseException, ns: dict) -> int | None:
    """The line of the text run in ``ns`` that ``exc`` left it at (None: it never ran)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals is ns:  # the text's own frame: it runs with ns as its globals
            return tb.tb_lineno
        tb = tb.tb_next
    return None


def lines_of(stages: Sequence[Sequence[str]]) -> list[str]:
    """The stages as one list of lines: the text a call that finds nothing kept runs."""
    return [ln for stage in stages for ln in stage]


class Staged:
    """An adapter's calls, each as stages of source lines (``stages[op]``): set-up stages,
    each making names (``makes[op][k]``: a layer, a jitted function) kept per key, then
    the call. ``run(op, keys)`` runs from the first set-up stage with nothing kept under
    its key (``keys[k]``); ``snippet(op, ...)`` prints the whole of ``op``'s text. Nothing
    is shared between ops: the first call of an op runs the whole text its snippet
    prints, not only a rest after another op's set-up."""

    def __init__(self, source: Source, stages: dict[str, list[list[str]]], makes: dict[str, list[tuple[str, ...]]]):
        self.source, self.stages, self.makes = source, stages, makes
        self._kept: dict[tuple, dict[str, Any]] = {}  # (op, stage, key) -> the names it made

    def run(self, op: str, keys: Sequence[Any], **args: Any) -> dict[str, Any]:
        start, names = 0, {}
        for key in keys:
            made = self._kept.get((op, start, key))
            if made is None:
                break
            names.update(made)
            start += 1

        def done(k: int, ns: dict) -> None:
            if k < len(keys):
                self._kept[(op, k, keys[k])] = {n: ns[n] for n in self.makes[op][k]}

        return run_stages(self.source, self.stages[op], start, done, **names, **args)

    def forget(self, op: str, keys: Sequence[Any]) -> None:
        """Drop what the set-up stages of ``op`` made under ``keys`` (a call left it unusable)."""
        for k, key in enumerate(keys):
            self._kept.pop((op, k, key), None)

    def snippet(self, op: str, args: dict[str, str], tail: Sequence[str] = ("result = show('out', out)",),
                before: Sequence[str] = ()) -> str:
        return self.source.snippet(args, lines_of(self.stages[op]), tail, before)
