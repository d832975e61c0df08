"""Flax adapter: ``flax.nnx.Embed``.

The layer is built as its docs show (``nnx.Embed(num_embeddings=V, features=D,
param_dtype=dtype, dtype=dtype, rngs=...)``) and its ``embedding`` param is then
set to the given table exactly. The initializer is ``nnx.initializers.zeros_init()``
since the table replaces it anyway (and the default variance-scaling initializer
raises ZeroDivisionError for V == 0 or D == 0, before any lookup happens).
Layers are kept per (op, V, D, dtype). ``__call__`` checks that ids are integers and
then calls ``jnp.take(embedding, ids, axis=0)`` (default mode: NaN rows for
out-of-bound ids, negative ids wrap), except that with ``num_embeddings == 1`` it
broadcasts the single row to every id, whatever its value. jax_enable_x64 is left
off (the default), so JAX narrows int64/uint64 ids and float64 tables.

Every call runs the source its snippet prints (adapters/jax/source.py, ``FLAX``).
Flax and JAX are imported lazily.
"""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.contract import Description, InvalidTable, Translate, methods_of
from embedding_conformance.adapters.jax.source import FLAX, Staged
from embedding_conformance.adapters.jax.take import _X64_NOTE, classify, jax_capabilities, translate_jax_error  # noqa: F401 (classify re-exported)


_SINGLE_ROW_NOTE = (
    "with num_embeddings == 1, __call__ takes a broadcast path instead of jnp.take "
    "(flax/nnx/nn/linear.py): row 0 for every id whatever its value; see adapters/jax/declarations.toml")

_BUILD = ["layer = nnx.Embed(num_embeddings=table.shape[0], features=table.shape[1],",
          "                  param_dtype=table.dtype, dtype=table.dtype,",
          "                  embedding_init=nnx.initializers.zeros_init(), rngs=nnx.Rngs(0))"]
_SET = ["layer.embedding.value = jnp.asarray(table)"]  # the param's value assigned (nnx: state is attributes)
_LOOKUP = ["out = layer(ids)"]
# table.load: the documented ways of giving the layer a table, each run whole with the lookup
_LOAD_SOURCE = {
    "value": _BUILD + _SET,
    # an initializer that returns the table
    "embedding_init": ["layer = nnx.Embed(num_embeddings=table.shape[0], features=table.shape[1],",
                       "                  param_dtype=table.dtype, dtype=table.dtype,",
                       "                  embedding_init=lambda key, shape, dtype: jnp.asarray(table, dtype),",
                       "                  rngs=nnx.Rngs(0))"],
}
_PATHS = {repr(p): p for p in _LOAD_SOURCE}  # a snippet's `path` argument (its source) -> the path
# each op's stages: set-up kept between calls (the grad transform once, the layer per table
# shape and dtype), then the call, which sets the table each time
_STAGES = {
    "lookup": [_BUILD, _SET + _LOOKUP],
    "grad": [["def loss(layer, ids, upstream):", "    return jnp.sum(layer(ids) * upstream)", "grad = nnx.grad(loss)"],
             _BUILD, _SET + ["out = grad(layer, ids, upstream)['embedding'].value"]],
    **{f"load {p}": [lines + _LOOKUP] for p, lines in _LOAD_SOURCE.items()},  # a fresh layer each call
}
_MAKES = {"lookup": [("layer",)], "grad": [("grad",), ("layer",)]}

CAPABILITIES = jax_capabilities(
    table_ndims=(2,),
    load_paths=tuple(_LOAD_SOURCE),
    distributions=("flax", "jax", "jaxlib"),
    notes=(
        "nnx.Embed holds a (num_embeddings, features) matrix: 2-D tables only",
        "__call__ is jnp.take(embedding, ids, axis=0) (mode 'fill': NaN rows out of "
        "bounds, ids in [-V,-1] wrap)",
        _SINGLE_ROW_NOTE,
        _X64_NOTE,
    ),
)


class NnxEmbed:
    name = "flax.nnx.Embed"
    framework = "flax"
    capabilities = CAPABILITIES

    def __init__(self):
        self._calls = Staged(FLAX, _STAGES, _MAKES)
        self._to_numpy = FLAX.helper("to_numpy")  # imports jax and flax

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    def _call(self, op: str, table: np.ndarray, **args) -> np.ndarray:
        if table.ndim != 2:
            raise InvalidTable(f"flax.nnx.Embed takes a 2-D (num_embeddings, features) table, "
                               f"got rank {table.ndim}")
        layer_key = (table.shape, table.dtype.str, table.dtype.name)
        keys = {"lookup": (layer_key,), "grad": (None, layer_key)}.get(op, ())
        with Translate(translate_jax_error, catch=(ValueError, IndexError, TypeError)):
            return self._to_numpy(self._calls.run(op, keys, table=table, **args)["out"])

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self._call("lookup", table, ids=ids)

    def lookup_loaded(self, table: np.ndarray, ids: np.ndarray, path: str) -> np.ndarray:
        return self._call(f"load {path}", table, ids=ids)

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        return self._call("grad", table, ids=ids, upstream=upstream)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        key = f"load {_PATHS[args['path']]}" if op == "lookup_loaded" else op
        if key not in _STAGES:
            raise ValueError(f"{self.name} has no operation {op!r}")
        return self._calls.snippet(key, args)


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing flax."""
    return Description(methods_of(NnxEmbed), CAPABILITIES)


def nnx_embed() -> NnxEmbed:
    return NnxEmbed()
