"""The statuses a check ends in, defined once: the engine gives them, the plugin turns
them into pytest outcomes, the reports order, count and colour them (reports/results.py
adds only their symbols and words), and the results schema lists them
(reports/results.schema.json; a test holds the two together)."""
from __future__ import annotations

STATUSES = ("conforms", "diverges", "violates", "stale", "not_applicable", "unavailable", "error")
PASSING = frozenset({"conforms", "diverges"})  # pytest: pass
SKIPPING = frozenset({"not_applicable", "unavailable"})  # pytest: skip
FAILING = frozenset({"violates", "stale", "error"})  # pytest: fail (an acknowledged violation: xfail)
