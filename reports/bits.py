"""Bits where values print alike: the contract's answer and what came back, element by
element as bit patterns, for a check whose expected and actual values print the same
(a NaN payload, a signed zero, a subnormal flushed: ``nan`` and ``nan``).

The actual bits are the record's ``observed`` (``hex``, up to 64 KiB); the expected ones
are the oracle's answer on the record's example (the suite's own source, executed here
as ``reports.compare`` does), the contract's (no behaviour model). Used by the page's
panel and by ``python -m reports compare``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

MAX_ROWS = 24  # elements shown: the differing ones first, then the rest, up to this many
MAX_EXAMPLE = 400_000  # characters: a larger example is not executed for its bits


def hex_words(dtype: str, hex_text: str | None) -> list[str] | None:
    """A hex dump as one ``0x...`` word per element (little-endian bytes, as NumPy writes)."""
    if not hex_text:
        return None
    size = _itemsize(dtype)
    if size is None:
        return None
    raw = bytes.fromhex(hex_text)
    return [f"0x{int.from_bytes(raw[i:i + size], 'little'):0{2 * size}x}" for i in range(0, len(raw), size)]


def array_words(a: np.ndarray) -> list[str]:
    a = np.ascontiguousarray(a)
    return hex_words(a.dtype.name, a.tobytes().hex()) or []


def _itemsize(dtype: str) -> int | None:
    try:
        if dtype == "bfloat16":
            return 2
        return np.dtype(dtype).itemsize
    except TypeError:
        return None


def values(dtype: str, words: list[str]) -> list[str]:
    """Each bit pattern's value as NumPy prints it (so the reader sees why they print alike)."""
    size = _itemsize(dtype) or 1
    raw = b"".join(int(w, 16).to_bytes(size, "little") for w in words)
    try:
        if dtype == "bfloat16":
            import ml_dtypes

            arr = np.frombuffer(raw, dtype=ml_dtypes.bfloat16).astype(np.float64)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(dtype))
    except (TypeError, ValueError):
        return ["?"] * len(words)
    with np.errstate(invalid="ignore"):
        return [repr(x.item()) if hasattr(x, "item") else repr(x) for x in arr]


def table(dtype: str, shape: list[int], expected: list[str], actual: list[str], limit: int = MAX_ROWS) -> dict[str, Any]:
    """Rows ``[index, expected word, actual word, value, differs]``: every differing element
    first (up to ``limit``), then the others, so that the difference is always in view."""
    n = min(len(expected), len(actual))
    differ = [k for k in range(n) if expected[k] != actual[k]]
    same = [k for k in range(n) if expected[k] == actual[k]]
    shown = sorted((differ[:limit] + same)[:limit])
    vals = values(dtype, [actual[k] for k in shown])
    rows = [[_index(k, shape), expected[k], actual[k], v, expected[k] != actual[k]] for k, v in zip(shown, vals)]
    return {"dtype": dtype, "shape": list(shape), "rows": rows, "differ": len(differ), "total": n,
            "more": n - len(shown)}


def _index(k: int, shape: list[int]) -> str:
    if not shape:
        return "()"
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(k, tuple(shape))) + "]"


def prints_alike(rec: dict[str, Any]) -> bool:
    """Whether the check's expected and actual values print the same (or its detail
    already speaks of bits): then only bits tell them apart."""
    expected, actual = rec.get("expected") or "", rec.get("actual") or ""
    return bool(expected and expected == actual) or "(bits 0x" in (rec.get("detail") or "")


def record_bits(rec: dict[str, Any], clauses: dict | None = None) -> dict[str, Any] | None:
    """The bits table of a record whose values print alike (None when there is nothing to
    show: no array came back, its bytes were not kept, or the example cannot be rerun)."""
    if not prints_alike(rec):
        return None
    parts = _parts(rec.get("observed") or {})
    if not parts:
        return None
    want = expected_parts(rec, clauses)
    if want is None:
        return None
    for k, (got, exp) in enumerate(zip(parts, want)):
        if "hex" not in got or not got.get("hex") or not isinstance(exp, np.ndarray):
            continue
        actual = hex_words(got["dtype"], got["hex"])
        expected = array_words(exp)
        if actual is None or exp.dtype.name != got["dtype"] or list(exp.shape) != list(got.get("shape", [])):
            continue
        if actual != expected:
            out = table(got["dtype"], got["shape"], expected, actual)
            out["part"] = k
            return out
    return None


def _parts(obs: dict) -> list[dict]:
    if "parts" in obs:
        return obs["parts"]
    return [obs] if "dtype" in obs else []


def expected_parts(rec: dict[str, Any], clauses: dict | None = None) -> list[Any] | None:
    """The contract's answer on the record's example, each part an array (or a failure
    kind); None when it cannot be had here."""
    example = rec.get("example")
    if not example or len(example) > MAX_EXAMPLE:
        return None
    try:
        from embedding_conformance.adapters.contract import Capabilities
        from embedding_conformance.suites.engine import expected_outcome

        if clauses is None:
            from embedding_conformance.suites.catalogue import load_all

            clauses = load_all()
        clause = clauses.get(rec["clause"])
        if clause is None:
            return None
        args = parse_example(example)
        outcome = expected_outcome(clause, args, (), Capabilities())
    except Exception:  # an example of another version of the suite: no bits, never a broken page
        return None
    if outcome.failure:
        return [outcome.failure]
    value = outcome.value
    return [np.asarray(v) if not isinstance(v, str) else v for v in (value if isinstance(value, tuple) else (value,))]


def parse_example(source: str) -> dict[str, Any]:
    """A record's ``example`` (Python source binding the arguments) back into arrays."""
    import ml_dtypes

    ns: dict[str, Any] = {"np": np, "ml_dtypes": ml_dtypes}
    exec(source, ns)  # the suite's own source (suites/source.py), read from its own results
    return {k: v for k, v in ns.items() if k not in ("np", "ml_dtypes", "__builtins__")}


def outcome_words(value: Any) -> tuple[str, list[str]] | None:
    """An outcome's first array as (dtype, words), for compare."""
    vals = value if isinstance(value, tuple) else (value,)
    for v in vals:
        if isinstance(v, np.ndarray):
            return v.dtype.name, array_words(v)
    return None
