"""The public plugin contract: what an adapter is, and how it reports failure.

An adapter wraps one public API of one framework. It needs:

- ``name: str`` and ``framework: str`` (the distribution whose version is reported);
- ``lookup(table, ids) -> np.ndarray``; an API that only pools (an embedding bag)
  offers ``lookup_bags`` instead, and its plain-lookup clauses are not_applicable.

Optional methods add capabilities; a missing one makes its clauses
``not_applicable``:

- ``lookup_sharded(shards, ids, strategy) -> np.ndarray``;
- ``grad(table, ids, upstream) -> np.ndarray``: d sum(lookup * upstream) / d table;
- ``lookup_loaded(table, ids, path) -> np.ndarray``: the lookup after setting the
  table's weights through ``path``, one of ``capabilities.load_paths`` (the API's
  documented ways of loading weights: ``set_weights``, ``from_pretrained``, ...);
- ``grad_padded``, ``grad_scaled``, ``lookup_with_state``, ``lookup_mask_zero``: the
  training clauses (suites/test_training.py);
- ``lookup_bags(table, values, offsets, weights, combiner) -> np.ndarray``: a pooled
  lookup (adapters/spec/bags.py states the contract). ``values`` is a 1-D ids array,
  ``offsets`` a 1-D int64 array of length B + 1 in CSR form (bag b holds
  ``values[offsets[b]:offsets[b + 1]]``), ``weights`` None or a 1-D array of the
  table's dtype (one per id), ``combiner`` one of ``COMBINERS``; the result has shape
  (B,) + table.shape[1:] and the table's dtype. Malformed offsets are InvalidOffsets;
- ``grad_bags(table, values, offsets, weights, combiner, upstream) -> np.ndarray``:
  d sum(lookup_bags(...) * upstream) / d table;
- ``lookup_bags_padded(table, values, offsets, weights, combiner, padding_idx)``: the
  pooled lookup with a padding id (torch's padding_idx; negative values count from
  the end), whose entries are left out of every bag.
- ``lookup_on_devices(table, ids, devices) -> np.ndarray``: the lookup with the table
  sharded over ``devices`` (1 to 4) devices or ranks of a distributed engine
  (partition.device_count, suites/test_devices.py).

Optional data:

- ``capabilities: Capabilities`` (declared, OpInfo style; defaults below);
- ``snippet(op, args) -> str``: stand-alone code in the framework's own API that
  reproduces one call (``args`` maps argument names to NumPy expressions);
- ``environment() -> dict[str, int | str]``: facts of the running process that
  change the framework's behaviour (``{"torch.threads": 2}``), recorded with every
  check; a declared divergence's ``when`` is held against them.

Failures are raised as the classes below. Anything else raised by an adapter
counts against it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
STRATEGIES = ("mod", "div")
# How lookup_bags combines a bag's rows (adapters/spec/bags.py)
COMBINERS = ("sum", "mean", "sqrtn", "max")
# The adapter methods clauses call; an adapter offers those it defines (callable).
METHODS = ("lookup", "lookup_sharded", "grad", "grad_padded", "grad_scaled", "lookup_with_state",
           "lookup_mask_zero", "lookup_loaded", "lookup_bags", "grad_bags", "lookup_bags_padded",
           "lookup_on_devices")


class LookupFailure(Exception):
    """Base of every failure an adapter may report. ``kind`` names it in results."""

    kind = "lookup_failure"


class OutOfRange(LookupFailure):
    """An id outside [0, V), negative ids included."""

    kind = "out_of_range"


class InvalidIds(LookupFailure):
    """Ids of a dtype the lookup does not take (floats, bools, ...)."""

    kind = "invalid_ids"


class InvalidTable(LookupFailure):
    """A table the lookup does not take (wrong rank, dtype, ...)."""

    kind = "invalid_table"


class InvalidShards(LookupFailure):
    """A shard list whose sizes, row shapes or dtypes do not fit the strategy."""

    kind = "invalid_shards"


class InvalidOffsets(LookupFailure):
    """Bag offsets that are not CSR over the values: not starting at 0, decreasing,
    or not ending at len(values) (lookup_bags)."""

    kind = "invalid_offsets"


FAILURES = {cls.kind: cls for cls in (LookupFailure, OutOfRange, InvalidIds, InvalidTable, InvalidShards,
                                      InvalidOffsets)}


class Translate:
    """``with Translate(classify):`` re-raises an exception (of the types in ``catch``)
    that ``classify`` maps to a contract failure as that failure; anything else,
    and a failure already of the contract, propagates unchanged."""

    def __init__(self, classify: Callable[[BaseException], "LookupFailure | None"],
                 catch: tuple[type[BaseException], ...] = (Exception,)):
        self._classify, self._catch = classify, catch

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, LookupFailure) or not isinstance(exc, self._catch):
            return False
        failure = self._classify(exc)
        if failure is None:
            return False
        raise failure from exc


@dataclass(frozen=True)
class Capabilities:
    """What an adapter takes, declared as data. Inputs outside it are not generated
    for the adapter (its clauses narrow) or, where a whole clause falls outside it,
    the clause is ``not_applicable`` with ``reason``."""

    # Table dtypes the API documents; rows.exact runs over each of them.
    table_dtypes: tuple[str, ...] = FLOAT_DTYPES
    # Table ranks (1 = scalar rows, 2 = vector rows, ...) the API takes.
    table_ndims: tuple[int, ...] = (1, 2, 3, 4)
    # Integer id dtypes the API takes. Others must fail with InvalidIds.
    id_dtypes: tuple[str, ...] = INT_DTYPES
    # The fewest rows a table may have (an API that cannot be built with fewer).
    min_rows: int = 0
    # Whether rows of size 0 (a zero in the row shape) can be built.
    empty_rows: bool = True
    # Partition strategies lookup_sharded takes (only with lookup_sharded).
    strategies: tuple[str, ...] = STRATEGIES
    # The documented ways of setting a table's weights that ``lookup_loaded(table,
    # ids, path)`` takes (``set_weights``, ``from_pretrained``, ...): table.load.
    load_paths: tuple[str, ...] = ()
    # The combiners lookup_bags (and grad_bags, lookup_bags_padded) takes; the bag
    # clauses of the others are not_applicable.
    combiners: tuple[str, ...] = COMBINERS
    # The combiners that take weights (max never does: the contract's max is unweighted).
    weighted_combiners: tuple[str, ...] = ("sum", "mean", "sqrtn")
    # Bags of one length only (an API taking a (B, L) ids array, no offsets): lookup_bags is
    # given offsets [0, L, 2L, ..., BL] (L = 0 included), and clause bag.offsets does not apply.
    fixed_length_bags: bool = False
    # Distributions whose versions are reported beside ``framework``.
    distributions: tuple[str, ...] = ()
    device: str = "cpu"
    # Why a capability is narrower than the contract (shown in the report).
    notes: tuple[str, ...] = ()

    def narrowed(self, **changes: Any) -> "Capabilities":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@runtime_checkable
class Adapter(Protocol):
    name: str
    framework: str

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray: ...


def capabilities_of(adapter: Any) -> Capabilities:
    caps = getattr(adapter, "capabilities", None)
    return caps if isinstance(caps, Capabilities) else Capabilities()


def methods_of(adapter: Any) -> tuple[str, ...]:
    """The clause methods (``METHODS``) an adapter, or an adapter class, offers."""
    return tuple(m for m in METHODS if callable(getattr(adapter, m, None)))


@dataclass(frozen=True)
class Description:
    """What a built-in adapter offers, known without importing its framework: the
    methods it defines and its capabilities. Each built-in adapter module exports
    ``describe(name) -> Description``; the adapter object it builds must match it
    (checked when a worker builds it), so the two cannot drift."""

    methods: tuple[str, ...]
    capabilities: Capabilities

    def mismatch(self, adapter: Any) -> str | None:
        """Why ``adapter`` does not match this description (notes aside), or None."""
        have = methods_of(adapter)
        if set(have) != set(self.methods):
            return f"it offers {', '.join(have) or 'nothing'}, its description {', '.join(self.methods)}"
        caps = capabilities_of(adapter)
        for f in fields(Capabilities):
            if f.name != "notes" and getattr(caps, f.name) != getattr(self.capabilities, f.name):
                return (f"its capability {f.name} is {getattr(caps, f.name)!r}, its description "
                        f"{getattr(self.capabilities, f.name)!r}")
        return None


def describer(classes: dict[str, type]) -> Callable[[str], Description]:
    """``describe`` for a module whose built-ins are classes carrying their capabilities."""
    def describe(name: str) -> Description:
        cls = classes[name]
        return Description(methods_of(cls), cls.capabilities)
    return describe


@dataclass(frozen=True)
class Call:
    """What an adapter module's ``classify`` may read of the call that raised: the ids it
    was handed (their dtype names an InvalidIds) and whether it was a sharded lookup."""

    ids: Any = None
    sharded: bool = False

    @property
    def ids_dtype(self) -> np.dtype | None:
        return self.ids.dtype if isinstance(self.ids, np.ndarray) else None


# The adapter module protocol. A built-in adapter's module (registry.BUILTINS names it)
# exports, besides the zero-argument factories the registry names:
#   describe(name: str) -> Description        what the adapter offers, without importing its framework
#   classify(exc: BaseException, call: Call)  the contract failure (a LookupFailure) an exception
#       -> LookupFailure | None               of that framework stands for, or None; a snippet's
#                                             replay (reports/snippet_child.py) classifies with it
MODULE_PROTOCOL = {"describe": ("name",), "classify": ("exc", "call")}


def check_module(module: Any, factories: tuple[str, ...] = ()) -> None:
    """Raise TypeError naming every way ``module`` departs from the adapter module protocol
    (MODULE_PROTOCOL, each function with exactly those parameters) or lacks a factory."""
    import inspect

    problems = []
    for fn_name, params in MODULE_PROTOCOL.items():
        fn = getattr(module, fn_name, None)
        if not callable(fn):
            problems.append(f"it has no {fn_name}{params}")
            continue
        have = tuple(inspect.signature(fn).parameters)
        if have != params:
            problems.append(f"its {fn_name} takes ({', '.join(have)}), the protocol ({', '.join(params)})")
    for attr in factories:
        if not callable(getattr(module, attr, None)):
            problems.append(f"it has no factory {attr}")
    if problems:
        raise TypeError(f"adapter module {module.__name__}: " + "; ".join(problems)
                        + " (adapters/contract.py, MODULE_PROTOCOL)")


def environment_of(adapter: Any) -> dict[str, int | str]:
    """The adapter's runtime facts (``environment()``), or {} if it reports none."""
    report = getattr(adapter, "environment", None)
    facts = report() if callable(report) else {}
    return {str(k): v for k, v in dict(facts).items()}


def check_adapter(adapter: Any) -> None:
    """Raise TypeError naming what an object lacks to be an adapter."""
    missing = [a for a in ("name", "framework") if not isinstance(getattr(adapter, a, None), str)]
    if not callable(getattr(adapter, "lookup", None)) and not callable(getattr(adapter, "lookup_bags", None)):
        missing.append("lookup() (or, for a pooled lookup, lookup_bags())")
    if missing:
        raise TypeError(f"{adapter!r} is not an adapter: it lacks {', '.join(missing)}")
