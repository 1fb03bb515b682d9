"""MMC: compiled solver and loss against metric-learn 0.7.0 and plain-jnp twins."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from _pairs_data import pair_datasets, quiet_fit, relerr
from _typecheck import unchecked

import metricjax as mj
from benchmarks._reference_libs import metric_learn_compat
from metricjax.losses._mmc import mmc_loss, mmc_loss_transform
from metricjax.losses._pairs import pair_outer_sum
from metricjax.solvers import _mmc
from metricjax.solvers._mmc import mmc_solve

ml = metric_learn_compat()


DATA = pair_datasets(120, 120, 100)
ml_mmc = functools.partial(quiet_fit, ml.MMC)


@functools.cache
def ml_reference(name, diagonal=False):
    """metric-learn's metric on ``DATA[name]`` (computed once per session)."""
    return ml_mmc(*DATA[name], diagonal=diagonal).get_mahalanobis_matrix()


def ratio(metric, pairs, y):
    r"""Scale-invariant MMC objective :math:`f_S / h_D^2` (see ``mmc_loss``)."""
    u = pairs[:, 0] - pairs[:, 1]
    m = np.diag(metric) if np.ndim(metric) == 1 else np.asarray(metric)
    d = np.einsum("pi,ij,pj->p", u, m, u)
    return d[y > 0].sum() / np.sqrt(np.maximum(d[y < 0], 0)).sum() ** 2


# ----------------------------------------------------------------------------------
# solver vs metric-learn
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", ["iris", "wine", "random"])
def test_mmc_solve_full_matches_metric_learn(name):
    pairs, y = DATA[name]
    ref = ml_mmc(pairs, y)
    res = mmc_solve(pairs, y)
    assert res.metric.dtype == jnp.float64
    assert relerr(res.metric, ref.get_mahalanobis_matrix()) < 1e-6
    assert int(res.n_iter) == ref.n_iter_ + 1  # metric-learn stores the last index
    assert bool(res.converged) == ref.converged_


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", ["iris", "wine", "random"])
def test_mmc_solve_diagonal_matches_metric_learn(name):
    pairs, y = DATA[name]
    res = mmc_solve(pairs, y, diagonal=True)
    assert relerr(res.metric, ml_reference(name, True)) < 1e-6
    assert bool(res.converged)


@pytest.mark.usefixtures("x64")
def test_mmc_solve_hyperparameters_match_metric_learn():
    pairs, y = DATA["random"]
    init = np.diag(np.linspace(0.5, 2.0, 6))
    cases = [
        dict(init="covariance"),
        dict(init="random", random_state=3, max_iter=5, max_proj=3),  # stopped early
        dict(init=init, tol=1e-2),
        dict(init=init, diagonal=True, diagonal_c=3.0),
        dict(init="random", random_state=1, diagonal=True, max_iter=1),
    ]
    for kw in cases:
        ref = ml_mmc(pairs, y, **kw)
        res = mmc_solve(pairs, y, **kw)
        assert relerr(res.metric, ref.get_mahalanobis_matrix()) < 1e-6, kw
        if not kw.get("diagonal"):
            assert int(res.n_iter) == ref.n_iter_ + 1, kw
            assert bool(res.converged) == ref.converged_, kw


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", ["iris", "wine"])
def test_mmc_packed_passes_equal_the_matmul_passes(name):
    # the packed products u_i u_j (d <= 16) against the (n, d) @ (d, d) products: the
    # same iterates (same count) and the same metric up to rounding, padding included
    pairs, y = DATA[name]
    pos, neg = (_mmc._padded_differences(pairs, m, np.float64) for m in (y == 1, y == -1))
    assert not neg[-1].any()  # padded
    args = (pos, neg, np.eye(pairs.shape[2]), np.float64(1e-3), np.int32(100), np.int32(10000))
    plain = _mmc._mmc_full_loop(*args, packed=False)
    packed = _mmc._mmc_full_loop(*args, packed=True)
    assert int(plain[1]) == int(packed[1]) and bool(plain[2]) == bool(packed[2])
    assert relerr(packed[0], plain[0]) < 1e-12
    distances, outer_sum = _mmc._packed_passes(jnp.asarray(neg))
    m, u = np.asarray(plain[0]), neg
    np.testing.assert_allclose(distances(m), np.sqrt(np.einsum("pi,ij,pj->p", u, m, u)),
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    g = np.random.default_rng(0).uniform(size=len(u))
    np.testing.assert_allclose(outer_sum(g), (u * g[:, None]).T @ u, rtol=1e-12)


def test_mmc_solve_float32_is_finite():
    pairs, y = DATA["iris"]
    for diagonal in (False, True):
        ref = ml_reference("iris", diagonal)
        res = mmc_solve(pairs.astype(np.float32), y, diagonal=diagonal)
        assert res.metric.dtype == jnp.float32
        assert np.all(np.isfinite(res.metric))
        # the path can branch differently in float32; the objective stays the same
        np.testing.assert_allclose(ratio(res.metric, pairs, y), ratio(ref, pairs, y), rtol=1e-2)


def test_mmc_solve_integer_pairs_are_differenced_in_float():
    """uint8 points (pixels): a - b must not wrap around (3 - 5 is -2, not 254)."""
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 256, size=(60, 2, 5)).astype(np.uint8)
    y = np.where(np.arange(60) % 2 == 0, 1, -1)
    with jax.enable_x64(True):
        got = unchecked(mmc_solve)(pairs, y, max_iter=20).metric  # (annotated Float)
        want = mmc_solve(pairs.astype(np.float64), y, max_iter=20).metric
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------------
# degenerate and bad input
# ----------------------------------------------------------------------------------
def test_mmc_degenerate_pairs():
    pairs, y = DATA["random"]
    # some dissimilar pairs of identical points: finite, and the same as metric-learn
    p1 = pairs.copy()
    for k in np.flatnonzero(y == -1)[:3]:
        p1[k, 1] = p1[k, 0]
    with jax.enable_x64(True):
        res = mmc_solve(p1, y)
    assert np.all(np.isfinite(res.metric))
    assert relerr(res.metric, ml_mmc(p1, y).get_mahalanobis_matrix()) < 1e-6
    # all similar pairs of identical points: metric-learn fails inside eigh (NaN);
    # we say what is wrong
    p2 = pairs.copy()
    p2[y == 1, 1] = p2[y == 1, 0]
    with pytest.raises(np.linalg.LinAlgError):
        ml_mmc(p2, y)
    with pytest.raises(ValueError, match=r"every similar pair \(y == 1\) is made of two"):
        mmc_solve(p2, y)
    p3 = pairs.copy()
    p3[y == -1, 1] = p3[y == -1, 0]
    with pytest.raises(ValueError, match="every dissimilar pair"):
        mmc_solve(p3, y, diagonal=True)
    with pytest.raises(ValueError, match="every dissimilar pair"):
        mmc_loss(np.eye(6), p3, y)


def test_mmc_bad_input():
    pairs, y = DATA["iris"]
    with pytest.raises(ValueError, match=r"`pairs` must have shape \(n_pairs, 2, d\)"):
        unchecked(mmc_solve)(pairs[:, :1], y)
    with pytest.raises(ValueError, match="`y` must hold"):
        unchecked(mmc_solve)(pairs, 2 * y)
    with pytest.raises(ValueError, match="`y` holds a single class"):
        unchecked(mmc_solve)(pairs, np.ones(len(y)))
    bad = pairs.copy()
    bad[1, 1, 1] = np.inf
    with pytest.raises(ValueError, match="`pairs` contains NaN or inf"):
        unchecked(mmc_solve)(bad, y)
    with pytest.raises(ValueError, match="`init` is not positive semi-definite"):
        unchecked(mmc_solve)(pairs, y, init=-np.eye(4))
    with pytest.raises(ValueError, match="`max_proj`"):
        unchecked(mmc_solve)(pairs, y, max_proj=0)
    with pytest.raises(ValueError, match="`diagonal_c`"):
        unchecked(mmc_solve)(pairs, y, diagonal=True, diagonal_c=-1.0)
    with pytest.raises(ValueError, match=r"`metric` must have shape \(4,\)"):
        unchecked(mmc_loss)(np.ones(3), pairs, y, diagonal=True)
    with pytest.raises(ValueError, match="`transform` has shape"):
        unchecked(mmc_loss_transform)(np.ones((2, 3)), pairs, y)


# ----------------------------------------------------------------------------------
# closed-form gradients vs jax.grad of plain twins (float64, rtol 1e-10)
# ----------------------------------------------------------------------------------
def _twin(metric, pairs, y, c=1.0, diagonal=False, w=None):
    """Plain jnp MMC objective (``w``: pair weights)."""
    u = pairs[:, 0] - pairs[:, 1]
    m = jnp.diag(metric) if diagonal else metric
    d = jnp.einsum("pi,ij,pj->p", u, m, u)
    w = jnp.ones_like(d) if w is None else w
    return jnp.sum(jnp.where(y > 0, w * d, 0)) - c * jnp.log(
        jnp.sum(jnp.where(y < 0, w * jnp.sqrt(d), 0))
    )


@pytest.mark.usefixtures("x64")
def test_mmc_gradients_match_autodiff_twins():
    pairs, y = DATA["wine"]
    pairs = jnp.asarray(pairs)
    d = pairs.shape[2]
    a = np.random.RandomState(0).randn(d, d)
    metric = jnp.asarray(a @ a.T / d + 0.1 * np.eye(d))
    w = jnp.asarray(np.random.RandomState(1).uniform(0.2, 2.0, d))
    L = jnp.asarray(a[:5] / 3)
    u = pairs[:, 0] - pairs[:, 1]
    neg = u[y < 0]
    eps = 1e-6

    def phi_sum(m):  # twin of metric-learn's _fD1 (see dissimilarity_gradient)
        r = jnp.sqrt(jnp.einsum("pi,ij,pj->p", neg, m, neg))
        return jnp.sum(r - eps * jnp.log(r + eps)) / jax.lax.stop_gradient(jnp.sum(r) + eps)

    def log_sum_dist(w):
        return jnp.log(jnp.sum(jnp.sqrt((neg * neg) @ w)))

    diag_loss = functools.partial(mmc_loss, diagonal=True, diagonal_c=2.5)

    @jax.jit
    def everything(metric, w, L, pairs):
        return [
            # the solver's closed forms
            (
                pair_outer_sum(u[y > 0], jnp.ones(int((y > 0).sum()))),
                jax.grad(lambda m: jnp.sum(jnp.einsum("pi,ij,pj->p", u, m, u)[y > 0]))(metric),
            ),
            (_mmc.dissimilarity_gradient(neg, metric), jax.grad(phi_sum)(metric)),
            (
                _mmc.dissimilarity_objective(neg, metric),
                jnp.log(jnp.sum(jnp.sqrt(jnp.einsum("pi,ij,pj->p", neg, metric, neg))) + eps),
            ),
            (_mmc._log_sum_dist_derivatives(neg * neg, w)[1], jax.grad(log_sum_dist)(w)),
            (_mmc._log_sum_dist_derivatives(neg * neg, w)[2], jax.hessian(log_sum_dist)(w)),
            # the losses (metric, pairs, diagonal, transform)
            (mmc_loss(metric, pairs, y), _twin(metric, pairs, y)),
            (
                jax.grad(mmc_loss, (0, 1))(metric, pairs, y),
                jax.grad(_twin, (0, 1))(metric, pairs, y),
            ),
            (jax.grad(diag_loss)(w, pairs, y), jax.grad(_twin)(w, pairs, y, 2.5, True)),
            (
                jax.grad(mmc_loss_transform)(L, pairs, y),
                jax.grad(lambda L: _twin(L.T @ L, pairs, y))(L),
            ),
        ]

    for got, want in everything(metric, w, L, pairs):
        for g, v in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, v, rtol=1e-10, atol=1e-13 * np.abs(v).max())


def test_mmc_loss_float32_and_zero_distance():
    pairs, y = DATA["iris"]
    p32 = pairs.astype(np.float32)
    k = int(np.flatnonzero(y == -1)[0])
    p32[k, 1] = p32[k, 0]  # one dissimilar pair at distance 0: subgradient, not NaN
    val, g = jax.jit(jax.value_and_grad(mmc_loss))(jnp.eye(4, dtype=jnp.float32), p32, y)
    assert val.dtype == jnp.float32 and np.isfinite(val) and np.all(np.isfinite(g))


# ----------------------------------------------------------------------------------
# the loss reaches a better MMC objective than metric-learn
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
def test_mmc_loss_with_mj_fit_beats_metric_learn():
    """mj.fit on mmc_loss_transform: same problem, lower f_S / h_D^2 than metric-learn."""
    pairs, y = DATA["random"]
    d = pairs.shape[2]
    fit = mj.fit(mmc_loss_transform, jnp.eye(d), pairs, y, max_iter=1000)
    m_fit = np.asarray(fit.params.T @ fit.params)
    m_ml = ml_reference("random")
    m_solve = np.asarray(mmc_solve(pairs, y).metric)
    assert ratio(m_fit, pairs, y) <= ratio(m_ml, pairs, y)
    np.testing.assert_allclose(ratio(m_solve, pairs, y), ratio(m_ml, pairs, y), rtol=1e-8)
    # at the loss minimum f_S = 1/2 (c = 1), and M / h_D^2 is MMC's constrained solution
    u = pairs[:, 0] - pairs[:, 1]
    dist = np.einsum("pi,ij,pj->p", u, m_fit, u)
    np.testing.assert_allclose(dist[y > 0].sum(), 0.5, rtol=1e-4)


@pytest.mark.usefixtures("x64")
def test_mmc_diagonal_loss_beats_metric_learns_line_search():
    """metric-learn's diagonal line search minimises s.w + c log(...) (wrong sign).

    Minimising the intended objective (mmc_loss with diagonal=True, w >= 0, here with
    SciPy's L-BFGS-B on the jitted closed-form gradient) gives a lower scale-invariant
    objective than metric-learn's (and mmc_solve's identical) diagonal metric.
    """
    f = jax.jit(jax.value_and_grad(functools.partial(mmc_loss, diagonal=True)))
    for name in ("iris", "random"):
        pairs, y = DATA[name]
        d = pairs.shape[2]
        s = ((pairs[:, 0] - pairs[:, 1])[y > 0] ** 2).sum()
        opt = scipy.optimize.minimize(
            lambda w: tuple(np.asarray(v) for v in f(w, pairs, y)),  # noqa: B023
            np.full(d, 0.5 / s),
            jac=True,
            method="L-BFGS-B",
            bounds=[(0, None)] * d,
            options=dict(ftol=1e-15, gtol=1e-12, maxiter=5000),
        )
        w_ml = np.diag(ml_reference(name, True))
        assert ratio(opt.x, pairs, y) < 0.99 * ratio(w_ml, pairs, y), name


# ----------------------------------------------------------------------------------
# sample weights (issue 14): one weight per pair, weight 0 = the pair is absent
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
def test_mmc_weighted_gradients_match_autodiff_twin():
    pairs, y = DATA["wine"]
    pairs, y = jnp.asarray(pairs), jnp.asarray(y)
    d = pairs.shape[2]
    a = np.random.RandomState(0).randn(d, d)
    metric = jnp.asarray(a @ a.T / d + 0.1 * np.eye(d))
    diag = jnp.asarray(np.random.RandomState(1).uniform(0.2, 2.0, d))
    L = jnp.asarray(a[:5] / 3)
    sw = jnp.asarray(np.random.RandomState(2).uniform(0.2, 2.0, len(y))).at[::5].set(0.0)
    diag_loss = lambda v, p: mmc_loss(v, p, y, diagonal=True, diagonal_c=2.5, sample_weight=sw)
    pairs_of = [
        (lambda m, p: mmc_loss(m, p, y, sample_weight=sw), lambda m, p: _twin(m, p, y, w=sw),
         metric),
        (diag_loss, lambda v, p: _twin(v, p, y, 2.5, True, sw), diag),
        (lambda L, p: mmc_loss_transform(L, p, y, sample_weight=sw),
         lambda L, p: _twin(L.T @ L, p, y, w=sw), L),
    ]
    for fast, twin, param in pairs_of:
        np.testing.assert_allclose(fast(param, pairs), twin(param, pairs), rtol=1e-12)
        for g, v in zip(jax.grad(fast, (0, 1))(param, pairs), jax.grad(twin, (0, 1))(param, pairs),
                        strict=True):
            np.testing.assert_allclose(g, v, rtol=1e-10, atol=1e-13 * np.abs(v).max())


@pytest.mark.usefixtures("x64")
def test_mmc_weight_zero_is_an_absent_pair():
    pairs, y = DATA["wine"]
    d = pairs.shape[2]
    metric = jnp.asarray(np.eye(d))
    w = np.ones(len(y))
    w[::3] = 0
    keep = w > 0
    weighted = lambda m: mmc_loss(m, pairs, y, sample_weight=w)
    dropped = lambda m: mmc_loss(m, pairs[keep], y[keep])
    np.testing.assert_allclose(weighted(metric), dropped(metric), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(weighted)(metric), jax.grad(dropped)(metric), rtol=1e-11,
                               atol=1e-13)
    # a fold without dissimilar pairs is refused clearly (the loss would be +inf)
    with pytest.raises(ValueError, match="`sample_weight` leaves no dissimilar pair"):
        unchecked(mmc_loss)(metric, pairs, y, sample_weight=(y > 0).astype(float))
