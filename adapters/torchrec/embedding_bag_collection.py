"""TorchRec's ``EmbeddingBagCollection`` on CPU, fed a ``KeyedJaggedTensor``.

One table and one feature, built the documented way: ``EmbeddingBagConfig(name,
embedding_dim=D, num_embeddings=V, feature_names=["f"], pooling=SUM|MEAN,
data_type=FP32|FP16|BF16)`` in ``EmbeddingBagCollection(tables=[...],
is_weighted=..., device=cpu)``, one module per (V, D, pooling, dtype, weighted), its
table set with ``load_state_dict`` (torch's documented way of loading a module's
weights). The bags go in as ``KeyedJaggedTensor(keys=["f"], values=values,
offsets=offsets, weights=weights)``: the KJT's offsets are CSR, as the contract's. The
pooled rows are the KeyedTensor's ``["f"]``. TorchRec imports fbgemm_gpu (its CPU
build, fbgemm-gpu-cpu), so the adapter runs in a worker group of its own. Imports
nothing at module import. Every call is source run with the torch prelude
(adapters/torch/source.py), the very lines its snippet prints.
"""
from __future__ import annotations

from typing import Any

from embedding_conformance.adapters.contract import Call, Capabilities, Description, InvalidOffsets, LookupFailure, Translate
from embedding_conformance.adapters.torch.embedding import RAISE_KEPT, kept, match_message, outcome, to_numpy
from embedding_conformance.adapters.torch.embedding_bag import _failure as _torch_failure
from embedding_conformance.adapters.torch.source import TORCH

_NOTES = (
    "PoolingType SUM and MEAN (TorchRec has no max or sqrtn pooling)",
    "weights (is_weighted=True) with SUM only: MEAN raises torch's 'per_sample_weights is only supported for "
    "mode=sum'",
    "DataType FP32, FP16, BF16 tables (no FP64); ids int32 or int64",
)
CAPS = Capabilities(table_dtypes=("float32", "float16", "bfloat16"), table_ndims=(2,), id_dtypes=("int32", "int64"),
                    min_rows=1, combiners=("sum", "mean"), weighted_combiners=("sum",),
                    distributions=("torchrec", "fbgemm-gpu-cpu", "torch"),
                    notes=_NOTES + ("a table has at least one row (num_embeddings >= 1)",))

_MESSAGES = (
    # KJT's split of its values by the lengths its offsets give
    ("split_with_sizes expects split_sizes to sum exactly to", InvalidOffsets),
    # KJT.length_per_key with no bags (stride 0): torch.diff(offsets).view(-1, 0) fails on valid
    # input, a framework failure of no contract kind
    ("cannot reshape tensor of 0 elements into shape [-1, 0]", LookupFailure),
    # bfloat16 weights against the float16 weight EmbeddingBagCollection allocates for a BF16
    # table: torch's embedding_bag dtype check, no contract kind
    ("to have the same type as tensor for argument #1 'per_sample_weights'", LookupFailure),
)


def _failure(exc: BaseException) -> LookupFailure | None:
    return match_message(exc, _MESSAGES) or _torch_failure(exc)


_TRANSLATE = Translate(_failure)


_DATA_TYPES = {"float32": "FP32", "float16": "FP16", "bfloat16": "BF16"}

# each call, on NumPy table, values, offsets, weights and combiner (and upstream): the module
# built as a user builds it unless one of its signature is given (``ebc``: a snippet's None),
# its table loaded with load_state_dict (torch's documented way), the bags as a KJT
_BUILD = [
    "from torchrec import DataType, EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType",
    "weight, ids, offs = to_torch(table), to_torch(values), to_torch(offsets)",
    "psw = None if weights is None else to_torch(weights)",
    "if ebc is None:  # one module per (V, D, pooling, dtype, weighted), kept for every call of that signature",
    "    config = EmbeddingBagConfig(name='t', embedding_dim=table.shape[1], num_embeddings=table.shape[0],",
    "                                feature_names=['f'], pooling=PoolingType[combiner.upper()],",
    f"                                data_type=DataType[{_DATA_TYPES!r}[table.dtype.name]])",
    "    ebc = EmbeddingBagCollection(tables=[config], is_weighted=weights is not None, device=torch.device('cpu'))",
]
_LOAD = ["ebc.zero_grad(set_to_none=True)  # a kept module: no gradient of an earlier call",
         "ebc.load_state_dict({'embedding_bags.t.weight': weight})",
         "kjt = KeyedJaggedTensor(keys=['f'], values=ids, offsets=offs, weights=psw)"]
_TEXTS = {
    "lookup_bags": "\n".join(_BUILD + kept(_LOAD + ["with torch.no_grad():  # a lookup: no autograd record",
                                                    "    out = ebc(kjt)['f']"])),
    "grad_bags": "\n".join(_BUILD + kept(_LOAD + ["out = ebc(kjt)['f']", "out.backward(to_torch(upstream))",
                                                  "held = ebc.embedding_bags['t'].weight",
                                                  "# no ids: torch leaves .grad unset, a zero gradient",
                                                  "grad = held.grad if held.grad is not None else torch.zeros_like(held)"])),
}
_TAILS = {"lookup_bags": RAISE_KEPT + ["result = show('out', out)"],
          "grad_bags": RAISE_KEPT + ["result = show('grad', grad)"]}


class EmbeddingBagCollectionAdapter:
    name = "torchrec.EmbeddingBagCollection"
    framework = "torchrec"
    capabilities = CAPS

    def __init__(self):
        import torchrec  # noqa: F401  (fails here, not mid-check, when it cannot load)

        self._modules: dict[tuple, Any] = {}  # one module per (V, D, pooling, dtype, weighted)

    def environment(self) -> dict[str, int]:
        # EmbeddingBagCollection runs torch's embedding_bag kernel, whose error reporting
        # depends on the intra-op thread count (adapters/torchrec/declarations.toml)
        return {"torch.threads": TORCH.helper("torch").get_num_threads()}

    def _run(self, op, table, values, offsets, weights, combiner, **names) -> dict[str, Any]:
        key = (table.shape[0], table.shape[1], combiner, table.dtype.name, weights is not None)
        with _TRANSLATE:
            ns = TORCH.run(_TEXTS[op], ebc=self._modules.get(key), table=table, values=values, offsets=offsets,
                           weights=weights, combiner=combiner, **names)
            self._modules.setdefault(key, ns["ebc"])
            outcome(ns)
        return ns

    def lookup_bags(self, table, values, offsets, weights, combiner):
        return to_numpy(self._run("lookup_bags", table, values, offsets, weights, combiner)["out"])

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        return to_numpy(self._run("grad_bags", table, values, offsets, weights, combiner, upstream=upstream)["grad"])

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in _TEXTS:
            raise ValueError(f"{self.name} has no operation {op!r}")
        return TORCH.snippet({**args, "ebc": "None"}, _TEXTS[op], _TAILS[op])


def describe(name: str) -> Description:
    return Description(("lookup_bags", "grad_bags"), CAPS)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    return _failure(exc)


def embedding_bag_collection() -> EmbeddingBagCollectionAdapter:
    return EmbeddingBagCollectionAdapter()
