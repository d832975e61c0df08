"""The clause catalogue. A clause is data: its id, its one-line statement, the
adapter method it needs, the strategy of its cases, the oracle that says what
must come back (under the contract or a behaviour model), and the comparison
that judges it. Clause families live in ``suites/test_<family>.py`` (the output's
shape and dtype share test_output.py), each clause next to its oracle; importing
them registers them here."""
from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from hypothesis import strategies as st

from embedding_conformance.adapters.contract import Capabilities

from . import assertions

Args = dict[str, Any]
FAMILY_MODULES = (
    "embedding_conformance.suites.test_output",
    "embedding_conformance.suites.test_rows",
    "embedding_conformance.suites.test_ids",
    "embedding_conformance.suites.test_table",
    "embedding_conformance.suites.test_seed_examples",
    "embedding_conformance.suites.test_partition",
    "embedding_conformance.suites.test_training",
    "embedding_conformance.suites.test_bag",
    "embedding_conformance.suites.test_devices",
)


@dataclass(frozen=True)
class Clause:
    id: str
    statement: str
    method: str  # the adapter method the clause calls
    cases: Callable[[Capabilities, tuple], st.SearchStrategy[Args]]  # (caps, signature pool)
    oracle: Callable[[Args, Sequence[str], Capabilities], Any]  # what must come back under a model
    compare: Callable[[assertions.Outcome, assertions.Outcome], str | None] = assertions.same_bits
    applicable: Callable[[Capabilities, Any], str | None] = lambda caps, adapter: None
    tolerance: str | None = None  # why a tolerance, where arithmetic happens
    # models tried, in order, to say which one an unexpected outcome looks like
    suspects: tuple[tuple[str, ...], ...] = ()
    order: int = field(default=0, compare=False)
    module: str = ""  # the suite module that defines it
    file: str = ""  # and its file (a module may be imported under two names)

    @property
    def family(self) -> str:
        return self.id.split(".")[0]

    def not_applicable(self, methods: Sequence[str], caps: Capabilities, adapter: Any = None) -> str | None:
        """Why this clause cannot be checked on an adapter offering ``methods`` with
        ``caps`` (None: it can). The engine asks it of a built adapter; declarations are
        held to it before a run, from what each adapter is known to offer."""
        if self.method not in methods:
            return f"the adapter has no {self.method}()"
        return self.applicable(caps, adapter)


CLAUSES: dict[str, Clause] = {}


def _file(obj: Any) -> str:
    return os.path.realpath(inspect.getsourcefile(obj) or "")


def clause(id: str, statement: str, **kw: Any) -> Callable[[Callable], Callable]:
    """Register a clause; the decorated function is its case strategy factory. A family
    module that pytest collects from a checkout runs under a second name besides its
    package's (suites.test_ids and embedding_conformance.suites.test_ids): the same
    clause from the same file is registered once."""

    def register(cases: Callable) -> Callable:
        known = CLAUSES.get(id)
        if known is not None:
            if known.file == _file(cases):
                return cases
            raise ValueError(f"clause {id} is defined twice ({known.file} and {_file(cases)})")
        CLAUSES[id] = Clause(id=id, statement=statement, cases=cases, order=len(CLAUSES), module=cases.__module__,
                             file=_file(cases), **kw)
        return cases

    return register


def load_all() -> dict[str, Clause]:
    for name in FAMILY_MODULES:
        importlib.import_module(name)
    return CLAUSES


def family_clauses(module: Any) -> list[Clause]:
    """The clauses a family module defines (the module object pytest collected, whatever
    name it was imported under)."""
    load_all()
    path = os.path.realpath(module.__file__)
    return [c for c in CLAUSES.values() if c.file == path]
