"""Clause family `table`: edge tables."""
import numpy as np
from hypothesis import strategies as st

from embedding_conformance.adapters.spec import oracle
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.lookup_clauses import LOOKUP
from embedding_conformance.suites.signatures import covering_half, project
from embedding_conformance.suites.strategies import choice, draw_table, draw_valid_ids, lookup_args, raw


def _empty_signatures(caps, pool):
    """V == 0 where the adapter can build it, rows of size 0 where it can, and where
    it can do both, both at once too. The pool's empty tables stay empty tables with
    their ids (an empty table with ids of shape (2, 0)); each other signature takes
    the kind used least so far, one its table dtype has not had on a tie (a float64
    table that only ever fails would hide what a backend does to float64 rows)."""
    kinds: dict[str, list] = {"table": [], "rows": [], "both": []}
    given = set()
    for sig in pool:
        rows_ok = caps.empty_rows and bool(sig.row)  # a scalar row cannot have size 0
        allowed = [kind for kind, ok in (("rows", rows_ok), ("both", caps.min_rows == 0 and rows_ok),
                                         ("table", caps.min_rows == 0)) if ok]
        if not allowed:
            continue
        if sig.v == 0 and "table" in allowed:
            kind = "table"
        else:
            kind = min(allowed, key=lambda kd: (len(kinds[kd]), (sig.table_dtype, kd) in given))
        given.add((sig.table_dtype, kind))
        kinds[kind].append(sig)
    kw = dict(id_dtypes=caps.id_dtypes, table_dtypes=caps.table_dtypes, v_min=max(1, caps.min_rows), v_max=5)
    # both at once: with ids, where a kernel that checks ids inside its loop over row
    # elements never checks them (empty ids look the same whichever table is empty)
    ids = {"table": "valid", "rows": "valid", "both": "nonempty"}
    return tuple(s for kind, sigs in kinds.items() if sigs
                 for s in project(sigs, empty=kind, ids=ids[kind], **kw))


@st.composite
def _empty_cases(draw, sigs):
    sig = draw(choice(sigs), label="signature")
    table = draw_table(draw, sig.table_dtype, sig.table_shape)
    if sig.v == 0:
        # no id is valid in an empty table: empty ids give an empty result, any id is out of range
        n = int(np.prod(sig.ids_shape, dtype=np.int64))
        codes = np.frombuffer(draw(raw(n), label="ids"), dtype=np.uint8) if n else np.zeros(0, np.uint8)
        ids = (codes % 4).astype(sig.ids_dtype).reshape(sig.ids_shape)
    else:
        ids = draw_valid_ids(draw, sig.ids_dtype, sig.ids_shape, sig.v)
    return {"table": table, "ids": ids}


@clause(
    "table.empty",
    "an empty table (V == 0) returns an empty result for empty ids and out_of_range for any id; rows of size 0 look up as empty rows",
    applicable=lambda caps, adapter: None if caps.min_rows == 0 or caps.empty_rows else
    "the API cannot build a table with no rows or with rows of size 0 (see its capabilities)",
    **LOOKUP,
)
def empty_table_cases(caps, pool):
    # half the pool: empty tables are signatures no other clause draws (each one a
    # compile), and eight signatures cover their three kinds
    return _empty_cases(_empty_signatures(caps, covering_half(pool)))


# --- table.load -------------------------------------------------------------------------------

def _load_oracle(args, model, caps):
    # a model step written "step@path" holds for tables loaded through that path only
    path = args["path"]
    steps = [m.partition("@")[0] for m in model if m.partition("@")[2] in ("", path)]
    return oracle.lookup(args["table"], args["ids"], steps)


@st.composite
def _loaded(draw, lookups, paths):
    args = draw(lookups)
    args["path"] = draw(choice(paths), label="load path")
    return args


@clause(
    "table.load",
    "a table set through each of the API's documented ways of loading weights (set_weights, weights=, assign, "
    "from_pretrained, _weight=, load_state_dict, nnx attribute assignment, ...) comes back bit for bit from a lookup",
    method="lookup_loaded", oracle=_load_oracle, suspects=LOOKUP["suspects"],
    applicable=lambda caps, adapter: None if caps.load_paths else "the adapter declares no load_paths",
)
def load_cases(caps, pool):
    # the clause is about the table's bits: ids of the dtypes every API takes (a variable's
    # read, ResourceGather, takes int32 and int64 only)
    int32_64 = tuple(d for d in caps.id_dtypes if d in ("int32", "int64")) or None
    return _loaded(lookup_args(caps, pool, v_min=1, id_dtypes=int32_64), tuple(caps.load_paths))


def test_clause(check):
    check.run()
