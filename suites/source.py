"""Python source for the inputs of a check: the `example` of a record and the
inputs of a reproduction snippet. Arrays are written as literals when the literal
rebuilds the same bytes, and as their bytes in hex when it cannot (NaN payloads)."""
from __future__ import annotations

import re
from typing import Any

import numpy as np

_DTYPE_SOURCE = {"bfloat16": "ml_dtypes.bfloat16", "bool": "np.bool_"}


def dtype_source(dtype: np.dtype) -> str:
    return _DTYPE_SOURCE.get(dtype.name, f"np.{dtype.name}")


def array_source(a: np.ndarray) -> str:
    dt = dtype_source(a.dtype)
    if a.size == 0:
        return f"np.empty({a.shape!r}, dtype={dt})"
    # NumPy names for the non-finite floats: a snippet defines np, not nan or inf
    body = re.sub(r"\b(nan|inf)\b", r"np.\1", repr(_literal(a)))
    literal = f"np.array({body}, dtype={dt})"
    if _rebuilds(literal, a):
        return literal
    return f"np.frombuffer(bytes.fromhex({a.tobytes().hex()!r}), dtype={dt}).reshape({a.shape!r})"


def _literal(a: np.ndarray):
    if a.dtype.kind in "iub":
        return a.tolist()
    with np.errstate(invalid="ignore"):  # bfloat16 NaNs widen without a warning
        return a.astype(np.float64).tolist()


def _rebuilds(literal: str, a: np.ndarray) -> bool:
    import ml_dtypes  # noqa: F401  (names used by the literal)

    try:
        b = eval(literal, {"np": np, "ml_dtypes": ml_dtypes})  # the names a snippet defines
    except Exception:
        return False
    return b.shape == a.shape and b.dtype == a.dtype and b.tobytes() == a.tobytes()


def value_source(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return array_source(v)
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, np.ndarray) for x in v):
        inner = ",\n    ".join(array_source(x) for x in v)
        return f"[\n    {inner},\n]"
    return repr(v)


def args_source(args: dict[str, Any]) -> dict[str, str]:
    return {k: value_source(v) for k, v in args.items()}


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
