"""Property-based tests (hypothesis) of the distances, their derivatives and the losses.

All in float64 (``jax.enable_x64``), so the properties hold to a few units of rounding.
Shapes are drawn from a short fixed list and the data from bounded floats, so the
compiled programs are reused across examples (one compilation per shape, not per
example); hypothesis' float strategy produces many repeated values and zeros, which
exercises duplicate points and constant features on the way.
"""

from __future__ import annotations

import functools
import os

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metricjax as mj
from metricjax import jacobians as jac
from metricjax.losses import lmnn_loss, lmnn_target_neighbors, mlkr_loss, nca_loss

SETTINGS = settings(
    # 25 by default (the file runs in well under a minute); raise it for a deeper search,
    # e.g. METRICJAX_HYPOTHESIS_EXAMPLES=1000 pytest tests/test_properties.py
    max_examples=int(os.environ.get("METRICJAX_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: (n, m, d, k): points x (n, d), second set y (m, d), transform (k, d)
SHAPES = [(2, 1, 1, 1), (3, 2, 2, 1), (5, 3, 3, 2), (8, 4, 5, 3)]
EPS = np.finfo(np.float64).eps
VALUES = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)
SMALL = st.floats(-2, 2, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


@st.composite
def problems(draw, elements=VALUES):
    """Points ``x``, ``y``, a transform ``L``, a general square ``M`` and a cotangent."""
    n, m, d, k = draw(st.sampled_from(SHAPES))
    arr = lambda shape, el=elements: draw(hnp.arrays(np.float64, shape, elements=el))  # noqa: E731
    return {
        "x": arr((n, d)),
        "y": arr((m, d)),
        "L": arr((k, d), SMALL),
        "M": arr((d, d), SMALL),
        "G": arr((n, n), SMALL),
        "Gc": arr((n, m), SMALL),
        "t": arr((1, d)),
    }


def _np_sq(x, y=None, metric=None):
    """Difference-form oracle ``(x_i - y_j)^T M (x_i - y_j)``."""
    y = x if y is None else y
    diff = x[:, None, :] - y[None, :, :]
    m = np.eye(x.shape[1]) if metric is None else metric
    return np.einsum("ijk,kl,ijl->ij", diff, m, diff)


def _scale(*arrays):
    """A magnitude for absolute tolerances: the squared spread of the points (at least 1)."""
    pts = np.concatenate([a for a in arrays if a is not None])
    pts = pts - pts.mean(axis=0)
    return max(1.0, float(np.max(np.sum(pts * pts, axis=1))))


def _close(a, b, tol):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=tol)


# ============================================================================ distances
def _self_distances(p):
    x, L, M = p["x"], p["L"], p["M"]
    psd = L.T @ L
    return {
        "sq_euclidean": mj.pairwise_sq_euclidean(x),
        "sq_mahalanobis": mj.pairwise_sq_mahalanobis(x, M),  # any square M
        "sq_transformed": mj.pairwise_sq_transformed(x, L),
        "euclidean": mj.pairwise_euclidean(x),
        "mahalanobis": mj.pairwise_mahalanobis(x, psd),
    }


@SETTINGS
@given(problems())
def test_self_distances_are_symmetric_with_exact_zero_diagonal(p):
    with jax.enable_x64(True):
        for name, dist in _self_distances(p).items():
            dist = np.asarray(dist)
            np.testing.assert_array_equal(dist, dist.T, err_msg=name)
            np.testing.assert_array_equal(np.diag(dist), 0, err_msg=name)


@SETTINGS
@given(problems())
def test_identical_rows_are_at_distance_exactly_zero(p):
    x = p["x"]
    same = np.all(x[:, None, :] == x[None, :, :], axis=-1)
    with jax.enable_x64(True):
        for dist in (mj.pairwise_euclidean(x), mj.pairwise_mahalanobis(x, p["L"].T @ p["L"])):
            np.testing.assert_array_equal(np.asarray(dist)[same], 0)


@SETTINGS
@given(problems(), st.booleans())
def test_nonnegative_for_psd_metrics(p, cross):
    x, L = p["x"], p["L"]
    y = p["y"] if cross else None
    psd = L.T @ L
    with jax.enable_x64(True):
        for dist in (
            mj.pairwise_sq_euclidean(x, y),
            mj.pairwise_sq_transformed(x, L, y),
            mj.pairwise_euclidean(x, y),
            mj.pairwise_mahalanobis(x, psd, y),
        ):
            assert (np.asarray(dist) >= 0).all()
        # the squared Mahalanobis distance is not clipped (so that indefinite metrics
        # keep their sign): for a PSD metric it is >= 0 up to rounding
        sq = np.asarray(mj.pairwise_sq_mahalanobis(x, psd, y))
        tol = 16 * (x.shape[1] + 2) * EPS * _scale(x, y) * max(1.0, np.abs(psd).sum())
        assert sq.min() >= -tol


@SETTINGS
@given(problems(), st.booleans())
def test_translation_invariance(p, cross):
    x, y, L, M, t = p["x"], (p["y"] if p["y"] is not None else None), p["L"], p["M"], p["t"]
    y = y if cross else None
    ys = None if y is None else y + t
    big = _scale(x, y) + float(np.max(np.abs(t))) ** 2
    tol = 64 * x.shape[1] * EPS * big * max(1.0, np.abs(M).sum(), np.abs(L).sum() ** 2)
    with jax.enable_x64(True):
        pairs = [
            (mj.pairwise_sq_euclidean(x, y), mj.pairwise_sq_euclidean(x + t, ys)),
            (mj.pairwise_sq_mahalanobis(x, M, y), mj.pairwise_sq_mahalanobis(x + t, M, ys)),
            (mj.pairwise_sq_transformed(x, L, y), mj.pairwise_sq_transformed(x + t, L, ys)),
        ]
        for a, b in pairs:
            _close(a, b, tol)
        # the square roots, compared through their squares (sqrt is not Lipschitz at 0)
        a, b = mj.pairwise_euclidean(x, y), mj.pairwise_euclidean(x + t, ys)
        _close(np.asarray(a) ** 2, np.asarray(b) ** 2, tol)


@SETTINGS
@given(problems(), st.booleans())
def test_the_three_parametrisations_agree(p, cross):
    """``D(A) = D(M)`` with ``M = L^T L``, and ``D(X) = D(I) = D(A = I)``; also the roots."""
    x, L = p["x"], p["L"]
    y = p["y"] if cross else None
    d = x.shape[1]
    tol = 64 * (d + 2) * EPS * _scale(x, y) * max(1.0, np.abs(L).sum() ** 2)
    with jax.enable_x64(True):
        sq_t = np.asarray(mj.pairwise_sq_transformed(x, L, y))
        _close(sq_t, mj.pairwise_sq_mahalanobis(x, L.T @ L, y), tol)
        _close(np.asarray(mj.pairwise_mahalanobis(x, L.T @ L, y)) ** 2, sq_t, tol)
        _close(sq_t, _np_sq(x, y, L.T @ L), tol)
        eye = np.eye(d)
        sq_e = np.asarray(mj.pairwise_sq_euclidean(x, y))
        _close(sq_e, mj.pairwise_sq_mahalanobis(x, eye, y), tol)
        _close(sq_e, mj.pairwise_sq_transformed(x, eye, y), tol)
        _close(np.asarray(mj.pairwise_euclidean(x, y)) ** 2, sq_e, tol)
        _close(sq_e, _np_sq(x, y), tol)


@SETTINGS
@given(problems(), st.floats(-3, 3, width=64), st.floats(-3, 3, width=64), st.booleans())
def test_squared_mahalanobis_is_linear_in_the_metric(p, a, b, cross):
    x, M, L = p["x"], p["M"], p["L"]
    y = p["y"] if cross else None
    M2 = L.T @ L
    tol = (
        64
        * (x.shape[1] + 2)
        * EPS
        * _scale(x, y)
        * 10
        * max(1.0, np.abs(M).sum(), np.abs(M2).sum())
    )
    with jax.enable_x64(True):
        lhs = mj.pairwise_sq_mahalanobis(x, a * M + b * M2, y)
        rhs = a * np.asarray(mj.pairwise_sq_mahalanobis(x, M, y)) + b * np.asarray(
            mj.pairwise_sq_mahalanobis(x, M2, y)
        )
        _close(lhs, rhs, tol)
        # and only the symmetric part of M matters
        _close(mj.pairwise_sq_mahalanobis(x, M, y), mj.pairwise_sq_mahalanobis(x, M.T, y), tol)


# ============================================================================ derivatives
def _rel_close(a, b, rtol=1e-9):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b).max()))


_wrt_x = jax.jit(jac.wrt_x, static_argnames="method")
_wrt_metric = jax.jit(jac.wrt_metric, static_argnames="method")
_wrt_transform = jax.jit(jac.wrt_transform, static_argnames="method")


@SETTINGS
@given(problems())
def test_closed_form_jacobians_equal_autodiff(p):
    x, L, M = p["x"], p["L"], p["M"]
    with jax.enable_x64(True):
        _rel_close(_wrt_x(x), _wrt_x(x, method="jacfwd"))
        _rel_close(_wrt_x(x, M), _wrt_x(x, M, method="jacrev"))
        _rel_close(_wrt_metric(x), _wrt_metric(x, method="jacfwd"))
        _rel_close(_wrt_transform(x, L), _wrt_transform(x, L, method="jacrev"))


def _vjp_pairs(x, y, L, M, G, Gc):
    """(closed-form VJP, autodiff VJP of the plain difference form) for every squared distance."""
    ref = mj.reference
    cases = [
        (mj.pairwise_sq_euclidean, ref.pairwise_sq_euclidean, (x,), G),
        (mj.pairwise_sq_euclidean, ref.pairwise_sq_euclidean, (x, y), Gc),
        (mj.pairwise_sq_mahalanobis, ref.pairwise_sq_mahalanobis, (x, M), G),
        (mj.pairwise_sq_mahalanobis, ref.pairwise_sq_mahalanobis, (x, M, y), Gc),
        (mj.pairwise_sq_transformed, ref.pairwise_sq_transformed, (x, L), G),
        (mj.pairwise_sq_transformed, ref.pairwise_sq_transformed, (x, L, y), Gc),
    ]
    return [(jax.vjp(f, *args)[1](g), jax.vjp(r, *args)[1](g)) for f, r, args, g in cases]


_vjp_pairs_jit = jax.jit(_vjp_pairs)


@SETTINGS
@given(problems())
def test_closed_form_vjps_equal_autodiff_of_the_plain_formulas(p):
    with jax.enable_x64(True):
        for got, want in _vjp_pairs_jit(p["x"], p["y"], p["L"], p["M"], p["G"], p["Gc"]):
            for g, w in zip(got, want):
                _rel_close(g, w, rtol=1e-8)


@SETTINGS
@given(problems())
def test_sqrt_distance_gradients_equal_autodiff_of_sqrt_off_coincident_pairs(p):
    """Where the points are apart, d sqrt(D) = dD / (2 sqrt(D)) exactly as autodiff says.

    Pairs closer than 1e-3 of the spread get a zero cotangent: there the rounding of the
    norm expansion, amplified by 1 / sqrt(D), would dominate the comparison.
    """
    x, L = p["x"], p["L"]
    psd = L.T @ L + np.eye(x.shape[1])
    sq = _np_sq(x, metric=psd)
    far = sq > 1e-6 * _scale(x) * np.abs(psd).sum()
    g = np.where(far, p["G"], 0.0)
    with jax.enable_x64(True):
        got = _grad_ours(x, psd, g)
        want = _grad_plain(x, psd, g, far)
        for a, b in zip(got, want):
            _rel_close(a, b, rtol=1e-6)


@jax.jit
@functools.partial(jax.grad, argnums=(0, 1))
def _grad_ours(x, m, g):
    return jnp.sum(g * mj.pairwise_mahalanobis(x, m))


@jax.jit
@functools.partial(jax.grad, argnums=(0, 1))
def _grad_plain(x, m, g, far):
    sq = mj.reference.pairwise_sq_mahalanobis(x, m)
    return jnp.sum(jnp.where(far, g * jnp.sqrt(jnp.where(far, sq, 1.0)), 0.0))


# ============================================================================ losses
LOSS_SHAPES = [(6, 3, 2), (9, 2, 2)]


@st.composite
def loss_problems(draw):
    n, d, k = draw(st.sampled_from(LOSS_SHAPES))
    x = draw(hnp.arrays(np.float64, (n, d), elements=SMALL))
    y = draw(hnp.arrays(np.float64, (n,), elements=SMALL))
    L = draw(hnp.arrays(np.float64, (k, d), elements=st.floats(-1, 1, width=64)))
    perm = np.asarray(draw(st.permutations(range(n))))
    return x, y, L, perm


@SETTINGS
@given(loss_problems())
def test_losses_are_invariant_to_permuting_the_samples(prob):
    x, y, L, perm = prob
    n = x.shape[0]
    labels = np.arange(n) % 2
    inv = np.argsort(perm)
    tn = lmnn_target_neighbors(x, labels, 2)
    tn_perm = inv[tn[perm]]  # the same neighbour relation in the new numbering
    with jax.enable_x64(True):
        smooth = {
            "mlkr": lambda L, x, y, lab, tn: mlkr_loss(L, x, y),
            "nca": lambda L, x, y, lab, tn: nca_loss(L, x, lab),
        }
        for name, f in smooth.items():
            v0, g0 = jax.value_and_grad(f)(L, x, y, labels, tn)
            v1, g1 = jax.value_and_grad(f)(L, x[perm], y[perm], labels[perm], tn_perm)
            np.testing.assert_allclose(v1, v0, rtol=1e-9, atol=1e-9, err_msg=name)
            _rel_close(g1, g0, rtol=1e-7)
        # LMNN is piecewise linear: the loss is continuous, the gradient may jump when
        # rounding moves a hinge across 0, so only the loss is compared
        v0 = lmnn_loss(L, x, labels, target_neighbors=tn)
        v1 = lmnn_loss(L, x[perm], labels[perm], target_neighbors=tn_perm)
        np.testing.assert_allclose(v1, v0, rtol=1e-9, atol=1e-9)


def test_permutation_property_is_not_vacuous(x64):
    """Permuting ``x`` without ``y`` does change the MLKR loss."""
    rng = np.random.default_rng(0)
    x, y, L = rng.standard_normal((6, 3)), rng.standard_normal(6), rng.standard_normal((2, 3))
    perm = np.array([1, 0, 2, 3, 5, 4])
    assert not np.isclose(float(mlkr_loss(L, x, y)), float(mlkr_loss(L, x[perm], y)))
