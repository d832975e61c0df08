"""PyTorch adapters: ``torch.nn.Embedding`` (dense and sparse gradients),
``torch.nn.functional.embedding``, and ``F.embedding`` under ``torch.compile``.

One class, :class:`TorchEmbedding`, holds everything the variants share (moving
arrays between NumPy and torch bit for bit, translating torch's exceptions, the
autograd plumbing, the reproduction snippets); a variant only says how the lookup
is *called* (``_call``) and which optional methods it exposes. Torch is imported
lazily: importing this module does not import torch.

What torch takes (declared in ``capabilities``): 2-D weights only (``'weight' must
be 2-D``), int32 and int64 indices only (``Expected tensor for argument #1
'indices' to have one of the following scalar types: Long, Int``), every float
table dtype the suite generates.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, Callable

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, InvalidIds, InvalidTable, LookupFailure, OutOfRange, Translate, describer

_TABLE_NDIMS = (2,)
_ID_DTYPES = ("int32", "int64")
_BASE_NOTES = (
    "torch.nn.functional.embedding takes a 2-D weight only ('weight' must be 2-D)",
    "indices must be int32 or int64 (torch.nn.Embedding docs: IntTensor or LongTensor); "
    "other integer dtypes are rejected with RuntimeError",
)

# --- torch exceptions -> contract failures, by what the message says went wrong ----
# (substring, failure class). Checked in order against str(exc), so a message that
# torch.compile wraps in its own exception type (TorchRuntimeError, InductorError,
# BackendCompilerFailed) classifies the same way as the eager one.
_MESSAGES: tuple[tuple[str, type[LookupFailure]], ...] = (
    # eager index_select / embedding: any id outside [0, V) (negatives included)
    ("index out of range in self", OutOfRange),
    # embedding_renorm_ (max_norm) selects each unique id's row before the lookup
    ("out of range for tensor of size", OutOfRange),
    # index_select on a weight with zero-size rows (D == 0)
    ("INDICES element is out of DATA bounds", OutOfRange),
    # index_select on a weight with no rows (V == 0) and at least one id
    ("self indexing axis dim should be positive", OutOfRange),
    # inductor's generated C++ kernels (assert_indirect_indexing)
    ("index out of bounds: 0 <=", OutOfRange),
    # nn.Embedding / F.embedding reject a padding_idx outside [-V, V)
    ("Padding_idx must be within num_embeddings", OutOfRange),
    # index dtype other than int32 / int64 (float, bool, int8, uint64, ...)
    ("'indices' to have one of the following scalar types", InvalidIds),
    # sparse=True with padding_idx: the sparse backward indexes 0-d ids as if they
    # had a dimension and fails on valid input (a framework failure, no contract kind)
    ("too many indices for tensor of dimension 0", LookupFailure),
    # weight rank
    ("'weight' must be 2-D", InvalidTable),
    ("Embeddings parameter is expected to be 2-dimensional", InvalidTable),
)


def match_message(exc: BaseException, messages) -> LookupFailure | None:
    """The contract failure of the first (needle, kind) in ``messages`` whose needle is in
    the exception's text, carrying the line that holds it (torch.compile wraps it in a longer text)."""
    text = str(exc)
    for needle, cls in messages:
        if needle in text:
            line = next(ln for ln in text.splitlines() if needle in ln).strip()
            failure = cls(f"{type(exc).__name__}: {line}"[:500])
            failure.__cause__ = exc
            return failure
    return None


def _failure(exc: BaseException) -> LookupFailure | None:
    if isinstance(exc, LookupFailure):
        return exc
    text = str(exc)
    if type(exc).__name__ == "InductorError" and text.startswith("AssertionError"):
        # inductor's own code generation gave up on valid input: a framework
        # failure (no contract kind), which only a declared model can expect
        failure = LookupFailure(f"torch.compile (inductor) failed to generate code: {text.splitlines()[0]}"[:500])
        failure.__cause__ = exc
        return failure
    return match_message(exc, _MESSAGES)


_TRANSLATE = Translate(_failure)


# --- NumPy <-> torch, bit for bit ------------------------------------------------

_torch_mod = None
_bf16 = None


def _torch():
    global _torch_mod
    if _torch_mod is None:
        import torch

        _torch_mod = torch
    return _torch_mod


def _bfloat16():
    global _bf16
    if _bf16 is None:
        import ml_dtypes

        _bf16 = np.dtype(ml_dtypes.bfloat16)
    return _bf16


def _to_torch(a: np.ndarray, copy: bool = False):
    """A tensor with ``a``'s dtype and bits. Shares memory unless ``copy`` (torch may
    write to it: max_norm renormalises in place)."""
    torch = _torch()
    a = np.asarray(a)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if copy or not a.flags.c_contiguous or not a.flags.writeable:
        a = a.copy(order="C")  # keeps 0-d arrays 0-d, unlike np.ascontiguousarray
    if a.dtype == _bfloat16():
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _to_numpy(t) -> np.ndarray:
    torch = _torch()
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()  # torch's own densification (sparse COO gradients)
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_bfloat16())
    return t.numpy()


# --- snippets --------------------------------------------------------------------

_SNIPPET_HELPERS = '''\
import numpy as np
import ml_dtypes
import torch
import torch.nn.functional as F


def to_torch(a):
    a = np.asarray(a).copy(order="C")
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def to_numpy(t):
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()  # torch's own densification of a sparse gradient
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def show(label, t):
    a = to_numpy(t)
    print(label, "=", repr(a))
    print(label, "bits =", repr(a.view(f"u{a.itemsize}")))
    return a
'''

_CODE: dict[str, Any] = {}


def run_source(lines: list[str], **names: Any) -> dict[str, Any]:
    """Execute ``lines`` (the very lines a snippet prints) with torch, F and ``names``
    bound; return the namespace. Compiled once per distinct source."""
    src = "\n".join(lines)
    code = _CODE.get(src)
    if code is None:
        code = _CODE[src] = compile(src, "<torch_adapter call>", "exec")
    torch = _torch()
    ns = {"torch": torch, "F": torch.nn.functional, **names}
    exec(code, ns)
    return ns


class TorchEmbedding:
    """Everything the torch variants share. A variant overrides ``_call`` (how one
    lookup is made on torch tensors) and ``_call_source`` (the same call as source
    for a snippet)."""

    name = "torch"
    framework = "torch"
    sparse = False
    # lookup_with_state holds the table as a trainable weight (nn.Embedding's training
    # setting) or as a plain tensor (what F.embedding is handed)
    state_trainable = False
    capabilities = Capabilities(table_ndims=_TABLE_NDIMS, id_dtypes=_ID_DTYPES, notes=_BASE_NOTES)

    def environment(self) -> dict[str, int]:
        # intra-op threads: parallel kernels (and their reductions' order) depend on them
        return {"torch.threads": _torch().get_num_threads()}

    # -- the call a variant makes ---------------------------------------------------
    def _call(self, ids, weight, *, trainable: bool = False, **options):
        """Return ``(out, weight_tensor)``: the lookup's output and the tensor the
        framework holds the table in (the one max_norm renormalises, the one whose
        ``.grad`` autograd fills). Runs ``_call_source``'s lines, the ones a snippet
        prints, so the two cannot drift."""
        ns = run_source(self._call_source(trainable, {k: k for k in options}), ids=ids, weight=weight, **options)
        return ns["out"], ns["held"]

    def _call_source(self, trainable: bool, options: dict[str, str]) -> list[str]:
        """Source lines that, given tensors ``ids`` and ``weight`` (and the options'
        names), set ``out`` and ``held`` (the framework's weight tensor)."""
        raise NotImplementedError

    # -- the adapter API -------------------------------------------------------------
    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        ids_t, weight = _to_torch(ids), _to_torch(table)
        with _TRANSLATE:
            out, _ = self._call(ids_t, weight)
        return _to_numpy(out)

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        return self._grad(table, ids, upstream)[1]

    def lookup_with_state(self, table: np.ndarray, ids: np.ndarray, max_norm: float | None = None):
        ids_t, weight = _to_torch(ids), _to_torch(table, copy=True)
        options = {} if max_norm is None else {"max_norm": float(max_norm)}
        result: Any
        held = weight
        try:
            with _TRANSLATE:
                out, held = self._call(ids_t, weight, trainable=self.state_trainable, **options)
            result = _to_numpy(out)
        except LookupFailure as failure:
            result = failure
        # the module wraps the very tensor it was given, so `weight` is what it holds
        # even when the call raised before returning it
        return result, _to_numpy(held if held is not None else weight)

    def snippet(self, op: str, args: dict[str, str]) -> str:
        trainable = op in ("grad", "grad_padded", "grad_scaled") or (
            op == "lookup_with_state" and self.state_trainable)
        options: dict[str, str] = {}
        if op == "grad_padded":
            options["padding_idx"] = "padding_idx"
        elif op == "grad_scaled":
            options["scale_grad_by_freq"] = "True"
        elif op == "lookup_with_state" and args.get("max_norm", "None") != "None":
            options["max_norm"] = "float(max_norm)"
        if op == "lookup_loaded" and callable(getattr(self, "lookup_loaded", None)):
            call = _LOAD_SOURCE[eval(args["path"])]
        elif op in ("lookup", "grad", "grad_padded", "grad_scaled", "lookup_with_state"):
            call = self._call_source(trainable, options)
        else:
            raise ValueError(f"{self.name} has no operation {op!r}")
        lines = [_SNIPPET_HELPERS]
        lines += [f"{k} = {v}" for k, v in args.items()]
        lines.append("ids = to_torch(ids)")
        lines.append("weight = to_torch(table)")
        # `result` is what the adapter returned, as NumPy (an error is raised, or, where
        # the table after a failed call is the point, printed and kept)
        if op in ("lookup", "lookup_loaded"):
            lines += call + ["result = show('out', out)"]
        elif op == "lookup_with_state":
            lines += ["held = weight", "try:"] + [f"    {ln}" for ln in call] + [
                "    out = show('out', out)",
                "except Exception as exc:",
                "    print('raised', type(exc).__name__, exc)",
                "    out = exc",
                "result = (out, show('table after', held))",
            ]
        else:
            lines += call + ["out.backward(to_torch(upstream))"]
            # torch leaves .grad unset when nothing flowed back (no ids); that is a zero gradient
            lines.append("grad = show('grad', held.grad if held.grad is not None else torch.zeros_like(held))")
            lines.append("result = (show('out', out), grad)" if op == "grad_padded" else "result = grad")
        return "\n".join(lines) + "\n"

    # -- shared autograd plumbing -----------------------------------------------------
    def _grad(self, table, ids, upstream, **options):
        ids_t, weight = _to_torch(ids), _to_torch(table, copy=True)
        up = _to_torch(upstream)
        with _TRANSLATE:
            out, held = self._call(ids_t, weight, trainable=True, **options)
            out.backward(up)
        g = held.grad
        if g is None:  # nothing flowed back (e.g. no ids): torch leaves .grad unset
            g = _torch().zeros_like(held)
        return _to_numpy(out), _to_numpy(g)


class _Padded:
    """grad_padded: nn.Embedding(padding_idx=...), whose row gets no gradient."""

    def grad_padded(self, table, ids, upstream, padding_idx):
        return self._grad(table, ids, upstream, padding_idx=int(padding_idx))


class _Scaled:
    """grad_scaled: nn.Embedding(scale_grad_by_freq=True)."""

    def grad_scaled(self, table, ids, upstream):
        return self._grad(table, ids, upstream, scale_grad_by_freq=True)[1]


# --- torch.nn.Embedding ------------------------------------------------------------

class NNEmbedding(TorchEmbedding):
    """``torch.nn.Embedding.from_pretrained(table, freeze=..., sparse=..., ...)``:
    the documented way to hold a given table (it keeps the table's dtype and wraps
    the tensor itself as the weight Parameter, no copy)."""

    name = "torch.nn.Embedding"
    state_trainable = True

    def _call_source(self, trainable, options):
        opts = "".join(f", {k}={v}" for k, v in options.items())
        return [
            f"layer = torch.nn.Embedding.from_pretrained(weight, freeze={not trainable}, sparse={self.sparse}{opts})",
            "held = layer.weight",
            "out = layer(ids)",
        ]


_MODULE_STATE_NOTE = (
    "lookup_with_state: nn.Embedding.from_pretrained(table, freeze=False, max_norm=...) renormalises "
    "the looked-up rows of its weight in place (embedding_renorm_), before the lookup itself"
)


# table.load: the documented ways to give nn.Embedding a table (its docs: from_pretrained,
# the `_weight` argument; a module's load_state_dict), each as the lines a snippet prints
_LOAD_SOURCE = {
    "from_pretrained": ["layer = torch.nn.Embedding.from_pretrained(weight)", "out = layer(ids)"],
    "_weight": ["layer = torch.nn.Embedding(weight.shape[0], weight.shape[1], _weight=weight)",
                "out = layer(ids)"],
    "load_state_dict": ["layer = torch.nn.Embedding(weight.shape[0], weight.shape[1], dtype=weight.dtype)",
                        "layer.load_state_dict({'weight': weight})",
                        "out = layer(ids)"],
}


class NNEmbeddingDense(_Padded, _Scaled, NNEmbedding):
    capabilities = TorchEmbedding.capabilities.narrowed(notes=_BASE_NOTES + (_MODULE_STATE_NOTE,),
                                                        load_paths=tuple(_LOAD_SOURCE))

    def lookup_loaded(self, table: np.ndarray, ids: np.ndarray, path: str) -> np.ndarray:
        with _TRANSLATE:
            ns = run_source(_LOAD_SOURCE[path], ids=_to_torch(ids), weight=_to_torch(table, copy=True))
        return _to_numpy(ns["out"])


class NNEmbeddingSparse(_Padded, NNEmbedding):
    name = "torch.nn.Embedding[sparse]"
    sparse = True
    capabilities = TorchEmbedding.capabilities.narrowed(notes=_BASE_NOTES + (
        _MODULE_STATE_NOTE,
        "sparse=True: the weight gradient is a sparse COO tensor, densified with torch's to_dense()",
        "grad_scaled not applicable: torch raises 'embedding_backward: scale_grad_by_freq not "
        "supported with sparse gradients'",
    ))


# --- torch.nn.functional.embedding ---------------------------------------------------

class FunctionalEmbedding(TorchEmbedding):
    name = "torch.nn.functional.embedding"
    capabilities = TorchEmbedding.capabilities.narrowed(notes=_BASE_NOTES + (
        "lookup_with_state: F.embedding(max_norm=...) renormalises the looked-up rows of the weight "
        "tensor it is given, in place",
    ))

    def _call_source(self, trainable, options):
        opts = "".join(f", {k}={v}" for k, v in options.items())
        lines = ["weight.requires_grad_(True)"] if trainable else []
        return lines + ["held = weight", f"out = F.embedding(ids, weight{opts})"]


# --- F.embedding under torch.compile ------------------------------------------------

def _dynamo_stats():
    from torch._dynamo.utils import counters

    return counters["stats"]


def _shape_key(*shapes: tuple[int, ...]) -> tuple:
    """What dynamo specialises a dynamic=True graph on, beyond dtypes and ranks:
    sizes 0 and 1 (specialised to constants) and which sizes >= 2 are equal (duck
    sizing gives equal sizes one symbol, guarded equal). Two calls with the same key
    share one graph; every new key is one compile."""
    seen: dict[int, int] = {}
    key = []
    for s in itertools.chain.from_iterable(shapes):
        key.append(s if s < 2 else 2 + seen.setdefault(s, len(seen)))
    return tuple(key)


class CompiledFunctionalEmbedding(FunctionalEmbedding):
    """``torch.compile(f, dynamic=True)`` of a function calling ``F.embedding``.

    Dynamo keeps its compiled graphs per code object and, past
    ``torch._dynamo.config.recompile_limit`` (8) recompiles of one code object,
    silently runs the function eagerly. So each signature key (dtypes, ranks, the
    0/1 and equality pattern of the sizes, options) gets a function with a code
    object of its own, compiled once. Should dynamo recompile one anyway (a guard
    the key misses), the recompile is counted in ``recompiles`` and, well before
    the limit, the key gets a fresh function, so a fall-back to eager can never
    pass for compiled behaviour. (``config.patch(fail_on_recompile_limit_hit=True)``
    around each call would cost ~50 us a call.)
    """

    RECOMPILES_BEFORE_FRESH = 4

    name = "torch.nn.functional.embedding[compile]"
    backend = "inductor"
    FALLBACK_BACKEND = "aot_eager"

    def __init__(self):
        self._cache: dict[tuple, Callable] = {}
        self._lock = threading.Lock()
        self._backend_checked = False
        self.compiles = 0  # functions compiled: one per signature key
        self.recompiles = 0  # graphs dynamo built on a function's later calls (expected 0)
        self._graphs_of: dict[tuple, int] = {}  # key -> recompiles seen
        self.capabilities = TorchEmbedding.capabilities.narrowed(notes=_BASE_NOTES + (
            "torch.compile(dynamic=True, backend='inductor'); one compiled function per signature "
            "(dtypes, ranks, 0/1 sizes, equal sizes), so dynamo never recompiles past its limit",
            "lookup_with_state: F.embedding(max_norm=...) under torch.compile",
        ))

    def environment(self) -> dict[str, int]:
        from torch._inductor.utils import parallel_num_threads

        # the threads inductor generates code for (config.cpp.threads, else torch's):
        # past one it writes parallel loops, and torch.toml#7's failing scatter with them
        return {**super().environment(), "inductor.threads": parallel_num_threads()}

    def _select_backend(self) -> None:
        """Ready inductor (adapters/torch/inductor.py: one compiled lookup); if it cannot build
        here (no C++ toolchain, ...), use aot_eager and say so in the capabilities."""
        if self._backend_checked:
            return
        from embedding_conformance.adapters.torch import inductor

        self._backend_checked = True
        reason, isa_note = inductor.ready()
        notes = self.capabilities.notes + (isa_note,)
        if reason is not None:  # inductor unusable on this machine
            self.backend = self.FALLBACK_BACKEND
            notes += (f"inductor cannot compile on this machine ({reason}); "
                      f"compiled with backend='{self.FALLBACK_BACKEND}' instead",)
        self.capabilities = self.capabilities.narrowed(notes=notes)

    def _compiled(self, key: tuple, with_max_norm: bool) -> Callable:
        fn = self._cache.get(key)
        if fn is None:
            with self._lock:
                fn = self._cache.get(key)
                if fn is None:
                    self._select_backend()
                    torch = _torch()
                    from embedding_conformance.adapters.torch import inductor

                    fn = torch.compile(inductor.fresh_embed(with_max_norm), dynamic=True, backend=self.backend)
                    self._cache[key] = fn
                    self.compiles += 1
        return fn

    def _call(self, ids, weight, *, trainable=False, **options):
        unknown = set(options) - {"max_norm"}
        if unknown:
            raise TypeError(f"{self.name} does not take {sorted(unknown)}")
        if trainable:
            weight.requires_grad_(True)
        max_norm = options.get("max_norm")
        key = (ids.dtype, ids.dim(), weight.dtype, weight.dim(), weight.requires_grad,
               max_norm, _shape_key(tuple(ids.shape), tuple(weight.shape)))
        fn = self._compiled(key, max_norm is not None)
        stats = _dynamo_stats()
        graphs = stats["unique_graphs"]
        try:
            if max_norm is not None:
                return fn(ids, weight, max_norm), weight
            return fn(ids, weight), weight
        finally:
            self._count_graphs(key, stats["unique_graphs"] - graphs)

    def _count_graphs(self, key: tuple, new_graphs: int) -> None:
        """Graphs built by a function's first call are its compile (more than one if
        dynamo breaks the graph); graphs built by later calls are recompiles."""
        if key not in self._graphs_of:
            self._graphs_of[key] = 0
            return
        if new_graphs > 0:
            self.recompiles += new_graphs
            self._graphs_of[key] += new_graphs
            if self._graphs_of[key] >= self.RECOMPILES_BEFORE_FRESH:
                with self._lock:  # a fresh code object for this key, far below the limit
                    self._cache.pop(key, None)
                    self._graphs_of.pop(key, None)

    def _call_source(self, trainable, options):
        self._select_backend()
        lines = ["weight.requires_grad_(True)"] if trainable else []
        if "max_norm" in options:
            lines += [
                "def embed(ids, weight, max_norm):",
                "    return F.embedding(ids, weight, max_norm=max_norm)",
                f"compiled = torch.compile(embed, dynamic=True, backend={self.backend!r})",
                "held = weight",
                f"out = compiled(ids, weight, {options['max_norm']})",
            ]
        else:
            lines += [
                "def embed(ids, weight):",
                "    return F.embedding(ids, weight)",
                f"compiled = torch.compile(embed, dynamic=True, backend={self.backend!r})",
                "held = weight",
                "out = compiled(ids, weight)",
            ]
        return lines


# --- registry factories ---------------------------------------------------------------

_CLASSES = {
    "torch.nn.Embedding": NNEmbeddingDense,
    "torch.nn.Embedding[sparse]": NNEmbeddingSparse,
    "torch.nn.functional.embedding": FunctionalEmbedding,
    "torch.nn.functional.embedding[compile]": CompiledFunctionalEmbedding,
}


describe = describer(_CLASSES)  # what a built-in offers, without importing torch


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a torch exception stands for (a snippet's replay uses it)."""
    return _failure(exc)


def nn_embedding() -> TorchEmbedding:
    return NNEmbeddingDense()


def nn_embedding_sparse() -> TorchEmbedding:
    return NNEmbeddingSparse()


def functional_embedding() -> TorchEmbedding:
    return FunctionalEmbedding()


def functional_embedding_compile() -> TorchEmbedding:
    return CompiledFunctionalEmbedding()
