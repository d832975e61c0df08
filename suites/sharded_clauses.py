"""What the sharded-lookup clauses share (partition.* and seed.e4): the oracle call
and the models suspected when an adapter departs from the contract."""
from __future__ import annotations

from embedding_conformance.adapters.spec import partition

SUSPECTS = (
    ("route_by_total",), ("wrap_negative",), ("clip",), ("route_by_total", "wrap_negative"),
    ("route_by_total", "clip"),
)


def sharded_oracle(args, model, caps):
    return partition.lookup_sharded(args["shards"], args["ids"], args["strategy"], model)


SHARDED = dict(method="lookup_sharded", oracle=sharded_oracle, suspects=SUSPECTS)
