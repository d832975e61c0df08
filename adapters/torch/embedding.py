"""PyTorch adapters: ``torch.nn.Embedding`` (dense and sparse gradients),
``torch.nn.functional.embedding``, and ``F.embedding`` under ``torch.compile``.

One class, :class:`TorchEmbedding`, holds everything the variants share (translating
torch's exceptions, the text of each operation, the autograd plumbing); a variant only
says how the lookup is *called* (``_call_lines``) and which optional methods it exposes.
Every call is source run with the torch prelude (adapters/torch/source.py: the NumPy <->
torch conversions, bit for bit), the very lines its snippet prints. Torch is imported
lazily: importing this module does not import torch.

What torch takes (declared in ``capabilities``): 2-D weights only (``'weight' must
be 2-D``), int32 and int64 indices only (``Expected tensor for argument #1
'indices' to have one of the following scalar types: Long, Int``), every float
table dtype the suite generates.
"""
from __future__ import annotations

import functools
import itertools
import threading
from typing import Any, Callable

import numpy as np

from embedding_conformance.adapters.contract import Call, Capabilities, InvalidIds, InvalidTable, LookupFailure, OutOfRange, Translate, describer
from embedding_conformance.adapters.torch import inductor
from embedding_conformance.adapters.torch.source import TORCH

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
    # uint16/uint32 ids where torch has no kernel for them (torch 2.11's DTensor masks ids
    # with '<': '"lt_cpu" not implemented for 'UInt32''): the ids' dtype is refused
    ("not implemented for 'UInt", InvalidIds),
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


# --- the source every call runs and its snippet prints (adapters/torch/source.py) -------

def to_numpy(t) -> np.ndarray:
    """The prelude's conversion back to NumPy, bit for bit (the one a snippet's ``show`` uses)."""
    return TORCH.helper("to_numpy")(t)


def kept(lines: list[str]) -> list[str]:
    """``lines`` with their exception bound to ``out`` (the call's outcome) instead of ending
    the run, so that what was built before them (a compiled function, a module kept across
    calls) and the table they were handed stay readable whatever the call did."""
    return ["try:", *(f"    {ln}" for ln in lines), "except Exception as exc:  # the call's outcome", "    out = exc"]


def outcome(ns: dict[str, Any], name: str = "out") -> Any:
    """What a run of ``kept`` lines bound to ``name``; the exception it kept is raised again."""
    value = ns[name]
    if isinstance(value, Exception):
        raise value
    return value


# a snippet's tail after ``kept`` lines: the exception is raised, as the call raised it
RAISE_KEPT = ["if isinstance(out, Exception):", "    raise out"]

# the table as torch holds it: a copy where torch may write to it (max_norm renormalises in
# place, a gradient's leaf), else the array's own memory
_CONVERT = "ids, weight = to_torch(ids), to_torch(table)"
_CONVERT_COPY = "ids, weight = to_torch(ids), to_torch(table, copy=True)"
# the gradient clauses: the options each passes to the lookup
_GRADS = {"grad": "", "grad_padded": ", padding_idx=padding_idx", "grad_scaled": ", scale_grad_by_freq=True"}
_BACKWARD = ["out.backward(to_torch(upstream))",
             "# torch leaves .grad unset when nothing flowed back (no ids): a zero gradient",
             "grad = held.grad if held.grad is not None else torch.zeros_like(held)"]
_TAILS = {"lookup": ["result = show('out', out)"], "lookup_loaded": ["result = show('out', out)"],
          "grad": ["result = show('grad', grad)"], "grad_scaled": ["result = show('grad', grad)"],
          "grad_padded": ["result = (show('out', out), show('grad', grad))"],
          # the table after the call, whether it raised or not
          "lookup_with_state": ["if isinstance(out, Exception):", "    print('raised', type(out).__name__, out)",
                                "else:", "    out = show('out', out)", "result = (out, show('table after', held))"]}


class TorchEmbedding:
    """Everything the torch variants share. A variant says how the lookup is called
    (``_call_lines``); each operation's text, the one its snippet prints, is built here."""

    name = "torch"
    framework = "torch"
    sparse = False
    # lookup_with_state holds the table as a trainable weight (nn.Embedding's training
    # setting) or as a plain tensor (what F.embedding is handed)
    state_trainable = False
    capabilities = Capabilities(table_ndims=_TABLE_NDIMS, id_dtypes=_ID_DTYPES, notes=_BASE_NOTES)

    def environment(self) -> dict[str, int]:
        # intra-op threads: parallel kernels (and their reductions' order) depend on them
        return {"torch.threads": TORCH.helper("torch").get_num_threads()}

    def _call_lines(self, trainable: bool, options: str) -> list[str]:
        """Lines that, given tensors ``ids`` and ``weight`` and the call's ``options`` (source
        such as ``", max_norm=max_norm"``), set ``out`` and ``held`` (the framework's weight tensor)."""
        raise NotImplementedError

    @functools.cache  # built once per operation: a call looks its text up
    def _text(self, op: str, max_norm: bool = False, path: str | None = None) -> str:
        """The text ``op`` runs on NumPy ``table``, ``ids`` (and ``upstream``, ``padding_idx``,
        ``max_norm``; lookup_loaded: the load ``path``): the very text its snippet prints."""
        if op == "lookup_loaded":
            lines = [_CONVERT_COPY, *_LOAD_SOURCE[path]]
        elif op == "lookup":
            lines = [_CONVERT, *self._call_lines(False, "")]
        elif op in _GRADS:
            lines = [_CONVERT_COPY, *self._call_lines(True, _GRADS[op]), *_BACKWARD]
        elif op == "lookup_with_state":
            # the module wraps the very tensor it is given: `held` even when the call raises first
            options = ", max_norm=max_norm" if max_norm else ""
            lines = [_CONVERT_COPY, "held = weight", *kept(self._call_lines(self.state_trainable, options))]
        else:
            raise ValueError(f"{self.name} has no operation {op!r}")
        return "\n".join(lines)

    def _run(self, op: str, table, ids, max_norm: float | None = None, **names) -> dict[str, Any]:
        """Run ``op``'s text; the namespace after."""
        return TORCH.run(self._text(op, max_norm is not None), table=table, ids=ids, max_norm=max_norm, **names)

    # -- the adapter API -------------------------------------------------------------
    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        with _TRANSLATE:
            return to_numpy(outcome(self._run("lookup", table, ids)))

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        return self._grad("grad", table, ids, upstream)[1]

    def lookup_with_state(self, table: np.ndarray, ids: np.ndarray, max_norm: float | None = None):
        ns = self._run("lookup_with_state", table, ids, None if max_norm is None else float(max_norm))
        result: Any
        try:  # the call's outcome: a contract failure is an answer here, with the table after it
            with _TRANSLATE:
                result = to_numpy(outcome(ns))
        except LookupFailure as failure:
            result = failure
        return result, to_numpy(ns["held"])

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in _TAILS or not callable(getattr(self, op, None)):
            raise ValueError(f"{self.name} has no operation {op!r}")
        # the text the call ran, as its printed arguments choose it (a load path; a max_norm or None)
        if op == "lookup_loaded":
            lines = self._text(op, path=next((p for p in _LOAD_SOURCE if repr(p) == args["path"]), None))
        else:
            lines = self._text(op, max_norm=args.get("max_norm", "None") != "None")
        return TORCH.snippet(args, lines, self._tail(op))

    def _tail(self, op: str) -> list[str]:
        return _TAILS[op]

    # -- shared autograd plumbing -----------------------------------------------------
    def _grad(self, op, table, ids, upstream, **names):
        with _TRANSLATE:
            ns = self._run(op, table, ids, upstream=upstream, **names)
            out = outcome(ns)
        return to_numpy(out), to_numpy(ns["grad"])


class _Padded:
    """grad_padded: nn.Embedding(padding_idx=...), whose row gets no gradient."""

    def grad_padded(self, table, ids, upstream, padding_idx):
        return self._grad("grad_padded", table, ids, upstream, padding_idx=int(padding_idx))


class _Scaled:
    """grad_scaled: nn.Embedding(scale_grad_by_freq=True)."""

    def grad_scaled(self, table, ids, upstream):
        return self._grad("grad_scaled", table, ids, upstream)[1]


# --- torch.nn.Embedding ------------------------------------------------------------

class NNEmbedding(TorchEmbedding):
    """``torch.nn.Embedding.from_pretrained(table, freeze=..., sparse=..., ...)``:
    the documented way to hold a given table (it keeps the table's dtype and wraps
    the tensor itself as the weight Parameter, no copy)."""

    name = "torch.nn.Embedding"
    state_trainable = True

    def _call_lines(self, trainable, options):
        return [
            f"layer = torch.nn.Embedding.from_pretrained(weight, freeze={not trainable}, sparse={self.sparse}{options})",
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
            ns = TORCH.run(self._text("lookup_loaded", path=path), table=table, ids=ids)
        return to_numpy(ns["out"])


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

    def _call_lines(self, trainable, options):
        lines = ["weight.requires_grad_(True)"] if trainable else []
        return lines + ["held = weight", f"out = F.embedding(ids, weight{options})"]


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


def _dtype(a: np.ndarray) -> np.dtype:
    """``a``'s dtype as torch gets it (to_torch makes it native), for a signature key: a dtype
    object, as a dtype's name costs more than the lookup it keys."""
    return a.dtype if a.dtype.isnative else a.dtype.newbyteorder("=")


class Built:
    """Objects built once per key (a compiled function, a module) by the text of the key's first
    call, which builds and then calls (what a snippet prints), and bound under ``name`` for the
    key's later calls, whose text only calls. The call's lines are ``kept``: a call that raises
    leaves what its run built."""

    def __init__(self, name: str):
        self.name = name
        self._cache: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.builds = 0

    def run(self, key: tuple, text: Callable[[bool], str | list[str]], **names) -> dict[str, Any]:
        """Run ``text(build)`` for ``key``: with ``build`` the first time, keeping what it binds
        to ``name``, else with that bound."""
        built = self._cache.get(key)
        if built is None:
            with self._lock:
                built = self._cache.get(key)
                if built is None:
                    ns = TORCH.run(text(True), **names)
                    self._cache[key] = ns[self.name]
                    self.builds += 1
                    return _released(ns)
        return TORCH.run(text(False), **{self.name: built}, **names)

    def forget(self, key: tuple) -> None:
        with self._lock:
            self._cache.pop(key, None)


def _released(ns: dict[str, Any]) -> dict[str, Any]:
    """A copy of a building run's namespace, for its caller; the namespace itself, the globals of
    a function the run defined (and where dynamo puts its compiled code, under ``__`` names),
    keeps only those and the prelude's, not the call's arrays and outcome (an exception would
    hold its whole traceback) for as long as the function is kept."""
    out = dict(ns)
    base = TORCH.base()
    for name in [n for n in ns if n not in base and not n.startswith("__")]:
        del ns[name]
    return out


class Compiled(Built):
    """A compiled function per signature key (``Built``, bound as ``compiled``).

    Dynamo keeps its compiled graphs per code object and, past
    ``torch._dynamo.config.recompile_limit`` (8) recompiles of one code object,
    silently runs the function eagerly. So each signature key gets a function with
    a code object of its own (``fresh_compile``), compiled once. Should dynamo
    recompile one anyway (a guard the key misses), the recompile is counted in
    ``recompiles`` and, well before the limit, the key gets a fresh function, so a
    fall-back to eager can never pass for compiled behaviour.
    (``config.patch(fail_on_recompile_limit_hit=True)`` around each call would cost
    ~50 us a call.)"""

    RECOMPILES_BEFORE_FRESH = 4

    def __init__(self):
        super().__init__("compiled")
        self.recompiles = 0  # graphs dynamo built on a function's later calls (expected 0)
        self._graphs_of: dict[tuple, int] = {}  # key -> recompiles seen

    def run(self, key, text, **names):
        stats = _dynamo_stats()
        graphs = stats["unique_graphs"]
        try:
            return super().run(key, text, **names)
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
                self.forget(key)  # a fresh code object for this key, far below the limit
                self._graphs_of.pop(key, None)


class CompiledBackend:
    """What the torch.compile variants share: inductor, readied once (adapters/torch/inductor.py:
    one compiled lookup), or aot_eager where inductor cannot build here (no C++ toolchain, ...),
    said in the capabilities; and the threads inductor writes code for."""

    backend = "inductor"
    FALLBACK_BACKEND = "aot_eager"
    _backend_checked = False
    _compiled: Compiled  # the variant's functions, one per signature key

    @property
    def compiles(self) -> int:  # functions compiled: one per signature key
        return self._compiled.builds

    @property
    def recompiles(self) -> int:  # graphs dynamo built on a function's later calls (expected 0)
        return self._compiled.recompiles

    def environment(self) -> dict[str, int]:
        from torch._inductor.utils import parallel_num_threads

        # the threads inductor generates code for (config.cpp.threads, else torch's):
        # past one it writes parallel loops, and torch.toml#7's failing scatter with them
        return {**super().environment(), "inductor.threads": parallel_num_threads()}

    def _select_backend(self) -> None:
        if self._backend_checked:
            return
        self._backend_checked = True
        reason, isa_note = inductor.ready()
        notes = self.capabilities.notes + (isa_note,)
        if reason is not None:  # inductor unusable on this machine
            self.backend = self.FALLBACK_BACKEND
            notes += (f"inductor cannot compile on this machine ({reason}); "
                      f"compiled with backend='{self.FALLBACK_BACKEND}' instead",)
        self.capabilities = self.capabilities.narrowed(notes=notes)


def compiled_lookup(backend: str, max_norm: bool, build: bool, then: list[str] = ()) -> list[str]:
    """F.embedding under torch.compile, given tensors ``ids`` and ``weight`` (and ``max_norm``):
    the compile (with ``build``), then the call and ``then``, kept (``out`` is their outcome)."""
    params = "ids, weight, max_norm" if max_norm else "ids, weight"
    return (inductor.compile_embed(backend, max_norm) if build else []) + kept(
        ["held = weight", f"out = compiled({params})", *then])


class CompiledFunctionalEmbedding(CompiledBackend, FunctionalEmbedding):
    """``torch.compile(f, dynamic=True)`` of a function calling ``F.embedding``, one compiled
    function per signature key (dtypes, ranks, the 0/1 and equality pattern of the sizes,
    options; ``Compiled``)."""

    name = "torch.nn.functional.embedding[compile]"
    # each operation: what comes before the compiled call, what is kept with it
    _OPS = {"lookup": ([_CONVERT], []), "grad": ([_CONVERT_COPY, "weight.requires_grad_(True)"], _BACKWARD),
            "lookup_with_state": ([_CONVERT_COPY], [])}

    def __init__(self):
        self._compiled = Compiled()
        self.capabilities = TorchEmbedding.capabilities.narrowed(notes=_BASE_NOTES + (
            "torch.compile(dynamic=True, backend='inductor'); one compiled function per signature "
            "(dtypes, ranks, 0/1 sizes, equal sizes), so dynamo never recompiles past its limit",
            "lookup_with_state: F.embedding(max_norm=...) under torch.compile",
        ))

    @functools.cache
    def _text(self, op: str, max_norm: bool = False, build: bool = True) -> str:
        """The text of ``op``'s call; with ``build``, of a signature's first call (the snippet's)."""
        if op not in self._OPS:
            raise ValueError(f"{self.name} has no operation {op!r}")
        self._select_backend()
        head, then = self._OPS[op]
        return "\n".join(head + compiled_lookup(self.backend, max_norm, build, then))

    def _run(self, op, table, ids, max_norm=None, **names):
        """Run ``op``'s text with the compiled function of the call's signature key."""
        table, ids = np.asarray(table), np.asarray(ids)
        key = (_dtype(ids), ids.ndim, _dtype(table), table.ndim, op == "grad", max_norm,
               _shape_key(ids.shape, table.shape))
        return self._compiled.run(key, lambda build: self._text(op, max_norm is not None, build),
                                  table=table, ids=ids, max_norm=max_norm, **names)

    def _tail(self, op: str) -> list[str]:
        return _TAILS[op] if op == "lookup_with_state" else RAISE_KEPT + _TAILS[op]


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
