"""TensorFlow adapters: ``tf.nn.embedding_lookup`` (eager, ``tf.function``, XLA),
``tf.compat.v1.nn.embedding_lookup`` (both partition strategies) and
``tf.distribute.ShardedVariable`` looked up with ``tf.nn.embedding_lookup``
(eager and inside ``tf.function``).

One class, ``TFEmbedding``, holds everything; each registry name is a small
``Variant`` (which API, which execution mode, which capabilities). Every call runs
from source text with the TensorFlow prelude (adapters/tensorflow/source.py), the text
its snippet prints: the inputs are handed to TensorFlow in the dtypes given
(``to_tf``, i.e. ``tf.constant(array)``), and the outputs come back through
``Tensor.numpy()`` (TensorFlow's bfloat16 *is* ``ml_dtypes.bfloat16``, so no bit
changes on the way).

Execution modes:
- ``eager``: the call as written;
- ``function``: the same call inside ``tf.function`` with an ``input_signature``
  whose dimensions are all None, cached per (dtypes, ranks): one trace per
  signature, never one per shape;
- ``xla``: the same, with ``jit_compile=True`` (XLA compiles once per concrete
  shape, as it always does).

ShardedVariable: built the way ParameterServerStrategy builds it (one
``tf.Variable`` per shard, wrapped in ``tf.__internal__.distribute.ShardedVariable``,
the class the strategy instantiates; ``tf.distribute.ShardedVariable`` is not an
exported symbol in TF 2.21). The variables are created once per shard layout
and re-assigned per call; the ``[function]`` variant captures the sharded
variable in the function (as a Keras layer or a PS-strategy model does). Its
``lookup(table, ids)`` uses a one-shard ShardedVariable, so the ``lookup``
clauses measure the plain lookup through the ShardedVariable code path and all
sharding is left to ``lookup_sharded`` (the partition clauses).

TensorFlow is imported lazily: importing this module does not import it.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.toolkit.source import Source
from embedding_conformance.adapters.contract import (Call, Capabilities, Description, FLOAT_DTYPES, InvalidIds, InvalidShards, InvalidTable, LookupFailure,
                       OutOfRange)
from embedding_conformance.adapters.tensorflow.source import PRELUDE, Kept, run_keeping, translating

# the TensorFlow prelude, and the input signature every tf.function here is given
SOURCE = Source("tf.nn.embedding_lookup", PRELUDE + '''

def spec(a):
    # a's dtype and rank, every dimension None: one trace per dtype/rank signature, never one per shape
    return tf.TensorSpec([None] * a.ndim, tf.as_dtype(a.dtype))
''')


# --- capabilities ---------------------------------------------------------------------

TF_ID_DTYPES = ("int16", "int32", "int64")
_IDS_NOTE = ("ids: the docs name int32 and int64; GatherV2 registers Tindices int16, int32, int64, "
             "so int16 ids are taken too and every other integer dtype (int8, uint8..uint64) is refused")
_CPU_NOTE = "measured on CPU: GatherV2 raises for ids outside [0, V); on GPU TensorFlow documents zero rows instead"
_V2_DIV_NOTE = ("tf.nn.embedding_lookup (TF2) takes a list of shards and always routes them with the 'div' "
                "strategy; 'mod' is not available through this API")
_STATE_NOTE = ("lookup_with_state: params is a tf.Variable; max_norm clips the looked-up rows with "
               "tf.clip_by_norm (out = row * max_norm / max(||row||, max_norm)) and never writes the variable; "
               "a variable is read with ResourceGather, which takes int32/int64 ids only (int16 -> InvalidIds)")
_RESOURCE_IDS_NOTE = ("inside tf.function the shards are read with ResourceGather, whose Tindices are int32 and "
                      "int64 only: int16 ids are refused (eager gathers from the concatenated tensor and takes int16)")
_XLA_NOTE = "XLA (jit_compile=True) gathers clamp ids into [0, V-1] instead of raising"
_SV_NOTE = ("ShardedVariable: one tf.Variable per shard wrapped in tf.__internal__.distribute.ShardedVariable, "
            "as ParameterServerStrategy builds it; lookup(table, ids) uses a one-shard ShardedVariable")
_SV_EAGER_NOTE = ("eager: tf.nn.embedding_lookup converts the ShardedVariable to one tensor (concat of its "
                  "shards) and gathers from it; the dispatch to the sharded lookup only happens in graphs")
_SV_FUNCTION_NOTE = ("tf.function: tf.nn.embedding_lookup dispatches to the list-of-shards lookup with 'div' "
                     "routing; the ShardedVariable is captured by the function, as a model's variable is")


def _caps(*notes: str, **changes: Any) -> Capabilities:
    return Capabilities(
        table_dtypes=FLOAT_DTYPES,
        table_ndims=(1, 2, 3, 4),
        id_dtypes=TF_ID_DTYPES,
        distributions=("tensorflow", "tensorflow-cpu"),
        notes=(_IDS_NOTE, *notes),
    ).narrowed(**changes)


# --- error translation ----------------------------------------------------------------

_RANGE = re.compile(r"is not in \[0, -?\d+\)|is out of range \[0, -?\d+\)")
_DTYPE_NAMED = (
    re.compile(r"Value for attr '\w+' of (\w+) is not in the list of allowed values"),
    re.compile(r"has DataType (\w+) not in list of allowed values"),
    re.compile(r"Cannot convert \S+ to EagerTensor of dtype (\w+)"),
)
_C_NAMES = {"float16": "half", "float32": "float", "float64": "double"}
_TABLE_RANK = ("params must be at least 1 dimensional", "Shape must be at least rank 1 but is rank 0")
_SHARDS = (
    "Need data[0].shape[1:] = data[",  # ParallelDynamicStitch: row shapes differ (eager)
    "Dimension 0 in both shapes must be equal",  # the same, found while tracing a graph
    "Shapes must be equal rank",
    "to be a float tensor but is a",  # ParallelDynamicStitch: dtypes differ (eager)
    "to be a double tensor but is a",
    "to be a half tensor but is a",
    "to be a bfloat16 tensor but is a",
    "Op have types [",  # the same, found while tracing
    "must have the same dtype",  # ShardedVariable constructor
    "must have the same shapes except for the first axis",
    "Integer division by zero",  # 'div' routing with fewer rows than shards: rows per shard == 0
    "Length of params is currently 0",  # an empty shard list
    "should be a non-empty list",  # the same, ShardedVariable constructor
)


def translate(exc: BaseException, ids_dtype: np.dtype | None, sharded: bool = False) -> LookupFailure | None:
    """The adapters.contract failure that a TensorFlow exception stands for, by its
    message; None when it cannot be classified (then it is re-raised unchanged)."""
    msg = str(exc)
    if _RANGE.search(msg):
        # GatherV2 "indices[k] = i is not in [0, V)", DynamicPartition "partitions[k] = p
        # is not in [0, P)" (an id routed past the last shard), UnsortedSegmentSum
        return OutOfRange(msg)
    if "Gather dimension 0 is of size zero" in msg:
        # XLA (TF 2.16): gathering any id from a table with no rows is refused at compile time
        return OutOfRange(msg)
    if "too large for int16 indexing" in msg:
        # GatherV2 indexes in the ids' own type and refuses a table with more rows than
        # int16 counts, valid ids or not: a framework failure of no contract kind
        return LookupFailure(msg)
    if ids_dtype is not None:
        names = {ids_dtype.name, _C_NAMES.get(ids_dtype.name, ids_dtype.name)}
        for pattern in _DTYPE_NAMED:
            m = pattern.search(msg)
            if m and m.group(1) in names:
                return InvalidIds(msg)
    if any(p in msg for p in _TABLE_RANK):
        return InvalidTable(msg)
    if sharded and any(p in msg for p in _SHARDS):
        return InvalidShards(msg)
    if sharded and ("not all indices are used" in msg or "Input to reshape is a tensor with" in msg):
        # XLA's DynamicPartition drops an id routed to a shard outside [0, P) (where the
        # CPU kernel raises "partitions[k] = p is not in [0, P)"): DynamicStitch then
        # finds a result slot no shard filled, or the final reshape a row too few
        return OutOfRange(msg)
    return None


# --- variants -------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    name: str
    api: str  # "v2": tf.nn.embedding_lookup; "v1": tf.compat.v1.nn.embedding_lookup; "sv": ShardedVariable
    mode: str  # "eager" | "function" | "xla"
    capabilities: Capabilities
    sharded: bool = True  # has lookup_sharded
    training: bool = False  # has grad and lookup_with_state (and lookup_loaded: a tf.Variable's table)

    @property
    def methods(self) -> tuple[str, ...]:
        return ("lookup",) + (("lookup_sharded",) if self.sharded else ()) + (
            ("grad", "lookup_with_state", "lookup_loaded") if self.training else ())


# --- the source of each call --------------------------------------------------------------

def _traced(mode: str, fn: str, signature: str | None) -> str:
    """The line binding ``f``: the callable ``fn`` as the variant runs it, itself (eager)
    or a tf.function. autograph=False: there is no Python control flow to convert, and
    autograph's cache of converted closures once handed one variant's closure to another's
    trace. Without a signature (a tf.Variable argument) its spec is relaxed between calls."""
    if mode == "eager":
        return f"f = {fn}"
    jit = "jit_compile=True, " if mode == "xla" else ""
    sig = f"input_signature={signature}" if signature else "reduce_retracing=True"
    return f"f = tf.function({fn}, {jit}autograph=False, {sig})"


_GRAD = [
    "def grad(table, ids, upstream):",
    "    with tf.GradientTape() as tape:",
    "        tape.watch(table)",
    "        loss = tf.reduce_sum({op}(table, ids) * upstream)",
    "    # d loss / d table arrives as tf.IndexedSlices; TensorFlow densifies it (unsorted_segment_sum)",
    "    # when it is converted to a tensor. The loss is returned too, as a training step returns it:",
    "    # a graph returning the gradient alone would prune the forward gather, and the ids' check",
    "    return loss, tf.convert_to_tensor(tape.gradient(loss, table))",
]
_STATE = [
    "var = tf.Variable(table)",
    "try:",
    "    out = f(var, to_tf(ids))",
    "except (tf.errors.OpError, ValueError, TypeError) as exc:",
    "    out = exc  # the lookup failed: the table must still be as it was",
    "after = var.read_value()",
]
_LOAD_PATHS = ("Variable", "assign")  # table.load: tf.Variable(table), and Variable.assign(table)
_LOAD = {
    "Variable": ["var = tf.Variable(table)"],
    "assign": ["var = tf.Variable(tf.zeros(table.shape, tf.as_dtype(table.dtype)))", "var.assign(table)"],
}
_PATH_OF = {repr(p): p for p in _LOAD_PATHS}  # a snippet's `path` argument, as source


def _texts(variant: Variant) -> dict[Any, tuple[list[str], list[str]]]:
    """Each call of a tf.nn / compat.v1 variant as (build lines, call lines): the build
    binds ``f``, the call calls it. The snippet prints both; a kept tf.function runs the
    call lines alone."""
    op = "tf.compat.v1.nn.embedding_lookup" if variant.api == "v1" else "tf.nn.embedding_lookup"
    strategy = ", partition_strategy=strategy" if variant.api == "v1" else ""
    mode = variant.mode
    texts = {
        "lookup": ([_traced(mode, f"lambda table, ids: {op}(table, ids)", "[spec(table), spec(ids)]")],
                   ["out = f(to_tf(table), to_tf(ids))"]),
        # a list of shards: TensorFlow treats a tuple as one stacked tensor
        "lookup_sharded": ([_traced(mode, f"lambda shards, ids: {op}(list(shards), ids{strategy})",
                                    "[[spec(s) for s in shards], spec(ids)]")],
                           ["out = f([to_tf(s) for s in shards], to_tf(ids))"]),
        "grad": ([*(line.format(op=op) for line in _GRAD),
                  _traced(mode, "grad", "[spec(table), spec(ids), spec(upstream)]")],
                 ["loss, out = f(to_tf(table), to_tf(ids), to_tf(upstream))"]),
        "lookup_with_state": ([_traced(mode, f"lambda var, ids: {op}(var, ids, max_norm=max_norm)", None)], _STATE),
    }
    for path, load in _LOAD.items():
        texts["lookup_loaded", path] = ([_traced(mode, f"lambda var, ids: {op}(var, ids)", None)],
                                        [*load, "out = f(var, to_tf(ids))"])
    return texts


# ShardedVariable: the variables of a shard layout are made once and re-assigned per call
_SV_ONE = "shards = [table]  # a one-shard ShardedVariable: the plain lookup through its code path"
_SV_BUILD = [
    "# one tf.Variable per shard, wrapped as ParameterServerStrategy wraps them",
    "variables = [tf.Variable(s) for s in shards]",
    "sv = tf.__internal__.distribute.ShardedVariable(variables)",
]
_SV_ASSIGN = ["for var, s in zip(variables, shards):", "    var.assign(s)"]
_SV_FUNCTION = [
    "# the ShardedVariable is captured, as a model's variable is (passed as an argument, it",
    "# would be rebuilt from a tuple of variables)",
    "f = tf.function(lambda ids: tf.nn.embedding_lookup(sv, ids), input_signature=[spec(ids)])",
]
_SV_CALL = {"eager": "out = tf.nn.embedding_lookup(sv, to_tf(ids))", "function": "out = f(to_tf(ids))"}


class TFEmbedding:
    framework = "tensorflow"
    _LAYOUTS = 64  # ShardedVariable layouts kept alive (variables + functions)

    def __init__(self, variant: Variant):
        SOURCE.base()  # imports TensorFlow
        self.variant = variant
        self.name = variant.name
        self.capabilities = variant.capabilities
        self._texts = _texts(variant)
        self._fns = Kept(SOURCE, "f")  # tf.functions, per method and input signature
        self._layouts: OrderedDict[tuple, dict] = OrderedDict()
        for method in ("lookup_sharded", "grad", "lookup_with_state", "lookup_loaded"):
            if method not in variant.methods:
                setattr(self, method, None)  # not applicable: callable(None) is False

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    # -- calling TensorFlow

    def _call(self, text: Any, key: tuple, **names: Any) -> dict[str, Any]:
        """Run a call's text: build and call (eager), or the call with the tf.function kept
        for ``key`` (made by the first such call)."""
        build, call = self._texts[text]
        if self.variant.mode == "eager":
            return SOURCE.run([*build, *call], **names)
        return self._fns.run(key, [*build, *call], call, **names)

    @staticmethod
    def _translating(ids: np.ndarray, sharded: bool = False):
        return translating(lambda exc, dtype: translate(exc, dtype, sharded), ids)

    # -- the methods

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        if self.variant.api == "sv":
            return self._sv_lookup("lookup", [table], {"table": table, "ids": ids})
        with self._translating(ids):
            ns = self._call("lookup", ("lookup", table.dtype, table.ndim, ids.dtype, ids.ndim), table=table, ids=ids)
        return SOURCE.helper("to_numpy")(ns["out"])

    def lookup_sharded(self, shards: list[np.ndarray], ids: np.ndarray, strategy: str) -> np.ndarray:
        if strategy not in self.capabilities.strategies:
            raise ValueError(f"{self.name} has no partition strategy {strategy!r}; "
                             f"it takes {', '.join(self.capabilities.strategies)}")
        if self.variant.api == "sv":
            return self._sv_lookup("lookup_sharded", list(shards), {"shards": list(shards), "ids": ids})
        key = ("sharded", strategy, tuple((s.dtype, s.ndim) for s in shards), ids.dtype, ids.ndim)
        with self._translating(ids, sharded=True):
            ns = self._call("lookup_sharded", key, shards=shards, ids=ids, strategy=strategy)
        return SOURCE.helper("to_numpy")(ns["out"])

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        key = ("grad", table.dtype, table.ndim, ids.dtype, ids.ndim, upstream.dtype)
        with self._translating(ids):
            ns = self._call("grad", key, table=table, ids=ids, upstream=upstream)
        return SOURCE.helper("to_numpy")(ns["out"])

    def lookup_with_state(self, table: np.ndarray, ids: np.ndarray, max_norm: float | None = None):
        # the variable is an argument (its spec relaxed between calls): one function per
        # rank signature, so that no trace is reused for a table of another rank
        key = ("state", max_norm, table.dtype, table.ndim, ids.dtype, ids.ndim)
        ns = self._call("lookup_with_state", key, table=table, ids=ids, max_norm=max_norm)
        out, to_numpy = ns["out"], SOURCE.helper("to_numpy")
        if isinstance(out, BaseException):  # caught by the call text, so that the table is read
            failure = translate(out, np.asarray(ids).dtype)
            if failure is None:
                raise out
            failure.__cause__ = out
            return failure, to_numpy(ns["after"])
        return to_numpy(out), to_numpy(ns["after"])

    def lookup_loaded(self, table: np.ndarray, ids: np.ndarray, path: str) -> np.ndarray:
        """table.load: the table held in a tf.Variable, made from it or assigned to it."""
        if path not in _LOAD:
            raise ValueError(f"{self.name} has no load path {path!r}; it takes {', '.join(_LOAD_PATHS)}")
        key = ("loaded", table.dtype, table.ndim, ids.dtype, ids.ndim)
        with self._translating(ids):
            ns = self._call(("lookup_loaded", path), key, table=table, ids=ids)
        return SOURCE.helper("to_numpy")(ns["out"])

    # -- ShardedVariable

    def _sv_lines(self, method: str, kept: dict | None, f: Any) -> list[str]:
        """The ShardedVariable call's text: a new layout is built, a kept one re-assigned;
        the tf.function (not eager) is built unless kept (``f``)."""
        mode = "eager" if self.variant.mode == "eager" else "function"
        return [*([_SV_ONE] if method == "lookup" else []), *(_SV_BUILD if kept is None else _SV_ASSIGN),
                *(_SV_FUNCTION if mode == "function" and f is None else []), _SV_CALL[mode]]

    def _sv_lookup(self, method: str, shards: list[np.ndarray], names: dict[str, Any]) -> np.ndarray:
        ids = names["ids"]
        key = (method, tuple((s.shape, s.dtype) for s in shards))
        fkey = (ids.dtype, ids.ndim)
        entry = self._layouts.get(key)
        bound: dict[str, Any] = {}
        if entry is not None:
            self._layouts.move_to_end(key)
            bound = {"variables": entry["variables"], "sv": entry["sv"]}
            if fkey in entry["fns"]:
                bound["f"] = entry["fns"][fkey]

        def keep(ns: dict) -> None:
            kept = self._layouts.get(key)
            if kept is None:
                if "sv" not in ns:
                    return  # the ShardedVariable could not be built
                kept = self._layouts[key] = {"variables": ns["variables"], "sv": ns["sv"], "fns": {}}
                while len(self._layouts) > self._LAYOUTS:
                    self._layouts.popitem(last=False)
            if "f" in ns:
                kept["fns"].setdefault(fkey, ns["f"])

        with self._translating(ids, sharded=True):
            ns = run_keeping(SOURCE, self._sv_lines(method, entry, bound.get("f")), keep, **names, **bound)
        return SOURCE.helper("to_numpy")(ns["out"])

    # -- reproduction snippets: the text the first call runs

    def snippet(self, op: str, args: dict[str, str]) -> str:
        if op not in self.variant.methods:
            raise ValueError(f"{self.name} has no operation {op!r}")
        tail = ["result = show('out', out)"]
        if self.variant.api == "sv":
            lines = self._sv_lines(op, None, None)
        elif op == "lookup_loaded":
            build, call = self._texts["lookup_loaded", _PATH_OF[args["path"]]]
            lines = [*build, *call]
        else:
            build, call = self._texts[op]
            lines = [*build, *call]
        if op == "lookup_with_state":
            args = {**args, "max_norm": args.get("max_norm", "None")}
            tail = ["if not isinstance(out, Exception):", "    out = show('out', out)",
                    "result = (out, show('table after', after))"]
        return SOURCE.snippet(args, lines, tail)


# --- the variants, as data; registry factories -----------------------------------------

_XLA_SHARDED_NOTE = ("lookup_sharded under XLA: the same list-of-shards lookup ('div' routing) inside "
                     "tf.function(jit_compile=True)")

VARIANTS = {v.name: v for v in (
    Variant("tf.nn.embedding_lookup", "v2", "eager",
            _caps(_CPU_NOTE, _V2_DIV_NOTE, _STATE_NOTE, strategies=("div",), load_paths=_LOAD_PATHS),
            training=True),
    Variant("tf.nn.embedding_lookup[function]", "v2", "function",
            _caps(_CPU_NOTE, _V2_DIV_NOTE, _STATE_NOTE,
                  "tf.function with an input_signature of all-None dimensions: one trace per dtype/rank signature",
                  strategies=("div",), load_paths=_LOAD_PATHS),
            training=True),
    Variant("tf.nn.embedding_lookup[xla]", "v2", "xla",
            _caps(_XLA_NOTE, _STATE_NOTE, _V2_DIV_NOTE, _XLA_SHARDED_NOTE, strategies=("div",),
                  load_paths=_LOAD_PATHS),
            training=True),
    Variant("tf.compat.v1.nn.embedding_lookup", "v1", "eager",
            _caps(_CPU_NOTE, "partition_strategy 'mod' (the default) and 'div' for a list of shards",
                  strategies=("mod", "div"))),
    Variant("tf.distribute.ShardedVariable", "sv", "eager",
            _caps(_CPU_NOTE, _SV_NOTE, _SV_EAGER_NOTE, strategies=("div",))),
    Variant("tf.distribute.ShardedVariable[function]", "sv", "function",
            _caps(_CPU_NOTE, _SV_NOTE, _SV_FUNCTION_NOTE, _RESOURCE_IDS_NOTE,
                  id_dtypes=("int32", "int64"), strategies=("div",))),
)}


def describe(name: str) -> Description:
    """What the built-in ``name`` offers, without importing TensorFlow."""
    v = VARIANTS[name]
    return Description(v.methods, v.capabilities)


def classify(exc: BaseException, call: Call = Call()) -> LookupFailure | None:
    """The contract failure a TensorFlow exception stands for (a snippet's replay uses
    it), given the ids the call was handed (their dtype names an InvalidIds)."""
    return translate(exc, call.ids_dtype, call.sharded)


# the zero-argument factories registry.BUILTINS names, one per variant
embedding_lookup = partial(TFEmbedding, VARIANTS["tf.nn.embedding_lookup"])
embedding_lookup_function = partial(TFEmbedding, VARIANTS["tf.nn.embedding_lookup[function]"])
embedding_lookup_xla = partial(TFEmbedding, VARIANTS["tf.nn.embedding_lookup[xla]"])
compat_v1_embedding_lookup = partial(TFEmbedding, VARIANTS["tf.compat.v1.nn.embedding_lookup"])
sharded_variable = partial(TFEmbedding, VARIANTS["tf.distribute.ShardedVariable"])
sharded_variable_function = partial(TFEmbedding, VARIANTS["tf.distribute.ShardedVariable[function]"])
