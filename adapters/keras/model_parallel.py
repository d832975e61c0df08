"""Keras 3's distribution API on the JAX backend: ``keras.layers.Embedding`` built under
``keras.distribution.ModelParallel`` whose ``LayoutMap`` shards the embedding table over
four host devices, by rows (``("model", None)``) or by columns (``(None, "model")``).

The worker group sets ``KERAS_BACKEND=jax`` and
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before anything is imported
(adapters/registry.py). The mesh is the documented two-axis one,
``DeviceMesh(shape=(1, n), axis_names=("batch", "model"))``, so the ids (the batch) stay
whole and only the table is split; n = 4 for the plain clauses, 1 to 4 for
``lookup_on_devices``. The layer is created inside ``distribution.scope()`` (which
places its variable by the layout map), its table loaded with ``set_weights`` (the
documented way; the variable keeps its layout) and called on the NumPy ids; its
gradient is ``jax.grad`` through ``layer.stateless_call``, as the plain Keras adapter
takes it. Layers are kept per (op, V, D, dtype, n). jax_enable_x64
stays off. JAX's refusal of a layout the device count does not divide
(``IndivisibleError``) is reported as InvalidTable.
"""
from __future__ import annotations

import os

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.contract import Call, Capabilities, Description, FLOAT_DTYPES, INT_DTYPES, InvalidTable, LookupFailure, methods_of
from embedding_conformance.adapters.jax.named_sharding import OnDevices
from embedding_conformance.adapters.jax.named_sharding import classify as _jax_classify
from embedding_conformance.adapters.jax.source import DEVICES, SET_DEVICES, XLA_FLAGS, Staged
from embedding_conformance.adapters.keras.embedding import _GRAD, _translate
from embedding_conformance.adapters.keras.source import KERAS, before

_LAYOUT = {"rows": '("model", None)', "cols": '(None, "model")'}

# the source the adapter runs and the snippet prints (adapters/keras/source.py): the layer is
# built once per (op, devices, table shape and dtype), the call sets its table each time
_SETUP = [
    "mesh = keras.distribution.DeviceMesh(shape=(1, devices), axis_names=('batch', 'model'),",
    "                                     devices=keras.distribution.list_devices()[:devices])",
    "layout_map = keras.distribution.LayoutMap(mesh)",
    "layout_map['.*embeddings'] = {layout}",
    "distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name='batch')",
    "with distribution.scope():",
    "    layer = keras.layers.Embedding(input_dim=table.shape[0], output_dim=table.shape[1],",
    "                                   dtype=table.dtype.name, embeddings_initializer='zeros')",
    "    layer.build()",
]
_CALL = {
    "lookup": ["layer.set_weights([table])", "out = layer(ids)"],
    "grad": ["layer.set_weights([table])", *_GRAD["jax"]],  # as the plain Keras adapter takes it
}


def _classify(exc: BaseException) -> LookupFailure | None:
    return _jax_classify(exc) or _translate(exc)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure an exception stands for (a snippet's replay uses it)."""
    return _classify(exc)


def capabilities(axis: str) -> Capabilities:
    return Capabilities(
        table_dtypes=FLOAT_DTYPES, table_ndims=(2,), id_dtypes=INT_DTYPES, min_rows=1, empty_rows=False,
        distributions=("jax", "jaxlib"),
        notes=(
            "keras.layers.Embedding holds a 2-D (input_dim, output_dim) table; input_dim and output_dim must be "
            "positive integers: no V == 0 table, no rows of size 0",
            f"ModelParallel over DeviceMesh((1, n), ('batch', 'model')), n = 4 host devices; LayoutMap "
            f"'.*embeddings' -> {_LAYOUT[axis]}; the layer built in distribution.scope(), loaded with set_weights",
            "jax backend with jax_enable_x64 off (the default): int64 ids become int32 and uint64 ids uint32, "
            "a dtype='float64' Embedding holds float32 weights",
            "JAX refuses a layout whose dimension the device count does not divide (IndivisibleError): "
            "reported as InvalidTable",
        ),
    )


class KerasModelParallel(OnDevices):
    framework = "keras"
    _before = tuple(before("jax", SET_DEVICES))

    def __init__(self, axis: str):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras

        if keras.backend.backend() != "jax":
            raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()!r}; the ModelParallel adapters need 'jax'")
        if len(keras.distribution.list_devices()) < DEVICES:
            raise RuntimeError(f"{len(keras.distribution.list_devices())} devices, {DEVICES} needed: "
                               f"XLA_FLAGS={XLA_FLAGS} must be set before jax is imported")
        self.axis = axis
        self.name = f"keras.layers.Embedding[jax][ModelParallel-{axis}]"
        self.capabilities = capabilities(axis)
        setup = [ln.format(layout=_LAYOUT[axis]) for ln in _SETUP]
        self._calls = Staged(KERAS["jax"], {op: [setup, call] for op, call in _CALL.items()},
                           {op: [("layer",)] for op in _CALL})
        self._to_numpy = KERAS["jax"].helper("to_numpy")

    def environment(self) -> dict[str, int]:
        return cpu.facts()

    def _on(self, op: str, devices: int, table: np.ndarray, ids: np.ndarray, upstream=None) -> np.ndarray:
        if not isinstance(table, np.ndarray) or table.ndim != 2:
            raise InvalidTable(f"keras.layers.Embedding takes a 2-D table, got shape {getattr(table, 'shape', None)}")
        keys = [(devices, table.shape, table.dtype.name)]
        try:
            ns = self._calls.run(op, keys, devices=devices, table=table, ids=np.asarray(ids), upstream=upstream)
        except LookupFailure:
            raise
        except Exception as exc:
            failure = _classify(exc)
            if failure is None:
                self._calls.forget(op, keys)
                raise
            raise failure from exc
        return self._to_numpy(ns["out"])


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing keras."""
    axis = name.rsplit("-", 1)[1].rstrip("]")
    return Description(methods_of(KerasModelParallel), capabilities(axis))


def model_parallel_rows() -> KerasModelParallel:
    return KerasModelParallel("rows")


def model_parallel_cols() -> KerasModelParallel:
    return KerasModelParallel("cols")
