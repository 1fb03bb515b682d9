"""Bad input gets a clear error, never a silent wrong answer.

The policy is written down in ``docs/input_policy.md``; this file is its table of
cases. Every row names a call, the exception type and a regular expression that the
message must match; the regular expressions insist on the argument's name and on
what was expected. Rows marked ``jit`` are shape or dtype errors of the functional
API: those are raised while tracing, so the same call must also fail under
``jax.jit``. Value problems (NaN/inf) pass through the functional API by design and
are caught by :func:`metricjax.check_finite` or by the estimators.
"""

from __future__ import annotations

import copy
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metricjax as mj
from metricjax import jacobians as jac
from metricjax.estimators import LMNN, MLKR, NCA
from metricjax.losses import (
    kernel_regression,
    lmnn_loss,
    lmnn_target_neighbors,
    mlkr_loss,
    nca_loss,
)

# ----------------------------------------------------------------------------- data
N, D, K = 8, 3, 2
_rng = np.random.default_rng(0)
X = _rng.standard_normal((N, D)).astype(np.float32)
Y = _rng.standard_normal((5, D)).astype(np.float32)
METRIC = np.eye(D, dtype=np.float32)
L = _rng.standard_normal((K, D)).astype(np.float32)
T = _rng.standard_normal(N).astype(np.float32)  # regression targets
LAB = np.array([0, 0, 0, 0, 1, 1, 1, 1])
TN = np.array([[1], [2], [3], [0], [5], [6], [7], [4]])  # a valid target-neighbour table


def f32(*shape):
    return np.ones(shape, np.float32)


NAN_X = X.copy()
NAN_X[2, 1] = np.nan
INF_X = X.copy()
INF_X[0, 0] = np.inf

SQUARED = (mj.pairwise_sq_euclidean, mj.pairwise_sq_mahalanobis, mj.pairwise_sq_transformed)
PLAIN = (mj.pairwise_euclidean, mj.pairwise_mahalanobis)


def _param_of(fn):
    """The matrix argument of a distance function (``None`` for Euclidean)."""
    if fn in (mj.pairwise_sq_mahalanobis, mj.pairwise_mahalanobis):
        return METRIC
    if fn is mj.pairwise_sq_transformed:
        return L
    return None


def _dist_args(fn, x, param=None, y=None):
    p = _param_of(fn) if param is None else param
    return (x, y) if p is None else (x, p, y)


# ----------------------------------------------------------------------------- the table
# (id, callable, args, kwargs, exception, message regex, jit) with jit = False (eager
# only), True (eager and under jax.jit) or ONLY_JIT (the problem exists only under tracing)
FUNCTIONAL = []
ONLY_JIT = "only"


def row(id_, fn, args, kwargs, exc, match, jit=False, marks=()):
    FUNCTIONAL.append(pytest.param(fn, args, kwargs, exc, match, jit, id=id_, marks=marks))


for fn in SQUARED + PLAIN:
    n = fn.__name__
    row(f"{n}-x-rank1", fn, _dist_args(fn, f32(3)), {}, ValueError, r"`x` must be 2-D", True)
    row(f"{n}-x-rank3", fn, _dist_args(fn, f32(2, 3, 3)), {}, ValueError, r"`x` must be 2-D", True)
    row(f"{n}-x-scalar", fn, _dist_args(fn, 1.0), {}, ValueError, r"`x` must be 2-D")
    row(
        f"{n}-x-no-rows",
        fn,
        _dist_args(fn, f32(0, 3)),
        {},
        ValueError,
        r"`x` must have at least one row",
        True,
    )
    row(
        f"{n}-x-no-columns",
        fn,
        _dist_args(fn, f32(4, 0), f32(0, 0) if _param_of(fn) is not None else None),
        {},
        ValueError,
        r"`x` must have at least one row and one column",
        True,
    )
    row(
        f"{n}-y-width",
        fn,
        _dist_args(fn, X, y=f32(2, 2)),
        {},
        ValueError,
        r"`x` has d=3 features but `y` has d=2",
        True,
    )
    row(f"{n}-y-rank1", fn, _dist_args(fn, X, y=f32(3)), {}, ValueError, r"`y` must be 2-D", True)
    row(
        f"{n}-y-no-rows",
        fn,
        _dist_args(fn, X, y=f32(0, 3)),
        {},
        ValueError,
        r"`y` must have at least one row",
        True,
    )
    row(
        f"{n}-x-complex",
        fn,
        _dist_args(fn, X.astype(np.complex64)),
        {},
        TypeError,
        r"`x` is complex",
        True,
    )
    row(
        f"{n}-y-complex",
        fn,
        _dist_args(fn, X, y=Y.astype(np.complex64)),
        {},
        TypeError,
        r"`y` is complex",
        True,
    )
    row(
        f"{n}-x-object",
        fn,
        _dist_args(fn, X.astype(object)),
        {},
        TypeError,
        r"`x` must be numeric.*object",
    )
    row(
        f"{n}-x-strings",
        fn,
        _dist_args(fn, [["a", "b"], ["c", "d"]]),
        {},
        TypeError,
        r"`x` must be numeric.*<U1",
    )
    row(f"{n}-x-None", fn, _dist_args(fn, None), {}, TypeError, r"`x` must be numeric")
    row(
        f"{n}-x-ragged",
        fn,
        _dist_args(fn, [[1.0, 2.0], [3.0]]),
        {},
        TypeError,
        r"`x` must be array-like",
    )
    row(
        f"{n}-x-datetime",
        fn,
        _dist_args(fn, np.zeros((2, 2), "M8[s]")),
        {},
        TypeError,
        r"`x` must be numeric.*datetime64",
    )

for fn in (mj.pairwise_sq_mahalanobis, mj.pairwise_mahalanobis):
    n = fn.__name__
    row(
        f"{n}-metric-nonsquare",
        fn,
        (X, f32(3, 2)),
        {},
        ValueError,
        r"`metric` must be a square \(d, d\) matrix, got shape \(3, 2\)",
        True,
    )
    row(
        f"{n}-metric-wrong-d",
        fn,
        (X, f32(2, 2)),
        {},
        ValueError,
        r"`metric` has shape \(2, 2\) but the points have d=3",
        True,
    )
    row(f"{n}-metric-rank1", fn, (X, f32(3)), {}, ValueError, r"`metric` must be a square", True)
    row(
        f"{n}-metric-rank3",
        fn,
        (X, f32(2, 3, 3)),
        {},
        ValueError,
        r"`metric` must be a square",
        True,
    )
    row(
        f"{n}-metric-complex",
        fn,
        (X, METRIC.astype(np.complex64)),
        {},
        TypeError,
        r"`metric` is complex",
        True,
    )
    row(
        f"{n}-metric-strings",
        fn,
        (X, np.full((3, 3), "a")),
        {},
        TypeError,
        r"`metric` must be numeric",
    )

fn = mj.pairwise_sq_transformed
row(
    "transform-wrong-width",
    fn,
    (X, f32(2, 4)),
    {},
    ValueError,
    r"`transform` has shape \(2, 4\): its width must equal the points' d=3",
    True,
)
row("transform-transposed", fn, (X, f32(3, 2)), {}, ValueError, r"`transform`.*width", True)
row("transform-rank1", fn, (X, f32(3)), {}, ValueError, r"`transform` must be 2-D", True)
row(
    "transform-no-rows",
    fn,
    (X, f32(0, 3)),
    {},
    ValueError,
    r"`transform` must have at least one row",
    True,
)
row(
    "transform-complex",
    fn,
    (X, L.astype(np.complex64)),
    {},
    TypeError,
    r"`transform` is complex",
    True,
)

# Jacobians
row("wrt_x-x-rank1", jac.wrt_x, (f32(3),), {}, ValueError, r"`x` must be 2-D", True)
row("wrt_x-metric-wrong-d", jac.wrt_x, (X, f32(2, 2)), {}, ValueError, r"`metric` has shape", True)
row(
    "wrt_x-metric-nonsquare",
    jac.wrt_x,
    (X, f32(3, 2)),
    {},
    ValueError,
    r"`metric` must be a square",
    True,
)
row("wrt_x-complex", jac.wrt_x, (X.astype(np.complex64),), {}, TypeError, r"`x` is complex", True)
row(
    "wrt_x-method",
    jac.wrt_x,
    (X,),
    {"method": "finite_differences"},
    ValueError,
    r"method must be one of \('closed_form', 'jacfwd', 'jacrev'\)",
    True,
)
row("wrt_metric-x-rank3", jac.wrt_metric, (f32(2, 2, 2),), {}, ValueError, r"`x` must be 2-D", True)
row(
    "wrt_metric-empty",
    jac.wrt_metric,
    (f32(0, 3),),
    {},
    ValueError,
    r"`x` must have at least",
    True,
)
row(
    "wrt_metric-method",
    jac.wrt_metric,
    (X,),
    {"method": "jvp"},
    ValueError,
    r"method must be one",
    True,
)
row(
    "wrt_transform-width",
    jac.wrt_transform,
    (X, f32(2, 2)),
    {},
    ValueError,
    r"`transform` has shape \(2, 2\): its width",
    True,
)
row(
    "wrt_transform-strings",
    jac.wrt_transform,
    (X, np.full((2, 3), "a")),
    {},
    TypeError,
    r"`transform` must be numeric",
)

# MLKR loss and kernel regression
row(
    "mlkr-one-sample",
    mlkr_loss,
    (L, X[:1], T[:1]),
    {},
    ValueError,
    r"MLKR needs at least 2 samples in `x`, got n=1",
    True,
)
row(
    "mlkr-empty",
    mlkr_loss,
    (L, f32(0, 3), f32(0)),
    {},
    ValueError,
    r"`x` must have at least one",
    True,
)
row("mlkr-y-rows", mlkr_loss, (L, X, T[:5]), {}, ValueError, r"`y` has 5 rows but `x` has 8", True)
row(
    "mlkr-y-rank3",
    mlkr_loss,
    (L, X, f32(N, 1, 1)),
    {},
    ValueError,
    r"`y` must have shape \(n,\) or \(n, c\)",
    True,
)
row("mlkr-y-scalar", mlkr_loss, (L, X, np.float32(1)), {}, ValueError, r"`y` must have shape", True)
row(
    "mlkr-y-strings",
    mlkr_loss,
    (L, X, np.array(list("abcdefgh"))),
    {},
    TypeError,
    r"`y` must be numeric.*<U1",
)
row(
    "mlkr-y-object",
    mlkr_loss,
    (L, X, np.array([None] * N)),
    {},
    TypeError,
    r"`y` must be numeric.*object",
)
row(
    "mlkr-y-complex",
    mlkr_loss,
    (L, X, T.astype(np.complex64)),
    {},
    TypeError,
    r"`y` is complex",
    True,
)
row(
    "mlkr-transform-width",
    mlkr_loss,
    (f32(2, 2), X, T),
    {},
    ValueError,
    r"`transform` has shape \(2, 2\): its width must equal the points' d=3",
    True,
)
row(
    "mlkr-transform-rank1",
    mlkr_loss,
    (f32(3), X, T),
    {},
    ValueError,
    r"`transform` must be 2-D",
    True,
)
row("mlkr-x-rank1", mlkr_loss, (L, f32(N), T), {}, ValueError, r"`x` must be 2-D", True)
row(
    "mlkr-block-size",
    mlkr_loss,
    (L, X, T),
    {"block_size": 0},
    ValueError,
    r"`block_size` must be a positive int",
    True,
)
row(
    "mlkr-block-size-str",
    mlkr_loss,
    (L, X, T),
    {"block_size": "big"},
    ValueError,
    r"`block_size` must be a positive int",
)
row(
    "kr-query-width",
    kernel_regression,
    (L, X, T, f32(2, 2)),
    {},
    ValueError,
    r"`x_train` has d=3 features but `x_query` has d=2",
    True,
)
row(
    "kr-query-rank1",
    kernel_regression,
    (L, X, T, f32(3)),
    {},
    ValueError,
    r"`x_query` must be 2-D",
    True,
)
row(
    "kr-query-complex",
    kernel_regression,
    (L, X, T, Y.astype(np.complex64)),
    {},
    TypeError,
    r"`x_query` is complex",
    True,
)
row(
    "kr-y-rows",
    kernel_regression,
    (L, X, T[:3]),
    {},
    ValueError,
    r"`y_train` has 3 rows but `x_train` has 8",
    True,
)
row(
    "kr-one-sample",
    kernel_regression,
    (L, X[:1], T[:1], Y),
    {},
    ValueError,
    r"at least 2 samples in `x_train`",
    True,
)

# NCA loss
row(
    "nca-labels-shape",
    nca_loss,
    (L, X, LAB[:3]),
    {},
    ValueError,
    r"`labels` must have shape \(8,\), got \(3,\)",
)
row(
    "nca-labels-shape-jit",
    nca_loss,
    (L, X, LAB[:3]),
    {"num_classes": 2},
    ValueError,
    r"`labels` must have shape \(8,\)",
    True,
)
row(
    "nca-one-sample",
    nca_loss,
    (L, X[:1], LAB[:1]),
    {},
    ValueError,
    r"NCA needs at least 2 samples, got n=1",
)
row(
    "nca-labels-nan",
    nca_loss,
    (L, X, np.where(LAB == 1, np.nan, 0.0)),
    {},
    ValueError,
    r"`labels` contains NaN",
)
row(
    "nca-labels-object",
    nca_loss,
    (L, X, np.array([0, "a"] * 4, object)),
    {},
    TypeError,
    r"`labels` must be integers, strings or floats",
)
row(
    "nca-num-classes-too-small",
    nca_loss,
    (L, X, np.arange(N) % 3),
    {"num_classes": 2},
    ValueError,
    r"`labels` has 3 distinct classes but `num_classes`=2",
)
row(
    "nca-num-classes-type",
    nca_loss,
    (L, X, LAB),
    {"num_classes": 2.5},
    TypeError,
    r"`num_classes` must be an int",
)
row(
    "nca-jit-needs-num-classes",
    nca_loss,
    (L, X, LAB),
    {},
    ValueError,
    r"under jit, pass `num_classes`",
    ONLY_JIT,
)
row(
    "nca-jit-float-labels",
    nca_loss,
    (L, X, LAB.astype(np.float32)),
    {"num_classes": 2},
    TypeError,
    r"`labels` must be integers under jit",
    ONLY_JIT,
)
row(
    "nca-transform-width",
    nca_loss,
    (f32(2, 2), X, LAB),
    {"num_classes": 2},
    ValueError,
    r"`transform` has shape \(2, 2\)",
    True,
)
row(
    "nca-x-complex",
    nca_loss,
    (L, X.astype(np.complex64), LAB),
    {"num_classes": 2},
    TypeError,
    r"`x` is complex",
    True,
)


# LMNN loss and target neighbours
def lmnn_with_tn(transform, x, labels, tn, margin=1.0):
    """``lmnn_loss`` with the (keyword-only) target neighbours passed positionally, for jit."""
    return lmnn_loss(transform, x, labels, target_neighbors=tn, margin=margin)


row(
    "lmnn-push-weight",
    lmnn_loss,
    (L, X, LAB),
    {"push_weight": 2.0},
    ValueError,
    r"`push_weight` must lie in \[0, 1\], got 2.0",
)
row(
    "lmnn-push-weight-nan",
    lmnn_loss,
    (L, X, LAB),
    {"push_weight": float("nan")},
    ValueError,
    r"`push_weight` must be finite",
)
row(
    "lmnn-margin",
    lmnn_loss,
    (L, X, LAB),
    {"margin": -1.0},
    ValueError,
    r"`margin` must be non-negative, got -1.0",
)
row(
    "lmnn-n-neighbors",
    lmnn_loss,
    (L, X, LAB),
    {"n_neighbors": 0},
    ValueError,
    r"`n_neighbors` must be at least 1, got 0",
)
row(
    "lmnn-n-neighbors-type",
    lmnn_loss,
    (L, X, LAB),
    {"n_neighbors": 1.5},
    TypeError,
    r"`n_neighbors` must be a positive int",
)
row(
    "lmnn-class-too-small",
    lmnn_loss,
    (L, X, np.array([0, 1, 1, 1, 1, 1, 1, 1])),
    {},
    ValueError,
    r"class 0 has 1 member\(s\), but n_neighbors=3 needs at least 4 per class",
)
row(
    "lmnn-one-sample",
    lmnn_loss,
    (L, X[:1], LAB[:1]),
    {"n_neighbors": 1},
    ValueError,
    r"class 0 has 1 member",
)
row(
    "lmnn-labels-shape",
    lmnn_loss,
    (L, X, LAB[:3]),
    {},
    ValueError,
    r"`labels` must have shape \(8,\), got \(3,\)",
)
row(
    "lmnn-labels-nan",
    lmnn_loss,
    (L, X, np.where(LAB == 1, np.nan, 0.0)),
    {},
    ValueError,
    r"`labels` contains NaN",
)
row(
    "lmnn-x-nan",
    lmnn_loss,
    (L, NAN_X, LAB),
    {"n_neighbors": 1},
    ValueError,
    r"`x` contains NaN or inf",
)
row(
    "lmnn-tn-shape",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": TN[:3]},
    ValueError,
    r"`target_neighbors` must have shape \(8, k\), k >= 1, got \(3, 1\)",
)
row(
    "lmnn-tn-shape-jit",
    lmnn_with_tn,
    (L, X, LAB, TN[:3]),
    {},
    ValueError,
    r"`target_neighbors` must have shape \(8, k\)",
    True,
)
row(
    "lmnn-tn-float",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": TN.astype(float)},
    TypeError,
    r"`target_neighbors` must be integers",
)
row(
    "lmnn-tn-range",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": TN + 5},
    ValueError,
    r"`target_neighbors` entries must lie in \[0, 8\)",
)
row(
    "lmnn-tn-self",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": np.arange(N)[:, None]},
    ValueError,
    r"point 0 is its own target neighbour",
)
row(
    "lmnn-tn-duplicate",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": np.c_[TN, TN]},
    ValueError,
    r"point 0 lists the same target neighbour twice",
)
row(
    "lmnn-tn-other-label",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": TN[::-1].copy()},
    ValueError,
    r"target neighbour 4 of point 0 has a different label",
)
row(
    "lmnn-jit-needs-tn",
    lmnn_loss,
    (L, X, LAB),
    {},
    TypeError,
    r"with target_neighbors=None, `x` and `labels` must be concrete",
    ONLY_JIT,
)
row(
    "lmnn-jit-float-labels",
    lmnn_with_tn,
    (L, X, LAB.astype(np.float32), TN),
    {},
    TypeError,
    r"`labels` must be integers under jit",
    ONLY_JIT,
)
row(
    "lmnn-transform-width",
    lmnn_with_tn,
    (f32(2, 2), X, LAB, TN),
    {},
    ValueError,
    r"`transform` has shape \(2, 2\)",
    True,
)
row(
    "lmnn-static-traced",
    lmnn_with_tn,
    (L, X, LAB, TN, np.float32(1)),
    {},
    TypeError,
    r"`margin` must be a concrete Python float",
    ONLY_JIT,
)
row(
    "lmnn_tn-n-neighbors-bool",
    lmnn_target_neighbors,
    (X, LAB),
    {"n_neighbors": True},
    TypeError,
    r"`n_neighbors` must be a positive int",
)
row(
    "lmnn_tn-traced",
    lmnn_target_neighbors,
    (X, LAB),
    {},
    TypeError,
    r"lmnn_target_neighbors needs concrete `x` and `labels`",
    ONLY_JIT,
)
row(
    "lmnn_tn-x-inf",
    lmnn_target_neighbors,
    (INF_X, LAB),
    {"n_neighbors": 1},
    ValueError,
    r"`x` contains NaN or inf",
)


# fit
def _quadratic(w):
    return jnp.sum((w - 1.0) ** 2)


row(
    "fit-max-iter",
    mj.fit,
    (_quadratic, jnp.zeros(2)),
    {"max_iter": 0},
    ValueError,
    r"`max_iter` must be an integer >= 1, got 0",
)
row(
    "fit-tol",
    mj.fit,
    (_quadratic, jnp.zeros(2)),
    {"tol": -1.0},
    ValueError,
    r"`tol` must be a number >= 0, got -1.0",
)
row(
    "fit-gtol-nan",
    mj.fit,
    (_quadratic, jnp.zeros(2)),
    {"gtol": float("nan")},
    ValueError,
    r"`gtol` must be a number >= 0, got nan",
)
row(
    "fit-nonfinite-initial-loss",
    mj.fit,
    (_quadratic, jnp.array([jnp.inf, 0.0])),
    {},
    FloatingPointError,
    r"the initial loss is not finite \(inf\)",
)
row(
    "fit-nan-data",
    mj.fit,
    (lambda w, a: jnp.sum((w - a) ** 2), jnp.zeros(2), jnp.array([jnp.nan, 0.0])),
    {},
    FloatingPointError,
    r"the initial loss is not finite \(nan\)",
)
row("fit-loss-not-callable", mj.fit, (None, jnp.zeros(2)), {}, TypeError, r"callable")
row(
    "fit-loss-not-scalar",
    mj.fit,
    (lambda w: w**2, jnp.zeros(2)),
    {},
    TypeError,
    r"scalar-output functions",
)
row(
    "fit-integer-params",
    mj.fit,
    (_quadratic, jnp.zeros(2, jnp.int32)),
    {},
    TypeError,
    r"params",
)
row(
    "fit-max-iter-string",
    mj.fit,
    (_quadratic, jnp.zeros(2)),
    {"max_iter": "many"},
    ValueError,
    r"`max_iter`",
)

# check_finite
row(
    "check_finite-nan",
    mj.check_finite,
    ("x", NAN_X),
    {},
    ValueError,
    r"`x` contains NaN or inf \(1 of 24 entries\)",
)
row(
    "check_finite-inf-second",
    mj.check_finite,
    ("data", X, INF_X),
    {},
    ValueError,
    r"`data` contains NaN or inf",
)
row(
    "check_finite-nan-list",
    mj.check_finite,
    ("y", [1.0, float("nan")]),
    {},
    ValueError,
    r"`y` contains NaN or inf",
)
row(
    "check_finite-bf16",
    mj.check_finite,
    ("x", jnp.array([jnp.nan], jnp.bfloat16)),
    {},
    ValueError,
    r"`x` contains NaN or inf",
)
row(
    "check_finite-name-missing",
    mj.check_finite,
    (NAN_X,),
    {},
    TypeError,
    r"`name` \(the first argument.*must be a str",
)
row(
    "check_finite-strings",
    mj.check_finite,
    ("x", np.array(["a"])),
    {},
    TypeError,
    r"`x` must be numeric",
)
row(
    "check_finite-complex", mj.check_finite, ("x", np.array([1j])), {}, TypeError, r"`x` is complex"
)
row(
    "check_finite-traced",
    lambda a: mj.check_finite("x", a),
    (X,),
    {},
    TypeError,
    r"check_finite needs concrete arrays but `x` is traced",
    ONLY_JIT,
)

#: every public function the table must cover (``metricjax.reference`` holds the
#: unchecked autodiff oracles and is out of scope, see docs/input_policy.md)
COVERED = {
    mj.pairwise_sq_euclidean,
    mj.pairwise_sq_mahalanobis,
    mj.pairwise_sq_transformed,
    mj.pairwise_euclidean,
    mj.pairwise_mahalanobis,
    jac.wrt_x,
    jac.wrt_metric,
    jac.wrt_transform,
    mlkr_loss,
    kernel_regression,
    nca_loss,
    lmnn_loss,
    lmnn_target_neighbors,
    mj.fit,
    mj.check_finite,
}


def _raise_check(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def _jitted(fn, args, kwargs):
    return lambda: jax.jit(functools.partial(fn, **kwargs))(*args)


@pytest.mark.parametrize(("fn", "args", "kwargs", "exc", "match", "jit"), FUNCTIONAL)
def test_functional_bad_input(fn, args, kwargs, exc, match, jit):
    """Each row raises ``exc`` with a message matching ``match`` (eagerly, or under jit for
    the rows whose problem only exists while tracing)."""
    call = _jitted(fn, args, kwargs) if jit == ONLY_JIT else (lambda: fn(*args, **kwargs))
    with pytest.raises(exc, match=match):
        call()


JITTED = [p for p in FUNCTIONAL if p.values[-1] is True]


@pytest.mark.parametrize(("fn", "args", "kwargs", "exc", "match", "jit"), JITTED)
def test_functional_bad_input_under_jit(fn, args, kwargs, exc, match, jit):
    """Shape and dtype errors are raised at trace time: the same error under ``jax.jit``."""
    with pytest.raises(exc, match=match):
        _jitted(fn, args, kwargs)()


def test_table_covers_every_public_function():
    tabled = {p.values[0] for p in FUNCTIONAL}
    missing = {f.__name__ for f in COVERED - tabled}
    assert not missing, f"no bad-input row for {sorted(missing)}"
    assert len(JITTED) >= 60


# ----------------------------------------------------------------------------- converted, not refused
@pytest.mark.parametrize("fn", SQUARED + PLAIN, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_])
def test_integer_and_bool_input_is_promoted_to_default_float(fn, dtype):
    xi = (np.arange(12).reshape(4, 3) % 3).astype(dtype)
    param = _param_of(fn)
    got = fn(*_dist_args(fn, xi, None if param is None else param.astype(np.int32)))
    assert got.dtype == jnp.result_type(float)
    want = fn(*_dist_args(fn, xi.astype(np.float32)))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_integer_input_becomes_float64_under_x64(x64):
    got = mj.pairwise_euclidean(np.arange(6).reshape(3, 2))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got[0, 1], np.sqrt(8.0), rtol=1e-15)


@pytest.mark.parametrize("fn", SQUARED + PLAIN, ids=lambda f: f.__name__)
def test_single_sample_is_valid_for_distances(fn):
    got = fn(*_dist_args(fn, X[:1]))
    np.testing.assert_array_equal(got, np.zeros((1, 1), np.float32))


# ----------------------------------------------------------------------------- NaN passes through
@pytest.mark.parametrize("fn", SQUARED + PLAIN, ids=lambda f: f.__name__)
def test_nan_passes_through_the_functional_api_and_check_finite_catches_it(fn):
    """Documented: no value checks on the jitted path; ``check_finite`` is the opt-in guard."""
    got = np.asarray(fn(*_dist_args(fn, NAN_X)))
    # The centring uses the mean of all points, so one NaN reaches every entry; only
    # the diagonal, which is set to 0, stays finite.
    off = ~np.eye(N, dtype=bool)
    assert np.isnan(got[off]).all()
    np.testing.assert_array_equal(np.diag(got), 0)
    with pytest.raises(ValueError, match=r"`x` contains NaN or inf"):
        mj.check_finite("x", NAN_X)


def test_nan_metric_and_transform_pass_through():
    bad = METRIC.copy()
    bad[0, 0] = np.nan
    assert np.isnan(np.asarray(mj.pairwise_sq_mahalanobis(X, bad))[0, 1])
    assert np.isnan(np.asarray(mj.pairwise_sq_transformed(X, bad))[0, 1])
    with pytest.raises(ValueError, match=r"`metric` contains NaN"):
        mj.check_finite("metric", bad)


def test_nan_targets_pass_through_mlkr_loss():
    bad = T.copy()
    bad[0] = np.nan
    assert np.isnan(float(mlkr_loss(L, X, bad)))
    with pytest.raises(ValueError, match=r"`y` contains NaN"):
        mj.check_finite("y", bad)


def test_check_finite_accepts_finite_input_of_every_supported_kind():
    for a in (
        X,
        X.astype(np.float64),
        np.arange(3),
        np.ones(2, bool),
        [1.0, 2.0],
        jnp.ones(3, jnp.bfloat16),
        None,
    ):
        mj.check_finite("x", a)
    mj.check_finite("nothing")  # no arrays: nothing to check


def test_one_class_is_accepted_by_the_functional_losses():
    """Documented: well defined (NCA: constant -n, zero gradient; LMNN: pull term only)."""
    ones = np.zeros(N, int)
    val, grad = jax.value_and_grad(nca_loss)(L, X, ones)
    assert float(val) == -N
    np.testing.assert_allclose(grad, np.zeros_like(L), atol=1e-5)  # zero up to rounding
    assert np.isfinite(float(lmnn_loss(L, X, ones, n_neighbors=1)))


# ============================================================================ estimators
XE = _rng.standard_normal((12, D))
YR = _rng.standard_normal(12)
YC = np.repeat([0, 1, 2], 4)
EST = {"MLKR": (MLKR, YR), "NCA": (NCA, YC), "LMNN": (LMNN, YC)}


@functools.cache
def _fitted(name):
    cls, y = EST[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(max_iter=5, random_state=0).fit(XE, y)


def _nan(a, where=0):
    a = np.array(a, dtype=float)
    a.flat[where] = np.nan
    return a


def _inf(a):
    a = np.array(a, dtype=float)
    a.flat[1] = np.inf
    return a


# (id, estimator name, action(cls, y) -> call, exception, regex)
ESTIMATOR_CASES = []


def est_row(id_, names, action, exc, match, marks=()):
    for name in names:
        ESTIMATOR_CASES.append(
            pytest.param(name, action, exc, match, id=f"{name}-{id_}", marks=marks)
        )


ALL = ("MLKR", "NCA", "LMNN")
CLS = ("NCA", "LMNN")


def fit_with(X_=None, y_=None, **params):
    params.setdefault("max_iter", 3)

    def action(cls, y):
        return cls(**params).fit(XE if X_ is None else X_, y if y_ is None else y_)

    return action


est_row("fit-X-nan", ALL, fit_with(_nan(XE)), ValueError, r"Input X contains NaN")
est_row("fit-X-inf", ALL, fit_with(_inf(XE)), ValueError, r"Input X contains infinity")
est_row("fit-X-rank1", ALL, fit_with(XE[:, 0]), ValueError, r"Expected 2D array, got 1D array")
est_row("fit-X-rank3", ALL, fit_with(XE[:, :, None]), ValueError, r"Found array with dim 3")
est_row(
    "fit-X-empty", ALL, fit_with(XE[:0], np.zeros(0)), ValueError, r"Found array with 0 sample\(s\)"
)
est_row(
    "fit-X-no-features", ALL, fit_with(XE[:, :0]), ValueError, r"Found array with 0 feature\(s\)"
)
est_row(
    "fit-X-one-sample",
    ALL,
    fit_with(XE[:1], np.zeros(1)),
    ValueError,
    r"1 sample\(s\) .* a minimum of 2 is required",
)
est_row(
    "fit-X-strings",
    ALL,
    fit_with(np.full((12, 3), "a")),
    ValueError,
    r"could not convert string to float",
)
est_row(
    "fit-X-complex", ALL, fit_with(XE.astype(complex)), ValueError, r"Complex data not supported"
)
est_row(
    "fit-X-complex-names-X",
    ALL,
    fit_with(XE.astype(complex)),
    ValueError,
    r"Complex data not supported.*\bX\b",
)
est_row(
    "fit-y-length",
    ALL,
    fit_with(y_=np.zeros(5)),
    ValueError,
    r"inconsistent numbers of samples: \[12, 5\]",
)
est_row(
    "fit-y-nan",
    ALL,
    lambda cls, y: fit_with(y_=_nan(y))(cls, y),
    ValueError,
    r"Input y contains NaN",
)
est_row(
    "fit-y-inf",
    ALL,
    lambda cls, y: fit_with(y_=_inf(y))(cls, y),
    ValueError,
    r"Input y contains infinity",
)
est_row(
    "fit-y-two-columns",
    ALL,
    lambda cls, y: fit_with(y_=np.c_[y, y])(cls, y),
    ValueError,
    r"y should be a 1d array",
)
est_row(
    "fit-y-complex",
    ALL,
    lambda cls, y: fit_with(y_=y.astype(complex))(cls, y),
    ValueError,
    r"Complex data not supported",
)
est_row(
    "fit-y-strings",
    ("MLKR",),
    fit_with(y_=np.array(list("abcdabcdabcd"))),
    ValueError,
    r"MLKR needs numeric regression targets `y`",
)
est_row(
    "fit-y-strings-names-y",
    ("MLKR",),
    fit_with(y_=np.array(list("abcdabcdabcd"))),
    ValueError,
    r"\by\b",
)
est_row(
    "fit-y-one-class",
    CLS,
    fit_with(y_=np.zeros(12, int)),
    ValueError,
    r"needs samples of at least 2 classes; got 1 class",
)
est_row("fit-y-continuous", CLS, fit_with(y_=YR), ValueError, r"Unknown label type: continuous")
est_row(
    "n_components-0",
    ALL,
    fit_with(n_components=0),
    ValueError,
    r"`n_components` must lie in \[1, n_features\] = \[1, 3\], got 0",
)
est_row(
    "n_components-too-big",
    ALL,
    fit_with(n_components=4),
    ValueError,
    r"`n_components` must lie in \[1, n_features\] = \[1, 3\], got 4",
)
est_row(
    "n_components-float",
    ALL,
    fit_with(n_components=1.5),
    TypeError,
    r"`n_components` must be an int or None",
)
est_row(
    "init-wrong-shape",
    ALL,
    fit_with(init=np.eye(2)),
    ValueError,
    r"`init` must have shape \(n_components, n_features\).*got \(2, 2\)",
)
est_row(
    "init-wrong-rows",
    ALL,
    fit_with(n_components=2, init=np.eye(3)),
    ValueError,
    r"`init` must have shape \(n_components, n_features\) = \(2, 3\), got \(3, 3\)",
)
est_row("init-rank1", ALL, fit_with(init=np.ones(3)), ValueError, r"`init` must be one of")
est_row(
    "init-nan",
    ALL,
    fit_with(init=np.full((3, 3), np.nan)),
    ValueError,
    r"`init` contains NaN or inf",
)
est_row(
    "init-overflows",
    ALL,
    fit_with(init=np.full((3, 3), 1e200)),
    FloatingPointError,
    r"the loss at the initial transformation is not finite",
)
est_row("init-unknown", ALL, fit_with(init="svd"), ValueError, r"`init` must be one of")
est_row(
    "init-lda-regression",
    ("MLKR",),
    fit_with(init="lda"),
    ValueError,
    r"`init` must be one of \('auto', 'pca', 'identity', 'random'\)",
)
est_row("max_iter-0", ALL, fit_with(max_iter=0), ValueError, r"`max_iter` must be >= 1, got 0")
est_row("tol-negative", ALL, fit_with(tol=-1.0), ValueError, r"`tol` must lie in \[0.0, inf\]")
est_row(
    "block_size-0", ALL, fit_with(block_size=0), ValueError, r"`block_size` must be a positive int"
)
est_row(
    "optimizer",
    ALL,
    fit_with(optimizer="adam"),
    TypeError,
    r"`optimizer` must be None or an optax.GradientTransformation",
)
est_row(
    "push_weight",
    ("LMNN",),
    fit_with(push_weight=2.0),
    ValueError,
    r"`push_weight` must lie in \[0.0, 1.0\], got 2.0",
)
est_row(
    "margin", ("LMNN",), fit_with(margin=-1.0), ValueError, r"`margin` must lie in \[0.0, inf\]"
)
est_row(
    "n_neighbors-0",
    ("LMNN",),
    fit_with(n_neighbors=0),
    ValueError,
    r"`n_neighbors` must be >= 1, got 0",
)
est_row(
    "singleton-class",
    ("LMNN",),
    fit_with(y_=np.r_[np.zeros(11, int), 1]),
    ValueError,
    r"LMNN needs at least 2 samples in every class.*class 1 has 1 sample",
)


def use(method, X_):
    def action(cls, y):
        return getattr(_fitted(cls.__name__), method)(X_)

    return action


est_row(
    "transform-width",
    ALL,
    use("transform", XE[:, :2]),
    ValueError,
    r"X has 2 features, but \w+ is expecting 3 features",
)
est_row("transform-nan", ALL, use("transform", _nan(XE)), ValueError, r"Input X contains NaN")
est_row("transform-rank1", ALL, use("transform", XE[0]), ValueError, r"Expected 2D array")
est_row(
    "transform-empty", ALL, use("transform", XE[:0]), ValueError, r"Found array with 0 sample\(s\)"
)
est_row("transform-unfitted", ALL, lambda cls, y: cls().transform(XE), Exception, r"not fitted yet")
est_row(
    "predict-width",
    ("MLKR",),
    use("predict", XE[:, :2]),
    ValueError,
    r"X has 2 features, but MLKR is expecting 3 features",
)
est_row("predict-nan", ("MLKR",), use("predict", _nan(XE)), ValueError, r"Input X contains NaN")
est_row(
    "predict-unfitted", ("MLKR",), lambda cls, y: cls().predict(XE), Exception, r"not fitted yet"
)
est_row(
    "metric-fun-shape",
    ALL,
    lambda cls, y: _fitted(cls.__name__).get_metric()(np.ones(2), np.ones(2)),
    ValueError,
    r"u and v must be 1-D arrays of length 3",
)


@pytest.mark.parametrize(("name", "action", "exc", "match"), ESTIMATOR_CASES)
def test_estimator_bad_input(name, action, exc, match):
    cls, y = EST[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc, match=match):
            action(cls, y)


# ----------------------------------------------------------------------------- failed fits
FAILING_FITS = {
    "X-nan": lambda est, y: est.fit(_nan(XE), y),
    "X-complex": lambda est, y: est.fit(XE.astype(complex), y),
    "X-one-sample": lambda est, y: est.fit(XE[:1], y[:1]),
    "y-nan": lambda est, y: est.fit(XE, _nan(y)),
    "n_components": lambda est, y: est.set_params(n_components=7).fit(XE, y),
    "init-shape": lambda est, y: est.set_params(init=np.eye(2)).fit(XE, y),
    "one-class": lambda est, y: est.fit(XE, np.zeros(12, int)),
    "nonfinite-initial-loss": lambda est, y: est.set_params(init=np.full((3, 3), 1e200)).fit(XE, y),
}


def _state(est):
    return {k: copy.deepcopy(v) for k, v in vars(est).items()}


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    for k, v in before.items():
        w = after[k]
        if isinstance(v, np.ndarray):
            assert v.dtype == w.dtype and v.shape == w.shape, k
            np.testing.assert_array_equal(v, w, err_msg=k, strict=True)
        elif k != "optimizer":
            assert type(v) is type(w) and (v == w or (v != v and w != w)), k


@pytest.mark.parametrize("failure", sorted(FAILING_FITS))
@pytest.mark.parametrize("name", ALL)
def test_failed_fit_leaves_a_fitted_estimator_unchanged(name, failure):
    if failure == "one-class" and name == "MLKR":
        pytest.skip("a constant target is valid regression data")
    est = copy.deepcopy(_fitted(name))
    _, y = EST[name]
    before = _state(est)
    emb = est.transform(XE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, TypeError, FloatingPointError)):
            FAILING_FITS[failure](est, y)
    if failure in ("n_components", "init-shape", "nonfinite-initial-loss"):
        # set_params changed a hyperparameter; fit itself must have changed nothing
        est.set_params(**{k: before[k] for k in ("n_components", "init")})
    _assert_same_state(before, _state(est))
    np.testing.assert_array_equal(est.transform(XE), emb, strict=True)


def test_optimizer_that_is_an_optax_transformation_is_accepted():
    # the positive counterpart of the "optimizer" rows above
    est = NCA(max_iter=2, optimizer=optax.adam(1e-2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(XE, YC)
    assert np.isfinite(est.components_).all()
