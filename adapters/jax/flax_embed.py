"""Flax adapter: ``flax.nnx.Embed``.

The layer is built as its docs show (``nnx.Embed(num_embeddings=V, features=D,
param_dtype=dtype, dtype=dtype, rngs=...)``) and its ``embedding`` param is then
set to the given table exactly. The initializer is ``nnx.initializers.zeros_init()``
since the table replaces it anyway (and the default variance-scaling initializer
raises ZeroDivisionError for V == 0 or D == 0, before any lookup happens).
Layers are cached per (V, D, dtype). ``__call__`` checks that ids are integers and
then calls ``jnp.take(embedding, ids, axis=0)`` (default mode: NaN rows for
out-of-bound ids, negative ids wrap), except that with ``num_embeddings == 1`` it
broadcasts the single row to every id, whatever its value. jax_enable_x64 is left
off (the default), so JAX narrows int64/uint64 ids and float64 tables.

Flax and JAX are imported lazily.
"""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.contract import Description, InvalidTable, Translate, methods_of
from embedding_conformance.adapters.jax.take import _X64_NOTE, _fmt_snippet, classify, jax_capabilities, to_numpy, translate_jax_error  # noqa: F401 (classify re-exported)


_SINGLE_ROW_NOTE = (
    "with num_embeddings == 1, __call__ takes a broadcast path instead of jnp.take "
    "(flax/nnx/nn/linear.py): row 0 for every id whatever its value; see suites/divergences/jax.toml")
# table.load: the documented ways of giving the layer a table, as the lines a snippet prints
_LOAD_SOURCE = {
    # the param's value assigned (nnx: state is attributes)
    "value": ["layer = nnx.Embed(num_embeddings=table.shape[0], features=table.shape[1],",
              "                  param_dtype=table.dtype, dtype=table.dtype,",
              "                  embedding_init=nnx.initializers.zeros_init(), rngs=nnx.Rngs(0))",
              "layer.embedding.value = jnp.asarray(table)"],
    # an initializer that returns the table
    "embedding_init": ["layer = nnx.Embed(num_embeddings=table.shape[0], features=table.shape[1],",
                       "                  param_dtype=table.dtype, dtype=table.dtype,",
                       "                  embedding_init=lambda key, shape, dtype: jnp.asarray(table, dtype),",
                       "                  rngs=nnx.Rngs(0))"],
}
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
        import jax.numpy as jnp
        from flax import nnx

        self._jnp = jnp
        self._nnx = nnx
        self._layers: dict[tuple, object] = {}

        def loss(layer, ids, upstream):
            return jnp.sum(layer(ids) * upstream)

        self._grad = nnx.grad(loss)

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    def _layer(self, table: np.ndarray):
        if table.ndim != 2:
            raise InvalidTable(f"flax.nnx.Embed takes a 2-D (num_embeddings, features) table, "
                               f"got rank {table.ndim}")
        key = (table.shape, table.dtype.str, table.dtype.name)
        layer = self._layers.get(key)
        if layer is None:
            v, d = table.shape
            layer = self._nnx.Embed(
                num_embeddings=v, features=d, param_dtype=table.dtype, dtype=table.dtype,
                embedding_init=self._nnx.initializers.zeros_init(), rngs=self._nnx.Rngs(0))
            self._layers[key] = layer
        layer.embedding.value = self._jnp.asarray(table)
        return layer

    def _call(self, fn, *args):
        with Translate(translate_jax_error, catch=(ValueError, IndexError, TypeError)):
            return fn(*args)

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        layer = self._layer(table)
        return to_numpy(self._call(layer, ids))

    def lookup_loaded(self, table: np.ndarray, ids: np.ndarray, path: str) -> np.ndarray:
        if table.ndim != 2:
            raise InvalidTable(f"flax.nnx.Embed takes a 2-D table, got rank {table.ndim}")
        ns = {"nnx": self._nnx, "jnp": self._jnp, "table": table}
        exec("\n".join(_LOAD_SOURCE[path]), ns)  # the very lines the snippet prints
        return to_numpy(self._call(ns["layer"], ids))

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        layer = self._layer(table)
        grads = self._call(self._grad, layer, ids, upstream)
        return to_numpy(grads["embedding"].value)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        preamble = ["import jax", "import jax.numpy as jnp", "from flax import nnx"]
        build = _LOAD_SOURCE[eval(args["path"]) if op == "lookup_loaded" else "value"]
        if op in ("lookup", "lookup_loaded"):
            body = build + ["out = layer(ids)"]
        elif op == "grad":
            body = build + [
                "def loss(layer, ids, upstream):",
                "    return jnp.sum(layer(ids) * upstream)",
                "out = nnx.grad(loss)(layer, ids, upstream)['embedding'].value",
            ]
        else:
            raise ValueError(f"{self.name} has no operation {op!r}")
        return _fmt_snippet(body, args, preamble)


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing flax."""
    return Description(methods_of(NnxEmbed), CAPABILITIES)


def nnx_embed() -> NnxEmbed:
    return NnxEmbed()
