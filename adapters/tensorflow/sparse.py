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
``Tensor.numpy()`` bit for bit. TensorFlow is imported lazily.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, Description, FLOAT_DTYPES, InvalidOffsets, LookupFailure, OutOfRange, Translate
from embedding_conformance.adapters.tensorflow.embedding_lookup import _import_tf, translate as _translate_lookup


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


def run_translated(tf, thunk, values, translate_fn):
    """``thunk()``, with a TensorFlow error that ``translate_fn`` classifies (given the ids'
    dtype) raised as its contract failure."""
    dtype = np.asarray(values).dtype
    with Translate(lambda exc: translate_fn(exc, dtype), catch=(tf.errors.OpError, ValueError, TypeError)):
        return thunk()


@dataclass(frozen=True)
class Variant:
    name: str
    api: str  # "embedding_lookup_sparse" | "safe_embedding_lookup_sparse"
    capabilities: Capabilities
    default_id: bool = False  # safe_embedding_lookup_sparse(default_id=V - 1)


class TFBag:
    framework = "tensorflow"

    def __init__(self, variant: Variant):
        self.tf = _import_tf()
        self.variant = variant
        self.name = variant.name
        self.capabilities = variant.capabilities

    def _sparse(self, values, offsets, weights):
        tf = self.tf
        sp_ids = tf.RaggedTensor.from_row_splits(tf.constant(values), tf.constant(offsets)).to_sparse()
        sp_weights = None
        if weights is not None:
            sp_weights = tf.RaggedTensor.from_row_splits(tf.constant(weights), tf.constant(offsets)).to_sparse()
        return sp_ids, sp_weights

    def _run(self, thunk, values):
        return run_translated(self.tf, thunk, values, translate)

    def _op(self, table):
        op = getattr(self.tf.nn, self.variant.api)
        if self.variant.default_id:
            v = table.shape[0]
            return lambda *args, **kw: op(*args, default_id=v - 1, **kw)
        return op

    def lookup_bags(self, table, values, offsets, weights, combiner):
        tf = self.tf
        op = self._op(table)

        def call():
            sp_ids, sp_weights = self._sparse(values, offsets, weights)
            return np.asarray(op(tf.constant(table), sp_ids, sp_weights, combiner=combiner).numpy())

        return self._run(call, values)

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        tf = self.tf
        op = self._op(table)

        def call():
            sp_ids, sp_weights = self._sparse(values, offsets, weights)
            t = tf.constant(table)
            with tf.GradientTape() as tape:
                tape.watch(t)
                loss = tf.reduce_sum(op(t, sp_ids, sp_weights, combiner=combiner) * tf.constant(upstream))
            # IndexedSlices, densified by TensorFlow (unsorted_segment_sum)
            return np.asarray(tf.convert_to_tensor(tape.gradient(loss, t)).numpy())

        return self._run(call, values)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in ("lookup_bags", "grad_bags"):
            raise ValueError(f"{self.name} has no operation {op!r}")
        api = f"tf.nn.{self.variant.api}"
        lines = ["import os", "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')", "import numpy as np",
                 "import ml_dtypes", "import tensorflow as tf", ""]
        lines += [f"{k} = {v}" for k, v in args.items()]
        lines += [
            "# CSR offsets -> a SparseTensor of ids, row b holding bag b (from_row_splits validates them)",
            "sp_ids = tf.RaggedTensor.from_row_splits(tf.constant(values), tf.constant(offsets)).to_sparse()",
            "sp_weights = None if weights is None else tf.RaggedTensor.from_row_splits(",
            "    tf.constant(weights), tf.constant(offsets)).to_sparse()",
        ]
        kw = ", default_id=table.shape[0] - 1" if self.variant.default_id else ""
        if op == "lookup_bags":
            lines += [f"out = {api}(tf.constant(table), sp_ids, sp_weights, combiner=combiner{kw})"]
        else:
            lines += ["t = tf.constant(table)", "with tf.GradientTape() as tape:", "    tape.watch(t)",
                      f"    loss = tf.reduce_sum({api}(t, sp_ids, sp_weights, combiner=combiner{kw}) * upstream)",
                      "out = tf.convert_to_tensor(tape.gradient(loss, t))"]
        lines += ["out = np.asarray(out.numpy())", "print(out.dtype, out.shape)", "print(repr(out))",
                  "print([hex(b) for b in out.view(f'u{out.dtype.itemsize}').ravel().tolist()])", "result = out"]
        return "\n".join(lines) + "\n"


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


def embedding_lookup_sparse() -> TFBag:
    return TFBag(VARIANTS["tf.nn.embedding_lookup_sparse"])


def safe_embedding_lookup_sparse() -> TFBag:
    return TFBag(VARIANTS["tf.nn.safe_embedding_lookup_sparse"])


def safe_embedding_lookup_sparse_default_id() -> TFBag:
    return TFBag(VARIANTS["tf.nn.safe_embedding_lookup_sparse[default_id]"])
