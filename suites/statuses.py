"""The statuses a check ends in, defined once, each with its symbol, label, meaning and
what pytest makes of it. The engine gives them, the plugin turns them into pytest
outcomes, the reports order, count, colour and explain them, the results schema's enum
and the README's table are checked against this list by the project's tests."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Status:
    name: str
    symbol: str
    label: str
    meaning: str
    pytest: str  # "pass", "skip" or "fail" (an acknowledged violation: xfail)


ALL: tuple[Status, ...] = (
    Status("conforms", "\u2713", "conforms", "no input departing from the contract was found", "pass"),
    Status("diverges", "\u2248", "diverges",
           "it departs, exactly as its declared behaviours (the composed model) say", "pass"),
    Status("violates", "\u2717", "violates",
           "it departs, and follows no declared behaviour; acknowledged when a [[violation]] declaration writes "
           "that failure up, on those inputs", "fail"),
    Status("stale", "\u21bb", "stale",
           "a declaration's witness no longer departs from the contract (the framework fixed it, or changed it "
           "again): update the declaration", "fail"),
    Status("not_applicable", "\u2013", "not applicable", "the adapter lacks the capability this clause needs", "skip"),
    Status("unavailable", "\u2205", "unavailable", "the framework is not installed; the reason says what to install",
           "skip"),
    Status("error", "!", "error", "the suite itself broke, or the framework's worker hung", "fail"),
)
BY_NAME = {s.name: s for s in ALL}
STATUSES = tuple(s.name for s in ALL)
PASSING = frozenset(s.name for s in ALL if s.pytest == "pass")  # pytest: pass
SKIPPING = frozenset(s.name for s in ALL if s.pytest == "skip")  # pytest: skip
FAILING = frozenset(s.name for s in ALL if s.pytest == "fail")  # pytest: fail (an acknowledged violation: xfail)


def acknowledged(rec: dict[str, Any]) -> bool:
    """A violation written up as known (an acknowledged violation): red, not a gate failure."""
    return rec["status"] == "violates" and bool(rec.get("acknowledged"))


def gate_failing(rec: dict[str, Any]) -> bool:
    """Whether a record fails the suite's gate: violates (unless acknowledged), stale, error."""
    return rec["status"] in FAILING and not acknowledged(rec)
