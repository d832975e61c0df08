"""Pins: the committed examples of behaviour model steps (adapters/spec/steps.py),
built for one adapter's capabilities. Every check whose model holds a step runs that
step's pins for its clause first, in every profile, so each step is held to the real
framework on the inputs that make it act, whatever a seed draws: for every float
dtype the adapter takes (or the step touches), on a table of special values.

The special values, one of each per row (rows rotate them, so that rows differ):
a quiet NaN with a payload of either sign, a signalling NaN of either sign, -0.0,
+0.0, the smallest subnormal, the largest subnormal of negative sign, the largest
finite value of either sign, both infinities, 1.0 and a full mantissa."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from embedding_conformance.adapters.contract import Capabilities
from embedding_conformance.adapters.spec import steps as step_registry
from embedding_conformance.adapters.spec.steps import Pin

from .strategies import np_dtype

# the special values' bit patterns, per dtype (see the module docstring for the order)
SPECIALS = {
    "float16": (0x7E05, 0xFE05, 0x7C05, 0xFC05, 0x8000, 0x0000, 0x0001, 0x83FF, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
                0x3C00, 0x3FFF),
    "bfloat16": (0x7FC5, 0xFFC5, 0x7F81, 0xFF85, 0x8000, 0x0000, 0x0001, 0x807F, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80,
                 0x3F80, 0x3FFF),
    "float32": (0x7FC00005, 0xFFC00005, 0x7F800005, 0xFF800005, 0x80000000, 0x0, 0x00000001, 0x807FFFFF,
                0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x3F800000, 0x3FFFFFFF),
    "float64": (0x7FF8000000000005, 0xFFF8000000000005, 0x7FF0000000000005, 0xFFF0000000000005,
                0x8000000000000000, 0x0, 0x0000000000000001, 0x800FFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF,
                0xFFEFFFFFFFFFFFFF, 0x7FF0000000000000, 0xFFF0000000000000, 0x3FF0000000000000,
                0x3FFFFFFFFFFFFFFF),
}
# finite values only (a step of arithmetic: max_norm, gradients): norms past 0.5, either sign
FINITE = (1.5, -2.25, 0.75, 3.0, -0.375, 1.0, 2.0, -1.25, 0.5, -3.5, 1.125, 2.5, -0.625, 0.875)
METHOD_ARGS = {
    "lookup": (), "lookup_loaded": ("path",), "lookup_with_state": ("max_norm",), "lookup_mask_zero": (),
    "grad": ("upstream",), "grad_scaled": ("upstream",), "grad_padded": ("upstream", "padding_idx"),
    "lookup_on_devices": ("devices",), "lookup_sharded": (), "lookup_bags": (), "grad_bags": ("upstream",),
    "lookup_bags_padded": ("padding_idx",),
}
_SIGNED = ("int64", "int32", "int16", "int8")
_ANY = ("int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8")


def special_table(dtype: str, v: int, row: tuple[int, ...], kind: str = "specials") -> np.ndarray:
    """A (v, *row) table of ``dtype``: the special values (or finite ones), rotated by row."""
    dt = np_dtype(dtype)
    if kind == "finite":
        flat = np.array(FINITE, dtype=np.float64).astype(dt)
    else:
        flat = np.array(SPECIALS[dtype], dtype=f"u{dt.itemsize}").view(dt)
    size = int(np.prod(row, dtype=np.int64))
    out = np.empty((v, size), dtype=dt)
    for r in range(v):
        out[r] = np.resize(np.roll(flat, -r), size) if size else flat[:0]
    return out.reshape((v, *row))


def _row(pin: Pin, caps: Capabilities) -> tuple[int, ...] | None:
    if pin.row is not None:
        return pin.row if len(pin.row) + 1 in caps.table_ndims else None
    for shape in ((14,), (2, 7), (), (2, 7, 1)):
        if len(shape) + 1 in caps.table_ndims:
            return shape
    return None


def _ids_dtype(pin: Pin, caps: Capabilities, ids: np.ndarray) -> str | None:
    if pin.ids_dtype is not None:
        kind = np.dtype("bool" if pin.ids_dtype == "bool" else pin.ids_dtype).kind
        # float and bool ids are offered to every adapter (they must be refused); an integer
        # dtype only where the adapter takes it
        return pin.ids_dtype if kind in "fb" or pin.ids_dtype in caps.id_dtypes else None
    order = _SIGNED if (ids < 0).any() else _ANY
    return next((d for d in order if d in caps.id_dtypes), None)


def _fits(values: np.ndarray, dtype: str) -> bool:
    info = np.iinfo(dtype)
    return bool(values.size == 0 or (values.min() >= info.min and values.max() <= info.max))


def _ids(pin: Pin, caps: Capabilities, values: Any) -> np.ndarray | None:
    if pin.ids_dtype is not None and np.dtype("bool" if pin.ids_dtype == "bool" else pin.ids_dtype).kind in "fb":
        dtype = _ids_dtype(pin, caps, np.zeros(0))
        return np.array(values, dtype=dtype)
    raw = np.array(values, dtype=object)
    wide = raw.astype(np.float64) if raw.size else np.zeros(raw.shape)
    dtype = _ids_dtype(pin, caps, wide)
    if dtype is None or not _fits(np.array([int(x) for x in raw.reshape(-1)], dtype=object), dtype):
        return None
    return np.array(values if raw.size else np.zeros(raw.shape), dtype=dtype).reshape(raw.shape)


def _table_dtypes(pin: Pin, caps: Capabilities) -> list[str]:
    return [d for d in caps.table_dtypes if pin.table_dtypes is None or d in pin.table_dtypes]


def build(pin: Pin, caps: Capabilities, method: str) -> list[dict[str, Any]]:
    """The inputs of one pin for an adapter with ``caps`` (none where it cannot take them)."""
    if pin.v < caps.min_rows:
        return []
    row = _row(pin, caps)
    if row is None or (0 in row and not caps.empty_rows):
        return []
    out = []
    for dtype in _table_dtypes(pin, caps):
        if pin.shards is not None:
            out += _sharded(pin, caps, dtype, row)
        elif pin.offsets is not None:
            out += _bags(pin, caps, dtype, row, method)
        else:
            table = special_table(dtype, pin.v, row, pin.table)
            ids = _ids(pin, caps, pin.ids)
            if ids is None:
                continue
            out += _with_extras({"table": table, "ids": ids}, pin, caps, method)
    return out


def _with_extras(args: dict[str, Any], pin: Pin, caps: Capabilities, method: str) -> list[dict[str, Any]]:
    extra = dict(pin.extra)
    found = [dict(args)]
    for name in METHOD_ARGS.get(method, ()):
        if name in extra:
            for a in found:
                a[name] = extra[name]
        elif name == "upstream":
            t, ids = args["table"], args.get("ids", args.get("values"))
            shape = (np.shape(ids) if "ids" in args else (len(args["offsets"]) - 1,)) + t.shape[1:]
            for a in found:
                a["upstream"] = special_table(t.dtype.name, 1, (int(np.prod(shape, dtype=np.int64)),),
                                              "finite").reshape(shape)
        elif name == "path":
            found = [{**a, "path": p} for a in found for p in caps.load_paths]
        elif name == "devices":
            for a in found:
                a["devices"] = 2
        elif name == "padding_idx":
            for a in found:
                a["padding_idx"] = 0
        elif name == "max_norm":
            for a in found:
                a["max_norm"] = 0.5
    return found


def _bags(pin: Pin, caps: Capabilities, dtype: str, row, method: str) -> list[dict[str, Any]]:
    offsets = np.array(pin.offsets, dtype=np.int64)
    if caps.fixed_length_bags and len(set(np.diff(offsets).tolist())) > 1:
        return []
    values = _ids(pin, caps, list(pin.values or ()))
    if values is None:
        return []
    table = special_table(dtype, pin.v, row, pin.table)
    combiners = [c for c in caps.combiners if pin.combiners is None or c in pin.combiners]
    out = []
    for combiner in combiners:
        weights = None
        if pin.weights is not None:
            if combiner not in caps.weighted_combiners:
                continue
            weights = np.array(pin.weights, dtype=np.float64).astype(np_dtype(dtype))
        args = {"table": table, "values": values, "offsets": offsets, "weights": weights, "combiner": combiner}
        out += _with_extras(args, pin, caps, method)
    return out


def _sharded(pin: Pin, caps: Capabilities, dtype: str, row) -> list[dict[str, Any]]:
    if pin.strategy not in caps.strategies:
        return []
    total = special_table(dtype, sum(pin.shards), row, pin.table)
    bounds = np.cumsum([0, *pin.shards])
    shards = [total[bounds[k]:bounds[k + 1]].copy() for k in range(len(pin.shards))]
    ids = _ids(pin, caps, pin.ids)
    return [] if ids is None else [{"shards": shards, "ids": ids, "strategy": pin.strategy}]


@lru_cache(maxsize=None)
def _pins_by_clause(model: tuple[str, ...]) -> dict[str, tuple[Pin, ...]]:
    out: dict[str, list[Pin]] = {}
    for name in model:
        for pin in step_registry.STEPS[step_registry.base(name)].pins:
            out.setdefault(pin.clause, []).append(pin)
    return {k: tuple(v) for k, v in out.items()}


def pinned(model: tuple[str, ...], clause: str, method: str, caps: Capabilities) -> list[dict[str, Any]]:
    """The committed examples of the steps of ``model`` that run in ``clause``."""
    out = []
    for pin in _pins_by_clause(tuple(model)).get(clause, ()):
        out += build(pin, caps, method)
    return out
