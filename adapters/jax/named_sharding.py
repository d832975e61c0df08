"""JAX adapters on a table sharded over host devices: ``jax.numpy.take`` and
``flax.nnx.Embed`` under ``jax.jit``, the table placed with
``NamedSharding(Mesh(devices, ("x",)), P("x", None))`` (rows) or ``P(None, "x")``
(columns).

The worker group sets ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before
JAX is imported (adapters/registry.py), so this CPU has four XLA devices; the plain
clauses use all four, ``lookup_on_devices`` the first 1 to 4. The table goes to the
devices the way JAX's sharding guide shows (``jax.device_put(table, sharding)``; for
Flax, ``nnx.with_partitioning`` under ``jax.set_mesh`` and the sharded array assigned
to the param), the lookup is jitted once per function and JAX caches one executable
per signature and sharding. jax_enable_x64 is left off, as users get it (see
jax_adapter.py). JAX refuses a sharding whose dimension the device count does not
divide (``IndivisibleError``): that refusal is reported as InvalidTable, a table the
sharded lookup does not take.

Every call runs the source its snippet prints (adapters/jax/source.py): the set-up
(mesh, sharding, jitted function) once per (op, devices), the nnx layer once per
(op, devices, table shape and dtype), the call each time.
"""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.contract import Call, Capabilities, Description, FLOAT_DTYPES, INT_DTYPES, InvalidTable, LookupFailure, methods_of
from embedding_conformance.adapters.jax.source import DEVICES, FLAX_SHARDED, JAX_SHARDED, SET_DEVICES, XLA_FLAGS, Staged
from embedding_conformance.adapters.jax.take import translate_jax_error

_SPEC = {"rows": 'P("x")', "cols": 'P(None, "x")'}  # P("x") shards axis 0 of a table of any rank
_API_NAME = {"take": "jax.numpy.take", "nnx": "flax.nnx.Embed"}

_NOTES = (
    "jax_enable_x64 is left at its default (False), as users get it: int64/uint64 ids narrow to int32/uint32 "
    "and float64 tables to float32",
    "the table is placed with jax.device_put(table, NamedSharding(Mesh(jax.devices()[:n], ('x',)), spec)); "
    "n = 4 host devices (XLA_FLAGS=--xla_force_host_platform_device_count=4), 1 to 4 for partition.device_count",
    "JAX refuses a sharding whose dimension the device count does not divide (IndivisibleError): "
    "reported as InvalidTable",
)


def _classify(exc: BaseException) -> LookupFailure | None:
    text = str(exc)
    # device_put raises IndivisibleError, or for some ranks a ValueError wrapping its message
    if type(exc).__name__ == "IndivisibleError" or (
            "incompatible with its sharding annotation" in text and "partitioned" in text) or (
            # jax 0.4: device_put's ValueError "... should be divisible by 4, but it is equal to 3"
            "was given the sharding of NamedSharding" in text and "should be divisible by" in text):
        return InvalidTable(f"{type(exc).__name__}: {text[:400]}")
    return translate_jax_error(exc)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a JAX exception stands for (a snippet's replay uses it)."""
    return _classify(exc)


def capabilities(api: str, axis: str) -> Capabilities:
    ndims = (2,) if api == "nnx" else ((1, 2, 3, 4) if axis == "rows" else (2, 3, 4))
    notes = _NOTES + ((f"sharded by {'rows' if axis == 'rows' else 'columns'}: spec {_SPEC[axis]}",)
                      + (("nnx.Embed holds a (num_embeddings, features) matrix: 2-D tables only",) if api == "nnx"
                         else ()) + (("columns: the spec shards axis 1, so a table has rank 2 at least",)
                                     if axis == "cols" and api == "take" else ()))
    dists = ("flax", "jax", "jaxlib") if api == "nnx" else ("jax", "jaxlib")
    return Capabilities(table_dtypes=FLOAT_DTYPES, table_ndims=ndims, id_dtypes=INT_DTYPES, distributions=dists,
                        notes=notes)


# --- the source lines (what the adapter runs and the snippet prints) -------------------

def _setup(api: str, axis: str, op: str) -> list[str]:
    lines = ["mesh = Mesh(np.array(jax.devices()[:devices]), ('x',))",
             f"sharding = NamedSharding(mesh, {_SPEC[axis]})"]
    if api == "take":
        if op == "grad":
            return lines + ["def loss(table, ids, upstream):",
                            "    return jnp.sum(jnp.take(table, ids, axis=0) * upstream)",
                            "fn = jax.jit(jax.grad(loss))"]
        return lines + ["def take(table, ids):", "    return jnp.take(table, ids, axis=0)", "fn = jax.jit(take)"]
    if op == "grad":
        return lines + ["def loss(layer, ids, upstream):", "    return jnp.sum(layer(ids) * upstream)",
                        "fn = nnx.jit(nnx.grad(loss))"]
    return lines + ["def lookup(layer, ids):", "    return layer(ids)", "fn = nnx.jit(lookup)"]


_NNX_LAYER = [
    "with jax.set_mesh(mesh):",
    "    layer = nnx.Embed(num_embeddings=table.shape[0], features=table.shape[1],",
    "                      param_dtype=table.dtype, dtype=table.dtype,",
    "                      embedding_init=nnx.with_partitioning(nnx.initializers.zeros_init(), {names}),",
    "                      rngs=nnx.Rngs(0))",
]
_NAMES = {"rows": "('x', None)", "cols": "(None, 'x')"}


def _call(api: str, op: str) -> list[str]:
    if api == "take":
        return (["placed = jax.device_put(table, sharding)"]
                + (["out = fn(placed, ids, upstream)"] if op == "grad" else ["out = fn(placed, ids)"]))
    # the layer is built (kept per shape and dtype) and its param set to the placed table
    return (["layer.embedding.value = jax.device_put(table, sharding)"]
            + (["out = fn(layer, ids, upstream)['embedding'].value"] if op == "grad" else ["out = fn(layer, ids)"]))


def _stages(api: str, axis: str, op: str) -> list[list[str]]:
    layer = [[ln.format(names=_NAMES[axis]) for ln in _NNX_LAYER]] if api == "nnx" else []
    return [_setup(api, axis, op), *layer, _call(api, op)]


class OnDevices:
    """The methods of an adapter whose table is sharded over host devices, all four for the
    plain clauses: each is ``_on(op, devices, ...)`` ("lookup" or "grad"), and its snippet
    the whole source of that op in ``_calls`` (a Staged), after the ``_before`` lines."""

    _calls: Staged
    _before: tuple[str, ...] = ("import os", SET_DEVICES)

    def _on(self, op: str, devices: int, table: np.ndarray, ids: np.ndarray, upstream=None) -> np.ndarray:
        raise NotImplementedError

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self._on("lookup", DEVICES, table, ids)

    def lookup_on_devices(self, table: np.ndarray, ids: np.ndarray, devices: int) -> np.ndarray:
        return self._on("lookup", int(devices), table, ids)

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        return self._on("grad", DEVICES, table, ids, upstream)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in ("lookup", "lookup_on_devices", "grad"):
            raise ValueError(f"{self.name} has no operation {op!r}")
        return self._calls.snippet("grad" if op == "grad" else "lookup", {"devices": str(DEVICES), **args},
                                   before=self._before)


class JaxSharded(OnDevices):
    framework = "jax"

    def __init__(self, api: str, axis: str):
        self.api, self.axis = api, axis
        self.name = f"{_API_NAME[api]}[NamedSharding-{axis}]"
        self.framework = "flax" if api == "nnx" else "jax"
        self.capabilities = capabilities(api, axis)
        source = FLAX_SHARDED if api == "nnx" else JAX_SHARDED
        made = [("mesh", "sharding", "fn")] + ([("layer",)] if api == "nnx" else [])
        self._calls = Staged(source, {op: _stages(api, axis, op) for op in ("lookup", "grad")},
                           {op: made for op in ("lookup", "grad")})
        jax = source.helper("jax")  # imports jax (and flax)
        if len(jax.devices()) < DEVICES:
            raise RuntimeError(f"{len(jax.devices())} JAX devices, {DEVICES} needed: XLA_FLAGS={XLA_FLAGS} must be "
                               f"set before jax is imported")
        self._to_numpy = source.helper("to_numpy")

    def environment(self) -> dict[str, int]:
        return cpu.facts()

    def _on(self, op: str, devices: int, table: np.ndarray, ids: np.ndarray, upstream=None) -> np.ndarray:
        # one jitted function per (op, devices): JAX caches its executables; an nnx layer per
        # (op, devices, table shape and dtype) (Staged keeps per op)
        keys = [(devices,)]
        if self.api == "nnx":
            if table.ndim != 2:
                raise InvalidTable(f"flax.nnx.Embed takes a 2-D table, got rank {table.ndim}")
            keys.append((devices, table.shape, table.dtype.str))
        try:
            return self._to_numpy(self._calls.run(op, keys, devices=devices, table=table, ids=ids,
                                                  upstream=upstream)["out"])
        except (ValueError, IndexError, TypeError) as exc:
            failure = _classify(exc)
            if failure is None:
                raise
            raise failure from exc


_KINDS = {f"{_API_NAME[api]}[NamedSharding-{axis}]": (api, axis) for api in ("take", "nnx") for axis in ("rows", "cols")}


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing jax."""
    return Description(methods_of(JaxSharded), capabilities(*_KINDS[name]))


def take_rows() -> JaxSharded:
    return JaxSharded("take", "rows")


def take_cols() -> JaxSharded:
    return JaxSharded("take", "cols")


def nnx_rows() -> JaxSharded:
    return JaxSharded("nnx", "rows")


def nnx_cols() -> JaxSharded:
    return JaxSharded("nnx", "cols")
