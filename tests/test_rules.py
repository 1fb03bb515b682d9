"""Derivatives of the public functions: custom_jvp rules, their transposes, memory.

Every public function is a ``jax.custom_jvp`` with a closed-form linear tangent; reverse
mode is JAX's transpose of it. Checked here against autodiff of the plain difference-form
maths (:mod:`metricjax.reference`) and against the explicit closed-form VJPs in
:mod:`metricjax._rules`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import metricjax as mj
from metricjax import _rules as R
from metricjax import reference as ref

TOL = {"rtol": 1e-10, "atol": 1e-12}
N, M, D = 4, 3, 3


# ----------------------------------------------------------------------------- cases
@dataclasses.dataclass(frozen=True)
class Case:
    """A public function with positional array arguments ``(x[, y][, param])``."""

    name: str
    public: Callable
    reference: Callable
    argnames: tuple[str, ...]
    k: int = 2  # rows of the transform

    def args(self, seed=0):
        rng = np.random.default_rng(seed)
        shapes = {"x": (N, D), "y": (M, D), "metric": (D, D), "transform": (self.k, D)}
        return tuple(rng.standard_normal(shapes[a]) for a in self.argnames)

    def closed_form_vjp(self, args, g):
        """Cotangents from ``metricjax._rules`` (centred points, symmetric part of M)."""
        named = dict(zip(self.argnames, args))
        x, y = named["x"], named.get("y")
        if y is None:
            c = jnp.mean(x, axis=0, keepdims=True)
        else:
            c = jnp.mean(jnp.concatenate([x, y]), axis=0, keepdims=True)
        xc = x - c
        yc = None if y is None else y - c
        if "metric" in named:
            sym = 0.5 * (named["metric"] + named["metric"].T)
            if y is None:
                return R.vjp_sq_mahalanobis_self(xc, sym, g)
            xbar, ybar, mbar = R.vjp_sq_mahalanobis(xc, yc, sym, g)
            return xbar, ybar, mbar
        if "transform" in named:
            if y is None:
                return R.vjp_sq_transformed_self(xc, named["transform"], g)
            return R.vjp_sq_transformed(xc, yc, named["transform"], g)
        if y is None:
            return (R.vjp_sq_euclidean_self(xc, g),)
        return R.vjp_sq_euclidean(xc, yc, g)


CASES = [
    Case(
        "euclidean_self", lambda x: mj.pairwise_sq_euclidean(x), ref.pairwise_sq_euclidean, ("x",)
    ),
    Case(
        "euclidean_cross",
        lambda x, y: mj.pairwise_sq_euclidean(x, y),
        lambda x, y: ref.pairwise_sq_euclidean(x, y),
        ("x", "y"),
    ),
    Case(
        "mahalanobis_self",
        lambda x, m: mj.pairwise_sq_mahalanobis(x, m),
        lambda x, m: ref.pairwise_sq_mahalanobis(x, m),
        ("x", "metric"),
    ),
    Case(
        "mahalanobis_cross",
        lambda x, y, m: mj.pairwise_sq_mahalanobis(x, m, y),
        lambda x, y, m: ref.pairwise_sq_mahalanobis(x, m, y),
        ("x", "y", "metric"),
    ),
    Case(  # k > d
        "transformed_self",
        lambda x, l: mj.pairwise_sq_transformed(x, l),
        lambda x, l: ref.pairwise_sq_transformed(x, l),
        ("x", "transform"),
        k=5,
    ),
    Case(  # k < d
        "transformed_cross",
        lambda x, y, l: mj.pairwise_sq_transformed(x, l, y),
        lambda x, y, l: ref.pairwise_sq_transformed(x, l, y),
        ("x", "y", "transform"),
        k=2,
    ),
]
CASE_IDS = [c.name for c in CASES]
CASE_ARG = [
    pytest.param(c, a, id=f"{c.name}-{name}") for c in CASES for a, name in enumerate(c.argnames)
]


def _all(case):
    return tuple(range(len(case.argnames)))


def _loss(fn):
    """A non-linear scalar of the distances, so G = dL/dD is dense and non-symmetric."""

    def loss(*args):
        d = fn(*args)
        weights = jnp.arange(d.size, dtype=d.dtype).reshape(d.shape) / d.size
        return jnp.sum(jnp.sin(d) * (1.0 + weights))

    return loss


@functools.cache
def _vjp_of(fn):
    """One jitted VJP per function, shared by the parametrizations of a test."""
    return jax.jit(lambda args, g: jax.vjp(fn, *args)[1](g))


@functools.cache
def _vjps(case):
    """Public VJP, closed-form rules, reference VJP: one compilation per case."""

    def vjps(args, g):
        public = jax.vjp(case.public, *args)[1](g)
        reference = jax.vjp(case.reference, *args)[1](g)
        return public, case.closed_form_vjp(args, g), reference

    return jax.jit(vjps)


# ----------------------------------------------------------------------------- Jacobians
@pytest.mark.parametrize("case,argnum", CASE_ARG)
def test_jacrev_jacfwd_match_reference(x64, case, argnum):
    """One argument at a time, so the other tangents are symbolic zeros."""
    args = case.args()

    @jax.jit  # one compilation for the three Jacobians
    def jacobians(*a):
        return (
            jax.jacrev(case.public, argnums=argnum)(*a),
            jax.jacfwd(case.public, argnums=argnum)(*a),
            jax.jacfwd(case.reference, argnums=argnum)(*a),
        )

    rev, fwd, want = jacobians(*args)
    assert rev.shape == want.shape == fwd.shape
    np.testing.assert_allclose(rev, want, **TOL)
    np.testing.assert_allclose(fwd, want, **TOL)


def test_jvp_with_nonsymmetric_metric_tangent(x64):
    """The metric tangent enters through its symmetric part, like the value does."""
    rng = np.random.default_rng(2)
    x, metric = rng.standard_normal((N, D)), rng.standard_normal((D, D))
    mdot = np.triu(rng.standard_normal((D, D)))
    jvp = lambda fn: jax.jit(lambda *p: jax.jvp(fn, p, (np.zeros_like(x), mdot))[1])
    got = jvp(mj.pairwise_sq_mahalanobis)(x, metric)
    want = jvp(ref.pairwise_sq_mahalanobis)(x, metric)
    np.testing.assert_allclose(got, want, **TOL)


# ----------------------------------------------------------------------------- closed-form VJPs
@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_vjp_equals_closed_form_rules(x64, case, centred):
    args = case.args(seed=3)
    if not centred:  # translation invariance: shifted points give the same cotangents
        shift = 7.0 * np.ones(D)
        args = tuple(
            a + shift if name in ("x", "y") else a
            for a, name in zip(args, case.argnames, strict=True)
        )
    n_out = (N, N if "y" not in case.argnames else M)
    g = np.random.default_rng(4).standard_normal(n_out)  # dense, non-symmetric, nonzero diagonal

    got, want, oracle = _vjps(case)(args, g)
    assert len(got) == len(want) == len(case.argnames)
    for name, a, b, c in zip(case.argnames, got, want, oracle, strict=True):
        np.testing.assert_allclose(a, b, **TOL, err_msg=name)
        np.testing.assert_allclose(a, c, **TOL, err_msg=name)


def test_metric_cotangent_is_symmetric(x64):
    rng = np.random.default_rng(5)
    x, metric = rng.standard_normal((N, D)), rng.standard_normal((D, D))
    g = rng.standard_normal((N, N))
    mbar = np.asarray(_vjp_of(mj.pairwise_sq_mahalanobis)((x, metric), g)[1])
    np.testing.assert_allclose(mbar, mbar.T, **TOL)


@pytest.mark.parametrize("case", CASES[::2], ids=CASE_IDS[::2])
def test_self_tangent_has_exactly_zero_diagonal(case):
    """The diagonal of a self-distance matrix is constant 0, so is its tangent."""
    args = tuple(a.astype(np.float32) + 100 for a in case.args(seed=12))
    tangents = tuple(np.ones_like(a) for a in args)
    tangent = jax.jit(lambda *a: jax.jvp(case.public, a, tangents)[1])(*args)
    assert tangent.dtype == jnp.float32
    assert np.all(np.diag(np.asarray(tangent)) == 0.0)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradients_keep_float32(case):
    args = tuple(a.astype(np.float32) for a in case.args(seed=13))
    grads = jax.jit(jax.grad(_loss(case.public), argnums=_all(case)))(*args)
    for g, a in zip(grads, args, strict=True):
        assert g.dtype == jnp.float32 and g.shape == a.shape


@pytest.mark.parametrize("dist", ["euclidean", "mahalanobis", "transformed"])
def test_cross_with_y_equal_x_has_the_self_gradient(x64, dist):
    """D(x, x) and D(x) agree, and so do their gradients (the diagonal contributes 0)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((N, D))
    param = (
        None if dist == "euclidean" else rng.standard_normal((2 if dist == "transformed" else D, D))
    )
    g = rng.standard_normal((N, N))
    fn = getattr(mj, f"pairwise_sq_{dist}")
    args = () if param is None else (param,)
    self_grad = jax.jit(
        jax.grad(lambda x, *p: jnp.sum(g * fn(x, *p)), argnums=_all_of(1 + len(args)))
    )
    cross_grad = jax.jit(
        jax.grad(lambda x, *p: jnp.sum(g * fn(x, *p, x)), argnums=_all_of(1 + len(args)))
    )
    for a, b in zip(self_grad(x, *args), cross_grad(x, *args), strict=True):
        np.testing.assert_allclose(a, b, **TOL)


def _all_of(n):
    return tuple(range(n))


# ----------------------------------------------------------------------------- higher order
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_check_grads_second_order(x64, case):
    args = case.args(seed=6)
    # eager on purpose: the op-by-op compiles are shared by all cases (same shapes)
    check_grads(case.public, args, order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_hessian_matches_reference(x64, case):
    args = case.args(seed=7)

    def hess(fn):
        return jax.hessian(lambda *a: jnp.sum(fn(*a) ** 2), argnums=_all(case))

    got, want = jax.jit(lambda *a: (hess(case.public)(*a), hess(case.reference)(*a)))(*args)
    for row_got, row_want in zip(got, want, strict=True):
        for g, w in zip(row_got, row_want, strict=True):
            np.testing.assert_allclose(g, w, **TOL)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("case", CASES[::2], ids=CASE_IDS[::2])
def test_grad_jit_and_no_jit(x64, case, jit):
    args = case.args(seed=8)
    grad = jax.grad(_loss(case.public), argnums=_all(case))
    got = (jax.jit(grad) if jit else grad)(*args)
    want = jax.jit(jax.grad(_loss(case.reference), argnums=_all(case)))(*args)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, **TOL)


@pytest.mark.parametrize("cross", [False, True])
def test_vmap_grad_over_metrics(x64, cross):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((N, D))
    y = rng.standard_normal((M, D)) if cross else None
    metrics = rng.standard_normal((4, D, D))
    loss = lambda fn: _loss(lambda x, m: fn(x, m, y))
    grad = jax.grad(loss(mj.pairwise_sq_mahalanobis), argnums=(0, 1))
    xbars, mbars = jax.jit(jax.vmap(grad, in_axes=(None, 0)))(x, metrics)
    assert xbars.shape == (4, N, D) and mbars.shape == (4, D, D)
    ref_grad = jax.jit(jax.grad(loss(ref.pairwise_sq_mahalanobis), argnums=(0, 1)))
    for b in range(4):
        xbar, mbar = ref_grad(x, metrics[b])
        np.testing.assert_allclose(xbars[b], xbar, **TOL)
        np.testing.assert_allclose(mbars[b], mbar, **TOL)


@pytest.mark.parametrize("cross", [False, True])
def test_vmap_grad_over_transforms(x64, cross):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((N, D))
    y = rng.standard_normal((M, D)) if cross else None
    transforms = rng.standard_normal((3, 2, D))
    loss = lambda fn: _loss(lambda l: fn(x, l, y))
    lbars = jax.jit(jax.vmap(jax.grad(loss(mj.pairwise_sq_transformed))))(transforms)
    ref_grad = jax.jit(jax.grad(loss(ref.pairwise_sq_transformed)))
    for b in range(3):
        np.testing.assert_allclose(lbars[b], ref_grad(transforms[b]), **TOL)


@pytest.mark.parametrize("cross", [False, True])
def test_float32_gradient_far_from_origin(cross):
    """The tangent rules use centred points: float32 gradients stay accurate at 1000 + N(0, 1)."""
    rng = np.random.default_rng(11)
    x = (1000.0 + rng.standard_normal((40, 4))).astype(np.float32)
    y = (1000.0 + rng.standard_normal((30, 4))).astype(np.float32) if cross else None
    g = rng.standard_normal((40, 30 if cross else 40)).astype(np.float32)
    got = jax.jit(jax.grad(lambda x: jnp.sum(g * mj.pairwise_sq_euclidean(x, y))))(x)
    # float64 truth in NumPy: xbar_i = 2 sum_j (G_ij [+ G_ji]) (x_i - y_j)
    x64_ = x.astype(np.float64)
    y64 = x64_ if y is None else y.astype(np.float64)
    h = g.astype(np.float64) if cross else g + g.T
    want = 2 * (h.sum(1)[:, None] * x64_ - h @ y64)
    err = np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)
    assert err < 1e-4, err


# ----------------------------------------------------------------------------- memory
MEM_N, MEM_M = 512, 256


def _temp_bytes(fn, args):
    mem = jax.jit(fn).lower(*args).compile().memory_analysis()
    if mem is None or getattr(mem, "temp_size_in_bytes", None) is None:
        pytest.skip("memory_analysis() is not available on this backend")
    return mem.temp_size_in_bytes


def _grad_and_args(dist, wrt, d, cross, reference):
    """``jax.grad`` of ``sum(sin(D))`` w.r.t. ``wrt``, and its arguments, at width ``d``."""
    mod = ref if reference else mj
    fn = getattr(mod, f"pairwise_sq_{dist}")
    x = jnp.ones((MEM_N, d))
    y = jnp.ones((MEM_M, d)) if cross else None
    if dist == "euclidean":
        param, dist_of = None, lambda x, y, p: fn(x, y)
    else:
        param = jnp.eye(d) if dist == "mahalanobis" else jnp.ones((4, d))
        dist_of = lambda x, y, p: fn(x, p, y)
    argnum = {"x": 0, "y": 1, "metric": 2, "transform": 2}[wrt]
    grad = jax.grad(lambda *a: jnp.sum(jnp.sin(dist_of(*a))), argnums=argnum)
    return grad, (x, y, param)


def _temps(dist, wrt, cross, reference):
    """Compiled temp bytes at d = 8 and d = 256."""
    return [_temp_bytes(*_grad_and_args(dist, wrt, d, cross, reference)) for d in (8, 256)]


MEM_CASES = [
    ("euclidean", "x", False),
    ("euclidean", "y", True),
    ("mahalanobis", "x", False),
    ("mahalanobis", "metric", False),
    ("mahalanobis", "metric", True),
    ("transformed", "x", True),
    ("transformed", "transform", False),
    ("transformed", "transform", True),
]


@pytest.mark.parametrize(
    "dist,wrt,cross",
    MEM_CASES,
    ids=[f"{a}-{b}-{'cross' if c else 'self'}" for a, b, c in MEM_CASES],
)
def test_gradient_temp_memory_does_not_grow_with_d(dist, wrt, cross):
    small, large = _temps(dist, wrt, cross, reference=False)
    m = MEM_M if cross else MEM_N
    one_nmd = MEM_N * m * 256 * 4  # bytes of one (n, m, d=256) float32 array
    assert large < small + 0.1 * one_nmd, (small, large)
    # the difference-form reference does build (n, m, d) arrays: the check can fail
    ref_small, ref_large = _temps(dist, wrt, cross, reference=True)
    assert ref_large > ref_small + 0.5 * one_nmd, (ref_small, ref_large)


@pytest.mark.parametrize("n", [8000, 12000])
def test_gradient_compiles_quickly_at_large_n(n):
    # An n x n `where(eye, ..., W + W.T)` once hung XLA's compiler from n = 7500 on;
    # compile (not run) the gradients at sizes above that and bound the time.
    import time

    x = jax.ShapeDtypeStruct((n, 8), jnp.float32)
    metric = jax.ShapeDtypeStruct((8, 8), jnp.float32)
    for f, args in (
        (lambda x: jnp.sum(jnp.sin(mj.pairwise_sq_euclidean(x))), (x,)),
        (lambda x, m: jnp.sum(jnp.sin(mj.pairwise_sq_mahalanobis(x, m))), (x, metric)),
        (lambda x, m: jnp.sum(jnp.sin(mj.pairwise_sq_transformed(x, m))), (x, metric)),
    ):
        t0 = time.perf_counter()
        jax.jit(jax.grad(f, argnums=tuple(range(len(args))))).lower(*args).compile()
        assert time.perf_counter() - t0 < 30
