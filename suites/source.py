"""Python source for the inputs of a check: the `example` of a record and the
inputs of a reproduction snippet. Arrays are written as literals when the literal
rebuilds the same bytes, and as their bytes in hex when it cannot (NaN payloads).

A large array that is mostly one row (or one value) is written compactly, as a
constructor for the bulk and the rows that differ from it, each rebuilding the same
bytes::

    table = np.zeros((65537, 1), dtype=np.float32)
    table[[0, 7]] = np.array([[1.5], [-0.0]], dtype=np.float32)

That form is a few statements, so it is only used where the array is bound to a name
(``args_source`` and ``example_source``, whose values adapters write as
``f"{name} = {source}"``); an array inside a list (a shard) is one expression.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

_DTYPE_SOURCE = {"bfloat16": "ml_dtypes.bfloat16", "bool": "np.bool_"}
COMPACT_MIN = 64  # elements: a smaller array is always written out
COMPACT_ROWS = 64  # at most this many rows differing from the bulk are written as assignments


def dtype_source(dtype: np.dtype) -> str:
    return _DTYPE_SOURCE.get(dtype.name, f"np.{dtype.name}")


def array_source(a: np.ndarray, name: str | None = None) -> str:
    """Source that rebuilds ``a`` bit for bit: an expression, or (given the ``name`` it is
    bound to) the statements after ``name = `` when a compact form is shorter."""
    bulk, rest = _parts(a, name)
    return "\n".join([bulk, *rest])


def _parts(a: np.ndarray, name: str | None) -> tuple[str, list[str]]:
    """An expression for ``a``, and the assignments to ``name`` that complete it (none
    for the plain form)."""
    plain = _expression(a)
    if name is None or a.size < COMPACT_MIN:
        return plain, []
    compact = _compact(a)
    if compact is None or len(compact[0]) + sum(len(x) for x in compact[1]) >= len(plain):
        return plain, []
    return compact[0], [name + line[len(_NAME):] for line in compact[1]]


def _expression(a: np.ndarray) -> str:
    dt = dtype_source(a.dtype)
    if a.size == 0:
        return f"np.empty({a.shape!r}, dtype={dt})"
    # NumPy names for the non-finite floats: a snippet defines np, not nan or inf
    body = re.sub(r"\b(nan|inf)\b", r"np.\1", repr(_literal(a)))
    literal = f"np.array({body}, dtype={dt})"
    if _rebuilds(literal, a):
        return literal
    return f"np.frombuffer(bytes.fromhex({a.tobytes().hex()!r}), dtype={dt}).reshape({a.shape!r})"


_NAME = "_a"  # the name a compact form is checked under


def _compact(a: np.ndarray) -> tuple[str, list[str]] | None:
    """``bulk`` then ``name[[i, ...]] = rows``: the bulk one row repeated (zeros, one value
    or one row), the rows that differ from it written out; None when most rows differ."""
    n = a.shape[0] if a.ndim else 0
    if n < 2:
        return None
    rows = np.ascontiguousarray(a).reshape(n, -1).view(np.uint8).reshape(n, -1)
    uniq, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    common = int(np.argmax(counts))
    differ = np.flatnonzero(inverse.reshape(-1) != common)
    if len(differ) > COMPACT_ROWS or counts[common] < 2:
        return None
    row = a[int(np.flatnonzero(inverse.reshape(-1) == common)[0])]
    bulk = _bulk(a, np.asarray(row))
    if bulk is None:
        return None
    lines = []
    if len(differ) == 1:
        i = int(differ[0])
        lines.append(f"{_NAME}[{i}] = {_expression(np.asarray(a[i]))}")
    elif len(differ):
        idx = ", ".join(str(int(i)) for i in differ)
        lines.append(f"{_NAME}[[{idx}]] = {_expression(a[differ])}")
    return (bulk, lines) if _rebuilds_statements("\n".join([bulk, *lines]), a) else None


def _bulk(a: np.ndarray, row: np.ndarray) -> str | None:
    dt = dtype_source(a.dtype)
    flat = row.reshape(-1)
    bits = flat.view(np.uint8)
    if not bits.any():
        return f"np.zeros({a.shape!r}, dtype={dt})"
    if flat.size and (flat.view(np.uint8).reshape(flat.size, -1) == bits[: a.itemsize]).all():
        value = _expression(flat[:1])  # one value everywhere: np.full, when its literal rebuilds it
        m = re.fullmatch(r"np\.array\(\[(.*)\], dtype=.*\)", value)
        if m:
            return f"np.full({a.shape!r}, {m.group(1)}, dtype={dt})"
    if row.ndim == 0:
        return None
    return f"np.broadcast_to({_expression(row)}, {a.shape!r}).copy()"


def _namespace() -> dict[str, Any]:
    import ml_dtypes

    return {"np": np, "ml_dtypes": ml_dtypes}  # the names a snippet defines


def _rebuilds(literal: str, a: np.ndarray) -> bool:
    try:
        b = eval(literal, _namespace())
    except Exception:
        return False
    return _same(b, a)


def _rebuilds_statements(source: str, a: np.ndarray) -> bool:
    ns = _namespace()
    try:
        exec(f"{_NAME} = {source}", ns)
    except Exception:
        return False
    return _same(ns.get(_NAME), a)


def _same(b: Any, a: np.ndarray) -> bool:
    return isinstance(b, np.ndarray) and b.shape == a.shape and b.dtype == a.dtype and b.tobytes() == a.tobytes()


def _literal(a: np.ndarray):
    if a.dtype.kind in "iub":
        return a.tolist()
    with np.errstate(invalid="ignore"):  # bfloat16 NaNs widen without a warning
        return a.astype(np.float64).tolist()


def value_source(v: Any, name: str | None = None) -> str:
    if isinstance(v, np.ndarray):
        return array_source(v, name)
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, np.ndarray) for x in v):
        parts = [_parts(x, None if name is None else f"{name}[{k}]") for k, x in enumerate(v)]
        inner = ",\n    ".join(bulk for bulk, _ in parts)
        return "\n".join([f"[\n    {inner},\n]", *(line for _, rest in parts for line in rest)])
    return repr(v)


def args_source(args: dict[str, Any]) -> dict[str, str]:
    """Each argument's source, to follow ``f"{name} = "`` (a compact array's source is a
    few statements, the later ones naming the argument)."""
    return {k: value_source(v, k) for k, v in args.items()}


def example_source(args: dict[str, Any]) -> str:
    return "\n".join(f"{k} = {src}" for k, src in args_source(args).items())


def short(v: Any, limit: int = 400) -> str:
    """A value for a message: arrays with shape and dtype, long text cut."""
    if isinstance(v, np.ndarray):
        with np.printoptions(threshold=24, edgeitems=3, linewidth=120):
            with np.errstate(invalid="ignore"):  # bfloat16 NaNs widen without a warning
                body = np.array2string(v.astype(np.float64) if v.dtype.name == "bfloat16" else v, separator=", ")
        text = f"{v.dtype.name}{list(v.shape)} {body}"
    else:
        text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- smaller inputs: a large table cut down to the rows its ids can reach ----------------------

def reachable_rows(ids: Any, n: int) -> np.ndarray:
    """The rows of an ``n``-row table that ``ids`` can reach, under the contract or a
    departure from it that a behaviour model describes: an id in range, wrapped (``id mod n``,
    negatives from the end), clipped (row 0, row ``n - 1``); at most 4096 of them."""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iub":
        with np.errstate(invalid="ignore"):
            arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            arr = np.clip(np.trunc(arr), -2.0 ** 62, 2.0 ** 62)
    flat = [int(x) for x in arr.reshape(-1)[:4096].tolist()]
    rows = {0, n - 1}
    for i in flat:
        rows.add(i % n)
        if 0 <= i < n:
            rows.add(i)
        for bits in (8, 16, 32):  # narrowed ids (a wrap in fewer bits), then wrapped again
            rows.add(((i + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))) % n)
    return np.array(sorted(rows), dtype=np.int64)


def unreached_zeroed(args: dict[str, Any], min_rows: int = COMPACT_MIN) -> dict[str, Any] | None:
    """``args`` with every row of a large ``table`` that no id can reach set to zero (the
    rows they can reach kept bit for bit), or None when that changes nothing. A candidate
    for a smaller minimal example: a lookup that departs the same way on it is shown on it
    (its source is then ``np.zeros(...)`` and the rows that matter)."""
    table, ids = args.get("table"), args.get("ids", args.get("values"))
    if not isinstance(table, np.ndarray) or table.ndim == 0 or table.shape[0] < min_rows or ids is None:
        return None
    keep = reachable_rows(ids, table.shape[0])
    if "padding_idx" in args and isinstance(args["padding_idx"], (int, np.integer)):
        keep = np.union1d(keep, [int(args["padding_idx"]) % table.shape[0]])
    smaller = np.zeros_like(table)
    smaller[keep] = table[keep]
    if smaller.tobytes() == table.tobytes():
        return None
    return {**args, "table": smaller}


def plain_table(table: np.ndarray, ids: Any) -> np.ndarray:
    """A table of ``table``'s dtype and shape with plain values: zero, but for the rows
    ``ids`` can reach, numbered 1, 2, ... (no NaN payload, signed zero or subnormal)."""
    out = np.zeros(table.shape, dtype=np.float64)
    if table.ndim and table.shape[0] and table.size:
        rows = reachable_rows(ids, table.shape[0]) if ids is not None else np.arange(min(table.shape[0], 64))
        out[rows] = ((np.arange(len(rows)) % 13) + 1).reshape((-1,) + (1,) * (table.ndim - 1))
    return out.astype(table.dtype)
