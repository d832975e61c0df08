"""What the lookup clauses share: the oracle call and the models suspected when
an adapter departs from the contract."""
from __future__ import annotations

from embedding_conformance.adapters.spec import oracle

SUSPECTS = (
    ("wrap_negative",), ("clip",), ("fill_zero",), ("fill_nan",),
    ("wrap_negative", "fill_nan"), ("wrap_negative", "fill_zero"), ("wrap_negative", "clip"),
    ("narrow_to_int32",), ("narrow_to_int32", "wrap_negative"), ("narrow_to_int32", "wrap_negative", "fill_nan"),
    ("narrow_to_int32", "clip"),
    ("truncate_float_ids",), ("bool_as_int",), ("truncate_float_ids", "bool_as_int"),
    ("truncate_float_ids", "bool_as_int", "wrap_negative"),
    ("truncate_float_ids", "bool_as_int", "wrap_negative", "fill_nan"),
    ("truncate_float_ids", "bool_as_int", "clip"),
)


def lookup_oracle(args, model, caps):
    return oracle.lookup(args["table"], args["ids"], model)


LOOKUP = dict(method="lookup", oracle=lookup_oracle, suspects=SUSPECTS)
