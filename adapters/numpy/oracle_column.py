"""The ``numpy`` adapter: the oracle itself, every capability, so the suite can
run with no framework and every clause's machinery is exercised."""
from __future__ import annotations

from embedding_conformance.adapters.contract import Call, Capabilities, Description, LookupFailure, methods_of

from embedding_conformance.adapters.toolkit.source import Source

SOURCE = Source("numpy oracle", """\
import numpy as np
import ml_dtypes
from embedding_conformance.adapters.spec import bags, oracle, partition, training
to_numpy = np.asarray
""")

# each call as the adapter runs it and its snippet prints it
_CALLS = {
    "lookup": "out = oracle.lookup(table, ids)",
    "lookup_sharded": "out = partition.lookup_sharded(shards, ids, strategy)",
    "grad": "out = np.asarray(training.grad(table, ids, upstream))",
    "grad_padded": "out, grad = training.grad_padded(table, ids, upstream, padding_idx)\nout = (out, np.asarray(grad))",
    "grad_scaled": "out = np.asarray(training.grad_scaled(table, ids, upstream))",
    "lookup_with_state": "out = training.lookup_with_state(table, ids, max_norm)",
    "lookup_mask_zero": "out = (oracle.lookup(table, ids), np.asarray(np.asarray(ids) != 0))",
    "lookup_loaded": "out = oracle.lookup(np.array(table, copy=True), ids)",
    "lookup_bags": "out = np.asarray(bags.lookup_bags(table, values, offsets, weights, combiner))",
    "grad_bags": "out = np.asarray(bags.grad_bags(table, values, offsets, weights, combiner, upstream))",
    "lookup_bags_padded": "out = np.asarray(bags.lookup_bags_padded(table, values, offsets, weights, combiner, padding_idx))",
}


def _run(op: str, **args):
    return SOURCE.run(_CALLS[op], **args)["out"]


class NumpyAdapter:
    name = "numpy"
    framework = "numpy"
    capabilities = Capabilities(load_paths=("copy",))

    def lookup(self, table, ids):
        return _run("lookup", table=table, ids=ids)

    def lookup_sharded(self, shards, ids, strategy):
        return _run("lookup_sharded", shards=shards, ids=ids, strategy=strategy)

    def grad(self, table, ids, upstream):
        return _run("grad", table=table, ids=ids, upstream=upstream)

    def grad_padded(self, table, ids, upstream, padding_idx):
        return _run("grad_padded", table=table, ids=ids, upstream=upstream, padding_idx=padding_idx)

    def grad_scaled(self, table, ids, upstream):
        return _run("grad_scaled", table=table, ids=ids, upstream=upstream)

    def lookup_with_state(self, table, ids, max_norm=None):
        return _run("lookup_with_state", table=table, ids=ids, max_norm=max_norm)

    def lookup_loaded(self, table, ids, path):
        if path != "copy":
            raise ValueError(f"numpy has no load path {path!r}; it takes copy")
        return _run("lookup_loaded", table=table, ids=ids)

    def lookup_mask_zero(self, table, ids):
        return _run("lookup_mask_zero", table=table, ids=ids)

    def lookup_bags(self, table, values, offsets, weights, combiner):
        return _run("lookup_bags", table=table, values=values, offsets=offsets, weights=weights, combiner=combiner)

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        return _run("grad_bags", table=table, values=values, offsets=offsets, weights=weights, combiner=combiner,
                    upstream=upstream)

    def lookup_bags_padded(self, table, values, offsets, weights, combiner, padding_idx):
        return _run("lookup_bags_padded", table=table, values=values, offsets=offsets, weights=weights,
                    combiner=combiner, padding_idx=padding_idx)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in _CALLS:
            raise ValueError(f"{self.name} has no operation {op!r}")
        return SOURCE.snippet(args, _CALLS[op], ["result = out", "print(repr(result))"])


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The oracle raises the contract's failures itself; anything else is not one."""
    return exc if isinstance(exc, LookupFailure) else None


def describe(name: str) -> Description:
    return Description(methods_of(NumpyAdapter), NumpyAdapter.capabilities)
