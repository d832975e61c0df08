"""TensorFlow adapters: ``tf.nn.embedding_lookup`` (eager, ``tf.function``, XLA),
``tf.compat.v1.nn.embedding_lookup`` (both partition strategies) and
``tf.distribute.ShardedVariable`` looked up with ``tf.nn.embedding_lookup``
(eager and inside ``tf.function``).

One class, ``TFEmbedding``, holds everything; each registry name is a small
``Variant`` (which API, which execution mode, which capabilities). The inputs
are handed to TensorFlow in the dtypes given (``tf.constant(array)``), and the
outputs come back through ``Tensor.numpy()`` (TensorFlow's bfloat16 *is*
``ml_dtypes.bfloat16``, so no bit changes on the way).

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

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from embedding_conformance.adapters.toolkit import cpu
from embedding_conformance.adapters.contract import (Call, Capabilities, Description, FLOAT_DTYPES, InvalidIds, InvalidShards, InvalidTable, LookupFailure,
                       OutOfRange, Translate)

_tf = None


def _import_tf():
    global _tf
    if _tf is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        # one tf.function per input signature is the design: its retracing warning says nothing
        tf.get_logger().setLevel("ERROR")
        _tf = tf
    return _tf


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


def to_numpy(tensor) -> np.ndarray:
    # Tensor.numpy() copies the buffer (bfloat16 arrives as ml_dtypes.bfloat16); a 0-d
    # tensor comes back as a NumPy scalar, which np.asarray wraps without touching its bits
    return np.asarray(tensor.numpy())


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


class TFEmbedding:
    framework = "tensorflow"
    _LAYOUTS = 64  # ShardedVariable layouts kept alive (variables + functions)

    def __init__(self, variant: Variant):
        self.tf = _import_tf()
        self.variant = variant
        self.name = variant.name
        self.capabilities = variant.capabilities
        self._fns: dict[tuple, Callable] = {}
        self._layouts: OrderedDict[tuple, dict] = OrderedDict()
        for method in ("lookup_sharded", "grad", "lookup_with_state", "lookup_loaded"):
            if method not in variant.methods:
                setattr(self, method, None)  # not applicable: callable(None) is False

    def environment(self) -> dict[str, int]:
        # XLA's bfloat16 conversions follow the CPU (adapters/toolkit/cpu.py)
        return cpu.facts()

    # -- calling TensorFlow

    def _spec(self, a: np.ndarray):
        return self.tf.TensorSpec([None] * a.ndim, self.tf.as_dtype(a.dtype))

    def _compiled(self, key: tuple, fn: Callable, signature: list | None) -> Callable:
        """fn as the variant runs it: itself (eager) or a tf.function cached by key."""
        if self.variant.mode == "eager":
            return fn
        f = self._fns.get(key)
        if f is None:
            kw: dict[str, Any] = {"jit_compile": True} if self.variant.mode == "xla" else {}
            # no Python control flow to convert; autograph's cache of converted
            # closures once handed one variant's closure to another's trace
            kw["autograph"] = False
            if signature is None:
                kw["reduce_retracing"] = True
            else:
                kw["input_signature"] = signature
            f = self._fns[key] = self.tf.function(fn, **kw)
        return f

    def _run(self, thunk: Callable[[], Any], ids: np.ndarray, sharded: bool = False):
        dtype = np.asarray(ids).dtype
        with Translate(lambda exc: translate(exc, dtype, sharded), catch=(self.tf.errors.OpError, ValueError, TypeError)):
            return thunk()

    def _op(self):
        tf = self.tf
        if self.variant.api == "v1":
            return tf.compat.v1.nn.embedding_lookup
        return tf.nn.embedding_lookup

    # -- the methods

    def lookup(self, table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        if self.variant.api == "sv":
            return self._sv_lookup([table], ids, sharded=False)
        op = self._op()
        fn = self._compiled(("lookup", table.dtype, table.ndim, ids.dtype, ids.ndim),
                            lambda t, i: op(t, i), [self._spec(table), self._spec(ids)])
        tf = self.tf
        return self._run(lambda: to_numpy(fn(tf.constant(table), tf.constant(ids))), ids)

    def lookup_sharded(self, shards: list[np.ndarray], ids: np.ndarray, strategy: str) -> np.ndarray:
        if strategy not in self.capabilities.strategies:
            raise ValueError(f"{self.name} has no partition strategy {strategy!r}; "
                             f"it takes {', '.join(self.capabilities.strategies)}")
        if self.variant.api == "sv":
            return self._sv_lookup(list(shards), ids, sharded=True)
        tf = self.tf
        if self.variant.api == "v1":
            op = tf.compat.v1.nn.embedding_lookup

            def call(ss, i):
                return op(list(ss), i, partition_strategy=strategy)
        else:
            op = tf.nn.embedding_lookup

            def call(ss, i):
                return op(list(ss), i)  # a list: TF treats a tuple as one stacked tensor

        key = ("sharded", strategy, tuple((s.dtype, s.ndim) for s in shards), ids.dtype, ids.ndim)
        fn = self._compiled(key, call, [[self._spec(s) for s in shards], self._spec(ids)])
        return self._run(lambda: to_numpy(fn([tf.constant(s) for s in shards], tf.constant(ids))),
                         ids, sharded=True)

    def grad(self, table: np.ndarray, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        tf = self.tf
        op = self._op()

        def grad_fn(t, i, up):
            with tf.GradientTape() as tape:
                tape.watch(t)
                loss = tf.reduce_sum(op(t, i) * up)
            # d loss / d table arrives as tf.IndexedSlices; TensorFlow densifies it
            # (unsorted_segment_sum) when it is converted to a tensor. The loss is returned
            # too, as a training step returns it: a graph that returned the gradient alone
            # would prune the forward gather, and with it the check of the ids
            return loss, tf.convert_to_tensor(tape.gradient(loss, t))

        key = ("grad", table.dtype, table.ndim, ids.dtype, ids.ndim, upstream.dtype)
        fn = self._compiled(key, grad_fn, [self._spec(table), self._spec(ids), self._spec(upstream)])
        return self._run(lambda: to_numpy(fn(tf.constant(table), tf.constant(ids), tf.constant(upstream))[1]), ids)

    def lookup_with_state(self, table: np.ndarray, ids: np.ndarray, max_norm: float | None = None):
        tf = self.tf
        op = self._op()
        var = tf.Variable(table)
        # the variable is an argument (its spec relaxed between calls): one function per
        # rank signature, so that no trace is reused for a table of another rank
        key = ("state", max_norm, table.dtype, table.ndim, ids.dtype, ids.ndim)
        fn = self._compiled(key, lambda v, i: op(v, i, max_norm=max_norm), None)
        try:
            out = self._run(lambda: to_numpy(fn(var, tf.constant(ids))), ids)
        except LookupFailure as failure:
            out = failure
        return out, to_numpy(var.read_value())

    def lookup_loaded(self, table: np.ndarray, ids: np.ndarray, path: str) -> np.ndarray:
        """table.load: the table held in a tf.Variable, made from it or assigned to it."""
        tf = self.tf
        if path == "Variable":
            var = tf.Variable(table)
        elif path == "assign":
            var = tf.Variable(tf.zeros(table.shape, tf.as_dtype(table.dtype)))
            var.assign(table)
        else:
            raise ValueError(f"{self.name} has no load path {path!r}; it takes {', '.join(_LOAD_PATHS)}")
        op = self._op()
        key = ("loaded", table.dtype, table.ndim, ids.dtype, ids.ndim)
        fn = self._compiled(key, lambda v, i: op(v, i), None)
        return self._run(lambda: to_numpy(fn(var, tf.constant(ids))), ids)

    # -- ShardedVariable

    def _layout(self, shards: list[np.ndarray]) -> dict:
        """Variables + ShardedVariable for one shard layout, built once and re-assigned."""
        tf = self.tf
        key = tuple((s.shape, s.dtype) for s in shards)
        entry = self._layouts.get(key)
        if entry is None:
            variables = [tf.Variable(s) for s in shards]
            sv = tf.__internal__.distribute.ShardedVariable(variables)
            entry = {"variables": variables, "sv": sv, "fns": {}}
            self._layouts[key] = entry
            while len(self._layouts) > self._LAYOUTS:
                self._layouts.popitem(last=False)
        else:
            self._layouts.move_to_end(key)
            for var, s in zip(entry["variables"], shards):
                var.assign(s)
        return entry

    def _sv_lookup(self, shards: list[np.ndarray], ids: np.ndarray, sharded: bool) -> np.ndarray:
        tf = self.tf

        def run():
            entry = self._layout(shards)
            sv = entry["sv"]
            if self.variant.mode == "eager":
                return to_numpy(tf.nn.embedding_lookup(sv, tf.constant(ids)))
            key = (ids.dtype, ids.ndim)
            fn = entry["fns"].get(key)
            if fn is None:
                # the ShardedVariable is captured, as a model's variable is; passing it as an
                # argument instead rebuilds it from a tuple of variables (see the report)
                fn = entry["fns"][key] = tf.function(lambda i: tf.nn.embedding_lookup(sv, i),
                                                     input_signature=[self._spec(ids)])
            return to_numpy(fn(tf.constant(ids)))

        return self._run(run, ids, sharded=True)

    # -- reproduction snippets

    def snippet(self, op: str, args: dict[str, str]) -> str:
        v = self.variant
        lines = ["import os", "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')",
                 "import numpy as np", "import ml_dtypes", "import tensorflow as tf", ""]
        lines += [f"{k} = {val}" for k, val in args.items()]
        lookup = "tf.compat.v1.nn.embedding_lookup" if v.api == "v1" else "tf.nn.embedding_lookup"
        deco = v.mode != "eager"

        def spec(expr):
            return f"tf.TensorSpec([None] * {expr}.ndim, tf.as_dtype({expr}.dtype))"

        state = False
        if v.api == "sv":
            if op == "lookup":
                lines.append("shards = [table]  # a one-shard ShardedVariable, as the adapter builds")
            elif op != "lookup_sharded":
                raise ValueError(f"{self.name} has no operation {op!r}")
            lines += ["# one tf.Variable per shard, as ParameterServerStrategy makes them",
                      "sv = tf.__internal__.distribute.ShardedVariable([tf.Variable(s) for s in shards])"]
            if not deco:
                lines.append("out = tf.nn.embedding_lookup(sv, tf.constant(ids))")
            else:
                lines += ["# the ShardedVariable is captured by the function, as a model's variable is",
                          f"f = tf.function(lambda i: tf.nn.embedding_lookup(sv, i), input_signature=[{spec('ids')}])",
                          "out = f(tf.constant(ids))"]
        elif op == "lookup_loaded" and v.training:
            path = eval(args["path"])
            lines += (["var = tf.Variable(table)"] if path == "Variable" else
                      ["var = tf.Variable(tf.zeros(table.shape, tf.as_dtype(table.dtype)))", "var.assign(table)"])
            lines += [f"f = lambda v, i: {lookup}(v, i)"]
            if deco:
                lines.append(f"f = tf.function(f, {_jit(v.mode)}reduce_retracing=True)")
            lines.append("out = f(var, tf.constant(ids))")
        elif op == "lookup":
            body = f"{lookup}(table, ids)"
            sig = f"[{spec('table')}, {spec('ids')}]"
            lines += self._snippet_call("table, ids", body, sig, v.mode,
                                        "tf.constant(table), tf.constant(ids)")
        elif op == "lookup_sharded":
            strategy = ", partition_strategy=strategy" if v.api == "v1" else ""
            body = f"{lookup}(list(shards), ids{strategy})"
            sig = f"[[{spec('s')} for s in shards], {spec('ids')}]"
            lines += self._snippet_call("shards, ids", body, sig, v.mode,
                                        "[tf.constant(s) for s in shards], tf.constant(ids)")
        elif op == "grad" and v.training:
            lines += [
                "def grad(table, ids, upstream):",
                "    with tf.GradientTape() as tape:",
                "        tape.watch(table)",
                f"        loss = tf.reduce_sum({lookup}(table, ids) * upstream)",
                "    # IndexedSlices -> dense tensor (TensorFlow's unsorted_segment_sum); the loss is",
                "    # returned too, as a training step does (else a graph prunes the forward gather)",
                "    return loss, tf.convert_to_tensor(tape.gradient(loss, table))",
            ]
            if deco:
                sig = f"input_signature=[{spec('table')}, {spec('ids')}, {spec('upstream')}]"
                lines.append(f"grad = tf.function(grad, {_jit(v.mode)}{sig})")
            lines.append("loss, out = grad(tf.constant(table), tf.constant(ids), tf.constant(upstream))")
        elif op == "lookup_with_state" and v.training:
            state = True
            if "max_norm" not in args:
                lines.append("max_norm = None")
            lines += ["var = tf.Variable(table)",
                      "def lookup(v, i):",
                      f"    return {lookup}(v, i, max_norm=max_norm)"]
            if deco:
                lines.append(f"lookup = tf.function(lookup, {_jit(v.mode)}reduce_retracing=True)")
            lines += ["try:", "    out = np.asarray(lookup(var, tf.constant(ids)).numpy())",
                      "except tf.errors.InvalidArgumentError as exc:",
                      "    out = exc", "    print('raised:', exc)"]
        else:
            raise ValueError(f"{self.name} has no operation {op!r}")
        # `result`: what the adapter returned, as NumPy
        if state:
            lines += ["if not isinstance(out, Exception):", *("    " + s for s in _PRINT_OUT),
                      "after = var.numpy()", "print('table after:')", "print(repr(after))",
                      "result = (out, after)"]
        else:
            lines += ["out = np.asarray(out.numpy())", *_PRINT_OUT, "result = out"]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _snippet_call(params: str, body: str, sig: str, mode: str, call_args: str) -> list[str]:
        if mode == "eager":
            return [f"out = {body.replace('list(shards)', 'shards')}"]
        return [f"f = tf.function(lambda {params}: {body},",
                f"                {_jit(mode)}input_signature={sig})",
                f"out = f({call_args})"]


def _jit(mode: str) -> str:
    return "jit_compile=True, " if mode == "xla" else ""


_PRINT_OUT = [
    "print(out.dtype, out.shape)",
    "print(repr(out))",
    "print([hex(b) for b in out.view(f'u{out.dtype.itemsize}').ravel().tolist()])",
]


# --- the variants, as data; registry factories -----------------------------------------

_LOAD_PATHS = ("Variable", "assign")  # table.load: tf.Variable(table), and Variable.assign(table)
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


def embedding_lookup() -> TFEmbedding:
    return TFEmbedding(VARIANTS["tf.nn.embedding_lookup"])


def embedding_lookup_function() -> TFEmbedding:
    return TFEmbedding(VARIANTS["tf.nn.embedding_lookup[function]"])


def embedding_lookup_xla() -> TFEmbedding:
    return TFEmbedding(VARIANTS["tf.nn.embedding_lookup[xla]"])


def compat_v1_embedding_lookup() -> TFEmbedding:
    return TFEmbedding(VARIANTS["tf.compat.v1.nn.embedding_lookup"])


def sharded_variable() -> TFEmbedding:
    return TFEmbedding(VARIANTS["tf.distribute.ShardedVariable"])


def sharded_variable_function() -> TFEmbedding:
    return TFEmbedding(VARIANTS["tf.distribute.ShardedVariable[function]"])
