"""pytest-xdist scheduling: every check of one framework group on one xdist worker.

A group (registry.Builtin.group: one per framework, one per Keras backend) is a
worker process that imports its framework once and keeps its compiled functions;
split over two xdist workers, each would import the framework and compile every
signature again. pytest-xdist's own ``--dist loadgroup`` reads groups from a
suffix it writes into node ids, which pytest 9.2's structured node ids ignore
(pytest-dev/pytest-xdist#1386: the tests are then spread as if unmarked), so the
group is read here from the check's own id instead. Groups go out largest first
(xdist's scope scheduling), each whole to one worker.
"""
from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

from embedding_conformance.adapters import registry

LOCAL = "local"  # the numpy oracle and third-party adapters: the pytest process itself


def group_of(nodeid: str) -> str | None:
    """The framework group of a check's node id (``...::test_clause[<clause>|<adapter>]``),
    or None for any other test."""
    start = nodeid.find("[")
    if "::test_clause[" not in nodeid or not nodeid.endswith("]"):
        return None
    clause, sep, adapter = nodeid[start + 1:-1].partition("|")
    if not sep:
        return None
    builtin = registry.BY_NAME.get(adapter)
    return (builtin.group if builtin is not None else None) or LOCAL


class FrameworkScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with a check's framework group as its scope."""

    def _split_scope(self, nodeid: str) -> str:
        group = group_of(nodeid)
        return f"group:{group}" if group is not None else super()._split_scope(nodeid)
