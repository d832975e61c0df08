"""Planted faults: third-party adapters, each carrying one realistic bug, plugged
in through the public --adapter option exactly as a user's adapter would be.
``breaks`` names the clause (or clauses, a tuple) that must report ``violates`` for
it; ``declared`` faults follow a behaviour model declared for them in
tests/planted/expectations.toml, on some inputs only, and must be reported
``violates`` all the same.

Each starts from a correct NumPy lookup (validate, then gather) and changes one
thing, the way real implementations go wrong."""
from __future__ import annotations

import numpy as np

from embedding_conformance.adapters.spec import oracle
from embedding_conformance.adapters.spec import partition
from embedding_conformance.adapters.spec import training
from embedding_conformance.adapters.contract import Capabilities, InvalidIds, InvalidShards, LookupFailure, OutOfRange


class Planted:
    framework = "numpy"
    breaks: str | tuple[str, ...] = ""
    declared = False  # a behaviour model is declared for it (tests/planted/expectations.toml)

    @property
    def name(self) -> str:
        return f"planted.{type(self).__name__}"

    # the shared correct path, that each fault bends
    def check_ids(self, table, ids):
        if ids.dtype.kind not in "iu":
            raise InvalidIds(f"{ids.dtype} ids")

    def lookup(self, table, ids):
        return oracle.lookup(table, ids)


# --- out-of-range and negative ids ---------------------------------------------------

class WrapsNegativeIds(Planted):
    """Python-style indexing: -1 is the last row."""
    breaks = "ids.negative"

    def lookup(self, table, ids):
        self.check_ids(table, ids)
        v = table.shape[0]
        wide = ids.astype(np.int64)
        if ((wide >= v) | (wide < -v)).any():
            raise OutOfRange("id outside [-V, V)")
        return np.asarray(table[wide]) if wide.size else oracle.lookup(table, ids)


class ClampsOutOfRange(Planted):
    """Clamps ids into [0, V-1], as a gather kernel without bounds checks does."""
    breaks = "ids.out_of_range"

    def lookup(self, table, ids):
        self.check_ids(table, ids)
        if table.shape[0] == 0:
            return oracle.lookup(table, ids)
        wide = ids.astype(np.int64)
        if (wide < 0).any():
            raise OutOfRange("negative id")
        return np.asarray(table[np.minimum(wide, table.shape[0] - 1)])


class ZeroRowsOutOfRange(Planted):
    """Returns a zero row for an unknown id, as a hashed vocabulary might."""
    breaks = "ids.out_of_range"

    def lookup(self, table, ids):
        self.check_ids(table, ids)
        wide = ids.astype(np.int64)
        if (wide < 0).any():
            raise OutOfRange("negative id")
        return oracle.lookup(table, ids, ["fill_zero"])


class NanRowsOutOfRange(Planted):
    """Fills out-of-range ids with NaN rows (jnp.take's default, undeclared here)."""
    breaks = "ids.out_of_range"

    def lookup(self, table, ids):
        return oracle.lookup(table, ids, ["fill_nan"])


class OffByOneBound(Planted):
    """Checks ``id > V`` instead of ``id >= V`` and reads past the end as the last row."""
    breaks = "ids.out_of_range"

    def lookup(self, table, ids):
        self.check_ids(table, ids)
        v = table.shape[0]
        wide = ids.astype(np.int64)
        if ((wide > v) | (wide < 0)).any() or (v == 0 and wide.size):
            raise OutOfRange("id out of range")
        return np.asarray(table[np.minimum(wide, v - 1)]) if wide.size else oracle.lookup(table, ids)


class LastRowOffByOne(Planted):
    """Reads row V-2 for id V-1 (a fencepost in a tiled kernel's last tile)."""
    breaks = ("rows.exact", "seed.e1", "onehot.equivalence")

    def lookup(self, table, ids):
        out = oracle.lookup(table, ids)
        v = table.shape[0]
        if v >= 2:
            out = out.copy()
            out[ids.astype(np.int64) == v - 1] = table[v - 2]
        return out


class FirstRowSkipped(Planted):
    """Treats id 0 as padding and returns zeros for it."""
    breaks = "rows.exact"

    def lookup(self, table, ids):
        out = oracle.lookup(table, ids).copy()
        out[ids.astype(np.int64) == 0] = 0
        return out


# --- wide, float and unusual ids ------------------------------------------------------

class NarrowsInt64(Planted):
    """Casts ids to int32 before the lookup, as a 32-bit index kernel does."""
    breaks = "ids.int64_wide"

    def lookup(self, table, ids):
        self.check_ids(table, ids)
        return oracle.lookup(table, ids.astype(np.int32))


class Uint64AsInt64(Planted):
    """Reinterprets uint64 ids as int64 and wraps negatives: 2**64-1 becomes row V-1."""
    breaks = "ids.int64_wide"

    def lookup(self, table, ids):
        if ids.dtype == np.uint64:
            ids = ids.view(np.int64)
            return oracle.lookup(table, ids, ["wrap_negative"])
        return oracle.lookup(table, ids)


class TruncatesFloatIds(Planted):
    """Casts float ids to int (1.7 -> row 1) instead of refusing them."""
    breaks = "ids.float"

    def lookup(self, table, ids):
        if ids.dtype.kind == "f":
            ids = np.trunc(ids).astype(np.int64)
        return oracle.lookup(table, ids)


class RoundsFloatIds(Planted):
    """Rounds float ids to the nearest integer."""
    breaks = "ids.float"

    def lookup(self, table, ids):
        if ids.dtype.kind == "f":
            ids = np.rint(ids).astype(np.int64)
        return oracle.lookup(table, ids)


class BoolIdsAsInts(Planted):
    """Reads bool ids as 0 and 1."""
    breaks = "ids.float"

    def lookup(self, table, ids):
        if ids.dtype == np.bool_:
            ids = ids.astype(np.int64)
        return oracle.lookup(table, ids)


class RejectsUnsignedIds(Planted):
    """Raises a TypeError of its own for unsigned ids it never declared unsupported."""
    breaks = "ids.dtypes"

    def lookup(self, table, ids):
        if ids.dtype.kind == "u":
            raise TypeError(f"indices must be signed, got {ids.dtype}")
        return oracle.lookup(table, ids)


# --- rows: bits, dtypes, shapes ----------------------------------------------------------

class QuietsNaNs(Planted):
    """Canonicalises NaNs (a 'sanitising' copy): payloads are lost."""
    breaks = "rows.exact"

    def lookup(self, table, ids):
        out = oracle.lookup(table, ids)
        if out.dtype.kind == "f":
            out = out.copy()
            out[np.isnan(out)] = np.nan
        return out


class AddsZero(Planted):
    """Computes rows as ``row + 0.0`` (a fused bias of zero): -0.0 becomes +0.0, sNaN is quieted."""
    breaks = "rows.exact"

    def lookup(self, table, ids):
        out = oracle.lookup(table, ids)
        return (out + np.zeros((), out.dtype)).astype(out.dtype)


class FlushesSubnormals(Planted):
    """Flush-to-zero: subnormal values come back as zero."""
    breaks = "rows.exact"

    def lookup(self, table, ids):
        out = oracle.lookup(table, ids).copy()
        if out.dtype.kind != "f" and out.dtype.name != "bfloat16":
            return out
        tiny = np.finfo(np.float32).tiny if out.dtype.name == "bfloat16" else np.finfo(out.dtype).tiny
        mag = np.abs(out.astype(np.float64))
        out[(mag > 0) & (mag < tiny)] = 0
        return out


class UpcastsHalf(Planted):
    """Returns float32 rows for float16 and bfloat16 tables."""
    breaks = "dtype.output"

    def lookup(self, table, ids):
        out = oracle.lookup(table, ids)
        return out.astype(np.float32) if out.dtype.itemsize == 2 else out


class DowncastsDouble(Planted):
    """Returns float32 for float64 tables (an x64-disabled runtime)."""
    breaks = "dtype.output"

    def lookup(self, table, ids):
        out = oracle.lookup(table, ids)
        return out.astype(np.float32) if out.dtype == np.float64 else out


class FlattensScalarIds(Planted):
    """Treats 0-d ids as shape (1,): one row too many dimensions."""
    breaks = ("shape.output", "seed.e2")

    def lookup(self, table, ids):
        return oracle.lookup(table, np.atleast_1d(ids))


class FlattensHighRankIds(Planted):
    """Flattens ids of rank > 2 to 2-D, as a batch x sequence layer does."""
    breaks = "shape.output"

    def lookup(self, table, ids):
        if ids.ndim > 2:
            ids = ids.reshape(ids.shape[0], -1)
        return oracle.lookup(table, ids)


class EmptyIdsLoseShape(Planted):
    """Returns (0, *row) for any empty ids array, losing the ids' shape."""
    breaks = "shape.output"

    def lookup(self, table, ids):
        if ids.size == 0:
            return np.empty((0, *table.shape[1:]), dtype=table.dtype)
        return oracle.lookup(table, ids)


class EmptyTableRefused(Planted):
    """Refuses a table with no rows even when there is nothing to look up."""
    breaks = "table.empty"

    def lookup(self, table, ids):
        if table.shape[0] == 0:
            raise OutOfRange("the table is empty")
        return oracle.lookup(table, ids)


class MutatesTable(Planted):
    """Renormalises the rows it reads in place (max_norm on by mistake)."""
    breaks = "rows.exact"

    def lookup(self, table, ids):
        out = oracle.lookup(table, ids)
        if table.size and table.dtype.kind == "f":
            table[...] = np.where(np.isfinite(table), table / 2, table)
        return out


# --- sharded lookups -------------------------------------------------------------------

class ShardedBase(Planted):
    def lookup_sharded(self, shards, ids, strategy):
        return partition.lookup_sharded(shards, ids, strategy)


class SwapsModAndDiv(ShardedBase):
    """Routes 'mod' as 'div' and 'div' as 'mod'."""
    breaks = ("partition.mod", "seed.e4")

    def lookup_sharded(self, shards, ids, strategy):
        return partition.lookup_sharded(shards, ids, {"mod": "div", "div": "mod"}[strategy])


class UnevenExtraRowsLast(ShardedBase):
    """For an uneven 'div', puts the extra rows in the last shards instead of the first."""
    breaks = "partition.div.uneven"

    def lookup_sharded(self, shards, ids, strategy):
        if strategy != "div":
            return partition.lookup_sharded(shards, ids, strategy)
        sizes = [s.shape[0] for s in shards]
        if sizes != partition.canonical_sizes(sum(sizes), len(shards)):
            raise InvalidShards("sizes do not fit")
        # the bug: it believes the smaller shards come first
        n = sum(sizes)
        believed = sorted(sizes)
        offsets = np.cumsum([0, *believed])
        wide = oracle.lookup(np.arange(n, dtype=np.int64), ids)
        out = np.empty(wide.shape + shards[0].shape[1:], dtype=shards[0].dtype)
        flat = out.reshape((-1, *shards[0].shape[1:]))
        for k, i in enumerate(wide.reshape(-1)):
            s = int(np.searchsorted(offsets, i, side="right") - 1)
            local = i - offsets[s]
            flat[k] = shards[s][min(local, shards[s].shape[0] - 1)]
        return out


class AcceptsNoncanonical(ShardedBase):
    """Concatenates whatever shards it is given, never checking their sizes."""
    breaks = "partition.noncanonical"

    def lookup_sharded(self, shards, ids, strategy):
        if strategy == "div":
            return oracle.lookup(np.concatenate(shards), ids)
        return partition.lookup_sharded(shards, ids, strategy, ["route_by_total"])


class UpcastsMismatchedShards(ShardedBase):
    """Concatenates shards of different dtypes by promoting them."""
    breaks = "partition.mismatched_shards"

    def lookup_sharded(self, shards, ids, strategy):
        if len({s.dtype for s in shards}) > 1:
            common = np.result_type(*shards)
            shards = [s.astype(common) for s in shards]
        return partition.lookup_sharded(shards, ids, strategy)


class PythonModuloRouting(ShardedBase):
    """Routes with Python's % and // and indexes shards NumPy-style: under 'mod',
    id -1 lands on the last row of the last shard instead of failing."""
    breaks = "partition.out_of_range"

    def lookup_sharded(self, shards, ids, strategy):
        partition.validate(shards, strategy)
        if strategy == "div":
            return partition.lookup_sharded(shards, ids, strategy)
        p, n = len(shards), sum(s.shape[0] for s in shards)
        wide = ids.astype(np.int64)
        if (wide >= n).any():
            raise OutOfRange("id >= N")
        out = np.empty(wide.shape + shards[0].shape[1:], dtype=shards[0].dtype)
        flat = out.reshape((-1, *shards[0].shape[1:]))
        for k, i in enumerate(wide.reshape(-1)):
            shard = shards[int(i % p)]
            if not shard.shape[0]:
                raise OutOfRange(f"id {i}")
            flat[k] = shard[int(i // p)]
        return out


class EmptyShardsRefused(ShardedBase):
    """Refuses a layout with an empty shard (P > N)."""
    breaks = "partition.more_shards_than_rows"

    def lookup_sharded(self, shards, ids, strategy):
        if any(s.shape[0] == 0 for s in shards):
            raise InvalidShards("empty shard")
        return partition.lookup_sharded(shards, ids, strategy)


# --- training ----------------------------------------------------------------------------

class OverwritesDuplicateGrads(Planted):
    """grad[ids] = upstream: with duplicate ids the last write wins instead of the sum."""
    breaks = "grad.scatter_add"

    def grad(self, table, ids, upstream):
        oracle.resolve(table, ids)  # fails as the lookup fails
        g = np.zeros_like(table)
        flat = ids.reshape(-1).astype(np.int64)
        g[flat] = upstream.reshape((flat.size, *table.shape[1:]))
        return g


class StepsTheTable(Planted):
    """Applies the gradient to the table it was given (an optimizer step by mistake)."""
    breaks = "grad.scatter_add"

    def grad(self, table, ids, upstream):
        g = np.asarray(training.grad(table, ids, upstream))
        if table.size:
            table -= g
        return g


class GradIgnoresOutOfRange(Planted):
    """A backward pass that skips ids it cannot place instead of failing like the lookup."""
    breaks = "grad.out_of_range"

    def grad(self, table, ids, upstream):
        keep = (ids.astype(np.int64) >= 0) & (ids.astype(np.int64) < table.shape[0])
        rows = np.where(keep, ids.astype(np.int64), -1).reshape(-1)
        g = np.zeros(table.shape, dtype=np.float64)
        up = upstream.astype(np.float64).reshape((rows.size, *table.shape[1:]))
        np.add.at(g, rows[rows >= 0], up[rows >= 0])
        return g.astype(table.dtype)


class PaddingRowLearns(Planted):
    """padding_idx forgotten in the backward pass: the padding row gets its gradient."""
    breaks = "padding.row"

    def grad_padded(self, table, ids, upstream, padding_idx):
        return oracle.lookup(table, ids), np.asarray(training.grad(table, ids, upstream))


class ScalesByBatchSize(Planted):
    """scale_grad_by_freq divides every contribution by the number of ids, not by its id's count."""
    breaks = "grad.scale_by_freq"

    def grad_scaled(self, table, ids, upstream):
        up = upstream.astype(np.float64) / max(ids.size, 1)
        return np.asarray(training.grad(table, ids, up.astype(upstream.dtype)))


class _NormBase(Planted):
    def lookup_with_state(self, table, ids, max_norm=None):
        return training.lookup_with_state(table, ids, max_norm)


class RenormsEveryRow(_NormBase):
    """max_norm scales every looked-up row to norm m, short rows stretched too."""
    breaks = "max_norm.output"

    def lookup_with_state(self, table, ids, max_norm=None):
        out, after = training.lookup_with_state(table, ids, max_norm)
        if max_norm is None or not isinstance(out, np.ndarray) or not out.size:
            return out, after
        x = out.astype(np.float64).reshape(out.shape[:ids.ndim] + (-1,))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            norm = np.sqrt((x * x).sum(-1, keepdims=True))
            y = np.where(np.isfinite(norm) & (norm > 0), x * max_norm / norm, x)
        return y.reshape(out.shape).astype(out.dtype), after


class RenormsInPlace(_NormBase):
    """max_norm writes the renormalised rows into the table it reads (torch's way, undeclared)."""
    breaks = "max_norm.side_effect"

    def lookup_with_state(self, table, ids, max_norm=None):
        return training.lookup_with_state(table, ids, max_norm, ["renorm_in_place"])


class RenormsBeforeChecking(_NormBase):
    """Renormalises the rows of the valid ids before it finds the invalid one, then fails."""
    breaks = "lookup.atomic"

    def lookup_with_state(self, table, ids, max_norm=None):
        return training.lookup_with_state(table, ids, max_norm, ["renorm_in_place", "renorm_before_check"])


class MasksOnes(Planted):
    """mask_zero compares the ids with 1 instead of 0."""
    breaks = "mask.zero"

    def lookup_mask_zero(self, table, ids):
        return oracle.lookup(table, ids), np.asarray(np.asarray(ids) != 1)


class LoadsThroughFloat32(Planted):
    """One of its documented load paths carries the table through float32 (NaN payloads
    quieted, bfloat16 NaNs made canonical); the other keeps every bit."""
    breaks = "table.load"
    capabilities = Capabilities(load_paths=("exact", "via_float32"))

    def lookup_loaded(self, table, ids, path):
        if path == "via_float32" and table.dtype.itemsize <= 4:
            with np.errstate(invalid="ignore", over="ignore"):
                table = table.astype(np.float32).astype(table.dtype)
        return oracle.lookup(table, ids)


class SqueezesUnitBatch(Planted):
    """Drops a leading batch dimension of size 1 from the ids, as a squeeze() too many does."""
    breaks = ("shape.output", "seed.e5")

    def lookup(self, table, ids):
        if ids.ndim >= 2 and ids.shape[0] == 1:
            ids = ids[0]
        return oracle.lookup(table, ids)


class FlattensRowsOfRank3(Planted):
    """Takes a table of rank 3 as (V, -1): its rows come back flattened."""
    breaks = ("shape.output", "seed.e3")

    def lookup(self, table, ids):
        if table.ndim > 2:
            return oracle.lookup(table.reshape(table.shape[0], -1), ids)
        return oracle.lookup(table, ids)


class DivReversesShards(ShardedBase):
    """'div' reads the shard list back to front (the last shard holds the first ids)."""
    breaks = ("partition.div", "partition.equals_plain")

    def lookup_sharded(self, shards, ids, strategy):
        if strategy == "div" and len({s.shape[0] for s in shards}) <= 1:
            partition.validate(shards, strategy)
            return partition.lookup_sharded(list(reversed(shards)), ids, strategy)
        return partition.lookup_sharded(shards, ids, strategy)


class SingleShardRefused(ShardedBase):
    """Refuses a shard list of one shard, as if it were not sharded."""
    breaks = "partition.single_shard"

    def lookup_sharded(self, shards, ids, strategy):
        if len(shards) == 1:
            raise InvalidShards("a sharded table needs two shards at least")
        return partition.lookup_sharded(shards, ids, strategy)


class ShardedQuietsNaNs(ShardedBase):
    """The sharded path gathers through float arithmetic (NaN payloads quieted, -0.0 lost)."""
    breaks = "partition.equals_plain"

    def lookup_sharded(self, shards, ids, strategy):
        out = partition.lookup_sharded(shards, ids, strategy)
        return (out + np.zeros((), out.dtype)).astype(out.dtype) if out.dtype.kind == "f" else out


# --- faults only reach exposes: large tables, fine float ids, full-precision gradients ----

class RowsPast255Wrap(Planted):
    """An 8-bit row offset inside a tile: ids past 255 read row id % 256."""
    breaks = "rows.exact"

    def lookup(self, table, ids):
        self.check_ids(table, ids)
        wide = ids.astype(np.int64)
        oracle.resolve(table, ids)  # fails as the lookup fails
        return oracle.lookup(table, np.where(wide > 255, wide % 256, wide).astype(ids.dtype))


class Uint8ReadAsInt8(Planted):
    """Reads uint8 ids as int8 (a signed char index): 200 becomes -56, wrapped Python-style."""
    breaks = "ids.dtypes"

    def lookup(self, table, ids):
        if ids.dtype == np.uint8:
            return oracle.lookup(table, ids.view(np.int8), ["wrap_negative"])
        return oracle.lookup(table, ids)


class NarrowsToInt16(Planted):
    """A 16-bit signed index: ids past 32767 wrap negative, then Python-style to a row."""
    breaks = "rows.exact"

    def lookup(self, table, ids):
        self.check_ids(table, ids)
        oracle.resolve(table, ids)
        return oracle.lookup(table, ids.astype(np.int16), ["wrap_negative"])


class NarrowsToUint16(Planted):
    """A 16-bit unsigned index: id 65536 reads row 0."""
    breaks = "rows.exact"

    def lookup(self, table, ids):
        self.check_ids(table, ids)
        oracle.resolve(table, ids)
        return oracle.lookup(table, ids.astype(np.uint16))


class RowCountInUint16(Planted):
    """Keeps V in 16 bits: a table of 65536 rows has 0, and every id is out of range."""
    breaks = "rows.exact"

    def lookup(self, table, ids):
        v16 = table.shape[0] % 65536
        if np.size(ids) and ids.dtype.kind in "iu" and (ids.astype(np.int64) >= v16).any():
            raise OutOfRange(f"id outside [0, {v16})")
        return oracle.lookup(table, ids)


class TruncatesThroughFloat32(Planted):
    """Casts float ids to int through float32: 0.9999999999999999 is row 1, not 0. Declared
    to truncate (truncate_float_ids) in tests/planted/expectations.toml."""
    breaks = "ids.float"
    declared = True

    def lookup(self, table, ids):
        if ids.dtype.kind == "f":
            with np.errstate(over="ignore", invalid="ignore"):
                ids = ids.astype(np.float32).astype(np.float64)
            return oracle.lookup(table, ids, ["truncate_float_ids"])
        return oracle.lookup(table, ids)


class AccumulatesInFloat32(Planted):
    """Computes a float64 table's gradient in float32 (a mixed-precision kernel)."""
    breaks = "grad.scatter_add"

    def grad(self, table, ids, upstream):
        if table.dtype == np.float64:
            g = training.grad(table.astype(np.float32), ids, upstream.astype(np.float32))
            return np.asarray(g).astype(np.float64)
        return np.asarray(training.grad(table, ids, upstream))


class HalfGradsInFloat16(Planted):
    """Accumulates bfloat16 gradients in float16: small contributions flush, large ones overflow."""
    breaks = "grad.scatter_add"

    def grad(self, table, ids, upstream):
        g = np.asarray(training.grad(table, ids, upstream))
        if table.dtype.name == "bfloat16":
            with np.errstate(over="ignore"):
                return g.astype(np.float32).astype(np.float16).astype(table.dtype)
        return g


# --- adapters that follow their declared model on some inputs only ----------------------

class WrapsOnlyMinusOne(Planted):
    """Declared to wrap negative ids (wrap_negative), but wraps -1 alone; the rest of
    [-V, -1] fails."""
    breaks = "ids.negative"
    declared = True

    def lookup(self, table, ids):
        if ids.dtype.kind == "i" and (ids.astype(np.int64) < -1).any():
            raise OutOfRange("id below -1")
        return oracle.lookup(table, ids, ["wrap_negative"])


class WrapsInIdDtype(Planted):
    """Declared to wrap negative ids, but computes id + V in the ids' own dtype, as
    jnp.take does: int8 -1 with V = 129 overflows to -128 and fails."""
    breaks = "ids.negative"
    declared = True

    def lookup(self, table, ids):
        if ids.dtype.kind == "i":
            v = np.array(table.shape[0]).astype(ids.dtype)
            with np.errstate(over="ignore"):
                ids = np.where(ids < 0, ids + v, ids).astype(ids.dtype)
        return oracle.lookup(table, ids)


class ClampsOnlyAbove(Planted):
    """Declared to clamp (clip) out-of-range ids, but clamps only those >= V and wraps
    negative ones."""
    breaks = "ids.negative"
    declared = True

    def lookup(self, table, ids):
        return oracle.lookup(table, ids, ["wrap_negative", "clip"])


# --- sharded over devices ------------------------------------------------------------------

class DropsRemainderRows(Planted):
    """Shards the table over n devices as n blocks of V // n rows (floor division): with an
    uneven split the last V % n rows live on no device, and their ids look up as zero rows."""
    breaks = "partition.device_count"

    def lookup_on_devices(self, table, ids, devices):
        out = oracle.lookup(table, ids)
        held = (table.shape[0] // devices) * devices
        wide = ids.astype(np.int64)
        out[wide >= held] = 0
        return out


# --- execution modes ---------------------------------------------------------------------

class ModeSplit(Planted):
    """An adapter family with an eager path (correct: raises out of range) and a
    compiled one: a function built once per signature and cached, that clamps."""
    breaks = ""
    compiled = False

    def __init__(self):
        self._cache = {}

    @property
    def name(self) -> str:
        return "planted.ModeSplit[jit]" if self.compiled else "planted.ModeSplit"

    def lookup(self, table, ids):
        if not self.compiled:
            return oracle.lookup(table, ids)
        key = (table.dtype.str, table.ndim, ids.dtype.str, ids.ndim)
        if key not in self._cache:
            def fn(t, i):
                self.check_ids(t, i)
                if t.shape[0] == 0 or i.size == 0:
                    return oracle.lookup(t, i)
                return np.asarray(t[np.clip(i.astype(np.int64), 0, t.shape[0] - 1)])
            self._cache[key] = fn
        return self._cache[key](table, ids)


class ModeSplitCompiled(ModeSplit):
    """The compiled variant of ModeSplit: clamps where its eager path raises."""
    breaks = "ids.out_of_range"
    compiled = True


# --- the judging rules: a model held exactly, an acknowledgement pinned to its inputs -----------

class CanonicalNaNExceptFloat16(Planted):
    """Declared to return bfloat16 NaNs canonical (canonicalize_bf16_nan), which it does, but it
    also quiets float16 signalling NaNs, which its model keeps: one dtype's NaN payloads break
    the model. The rows of every other input follow it."""
    breaks = "rows.exact"
    declared = True

    def lookup(self, table, ids):
        out = oracle.lookup(table, ids, ["canonicalize_bf16_nan"])
        if out.dtype == np.float16:
            bits = out.view(np.uint16).copy()
            bits[((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0)] |= 0x0200
            return bits.view(np.float16)
        return out


class CrashesOnEmptyIdsAndQuietsNaN(Planted):
    """Fails on zero-size ids (acknowledged in tests/planted/expectations.toml) and, on every
    other input, quiets float32 signalling NaNs: a second departure on the same clause, which
    the acknowledgement does not cover."""
    breaks = "rows.exact"
    declared = True

    def lookup(self, table, ids):
        if np.size(ids) == 0:
            raise LookupFailure("no ids: the planted kernel fails")
        out = oracle.lookup(table, ids)
        if out.dtype == np.float32:
            bits = out.view(np.uint32).copy()
            bits[((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x007FFFFF) != 0)] |= 0x00400000
            return bits.view(np.float32)
        return out


ALL = [cls for cls in list(globals().values())
       if isinstance(cls, type) and issubclass(cls, Planted) and cls.breaks]


def clauses_broken(cls) -> tuple[str, ...]:
    return tuple(c for c in ((cls.breaks,) if isinstance(cls.breaks, str) else cls.breaks) if c)

