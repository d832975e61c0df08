"""Outcomes of a call and the comparisons that judge them.

Each comparison returns None when the actual outcome satisfies the expected one,
or a sentence saying what differs, precisely enough to act on (the first
differing element, with both bit patterns)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from embedding_conformance.adapters.contract import LookupFailure
from embedding_conformance.adapters.spec.oracle import AnyNaN
from embedding_conformance.adapters.spec.training import Bounded

from .source import short


@dataclass
class Outcome:
    value: Any = None  # what came back (an array, or a tuple of arrays)
    failure: str | None = None  # the LookupFailure kind raised
    message: str = ""
    crash: str | None = None  # an exception the adapter should not raise

    def describe(self) -> str:
        if self.crash:
            return self.crash
        if self.failure:
            return f"{self.failure} ({self.message})" if self.message else self.failure
        if isinstance(self.value, tuple):
            return "(" + ", ".join(_describe_value(v) for v in self.value) + ")"
        return _describe_value(self.value)


def _describe_value(v: Any) -> str:
    if isinstance(v, LookupFailure):
        return f"{v.kind} ({v})"
    return short(v)


def invoke(fn: Callable[..., Any], **kwargs: Any) -> Outcome:
    """Call an adapter method, turning what it raises into an Outcome."""
    try:
        value = fn(**kwargs)
    except LookupFailure as exc:
        return Outcome(failure=exc.kind, message=str(exc)[:300])
    except Exception as exc:  # anything else counts against the adapter
        return Outcome(crash=f"the adapter raised {type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:300]}")
    for v in value if isinstance(value, tuple) else (value,):
        if not isinstance(v, (np.ndarray, LookupFailure)):
            return Outcome(crash=f"the adapter returned {type(v).__module__}.{type(v).__name__}, not a numpy.ndarray")
    return Outcome(value=value)


def _failures_first(expected: Outcome, actual: Outcome) -> str | None | bool:
    """Shared prologue: compares errors; returns True when both hold values."""
    if actual.crash:
        want = expected.failure or "rows"
        return f"expected {want}, but {actual.crash}"
    if expected.failure:
        if actual.failure == expected.failure:
            return None
        if actual.failure:
            return f"expected {expected.failure} ({expected.message}), got {actual.failure} ({actual.message})"
        return f"expected {expected.failure} ({expected.message}), got {actual.describe()}"
    if actual.failure:
        return f"expected {_describe_value(expected.value)}, got {actual.failure} ({actual.message})"
    return True


def _values(o: Outcome) -> tuple:
    return o.value if isinstance(o.value, tuple) else (o.value,)


def _each(expected: Outcome, actual: Outcome, one: Callable[[Any, Any], str | None]) -> str | None:
    head = _failures_first(expected, actual)
    if head is not True:
        return head
    ev, av = _values(expected), _values(actual)
    if len(ev) != len(av):
        return f"expected {len(ev)} results, got {len(av)}"
    for i, (e, a) in enumerate(zip(ev, av)):
        if isinstance(e, LookupFailure) or isinstance(a, LookupFailure):
            ek = getattr(e, "kind", None)
            if ek != getattr(a, "kind", None):
                return f"result {i}: expected {_describe_value(e)}, got {_describe_value(a)}"
            continue
        problem = one(e, a)
        if problem:
            return problem if len(ev) == 1 else f"result {i}: {problem}"
    return None


def _shape(e: np.ndarray, a: np.ndarray) -> str | None:
    if e.shape != a.shape:
        return f"expected shape {e.shape}, got shape {a.shape}"
    return None


def _dtype(e: np.ndarray, a: np.ndarray) -> str | None:
    if e.dtype != a.dtype:
        return f"expected dtype {e.dtype.name}, got dtype {a.dtype.name}"
    return None


def _bits(e: np.ndarray, a: np.ndarray) -> str | None:
    problem = _shape(e, a) or _dtype(e, a)
    if problem or e.tobytes() == a.tobytes():
        return problem
    if isinstance(e, AnyNaN):  # a model of arithmetic: NaN where NaN, any NaN bits
        return _bits_any_nan(e, a)
    if isinstance(e, Bounded):  # arithmetic with a stated tolerance
        return _bounded(e, a)
    as_bits = np.dtype(f"u{e.dtype.itemsize}")
    eb, ab = e.reshape(-1).view(as_bits), a.reshape(-1).view(as_bits)
    diff = np.flatnonzero(eb != ab)
    where = tuple(int(i) for i in np.unravel_index(diff[0], e.shape))
    k = diff[0]
    return (f"{len(diff)} of {e.size} elements differ; first at {list(where)}: expected "
            f"{_scalar(e.reshape(-1)[k])} (bits 0x{int(eb[k]):0{2 * e.dtype.itemsize}x}), got "
            f"{_scalar(a.reshape(-1)[k])} (bits 0x{int(ab[k]):0{2 * e.dtype.itemsize}x})")


def _bits_any_nan(e: np.ndarray, a: np.ndarray) -> str | None:
    """A model of arithmetic (a one-hot product): NaN where NaN with any bits, and a
    zero of either sign where a zero (the sign of a sum of zero products is the
    kernel's choice of accumulator); every other element bit for bit."""
    e64, a64 = _f64(e), _f64(a)
    moved = np.isnan(e64) != np.isnan(a64)
    if moved.any():
        where = [int(i) for i in np.unravel_index(np.flatnonzero(moved)[0], e.shape)]
        return f"NaN placement differs at {where}: expected {e64[tuple(where)]!r}, got {a64[tuple(where)]!r}"
    free = np.isnan(e64) | ((e64 == 0) & (a64 == 0))
    zero = np.zeros((), dtype=e.dtype)  # a typed zero: bfloat16 does not promote with int
    return _bits(np.where(free, zero, np.asarray(e)).astype(e.dtype), np.where(free, zero, a).astype(a.dtype))


def _bounded(e: np.ndarray, a: np.ndarray) -> str | None:
    """NaN where NaN (any bits), infinities equal, finite values within ``e.atol``;
    where the tolerance is 0 the bits must be equal (no arithmetic happened there)."""
    e64, a64 = _f64(e), _f64(a)
    atol = np.broadcast_to(np.asarray(e.atol, dtype=np.float64), e.shape)
    nan_e, nan_a = np.isnan(e64), np.isnan(a64)
    exact = (atol == 0) & ~nan_e
    if getattr(e, "any_zero_sign", False):  # a modelled sum of zeros: its sign is the kernel's
        exact &= e64 != 0
    with np.errstate(invalid="ignore"):  # inf - inf: infinities are checked on their own below
        off = np.abs(a64 - e64)
    checks = [
        ("NaN placement differs", nan_e != nan_a),
        ("infinity differs", np.isinf(e64) & (e64 != a64)),
        ("bits differ where no tolerance applies", exact & (np.asarray(e).view(f"u{e.dtype.itemsize}")
                                                            != a.view(f"u{a.dtype.itemsize}"))),
        ("outside tolerance", np.isfinite(e64) & ~(off <= atol)),
    ]
    for what, bad in checks:
        if bad.any():
            where = tuple(int(i) for i in np.unravel_index(np.flatnonzero(bad)[0], e.shape))
            return (f"{int(bad.sum())} of {e.size} elements: {what}; first at {list(where)}: expected "
                    f"{e64[where]!r} (tolerance {atol[where]:.3g}), got {a64[where]!r}")
    return None


def _same_number(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x64, y64 = _f64(x), _f64(y)
    return (x64 == y64) | (np.isnan(x64) & np.isnan(y64))


def _numbers(e: np.ndarray, a: np.ndarray) -> str | None:
    problem = _shape(e, a) or _dtype(e, a)
    if problem:
        return problem
    e64, a64 = _f64(e), _f64(a)
    bad = ~_same_number(e64, a64)
    if bad.any():
        where = tuple(int(i) for i in np.unravel_index(np.flatnonzero(bad)[0], e.shape))
        return f"{int(bad.sum())} of {e.size} elements differ in value; first at {list(where)}: expected {e64[where]!r}, got {a64[where]!r}"
    return None


def same_values(expected: Outcome, actual: Outcome) -> str | None:
    """Equal as numbers: -0.0 == +0.0 (for clauses about arithmetic equivalence)."""
    return _each(expected, actual, _numbers)


def part(index: int, compare_one=None):
    """Judge only one element of a tuple outcome (a failure is judged as is)."""
    one = compare_one or _bits

    def compare(expected: Outcome, actual: Outcome) -> str | None:
        head = _failures_first(expected, actual)
        if head is not True:
            return head
        if not isinstance(actual.value, tuple) or len(actual.value) <= index:
            return f"expected a tuple with at least {index + 1} results, got {actual.describe()}"
        return _each(Outcome(value=expected.value[index]), Outcome(value=actual.value[index]), one)

    return compare


def _f64(a: Any) -> np.ndarray:
    """As float64, for comparing values: a signalling bfloat16 NaN widens without a warning."""
    with np.errstate(invalid="ignore"):
        return np.asarray(a).astype(np.float64)


def _scalar(x: Any) -> str:
    return repr(float(x)) if np.asarray(x).dtype.kind == "f" or np.asarray(x).dtype.name == "bfloat16" else repr(x)


def close(rtol_of: Callable[[np.ndarray], np.ndarray | float], atol_of: Callable[[np.ndarray], float]):
    """A comparison with a tolerance, for clauses where arithmetic happens. NaN and
    infinities must sit in the same places with the same sign; finite values within
    atol + rtol * |expected| (rtol may be an array, per element)."""

    def compare(e: np.ndarray, a: np.ndarray) -> str | None:
        problem = _shape(e, a) or _dtype(e, a)
        if problem:
            return problem
        e64, a64 = _f64(e), _f64(a)
        nan_e, nan_a = np.isnan(e64), np.isnan(a64)
        if (nan_e != nan_a).any():
            where = tuple(int(i) for i in np.argwhere(nan_e != nan_a)[0])
            return f"NaN placement differs at {list(where)}: expected {e64[where]!r}, got {a64[where]!r}"
        fin = np.isfinite(e64)
        inf_bad = ~fin & ~nan_e & (e64 != a64)
        if inf_bad.any():
            where = tuple(int(i) for i in np.argwhere(inf_bad)[0])
            return f"infinity differs at {list(where)}: expected {e64[where]!r}, got {a64[where]!r}"
        tol = atol_of(e) + np.asarray(rtol_of(e)) * np.abs(np.where(fin, e64, 0))
        err = np.abs(np.where(fin, a64 - e64, 0))
        bad = fin & ~(err <= tol)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            t = np.broadcast_to(tol, e.shape)[where]
            return (f"{int(bad.sum())} of {e.size} elements outside tolerance; first at {list(where)}: "
                    f"expected {e64[where]!r}, got {a64[where]!r}, |diff| {err[where]:.3g} > tol {t:.3g}")
        return None

    return compare


def same_shape(expected: Outcome, actual: Outcome) -> str | None:
    return _each(expected, actual, _shape)


def same_dtype(expected: Outcome, actual: Outcome) -> str | None:
    return _each(expected, actual, _dtype)


def same_bits(expected: Outcome, actual: Outcome) -> str | None:
    """The whole outcome: same failure kind, or same shape, dtype and bytes."""
    return _each(expected, actual, _bits)


def within(compare_one: Callable[[Any, Any], str | None]):
    return lambda expected, actual: _each(expected, actual, compare_one)
