"""TensorFlow bag adapters: ``tf.nn.embedding_lookup_sparse`` and
``tf.nn.safe_embedding_lookup_sparse`` (eager).

The bags reach TensorFlow the way its documentation builds a SparseTensor of ids from
CSR offsets: ``tf.RaggedTensor.from_row_splits(values, offsets).to_sparse()`` (row b
holds bag b; dense shape [B, the largest bag]), which validates the offsets; weights the
same way, in the table's dtype (``sp_weights``). The combiner is passed as
``combiner=``; safe_embedding_lookup_sparse keeps its documented default
``default_id=None`` (an empty row comes back as zeros), and its ``[default_id]``
variant passes ``default_id=V - 1`` (documented: "The id to use for an entry with no
features"; the last row, so that a fill from row 0, which the default path uses
internally, shows). Outputs come back through
``Tensor.numpy()`` bit for bit. Each call runs from the source text its snippet prints,
with the TensorFlow prelude (adapters/tensorflow/source.py). TensorFlow is imported lazily.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, Description, FLOAT_DTYPES, InvalidOffsets, LookupFailure, OutOfRange
from embedding_conformance.adapters.tensorflow.embedding_lookup import translate as _translate_lookup
from embedding_conformance.adapters.tensorflow.source import TENSORFLOW, translating


_NOTES = (
    "ids: SparseSegmentSum's Tidx is int32 or int64 (the docs name int64); other integer dtypes are refused",
    "combiners sum, mean, sqrtn (the docs'; no max); sp_weights in the table's dtype for each",
    "offsets reach TensorFlow as tf.RaggedTensor.from_row_splits(values, offsets).to_sparse(), which "
    "validates them",
)
_SAFE_NOTE = "safe_embedding_lookup_sparse with its default default_id=None: empty rows are zeros"
_DEFAULT_ID_NOTE = ("safe_embedding_lookup_sparse(..., default_id=V - 1): an empty row (after pruning) is documented "
                    "to take the id V - 1 (the last row); with V == 0 that id is -1")


def _caps(*notes: str) -> Capabilities:
    return Capabilities(table_dtypes=FLOAT_DTYPES, table_ndims=(1, 2, 3, 4), id_dtypes=("int32", "int64"),
                        combiners=("sum", "mean", "sqrtn"), weighted_combiners=("sum", "mean", "sqrtn"),
                        distributions=("tensorflow", "tensorflow-cpu"), notes=_NOTES + notes)


def translate(exc: BaseException, ids_dtype: np.dtype | None) -> LookupFailure | None:
    msg = str(exc)
    if "do not form a valid RaggedTensor" in msg:
        return InvalidOffsets(msg[:500])
    if "out of range [0, " in msg:  # SparseSegmentSum: "Bad: indices[1] == 4 out of range [0, 4)"
        return OutOfRange(msg[:500])
    if "Incompatible shapes" in msg:
        # the loss sum(out * upstream) of a forward pass that returned fewer rows than
        # there are bags (trailing empty bags dropped): a failure of no contract kind
        return LookupFailure(msg.splitlines()[0][:500])
    return _translate_lookup(exc, ids_dtype)


@dataclass(frozen=True)
class Variant:
    name: str
    api: str  # "embedding_lookup_sparse" | "safe_embedding_lookup_sparse"
    capabilities: Capabilities
    default_id: bool = False  # safe_embedding_lookup_sparse(default_id=V - 1)


# the bags as TensorFlow takes them, then the call ({op}: the API and its options)
_SPARSE = [
    "# CSR offsets -> a SparseTensor of ids, row b holding bag b (from_row_splits validates them)",
    "sp_ids = tf.RaggedTensor.from_row_splits(to_tf(values), to_tf(offsets)).to_sparse()",
    "sp_weights = None if weights is None else tf.RaggedTensor.from_row_splits(",
    "    to_tf(weights), to_tf(offsets)).to_sparse()",
]
_CALLS = {
    "lookup_bags": ["out = {op}(to_tf(table), sp_ids, sp_weights, combiner=combiner{kw})"],
    "grad_bags": [
        "t = to_tf(table)",
        "with tf.GradientTape() as tape:",
        "    tape.watch(t)",
        "    loss = tf.reduce_sum({op}(t, sp_ids, sp_weights, combiner=combiner{kw}) * to_tf(upstream))",
        "# IndexedSlices, densified by TensorFlow (unsorted_segment_sum)",
        "out = tf.convert_to_tensor(tape.gradient(loss, t))",
    ],
}


class TFBag:
    framework = "tensorflow"

    def __init__(self, variant: Variant):
        TENSORFLOW.base()  # imports TensorFlow
        self.variant = variant
        self.name = variant.name
        self.capabilities = variant.capabilities
        # documented: "The id to use for an entry with no features" (the last row)
        kw = ", default_id=table.shape[0] - 1" if variant.default_id else ""
        self._texts = {m: [*_SPARSE, *(line.format(op=f"tf.nn.{variant.api}", kw=kw) for line in lines)]
                       for m, lines in _CALLS.items()}

    def _run(self, method: str, **names):
        with translating(translate, names["values"]):
            ns = TENSORFLOW.run(self._texts[method], **names)
        return TENSORFLOW.helper("to_numpy")(ns["out"])

    def lookup_bags(self, table, values, offsets, weights, combiner):
        return self._run("lookup_bags", table=table, values=values, offsets=offsets, weights=weights, combiner=combiner)

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        return self._run("grad_bags", table=table, values=values, offsets=offsets, weights=weights, combiner=combiner,
                         upstream=upstream)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in self._texts:
            raise ValueError(f"{self.name} has no operation {op!r}")
        return TENSORFLOW.snippet(args, self._texts[op])


VARIANTS = {v.name: v for v in (
    Variant("tf.nn.embedding_lookup_sparse", "embedding_lookup_sparse", _caps()),
    Variant("tf.nn.safe_embedding_lookup_sparse", "safe_embedding_lookup_sparse", _caps(_SAFE_NOTE)),
    Variant("tf.nn.safe_embedding_lookup_sparse[default_id]", "safe_embedding_lookup_sparse", _caps(_DEFAULT_ID_NOTE),
            default_id=True),
)}


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing TensorFlow."""
    return Description(("lookup_bags", "grad_bags"), VARIANTS[name].capabilities)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a TensorFlow exception stands for (a snippet's replay uses it)."""
    return translate(exc, call.ids_dtype)


# the zero-argument factories registry.BUILTINS names, one per variant
embedding_lookup_sparse = partial(TFBag, VARIANTS["tf.nn.embedding_lookup_sparse"])
safe_embedding_lookup_sparse = partial(TFBag, VARIANTS["tf.nn.safe_embedding_lookup_sparse"])
safe_embedding_lookup_sparse_default_id = partial(TFBag, VARIANTS["tf.nn.safe_embedding_lookup_sparse[default_id]"])
