"""Clause family `partition` on distributed engines: the number of devices.

A sharded lookup's result is the plain lookup's, whatever the number of devices or
ranks the table is split over (1 to 4): uneven splits, shards with no rows, and an
engine that takes another path for one device than for several must not show. The
oracle is the plain lookup, under a declared model with its device count set to each
example's (``oracle.on_devices``)."""
from __future__ import annotations

from hypothesis import strategies as st

from embedding_conformance.adapters.spec import oracle
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.lookup_clauses import SUSPECTS
from embedding_conformance.suites.strategies import choice, draw_lookup, signatures

DEVICE_COUNTS = (1, 2, 3, 4)  # 1 first: a shrunk example shows the fewest devices that still depart


def _outside(id_dtype, v):
    # one id outside [0, V): an engine may check ids on one device and mask them on several
    return [((v, v + 3),)] + ([((-v - 1, -1),)] if id_dtype.startswith("int") else [])


@st.composite
def _on_devices(draw, valid, planted):
    devices = draw(choice(DEVICE_COUNTS), label="devices")
    # one example in four carries an id outside [0, V); the rest are valid lookups
    bad = bool(planted) and draw(choice((False, False, False, True)), label="an id outside [0, V)")
    _, args = draw_lookup(draw, planted if bad else valid, _outside if bad else None)
    args["devices"] = devices
    return args


def _devices_oracle(args, model, caps):
    # the plain lookup, whatever the count; a declared model's device-dependent steps
    # (oracle.DEVICE_COUNTS) take this example's count
    return oracle.lookup(args["table"], args["ids"], oracle.on_devices(model, args["devices"]) if model else ())


@clause(
    "partition.device_count",
    "a lookup sharded over 1, 2, 3 or 4 devices or ranks equals the plain lookup, bit for bit, whatever the count "
    "(uneven splits and shards with no rows included), ids outside [0, V) failing alike",
    method="lookup_on_devices", oracle=_devices_oracle, suspects=SUSPECTS,
)
def device_count_cases(caps, pool):
    # the pool's reach signatures too: tables of 2^7 + 1 ... 2^16 + 1 rows split unevenly
    valid = signatures(caps, pool, reach=True)
    planted = signatures(caps, pool, nonempty=True, v_min=1, aim=_outside)
    return _on_devices(valid, planted)


def test_clause(check):
    check.run()
