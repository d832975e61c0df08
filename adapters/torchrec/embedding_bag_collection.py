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
nothing at module import.
"""
from __future__ import annotations

from typing import Any


from embedding_conformance.adapters.contract import Call, Capabilities, Description, InvalidOffsets, LookupFailure, Translate
from embedding_conformance.adapters.torch.embedding import _SNIPPET_HELPERS, _to_numpy, _to_torch, match_message, run_source
from embedding_conformance.adapters.torch.embedding_bag import _failure as _torch_failure

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


# the module and the call as a user writes them (the snippet prints these lines; the adapter runs them)
_BUILD = [
    "from torchrec import DataType, EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType",
    "config = EmbeddingBagConfig(name='t', embedding_dim=D, num_embeddings=V, feature_names=['f'],",
    "                            pooling=PoolingType[pooling], data_type=DataType[data_type])",
    "ebc = EmbeddingBagCollection(tables=[config], is_weighted=weighted, device=torch.device('cpu'))",
]
_LOAD = ["ebc.load_state_dict({'embedding_bags.t.weight': weight})"]
_CALL = [
    "from torchrec import KeyedJaggedTensor",
    "kjt = KeyedJaggedTensor(keys=['f'], values=ids, offsets=offs, weights=psw)",
    "out = ebc(kjt)['f']",
]
_DATA_TYPES = {"float32": "FP32", "float16": "FP16", "bfloat16": "BF16"}
_POOLING = {"sum": "SUM", "mean": "MEAN"}


class EmbeddingBagCollectionAdapter:
    name = "torchrec.EmbeddingBagCollection"
    framework = "torchrec"
    capabilities = CAPS

    def __init__(self):
        import torchrec  # noqa: F401  (fails here, not mid-check, when it cannot load)

        self._modules: dict[tuple, Any] = {}

    def environment(self) -> dict[str, int]:
        # EmbeddingBagCollection runs torch's embedding_bag kernel, whose error reporting
        # depends on the intra-op thread count (suites/divergences/bags.toml)
        import torch

        return {"torch.threads": torch.get_num_threads()}

    def _module(self, v, d, combiner, dtype_name, weighted):
        key = (v, d, combiner, dtype_name, weighted)
        ebc = self._modules.get(key)
        if ebc is None:
            ns = run_source(_BUILD, V=v, D=d, pooling=_POOLING[combiner], data_type=_DATA_TYPES[dtype_name],
                            weighted=weighted)
            ebc = self._modules[key] = ns["ebc"]
        return ebc

    def _call(self, table, values, offsets, weights, combiner, trainable=False):
        ebc = self._module(table.shape[0], table.shape[1], combiner, table.dtype.name, weights is not None)
        ebc.zero_grad(set_to_none=True)
        ns = run_source(_LOAD + _CALL, ebc=ebc, weight=_to_torch(table), ids=_to_torch(values),
                        offs=_to_torch(offsets), psw=None if weights is None else _to_torch(weights))
        return ns["out"], ebc

    def _translated(self, thunk):
        with _TRANSLATE:
            return thunk()

    def lookup_bags(self, table, values, offsets, weights, combiner):
        import torch

        def call():
            with torch.no_grad():
                return _to_numpy(self._call(table, values, offsets, weights, combiner)[0])

        return self._translated(call)

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        import torch

        def call():
            out, ebc = self._call(table, values, offsets, weights, combiner, trainable=True)
            out.backward(_to_torch(upstream))
            held = ebc.embedding_bags["t"].weight
            return _to_numpy(held.grad if held.grad is not None else torch.zeros_like(held))

        return self._translated(call)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in ("lookup_bags", "grad_bags"):
            raise ValueError(f"{self.name} has no operation {op!r}")
        lines = [_SNIPPET_HELPERS] + [f"{k} = {v}" for k, v in args.items()]
        lines += ["V, D = table.shape", f"pooling = {_POOLING!r}[combiner]",
                  f"data_type = {_DATA_TYPES!r}[table.dtype.name]", "weighted = weights is not None"]
        lines += _BUILD + ["weight = to_torch(table)", "ids = to_torch(values)", "offs = to_torch(offsets)",
                           "psw = None if weights is None else to_torch(weights)"] + _LOAD + _CALL
        if op == "grad_bags":
            lines += ["out.backward(to_torch(upstream))",
                      "result = show('grad', ebc.embedding_bags['t'].weight.grad)"]
        else:
            lines.append("result = show('out', out)")
        return "\n".join(lines) + "\n"


def describe(name: str) -> Description:
    return Description(("lookup_bags", "grad_bags"), CAPS)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    return _failure(exc)


def embedding_bag_collection() -> EmbeddingBagCollectionAdapter:
    return EmbeddingBagCollectionAdapter()
