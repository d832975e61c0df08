"""Clause families of training semantics: `grad`, `padding`, `max_norm`,
`lookup`, `mask`, `onehot`. Tolerances appear only here, where arithmetic
happens, each stated next to its clause; everywhere else rows are bit-exact."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from embedding_conformance.adapters.spec import oracle
from embedding_conformance.adapters.spec import training
from embedding_conformance.adapters.contract import InvalidIds
from embedding_conformance.suites import assertions
from embedding_conformance.suites.catalogue import clause
from embedding_conformance.suites.lookup_clauses import SUSPECTS
from embedding_conformance.suites.signatures import covering_half
from embedding_conformance.suites.strategies import draw_lookup, draw_upstream, ints, lookup_args, raw, signatures

GRAD_SUSPECTS = SUSPECTS + (("clip", "drop_clipped_grad"), ("wrap_negative", "fill_nan"))


# The training clauses draw covering_half(pool): a gradient, a max_norm lookup or a
# mask is a compile of its own kind per signature, and these clauses are about
# values (duplicate ids, row norms, zeros), which every example draws afresh.


@st.composite
def _upstreamed(draw, sigs, aim):
    args = draw_lookup(draw, sigs, aim, finite=True)[1]
    shape = args["ids"].shape + args["table"].shape[1:]
    args["upstream"] = draw_upstream(draw, args["table"].dtype.name, shape)
    return args


def _with_upstream(caps, pool, *, aim=None, v_min=1, v_max=6, reach=1):
    # small V: duplicate ids, whose contributions must accumulate, are the common case;
    # and the pool's largest table, whose boundary rows the valid ids favour
    sigs = signatures(caps, covering_half(pool, reach=reach), nonempty=aim is not None, v_min=v_min, v_max=v_max,
                      aim=aim)
    return _upstreamed(sigs, aim)


# --- grad.scatter_add -------------------------------------------------------------------

@clause(
    "grad.scatter_add",
    "the gradient w.r.t. the table is a scatter-add of the upstream gradient: duplicate ids accumulate",
    method="grad", oracle=lambda a, model, caps: training.grad(a["table"], a["ids"], a["upstream"], model),
    suspects=GRAD_SUSPECTS,
    tolerance=("rows hit by n > 1 ids: gamma(n - 1) * sum|u| + u * |g|, u = eps/2 of the table's dtype, "
               "gamma(k) = k*u / (1 - k*u) (summation in any order, in the table's dtype or wider; the oracle's sum "
               "is exact, rounded once); rows hit once or never: exact, zeros by value. Upstreams have full "
               "mantissas, so a sum in a narrower dtype than the table's is found."),
)
def grad_cases(caps, pool):
    return _with_upstream(caps, pool)


def _outside(id_dtype, v):
    flavours = [((v, v + 1),), ((v, v + 9),)]
    if id_dtype.startswith("int"):
        flavours += [((-v, -1),), ((-v - 3, -v - 1),)]
    return flavours


@clause(
    "grad.out_of_range",
    "an out-of-range id fails the gradient as it fails the lookup; where the forward pass accepts it (a declared model), its contribution lands exactly where the model's row came from, or nowhere",
    method="grad", oracle=lambda a, model, caps: training.grad(a["table"], a["ids"], a["upstream"], model),
    suspects=GRAD_SUSPECTS,
    tolerance="as grad.scatter_add",
)
def grad_out_of_range_cases(caps, pool):
    return _with_upstream(caps, pool, aim=_outside)


# --- padding.row ----------------------------------------------------------------------

@st.composite
def _padded(draw, sigs):
    args = draw(_upstreamed(sigs, None))
    v = args["table"].shape[0]
    p = draw(ints(-v, v - 1), label="padding_idx")
    ids = args["ids"]
    if ids.size:  # the padding id itself is looked up
        ids.reshape(-1)[draw(ints(0, ids.size - 1), label="position")] = p % v
    args["padding_idx"] = p
    return args


@clause(
    "padding.row",
    "with a padding id (negative values count from the end), the forward pass returns the stored row and its gradient is zero",
    method="grad_padded",
    oracle=lambda a, model, caps: training.grad_padded(a["table"], a["ids"], a["upstream"], a["padding_idx"], model),
    tolerance="the gradient as grad.scatter_add; the forward rows bit-exact",
)
def padding_cases(caps, pool):
    return _padded(signatures(caps, covering_half(pool), v_min=1, v_max=6))


# --- grad.scale_by_freq ----------------------------------------------------------------

@clause(
    "grad.scale_by_freq",
    "with scale_grad_by_freq, each row's gradient is divided by how often its id occurs in the batch",
    method="grad_scaled",
    oracle=lambda a, model, caps: training.grad_scaled(a["table"], a["ids"], a["upstream"], model),
    tolerance="as grad.scatter_add, plus eps * sum|u/c| on rows whose count c > 1 (each contribution divided by c)",
)
def scale_by_freq_cases(caps, pool):
    return _with_upstream(caps, pool)


# --- max_norm -----------------------------------------------------------------------------

MAX_NORMS = (0.5, 1.0, 2.5, 7.0)
ATOMIC_NORMS = (None, 1.0, 2.5, 7.0)  # lookup.atomic: without max_norm too (knob 0), the rest as MAX_NORMS
_NON_FINITE = (np.inf, -np.inf, np.nan)


@st.composite
def _with_norm(draw, sigs, aim, norms):
    sig, args = draw_lookup(draw, sigs, aim, finite=True)
    table = args["table"]
    flag, row, value = draw(raw(3), label="a non-finite row")
    if table.size and flag >= 128:
        table[row % table.shape[0]].reshape(-1)[0] = _NON_FINITE[value % 3]
    # the norm goes with the signature: a compiled lookup specialises on its value
    args["max_norm"] = norms[sig.knob % len(norms)]
    return args


def _max_norm_cases(caps, pool, *, failing=False):
    int32_64 = tuple(d for d in caps.id_dtypes if d in ("int32", "int64")) or None
    sigs = signatures(caps, covering_half(pool), nonempty=failing, v_min=1, v_max=6, id_dtypes=int32_64)
    return _with_norm(sigs, _outside if failing else None, ATOMIC_NORMS if failing else MAX_NORMS)


def _max_norm_oracle(a, model, caps):
    out, after = training.lookup_with_state(a["table"], a["ids"], a["max_norm"], model)
    lookup_model = [m for m in model if m not in training.MODELS]
    untouched = (oracle.lookup(a["table"], a["ids"], lookup_model) if isinstance(out, np.ndarray) else None,
                 a["table"])
    rtol = training.max_norm_tolerance(a["table"])
    # clip_by_norm multiplies and divides every looked-up row, short ones too: each of
    # their elements went through arithmetic
    every_row = "clip_by_norm_tf" in model and a["max_norm"] is not None
    bounded = []
    for k, (value, before) in enumerate(zip((out, after), untouched)):
        if isinstance(value, np.ndarray):
            # elements left alone must be bit-exact; rescaled ones within the formula's rounding
            v64 = value.astype(np.float64)
            changed = ~((v64 == before.astype(np.float64)) | (np.isnan(v64) & np.isnan(before.astype(np.float64))))
            if every_row and k == 0:
                changed |= np.isfinite(v64)
            value = training.bounded(value, np.where(changed, rtol * np.abs(v64), 0.0))
        bounded.append(value)
    return tuple(bounded)


@clause(
    "max_norm.output",
    "with max_norm m, a looked-up row whose L2 norm exceeds m comes back with norm m, the others unchanged (bit for bit); a row holding NaN or an infinity comes back unchanged",
    method="lookup_with_state", oracle=_max_norm_oracle, compare=assertions.part(0),
    suspects=(("renorm_torch",), ("clip_by_norm_tf",), ("renorm_torch", "renorm_in_place")),
    tolerance=("relative (ceil(D/2) + 4) * u on rescaled rows, u = eps/2 of the table's dtype: the D squares and "
               "their sum err by D*u, halved by the square root; the root, the division, the product and the "
               "oracle's rounding one u each; unchanged rows exact. Tables have full mantissas"),
)
def max_norm_output_cases(caps, pool):
    return _max_norm_cases(caps, pool)


@clause(
    "max_norm.side_effect",
    "a lookup never changes its table, with max_norm too",
    method="lookup_with_state", oracle=_max_norm_oracle, compare=assertions.part(1),
    suspects=(("renorm_torch", "renorm_in_place"),),
    tolerance="as max_norm.output, for rows a model rewrites; every other row bit-exact",
)
def max_norm_side_effect_cases(caps, pool):
    return _max_norm_cases(caps, pool)


@clause(
    "lookup.atomic",
    "a failing lookup (an out-of-range id) leaves the table exactly as it was, with and without max_norm",
    method="lookup_with_state", oracle=_max_norm_oracle,
    suspects=(("renorm_torch", "renorm_in_place"), ("renorm_torch", "renorm_in_place", "renorm_before_check")),
    tolerance="none under the contract; rows a declared model rewrites as max_norm.output",
)
def atomic_cases(caps, pool):
    return _max_norm_cases(caps, pool, failing=True)


# --- mask.zero -------------------------------------------------------------------------

@clause(
    "mask.zero",
    "with mask_zero, the mask is ids != 0 and the rows are still looked up unchanged",
    method="lookup_mask_zero",
    oracle=lambda a, model, caps: (oracle.lookup(a["table"], a["ids"], model), np.asarray(np.asarray(a["ids"]) != 0)),
)
def mask_zero_cases(caps, pool):
    return lookup_args(caps, covering_half(pool), v_min=1)


# --- onehot.equivalence -----------------------------------------------------------------

def _onehot_oracle(a, model, caps):
    if model:
        return oracle.lookup(a["table"], a["ids"], model)
    if a["ids"].dtype.name not in caps.id_dtypes:
        raise InvalidIds(f"{a['ids'].dtype} ids")
    return oracle.one_hot_product(a["table"], a["ids"])


def _finite(args):
    t = args["table"]
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(t.astype(np.float64))
    args["table"] = np.where(finite, t, np.zeros((), t.dtype)).astype(t.dtype)  # -0.0 and subnormals stay
    return args


@clause(
    "onehot.equivalence",
    "on a finite table the lookup equals one_hot(ids) @ table, as numbers (-0.0 == +0.0: that product turns -0.0 into +0.0, E6)",
    method="lookup", oracle=_onehot_oracle, compare=assertions.same_values, suspects=SUSPECTS,
)
def onehot_cases(caps, pool):
    return lookup_args(caps, pool, v_min=1).map(_finite)


def test_clause(check):
    check.run()
