"""Behaviour model steps as data: every step a declaration may name, in one
canonical order, with the family of adapter methods it changes, the group of
steps it excludes, and its pins (committed examples).

A declared behaviour is a list of steps; the behaviours declared for one adapter
compose into one model per check: the union of their steps in ``ORDER`` (so no
declaration's position in a file can change what a model means). Two steps of one
``group`` say different things about the same inputs (``fill_nan`` and ``clip`` both
say what an id past the table gives): composing them is refused.

A *pin* is a committed example of a step: an input that makes the step act, held
against the real framework in every profile for every adapter whose model holds
the step, and for each float dtype the adapter takes (suites/pins.py builds the
tables: NaN payloads of both signs, signalling NaNs, -0.0, subnormals, the largest
finite value, infinities, a full mantissa). A pin names the clause it runs in.

The steps' code lives with the oracle that runs them (adapters/spec/oracle.py,
partition.py, training.py, bags.py); a framework's own steps register themselves
here from its folder (``register``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

# which adapter methods a family of steps changes (a lookup underlies every method)
FAMILIES: dict[str, tuple[str, ...] | None] = {
    "lookup": None,  # every method
    "devices": None,
    "sharded": ("lookup_sharded",),
    "training": ("grad", "grad_padded", "grad_scaled", "lookup_with_state", "lookup_mask_zero"),
    "bags": ("lookup_bags", "grad_bags", "lookup_bags_padded"),
}


@dataclass(frozen=True)
class Pin:
    """A committed example of a step, in the clause ``clause``. Plain lookups: a table
    of ``v`` rows (the special values, ``row`` its row shape, None: what the adapter
    takes) and ``ids`` (nested tuples; ``scalar`` for 0-d ids) in ``ids_dtype`` (None:
    int64 or int32, whichever the adapter takes, signed where an id is negative).
    Bags: ``values`` and ``offsets``, under every combiner the adapter takes (``combiners``
    narrows them), ``weights`` or None. Sharded: shards of ``shards`` rows, ``strategy``.
    ``extra``: other arguments of the clause's method (``max_norm``, ``padding_idx``...).
    ``table``: "specials" (the special values) or "finite" (finite values only)."""

    clause: str
    ids: Any = None
    v: int = 3
    ids_dtype: str | None = None
    row: tuple[int, ...] | None = None
    scalar: bool = False
    values: tuple[int, ...] | None = None
    offsets: tuple[int, ...] | None = None
    weights: tuple[float, ...] | None = None
    combiners: tuple[str, ...] | None = None
    shards: tuple[int, ...] | None = None
    strategy: str | None = None
    table: str = "specials"
    table_dtypes: tuple[str, ...] | None = None  # the float dtypes it touches (None: every one)
    extra: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Step:
    name: str
    family: str
    group: str | None = None
    pins: tuple[Pin, ...] = field(default=(), compare=False)
    # a refusal that comes before the input is validated (the runtime refuses the model itself)
    first: bool = False

    def touches(self, method: str) -> bool:
        methods = FAMILIES[self.family]
        return methods is None or method in methods


def _p(clause: str, **kw: Any) -> Pin:
    return Pin(clause, **kw)


# Ids that make each kind of step act, on a 3-row table unless said otherwise.
_OUT = (_p("ids.out_of_range", ids=(3, 0, 1003)), _p("ids.negative", ids=(-1, 0, -4)))
_NEG = (_p("ids.negative", ids=(-1, 0, -3, -4)),)
_ROWS = (_p("rows.exact", ids=(2, 0, 1, 1)), _p("rows.exact", v=1, ids=(0, 0, 0)),
         _p("rows.exact", v=1, ids=(0,)), _p("rows.exact", v=2, ids=(1, 0), row=(1,)))

# The canonical order. Within each kind the order is what the oracle applies: transforms
# in turn (a float id is rounded to float32 before it is cast to int32), resolvers first
# come first served (an id in [-V, -1] wraps before a fill claims what is left), finishers
# in turn.
_STEPS: list[Step] = [
    # devices: how many devices a distributed engine shards over, and what it refuses
    *(Step(f"over_{n}_device{'s' if n > 1 else ''}", "devices", group="devices") for n in (1, 2, 3, 4)),
    Step("uneven_rows_refused", "devices",
         pins=(_p("rows.exact", v=3, ids=(0,)),)),
    Step("uneven_columns_refused", "devices",
         pins=(_p("rows.exact", v=4, row=(3,), ids=(0,)),)),
    # sharded lookups: how a list of shards is routed
    Step("route_by_total", "sharded", group="route",
         pins=(_p("partition.noncanonical", shards=(1, 2), ids=(0, 1, 2), strategy="div"),)),
    Step("tf_partition_route", "sharded", group="route",
         pins=(_p("partition.noncanonical", shards=(0, 1), ids=(0,), strategy="div"),
               _p("partition.noncanonical", shards=(1, 2), ids=(0, 1, 2), strategy="mod"))),
    Step("concat_shards", "sharded", group="route",
         pins=(_p("partition.noncanonical", shards=(1, 2), ids=(0, 1, 2), strategy="mod"),)),
    Step("xla_division_by_zero", "sharded",
         pins=(_p("partition.more_shards_than_rows", shards=(1, 0, 0), ids=(0,), strategy="div"),)),
    # transforms: the table or the ids before they are resolved
    Step("ids_rank_one", "lookup",
         pins=(_p("shape.output", ids=((0, 1), (2, 0))), _p("shape.output", ids=1, scalar=True))),
    Step("bf16_nan_as_ffff", "lookup", pins=(_p("table.load", ids=(0, 1, 2), table_dtypes=("bfloat16",)),)),
    Step("uint64_ids_refused", "lookup", group="uint64",
         pins=(_p("ids.dtypes", ids=(0, 2), ids_dtype="uint64"),)),
    Step("uint64_ids_refused_by_value", "lookup", group="uint64",
         pins=(_p("ids.dtypes", ids=(0, 2), ids_dtype="uint64"), _p("ids.dtypes", ids=1, scalar=True, ids_dtype="uint64"))),
    Step("uint64_as_int64", "lookup", group="uint64",
         pins=(_p("ids.dtypes", ids=(2**64 - 1, 0), ids_dtype="uint64"),)),
    Step("bool_as_int", "lookup", pins=(_p("ids.float", ids=(True, False), ids_dtype="bool"),)),
    Step("truncate_float_ids", "lookup", group="float_ids",
         pins=(_p("ids.float", ids=(0.9999999403953552, 1.5, -0.5), ids_dtype="float32"),)),
    Step("x64_off", "lookup",
         pins=(_p("ids.int64_wide", ids=(2**32 + 1, 0), ids_dtype="int64"), _p("rows.exact", ids=(2, 0),
               table_dtypes=("float64",)))),
    Step("float_ids_via_float32", "lookup",
         pins=(_p("ids.float", ids=(0.9999999999999999, 1.0000000000000002, 2.5), ids_dtype="float64"),)),
    Step("ids_via_table_dtype", "lookup",
         pins=(_p("ids.dtypes", v=2**11 + 2, row=(1,), ids=(2**11 + 1, 0), ids_dtype="int32", table_dtypes=("float16",)),)),
    Step("narrow_to_int32", "lookup",
         pins=(_p("ids.int64_wide", ids=(2**32 + 1, 0), ids_dtype="int64"),
               _p("ids.dtypes", ids=(2**32 - 1, 0), ids_dtype="uint32"))),
    Step("cast_ids_to_int32", "lookup", group="id_cast",
         pins=(_p("ids.dtypes", ids=(2**32 - 1, 0), ids_dtype="uint32"),
               _p("ids.float", ids=(1.5, 3.0e9, -0.5), ids_dtype="float32"))),
    Step("cast_ids_to_int32_saturating", "lookup", group="id_cast",
         pins=(_p("ids.dtypes", ids=(2**32 - 1, 0), ids_dtype="uint32"),
               _p("ids.float", ids=(1.5, 3.0e9, float("nan")), ids_dtype="float32"))),
    Step("table_rows_fit_ids_dtype", "lookup",
         pins=(_p("ids.dtypes", v=2**15, row=(1,), ids=(0,), ids_dtype="int16"),
               _p("ids.dtypes", v=2**7, row=(1,), ids=(0,), ids_dtype="int8"))),
    # whole lookups computed another way
    Step("one_hot_matmul", "lookup", pins=(_p("onehot.equivalence", ids=((0, 2), (1, 1)), table="finite"),)),
    Step("unchecked_empty_rows", "lookup", pins=(_p("table.empty", v=4, row=(0,), ids=(7, -5)),
                                                 _p("table.empty", v=0, row=(0,), ids=(0, 3)))),
    Step("xla_empty_table_zero_slice", "lookup", pins=(_p("table.empty", v=0, row=(3,), ids=(0,)),)),
    # resolvers: what an id outside [0, V) (or any id) gives
    Step("broadcast_single_row", "lookup", pins=(_p("rows.exact", v=1, ids=(5, 0, -3)),
                                                 _p("rows.exact", v=1, ids=0, scalar=True))),
    Step("wrap_negative", "lookup", group="negative", pins=_NEG),
    Step("wrap_negative_in_id_dtype", "lookup", group="negative",
         pins=(*_NEG, _p("ids.negative", v=2**7 + 1, row=(1,), ids=(-2, -1), ids_dtype="int8"))),
    Step("fill_nan", "lookup", group="beyond", pins=_OUT),
    Step("fill_zero", "lookup", group="beyond", pins=_OUT),
    Step("clip", "lookup", group="beyond", pins=_OUT),
    # finishers: what happens to the bits of a result
    Step("canonicalize_bf16_nan", "lookup", pins=_ROWS),
    Step("empty_table_returns_table", "lookup", pins=(_p("table.empty", v=0, row=(2,), ids=((), ())),)),
    Step("xla_bf16_via_f32", "lookup", pins=_ROWS),
    Step("allreduce_zero_sum_xla", "devices", pins=_ROWS),
    # training
    Step("renorm_torch", "training", group="max_norm",
         pins=(_p("max_norm.output", ids=(0, 2), table="finite", extra=(("max_norm", 0.5),)),)),
    Step("clip_by_norm_tf", "training", group="max_norm",
         pins=(_p("max_norm.output", ids=(0, 2), extra=(("max_norm", 0.5),)),)),
    Step("renorm_in_place", "training",
         pins=(_p("max_norm.side_effect", ids=(0, 2), table="finite", extra=(("max_norm", 0.5),)),)),
    Step("renorm_before_check", "training",
         pins=(_p("lookup.atomic", ids=(0, -1), table="finite", extra=(("max_norm", 0.5),)),)),
    Step("drop_clipped_grad", "training", pins=(_p("grad.out_of_range", ids=(1, 4, -1), table="finite"),)),
    Step("scalar_ids_fail_backward", "training",
         pins=(_p("padding.row", ids=1, scalar=True, table="finite", extra=(("padding_idx", 0),)),)),
    Step("one_element_scatter_fails", "training",
         pins=(_p("grad.scatter_add", v=1, row=(1,), ids=(0, 0), table="finite"),)),
    # bags
    Step("drop_negative_ids", "bags", pins=(_p("bag.negative", values=(0, -1, 2), offsets=(0, 2, 3)),)),
    Step("drop_nonpositive_weights", "bags",
         pins=(_p("bag.weights", values=(0, 1, 2), offsets=(0, 2, 3), weights=(0.0, 2.0, -1.0), table="finite"),)),
    Step("last_offset_unread", "bags", pins=(_p("bag.offsets", values=(0, 1), offsets=(0, 1, 1)),)),
    Step("values_past_last_offset_unread", "bags", pins=(_p("bag.offsets", values=(0, 1, 2), offsets=(0, 1, 2)),)),
    Step("empty_bag_reads_row_0", "bags", group="empty_bag",
         pins=(_p("bag.empty", values=(1,), offsets=(0, 0, 1, 1)), _p("bag.empty", v=0, values=(), offsets=(0, 0)))),
    Step("empty_bag_default_row", "bags", group="empty_bag",
         pins=(_p("bag.empty", values=(1,), offsets=(0, 0, 1, 1)), _p("bag.empty", v=0, values=(), offsets=(0, 0)))),
    Step("flush_subnormals", "bags", pins=(_p("bag.single", values=(0, 1, 2), offsets=(0, 1, 2, 3)),)),
    Step("float32_output", "bags", pins=(_p("bag.single", values=(0, 1, 2), offsets=(0, 1, 2, 3)),)),
    Step("bfloat16_held_as_float16", "bags",
         pins=(_p("bag.single", values=(0, 1, 2), offsets=(0, 1, 2, 3), table_dtypes=("bfloat16",)),)),
    Step("sum_from_zero", "bags", pins=(_p("bag.single", values=(0, 1, 2), offsets=(0, 1, 2, 3)),)),
    Step("no_bags_fail", "bags", pins=(_p("bag.empty", values=(), offsets=(0,)),)),
    Step("no_ids_fail", "bags", pins=(_p("bag.empty", values=(), offsets=(0, 0, 0)),)),
    Step("drop_trailing_empty_bags", "bags", pins=(_p("bag.empty", values=(1,), offsets=(0, 1, 1, 1)),)),
]

STEPS: dict[str, Step] = {}
ORDER: list[str] = []


def register(step: Step, *, before: str | None = None) -> Step:
    """Add a step (a framework's own, from its folder); ``before``: where it goes in the
    canonical order (default: last)."""
    if step.family not in FAMILIES:
        raise ValueError(f"step {step.name}: unknown family {step.family!r}; families: {', '.join(FAMILIES)}")
    known = STEPS.get(step.name)
    if known is not None:
        if known == step:
            return known
        raise ValueError(f"step {step.name} is registered twice, differently")
    STEPS[step.name] = step
    ORDER.insert(ORDER.index(before) if before else len(ORDER), step.name)
    return step


for _s in _STEPS:
    register(_s)


def base(name: str) -> str:
    """A step's name without its load-path scope (``bf16_nan_as_ffff@set_weights``)."""
    return name.partition("@")[0]


def canonical(steps: Iterable[str]) -> tuple[str, ...]:
    """``steps`` without repeats, in the canonical order (KeyError on an unknown one)."""
    unique = list(dict.fromkeys(steps))
    return tuple(sorted(unique, key=lambda s: (ORDER.index(base(s)), s)))


def conflict(steps: Iterable[str]) -> tuple[str, str] | None:
    """Two steps of one group (they say different things of the same inputs), or None."""
    seen: dict[str, str] = {}
    for s in steps:
        g = STEPS[base(s)].group
        if g is None:
            continue
        if g in seen and seen[g] != base(s):
            return seen[g], s
        seen.setdefault(g, base(s))
    return None


def touches(steps: Iterable[str], method: str) -> bool:
    """Whether any of ``steps`` changes what ``method`` returns."""
    return any(STEPS[base(s)].touches(method) for s in steps)
