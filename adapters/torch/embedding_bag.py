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

Arrays move between NumPy and torch bit for bit with the torch prelude
(adapters/torch/source.py); the call a check makes is the very source its snippet prints
(``TORCH.run``). Torch is imported lazily.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, InvalidIds, InvalidOffsets, InvalidTable, LookupFailure, OutOfRange, Translate, describer
from embedding_conformance.adapters.torch.embedding import (RAISE_KEPT, Compiled, CompiledBackend, _dtype, _failure as _lookup_failure,
                                                            _shape_key, kept, match_message, outcome, to_numpy)
from embedding_conformance.adapters.torch.inductor import fresh_compile
from embedding_conformance.adapters.torch.source import TORCH

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


_GRAD = ["out.backward(to_torch(upstream))",
         "# no ids: torch leaves .grad unset, a zero gradient",
         "grad = held.grad if held.grad is not None else torch.zeros_like(held)"]
_TAILS = {"lookup_bags": ["result = show('out', out)"], "lookup_bags_padded": ["result = show('out', out)"],
          "grad_bags": ["result = show('grad', grad)"]}
_PADDED = {"lookup_bags": False, "lookup_bags_padded": True, "grad_bags": False}


class TorchBag:
    """What the torch bag variants share; a variant says how its inputs are made
    (``_inputs``) and how the call is written (``_call_lines``)."""

    name = "torch.bag"
    framework = "torch"
    capabilities = _CAPS

    def environment(self) -> dict[str, int]:
        return {"torch.threads": TORCH.helper("torch").get_num_threads()}

    # given NumPy values, table, offsets, weights: tensors input, weight, offs, psw (a copy of the
    # table where it is a gradient's leaf)
    def _inputs(self, trainable: bool) -> list[str]:
        table = "to_torch(table, copy=True)" if trainable else "to_torch(table)"
        return [f"input, weight = to_torch(values), {table}", *self._OFFSETS,
                "psw = None if weights is None else to_torch(weights)"]

    _OFFSETS = ["offs = to_torch(offsets)"]

    # given those tensors (and combiner, padding_idx): out and held (the framework's weight tensor)
    def _call_lines(self, trainable: bool, padded: bool) -> list[str]:
        raise NotImplementedError

    @functools.cache  # built once per operation: a call looks its text up
    def _text(self, op: str) -> str:
        """The text ``op`` runs, the very text its snippet prints."""
        if op not in _PADDED:
            raise ValueError(f"{self.name} has no operation {op!r}")
        trainable = op == "grad_bags"
        return "\n".join([*self._inputs(trainable), *self._call_lines(trainable, _PADDED[op]),
                          *(_GRAD if trainable else [])])

    def _run(self, op, table, values, offsets, weights, combiner, **names) -> dict[str, Any]:
        with _TRANSLATE:
            return TORCH.run(self._text(op), table=table, values=values, offsets=np.asarray(offsets),
                             weights=weights, combiner=combiner, **names)

    def lookup_bags(self, table, values, offsets, weights, combiner):
        return to_numpy(self._run("lookup_bags", table, values, offsets, weights, combiner)["out"])

    def lookup_bags_padded(self, table, values, offsets, weights, combiner, padding_idx):
        ns = self._run("lookup_bags_padded", table, values, offsets, weights, combiner, padding_idx=int(padding_idx))
        return to_numpy(ns["out"])

    def grad_bags(self, table, values, offsets, weights, combiner, upstream):
        return to_numpy(self._run("grad_bags", table, values, offsets, weights, combiner, upstream=upstream)["grad"])

    def snippet(self, op: str, args: dict[str, str]) -> str:
        return TORCH.snippet(args, self._text(op), self._tail(op))

    def _tail(self, op: str) -> list[str]:
        return _TAILS[op]


def _padding(padded: bool) -> str:
    return ", padding_idx=padding_idx" if padded else ""


class FunctionalBag(TorchBag):
    """F.embedding_bag(input, weight, offsets, mode=..., per_sample_weights=...), with
    offsets in its default form: the B bag starts (include_last_offset=False)."""

    name = "torch.nn.functional.embedding_bag"
    capabilities = _CAPS.narrowed(notes=_NOTES + (
        "offsets in F.embedding_bag's default form: offsets[:-1] (B starts), the last bag running to the end "
        "of the input; torch never sees the CSR end offset",))
    _OFFSETS = ["offs = to_torch(offsets[:-1])  # F.embedding_bag's default: where each of the B bags starts"]

    def _call_lines(self, trainable, padded):
        lines = ["weight.requires_grad_(True)"] if trainable else []
        return lines + ["held = weight", "out = F.embedding_bag(input, weight, offs, mode=combiner, "
                                         f"per_sample_weights=psw{_padding(padded)})"]


class ModuleBag(TorchBag):
    """nn.EmbeddingBag.from_pretrained(weight, mode=..., include_last_offset=True): the
    CSR form, offsets of length B + 1."""

    name = "torch.nn.EmbeddingBag"
    capabilities = _CAPS.narrowed(notes=_NOTES + (
        "nn.EmbeddingBag.from_pretrained(table, mode=..., include_last_offset=True): the offsets as given (CSR)",))

    def _call_lines(self, trainable, padded):
        return [f"layer = torch.nn.EmbeddingBag.from_pretrained(weight, freeze={not trainable}, mode=combiner, "
                f"include_last_offset=True{_padding(padded)})",
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

    def _inputs(self, trainable):
        table = "to_torch(table, copy=True)" if trainable else "to_torch(table)"
        return ["B = len(offsets) - 1; L = int(offsets[1] - offsets[0]) if B else 0  # bags of one length: (B, L)",
                f"input, weight = to_torch(values.reshape(B, L)), {table}",
                "psw = None if weights is None else to_torch(weights.reshape(B, L))"]

    def _run(self, op, table, values, offsets, weights, combiner, **names):
        offsets = np.asarray(offsets)
        if len(offsets) > 1 and (np.diff(offsets) != offsets[1] - offsets[0]).any():
            raise ValueError(f"{self.name} takes bags of one length (fixed_length_bags), got offsets "
                             f"{offsets.tolist()}")
        return super()._run(op, table, np.asarray(values), offsets,
                            None if weights is None else np.asarray(weights), combiner, **names)

    def _call_lines(self, trainable, padded):
        lines = ["weight.requires_grad_(True)"] if trainable else []
        return lines + ["held = weight",
                        f"out = F.embedding_bag(input, weight, mode=combiner, per_sample_weights=psw{_padding(padded)})"]


class CompiledFunctionalBag(CompiledBackend, FunctionalBag):
    """``torch.compile(f, dynamic=True)`` of a function calling F.embedding_bag, one
    function (a code object of its own) per signature key, as
    adapters/torch/embedding.CompiledFunctionalEmbedding does: dynamo's recompile limit
    (8 per code object) then never turns a compiled call into an eager one."""

    name = "torch.nn.functional.embedding_bag[compile]"

    def __init__(self):
        import logging

        # fake tensors log the meta kernel's refusal of float ids with its whole traceback
        # (thousands of lines a run) before it is raised, where the adapter translates it
        logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
        self._compiled = Compiled()
        self.capabilities = FunctionalBag.capabilities.narrowed(notes=FunctionalBag.capabilities.notes + (
            "torch.compile(dynamic=True, backend='inductor'); one compiled function per signature (dtypes, "
            "mode, weights, padding, 0/1 sizes, equal sizes)",))

    @functools.cache
    def _text(self, op: str, build: bool = True) -> str:
        """The text of ``op``'s call; with ``build``, of a signature's first call (the snippet's)."""
        if op not in _PADDED:
            raise ValueError(f"{self.name} has no operation {op!r}")
        self._select_backend()
        trainable, padded = op == "grad_bags", _PADDED[op]
        pad = ", padding_idx" if padded else ""
        body = f"F.embedding_bag(input, weight, offs, mode=mode, per_sample_weights=psw{_padding(padded)})"
        lines = self._inputs(trainable) + (["weight.requires_grad_(True)"] if trainable else [])
        if build:
            lines += fresh_compile("bag", f"input, weight, offs, psw, mode{pad}", body, self.backend)
        call = f"out = compiled(input, weight, offs, psw, combiner{pad})"
        return "\n".join(lines + kept(["held = weight", call, *(_GRAD if trainable else [])]))

    def _run(self, op, table, values, offsets, weights, combiner, **names):
        values, offsets = np.asarray(values), np.asarray(offsets)
        padding_idx = names.get("padding_idx")
        key = (_dtype(values), _dtype(table), _dtype(offsets), combiner, weights is not None,
               padding_idx is not None, op == "grad_bags", padding_idx,
               _shape_key(values.shape, table.shape, (offsets.shape[0] - 1,)))
        with _TRANSLATE:
            ns = self._compiled.run(key, lambda build: self._text(op, build), table=table, values=values,
                                    offsets=offsets, weights=weights, combiner=combiner, **names)
            outcome(ns)
        return ns

    def _tail(self, op: str) -> list[str]:
        return RAISE_KEPT + _TAILS[op]


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
