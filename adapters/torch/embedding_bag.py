"""PyTorch bag adapters: ``torch.nn.functional.embedding_bag`` (its default offsets
form: B offsets, each bag's start), ``torch.nn.EmbeddingBag`` (the CSR form,
``include_last_offset=True``), ``F.embedding_bag`` under ``torch.compile``, and
``F.embedding_bag[2d]``: a (B, L) ids array without offsets, the documented form for
bags of one length (its capabilities say fixed_length_bags, so its cases hold bags of
one length, L = 0 included; no bags is a (0, 0) array).

The contract's offsets are CSR (B + 1 entries, adapters/spec/bags.py). F.embedding_bag's
documented default takes B offsets and runs the last bag to the end of the input, so
that adapter hands torch ``offsets[:-1]``: torch never sees the last offset, which is
what a user of that form writes (declared as the model ``last_offset_unread`` where
it matters, bag.offsets). nn.EmbeddingBag(include_last_offset=True) is handed the
offsets as they are. Modes are the contract's combiner names (sum, mean, max; torch has
no sqrtn), ``per_sample_weights`` is documented for mode sum only, ``padding_idx`` is
the padding id, weights are 2-D only and ids int32/int64 (as for F.embedding): all
declared in ``capabilities``.

Arrays move between NumPy and torch bit for bit (adapters/torch/embedding.py); the call
a check makes is the very source its snippet prints (``run_source``). Torch is
imported lazily.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, InvalidIds, InvalidOffsets, InvalidTable, LookupFailure, OutOfRange, Translate, describer
from embedding_conformance.adapters.torch.embedding import (_SNIPPET_HELPERS, _dynamo_stats, _failure as _lookup_failure, _shape_key, _to_numpy,
                            _to_torch, _torch, match_message, run_source)

_NOTES = (
    "torch has no sqrtn combiner (modes sum, mean, max)",
    "per_sample_weights is documented for mode='sum' only ('per_sample_weights is only supported for mode=sum')",
    "weight must be 2-D ('weight has to be a 2D Tensor'); ids int32 or int64",
)
_CAPS = Capabilities(table_ndims=(2,), id_dtypes=("int32", "int64"), combiners=("sum", "mean", "max"),
                     weighted_combiners=("sum",), notes=_NOTES)

# torch's embedding_bag messages -> contract failures (checked before the plain lookup's)
_MESSAGES: tuple[tuple[str, type[LookupFailure]], ...] = (
    # the CPU kernel's index check: "Index 1 of input takes value 4 which is not in the valid range [0, 4)"
    ("which is not in the valid range [0,", OutOfRange),
    # the same check where the kernel meets an empty table, and torch.compile's
    ("Expected idx >= 0 && idx < num_embeddings", OutOfRange),
    # torch.compile's fake-tensor check of the ids' dtype
    ("expected indices to be long or int", InvalidIds),
    ("offsets[0] has to be 0", InvalidOffsets),
    ("offsets[-1] can not be greater than input's length", InvalidOffsets),
    # the fbgemm path's error report, when its walk over decreasing offsets ends without
    # meeting an invalid id: a check of the offsets
    ("the last offset value should be the size of the indices tensor", InvalidOffsets),
    ("weight has to be a 2D Tensor", InvalidTable),
    ("'indices' to have one of the following scalar types", InvalidIds),
    ("input has to be a 1D or 2D Tensor", InvalidIds),
    # an internal assert of the CPU kernel's error report, met for an invalid id outside the
    # first thread's share of the bags and for decreasing offsets: no kind
    ("Expected i < index_size to be true", LookupFailure),
    # F.embedding_bag's offsets for a 2-D input of shape (B, 0): torch.arange(0, 0, 0)
    ("step must be nonzero", LookupFailure),
)


def _failure(exc: BaseException) -> LookupFailure | None:
    if isinstance(exc, LookupFailure):
        return exc
    return match_message(exc, _MESSAGES) or _lookup_failure(exc)


_TRANSLATE = Translate(_failure)


class TorchBag:
    """What the torch bag variants share; a variant says how the call is written
    (``_call_source``)."""

    name = "torch.bag"
    framework = "torch"
    capabilities = _CAPS

    def environment(self) -> dict[str, int]:
        return {"torch.threads": _torch().get_num_threads()}

    # the lines a snippet prints, given tensors input, weight, offs, psw (and padding_idx)
    def _call_source(self, combiner: str, trainable: bool, padded: bool) -> list[str]:
        raise NotImplementedError

    def _offsets(self, offsets: np.ndarray) -> np.ndarray:
        return offsets

    _OFFSETS_SOURCE = "offs = to_torch(offsets)"

    def _call(self, table, values, offsets, weights, combiner, *, trainable=False, padding_idx=None):
        names = {"input": _to_torch(values), "weight": _to_torch(table, copy=trainable),
                 "offs": _to_torch(self._offsets(np.asarray(offsets))),
                 "psw": None if weights is None else _to_torch(weights), "combiner": combiner}
        if padding_idx is not None:
            names["padding_idx"] = int(padding_idx)
        ns = run_source(self._call_source(combiner, trainable, padding_idx is not None), **names)
        return ns["out"], ns["held"]

    def lookup_bags(self, table, values, offsets, weights, combiner):
        with _TRANSLATE:
            out, _ = self._call(table, values, offsets, weights, combiner)
        return _to_numpy(out)

    def lookup_bags_padded(self, table, values, offsets, weights, combiner, padding_idx):
        with _TRANSLATE:
            out, _ = self._call(table, values, offsets, weights, combiner, padding_idx=padding_idx)
        return _to_numpy(out)

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        with _TRANSLATE:
            out, held = self._call(table, values, offsets, weights, combiner, trainable=True)
            out.backward(_to_torch(upstream))
        g = held.grad
        if g is None:  # nothing flowed back (no ids): torch leaves .grad unset, a zero gradient
            g = _torch().zeros_like(held)
        return _to_numpy(g)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in ("lookup_bags", "lookup_bags_padded", "grad_bags"):
            raise ValueError(f"{self.name} has no operation {op!r}")
        combiner = eval(args["combiner"])
        lines = [_SNIPPET_HELPERS]
        lines += [f"{k} = {v}" for k, v in args.items()]
        lines += ["input = to_torch(values)", "weight = to_torch(table)",
                  "psw = None if weights is None else to_torch(weights)", self._OFFSETS_SOURCE]
        lines += self._call_source(combiner, op == "grad_bags", op == "lookup_bags_padded")
        if op == "grad_bags":
            lines += ["out.backward(to_torch(upstream))",
                      "result = show('grad', held.grad if held.grad is not None else torch.zeros_like(held))"]
        else:
            lines.append("result = show('out', out)")
        return "\n".join(lines) + "\n"


class FunctionalBag(TorchBag):
    """F.embedding_bag(input, weight, offsets, mode=..., per_sample_weights=...), with
    offsets in its default form: the B bag starts (include_last_offset=False)."""

    name = "torch.nn.functional.embedding_bag"
    capabilities = _CAPS.narrowed(notes=_NOTES + (
        "offsets in F.embedding_bag's default form: offsets[:-1] (B starts), the last bag running to the end "
        "of the input; torch never sees the CSR end offset",))
    _OFFSETS_SOURCE = "offs = to_torch(offsets[:-1])  # F.embedding_bag's default: where each of the B bags starts"

    def _offsets(self, offsets):
        return offsets[:-1]

    def _call_source(self, combiner, trainable, padded):
        pad = ", padding_idx=padding_idx" if padded else ""
        lines = ["weight.requires_grad_(True)"] if trainable else []
        return lines + ["held = weight",
                        f"out = F.embedding_bag(input, weight, offs, mode={combiner!r}, per_sample_weights=psw{pad})"]


class ModuleBag(TorchBag):
    """nn.EmbeddingBag.from_pretrained(weight, mode=..., include_last_offset=True): the
    CSR form, offsets of length B + 1."""

    name = "torch.nn.EmbeddingBag"
    capabilities = _CAPS.narrowed(notes=_NOTES + (
        "nn.EmbeddingBag.from_pretrained(table, mode=..., include_last_offset=True): the offsets as given (CSR)",))

    def _call_source(self, combiner, trainable, padded):
        pad = ", padding_idx=padding_idx" if padded else ""
        return [f"layer = torch.nn.EmbeddingBag.from_pretrained(weight, freeze={not trainable}, mode={combiner!r}, "
                f"include_last_offset=True{pad})",
                "held = layer.weight",
                "out = layer(input, offs, per_sample_weights=psw)"]


class FunctionalBag2D(FunctionalBag):
    """F.embedding_bag(input, weight, mode=..., per_sample_weights=...) with ``input`` of
    shape (B, L) and no offsets: B bags of L ids each. The CSR offsets it is given are
    [0, L, ..., BL] (capabilities.fixed_length_bags); the values are reshaped to (B, L)
    (no bags: (0, 0)), the weights likewise."""

    name = "torch.nn.functional.embedding_bag[2d]"
    capabilities = _CAPS.narrowed(fixed_length_bags=True, notes=_NOTES + (
        "2-D input (B, L) without offsets (bags of one length); the CSR form given is reshaped to it, no bags "
        "to shape (0, 0)",))
    _OFFSETS_SOURCE = "\n".join([
        "B = len(offsets) - 1; L = int(offsets[1] - offsets[0]) if B else 0  # bags of one length: a (B, L) input",
        "input = to_torch(values.reshape(B, L))",
        "psw = None if weights is None else to_torch(weights.reshape(B, L))"])

    @staticmethod
    def _shape(offsets: np.ndarray) -> tuple[int, int]:
        offsets = np.asarray(offsets)
        b = offsets.shape[0] - 1
        length = int(offsets[1] - offsets[0]) if b else 0
        if b and (np.diff(offsets) != length).any():
            raise ValueError(f"{FunctionalBag2D.name} takes bags of one length (fixed_length_bags), got offsets "
                             f"{offsets.tolist()}")
        return b, length

    def _call(self, table, values, offsets, weights, combiner, *, trainable=False, padding_idx=None):
        shape = self._shape(offsets)
        names = {"input": _to_torch(np.asarray(values).reshape(shape)), "weight": _to_torch(table, copy=trainable),
                 "psw": None if weights is None else _to_torch(np.asarray(weights).reshape(shape)),
                 "combiner": combiner}
        if padding_idx is not None:
            names["padding_idx"] = int(padding_idx)
        ns = run_source(self._call_source(combiner, trainable, padding_idx is not None), **names)
        return ns["out"], ns["held"]

    def _call_source(self, combiner, trainable, padded):
        pad = ", padding_idx=padding_idx" if padded else ""
        lines = ["weight.requires_grad_(True)"] if trainable else []
        return lines + ["held = weight",
                        f"out = F.embedding_bag(input, weight, mode={combiner!r}, per_sample_weights=psw{pad})"]


class CompiledFunctionalBag(FunctionalBag):
    """``torch.compile(f, dynamic=True)`` of a function calling F.embedding_bag, one
    function (a code object of its own) per signature key, as
    adapters/torch_adapter.CompiledFunctionalEmbedding does: dynamo's recompile limit
    (8 per code object) then never turns a compiled call into an eager one."""

    name = "torch.nn.functional.embedding_bag[compile]"
    backend = "inductor"
    FALLBACK_BACKEND = "aot_eager"
    RECOMPILES_BEFORE_FRESH = 4

    def __init__(self):
        import logging

        # fake tensors log the meta kernel's refusal of float ids with its whole traceback
        # (thousands of lines a run) before it is raised, where the adapter translates it
        logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
        self._cache: dict[tuple, Callable] = {}
        self._lock = threading.Lock()
        self._backend_checked = False
        self.compiles = 0
        self.recompiles = 0
        self._graphs_of: dict[tuple, int] = {}
        self.capabilities = FunctionalBag.capabilities.narrowed(notes=FunctionalBag.capabilities.notes + (
            "torch.compile(dynamic=True, backend='inductor'); one compiled function per signature (dtypes, "
            "mode, weights, padding, 0/1 sizes, equal sizes)",))

    def environment(self) -> dict[str, int]:
        from torch._inductor.utils import parallel_num_threads

        return {**super().environment(), "inductor.threads": parallel_num_threads()}

    def _select_backend(self) -> None:
        if self._backend_checked:
            return
        from embedding_conformance.adapters.torch import inductor

        self._backend_checked = True
        reason, isa_note = inductor.ready()
        notes = self.capabilities.notes + (isa_note,)
        if reason is not None:
            self.backend = self.FALLBACK_BACKEND
            notes += (f"inductor cannot compile on this machine ({reason}); compiled with "
                      f"backend='{self.FALLBACK_BACKEND}' instead",)
        self.capabilities = self.capabilities.narrowed(notes=notes)

    @staticmethod
    def _source(combiner: str, padded: bool) -> str:
        pad = ", padding_idx" if padded else ""
        kw = ", padding_idx=padding_idx" if padded else ""
        return (f"def bag(input, weight, offs, psw{pad}):\n"
                f"    return F.embedding_bag(input, weight, offs, mode={combiner!r}, per_sample_weights=psw{kw})\n")

    def _compiled(self, key: tuple, combiner: str, padded: bool) -> Callable:
        fn = self._cache.get(key)
        if fn is None:
            with self._lock:
                fn = self._cache.get(key)
                if fn is None:
                    self._select_backend()
                    torch = _torch()
                    ns: dict[str, Any] = {}
                    exec(compile(self._source(combiner, padded), "<torch_bag_adapter.compiled>", "exec"),
                         {"F": torch.nn.functional}, ns)
                    fn = self._cache[key] = torch.compile(ns["bag"], dynamic=True, backend=self.backend)
                    self.compiles += 1
        return fn

    def _call(self, table, values, offsets, weights, combiner, *, trainable=False, padding_idx=None):
        input_t, weight = _to_torch(values), _to_torch(table, copy=trainable)
        offs = _to_torch(self._offsets(np.asarray(offsets)))
        psw = None if weights is None else _to_torch(weights)
        if trainable:
            weight.requires_grad_(True)
        padded = padding_idx is not None
        key = (input_t.dtype, weight.dtype, offs.dtype, combiner, psw is not None, padded, trainable,
               padding_idx, _shape_key(tuple(input_t.shape), tuple(weight.shape), tuple(offs.shape)))
        fn = self._compiled(key, combiner, padded)
        stats = _dynamo_stats()
        graphs = stats["unique_graphs"]
        try:
            args = (input_t, weight, offs, psw) + ((int(padding_idx),) if padded else ())
            return fn(*args), weight
        finally:
            self._count_graphs(key, stats["unique_graphs"] - graphs)

    def _count_graphs(self, key: tuple, new_graphs: int) -> None:
        if key not in self._graphs_of:
            self._graphs_of[key] = 0
            return
        if new_graphs > 0:
            self.recompiles += new_graphs
            self._graphs_of[key] += new_graphs
            if self._graphs_of[key] >= self.RECOMPILES_BEFORE_FRESH:
                with self._lock:
                    self._cache.pop(key, None)
                    self._graphs_of.pop(key, None)

    def _call_source(self, combiner, trainable, padded):
        self._select_backend()
        lines = ["weight.requires_grad_(True)"] if trainable else []
        lines += self._source(combiner, padded).rstrip("\n").splitlines()
        pad = ", padding_idx" if padded else ""
        return lines + [f"compiled = torch.compile(bag, dynamic=True, backend={self.backend!r})",
                        "held = weight", f"out = compiled(input, weight, offs, psw{pad})"]


_CLASSES = {
    "torch.nn.functional.embedding_bag": FunctionalBag,
    "torch.nn.EmbeddingBag": ModuleBag,
    "torch.nn.functional.embedding_bag[compile]": CompiledFunctionalBag,
    "torch.nn.functional.embedding_bag[2d]": FunctionalBag2D,
}


describe = describer(_CLASSES)  # what a built-in offers, without importing torch


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a torch exception stands for (a snippet's replay uses it)."""
    return _failure(exc)


def functional_embedding_bag() -> TorchBag:
    return FunctionalBag()


def nn_embedding_bag() -> TorchBag:
    return ModuleBag()


def functional_embedding_bag_compile() -> TorchBag:
    return CompiledFunctionalBag()


def functional_embedding_bag_2d() -> TorchBag:
    return FunctionalBag2D()
