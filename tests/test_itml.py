"""ITML: compiled solver and loss against metric-learn 0.7.0 and plain-jnp twins."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _pairs_data import pair_datasets, quiet_fit, relerr
from _typecheck import unchecked
from sklearn.metrics import pairwise_distances

from benchmarks._reference_libs import metric_learn_compat
from metricjax.losses._itml import itml_loss, itml_loss_transform
from metricjax.solvers import _itml
from metricjax.solvers._itml import default_bounds, itml_solve

ml = metric_learn_compat()


DATA = pair_datasets(200, 200, 150)
ml_itml = functools.partial(quiet_fit, ml.ITML)


# ----------------------------------------------------------------------------------
# solver vs metric-learn
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", ["iris", "wine", "random"])
def test_itml_solve_matches_metric_learn(name):
    pairs, y = DATA[name]
    ref = ml_itml(pairs, y)
    res = itml_solve(pairs, y)
    assert res.metric.dtype == jnp.float64
    assert relerr(res.metric, ref.get_mahalanobis_matrix()) < 1e-6
    np.testing.assert_allclose(res.bounds, ref.bounds_, rtol=1e-12)
    assert int(res.n_iter) == ref.n_iter_ + 1  # metric-learn stores the last sweep index
    assert bool(res.converged)


@pytest.mark.usefixtures("x64")
def test_itml_solve_hyperparameters_match_metric_learn():
    pairs, y = DATA["random"]
    prior = np.diag(np.arange(1.0, 7.0))
    cases = [
        dict(gamma=0.3, prior="covariance", bounds=[0.5, 20.0]),
        dict(gamma=np.inf, prior="random", random_state=4, max_iter=50),
        dict(gamma=5.0, prior=prior, tol=1e-6, max_iter=7),  # stopped by max_iter
    ]
    for kw in cases:
        bounds = kw.pop("bounds", None)
        ref = ml.ITML(**kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref._fit(pairs, y, bounds=bounds)
        res = itml_solve(pairs, y, bounds=bounds, **kw)
        assert relerr(res.metric, ref.get_mahalanobis_matrix()) < 1e-6, kw
        assert int(res.n_iter) == ref.n_iter_ + 1, kw
    assert not bool(res.converged)  # the last case ran out of sweeps


def test_itml_solve_float32_is_finite_and_close():
    pairs, y = DATA["wine"]
    ref = ml_itml(pairs, y).get_mahalanobis_matrix()
    res = itml_solve(pairs.astype(np.float32), y, device="cpu")
    assert res.metric.dtype == jnp.float32
    assert res.metric.devices() == {jax.devices("cpu")[0]}
    assert np.all(np.isfinite(res.metric))
    assert relerr(res.metric, ref) < 1e-3


def test_itml_solve_float32_runs_its_loop_in_float64():
    """float32 pairs give float64's answer rounded: the loop's state is kept in float64
    (float32 rank-1 updates drift: 1.6e-4 on the objective at 20,000 pairs; here the
    float32 loop's metric was 3.2e-6 off, the float64 loop's is 1.7e-8 off)."""
    pairs, y = DATA["iris"]
    p32 = pairs.astype(np.float32)
    with jax.enable_x64(True):
        ref = np.asarray(itml_solve(p32.astype(np.float64), y, max_iter=200).metric)
    res = itml_solve(p32, y, max_iter=200)
    assert res.metric.dtype == jnp.float32
    assert relerr(res.metric, ref) < 2e-7
    # the platform rule: float64 on CPUs and GPUs only
    assert _itml._has_float64("cpu") and _itml._has_float64("gpu")
    assert not _itml._has_float64("tpu")


def test_default_bounds_are_metric_learns_percentiles(monkeypatch):
    rng = np.random.RandomState(5)
    pairs = rng.randn(300, 2, 3)
    pairs[10] = pairs[3]  # duplicated points are counted once, as in metric-learn
    pts = np.unique(pairs.reshape(-1, 3), axis=0)
    want = np.percentile(pairwise_distances(pts), (5, 95))
    np.testing.assert_allclose(default_bounds(pairs), want, rtol=1e-12)
    # the bounded-memory path (sampled bracket + exact selection) gives the same numbers
    monkeypatch.setattr(_itml, "_DENSE_LIMIT", 1000)
    monkeypatch.setattr(_itml, "_ROW_BLOCK", 64)
    np.testing.assert_allclose(default_bounds(pairs), want, rtol=1e-12)


# ----------------------------------------------------------------------------------
# degenerate and bad input
# ----------------------------------------------------------------------------------
def test_coincident_pairs():
    pairs, y = DATA["random"]
    pairs = pairs.copy()
    # a similar pair of identical points is a no-op (finite, same as metric-learn)
    k = int(np.flatnonzero(y == 1)[0])
    pairs[k, 1] = pairs[k, 0]
    with jax.enable_x64(True):
        res = itml_solve(pairs, y)
    assert relerr(res.metric, ml_itml(pairs, y).get_mahalanobis_matrix()) < 1e-6
    # a dissimilar pair of identical points: metric-learn breaks down with NaN
    # (reported as "The input metric should be symmetric."); we say what is wrong
    k = int(np.flatnonzero(y == -1)[0])
    pairs[k, 1] = pairs[k, 0]
    with pytest.raises(ValueError, match="symmetric"):
        ml_itml(pairs, y)
    with pytest.raises(ValueError, match=r"dissimilar pair\(s\) \[.*\] have two identical"):
        itml_solve(pairs, y)
    b = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="dissimilar pair"):
        itml_loss(jnp.eye(6), pairs, y, bounds=b)


def test_itml_bad_input():
    pairs, y = DATA["iris"]
    with pytest.raises(ValueError, match=r"`pairs` must have shape \(n_pairs, 2, d\)"):
        unchecked(itml_solve)(np.zeros((5, 3, 4)), np.ones(5))
    with pytest.raises(ValueError, match="`y` must hold"):
        unchecked(itml_solve)(pairs, np.where(y > 0, 1, 0))
    with pytest.raises(ValueError, match="`y` holds a single class"):
        unchecked(itml_solve)(pairs, -np.ones(len(y)))
    bad = pairs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`pairs` contains NaN"):
        unchecked(itml_solve)(bad, y)
    with pytest.raises(ValueError, match="`gamma`"):
        unchecked(itml_solve)(pairs, y, gamma=0.0)
    with pytest.raises(ValueError, match="`bounds` must be an array-like of two"):
        unchecked(itml_solve)(pairs, y, bounds=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="`bounds` must be two finite"):
        unchecked(itml_solve)(pairs, y, bounds=[np.nan, 2.0])
    with pytest.raises(ValueError, match="`max_iter`"):
        unchecked(itml_solve)(pairs, y, max_iter=0)
    with pytest.raises(ValueError, match="`device`: no 'tpu9' device"):
        unchecked(itml_solve)(pairs, y, device="tpu9")
    with pytest.raises(ValueError, match="strictly positive definite matrix as `prior`"):
        unchecked(itml_solve)(pairs, y, prior=np.diag([1.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="`gamma` must be a positive finite"):
        unchecked(itml_loss)(jnp.eye(4), pairs, y, bounds=[1.0, 2.0], gamma=np.inf)
    with pytest.raises(ValueError, match="`metric` has shape"):
        unchecked(itml_loss)(jnp.eye(3), pairs, y, bounds=[1.0, 2.0])


# ----------------------------------------------------------------------------------
# the loss: closed-form gradient, relation to the solver
# ----------------------------------------------------------------------------------
def _twin(metric, pairs, y, *, bounds, prior, gamma, w=None):
    """Plain jnp ITML objective (autodiff only); ``w``: pair weights."""
    u = pairs[:, 0] - pairs[:, 1]
    dist = jnp.einsum("pi,ij,pj->p", u, metric, u)
    ld = (
        jnp.trace(jnp.linalg.inv(prior) @ metric)
        - jnp.log(jnp.linalg.det(metric))
        + jnp.log(jnp.linalg.det(prior))
        - metric.shape[0]
    )
    r = jnp.where(y > 0, jnp.maximum(dist / bounds[0], 1), jnp.minimum(dist / bounds[1], 1))
    terms = r - jnp.log(r) - 1
    return ld + gamma * jnp.sum(terms if w is None else w * terms)


def _loss_setup():
    """The random pairs, an SPD metric and a diagonal prior, and pair weights (some 0)."""
    pairs, y = DATA["random"]
    pairs = jnp.asarray(pairs)
    d = pairs.shape[2]
    rng = np.random.RandomState(0)
    a = rng.randn(d, d)
    metric = jnp.asarray(a @ a.T / d + 0.5 * np.eye(d))
    prior = jnp.asarray(np.diag(rng.uniform(0.5, 2, d)))
    w = jnp.asarray(rng.uniform(0.2, 2.0, len(y))).at[::5].set(0.0)
    return pairs, y, metric, prior, w


@pytest.mark.usefixtures("x64")
def test_itml_loss_gradient_matches_autodiff_twin():
    pairs, y, metric, prior, _ = _loss_setup()
    bounds = jnp.asarray([2.0, 9.0])  # both kinds of violated pairs are present
    dist = np.einsum("pi,ij,pj->p", pairs[:, 0] - pairs[:, 1], metric, pairs[:, 0] - pairs[:, 1])
    assert np.any((y > 0) & (dist > 2)) and np.any((y < 0) & (dist < 9))
    loss = functools.partial(itml_loss, bounds=bounds, prior=prior, gamma=0.7)
    tloss = functools.partial(itml_loss_transform, bounds=bounds, prior=prior, gamma=0.7)
    twin = functools.partial(_twin, bounds=bounds, prior=prior, gamma=0.7)
    L = jnp.asarray(np.linalg.cholesky(np.asarray(metric)).T)

    @jax.jit
    def everything(metric, L, pairs, y):  # one compilation for all the comparisons
        return (
            (loss(metric, pairs, y), twin(metric, pairs, y)),
            (jax.grad(loss, (0, 1))(metric, pairs, y), jax.grad(twin, (0, 1))(metric, pairs, y)),
            (jax.grad(tloss)(L, pairs, y), jax.grad(lambda L: twin(L.T @ L, pairs, y))(L)),
        )

    (val, want_val), (got, want), (got_l, want_l) = everything(metric, L, pairs, y)
    np.testing.assert_allclose(val, want_val, rtol=1e-12)
    for g, w in zip(got + (got_l,), want + (want_l,), strict=True):  # metric, pairs, L
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12 * np.abs(w).max())
    # closed form of the gradient, written out
    u = np.asarray(pairs[:, 0] - pairs[:, 1])
    b = np.where(y > 0, 2.0, 9.0)
    act = np.where(y > 0, dist > 2.0, dist < 9.0)
    g = np.where(act, 0.7 * (1 / b - 1 / dist), 0.0)
    closed = np.linalg.inv(prior) - np.linalg.inv(metric) + u.T @ (g[:, None] * u)
    np.testing.assert_allclose(got[0], closed, rtol=1e-10, atol=1e-12 * np.abs(closed).max())


def test_itml_loss_float32_jit_and_barrier():
    pairs, y = DATA["iris"]
    f = jax.jit(functools.partial(itml_loss, bounds=np.array([0.2, 5.0]), gamma=1.0))
    val, g = jax.value_and_grad(f)(jnp.eye(4, dtype=jnp.float32), pairs.astype(np.float32), y)
    assert val.dtype == jnp.float32 and np.isfinite(val) and np.all(np.isfinite(g))
    # not positive definite: +inf (LogDet barrier), never NaN
    assert np.isposinf(f(jnp.diag(jnp.array([1.0, 1.0, -1.0, 1.0])), pairs, y))


def test_itml_loss_collapsed_dissimilar_pair_under_jit_is_inf_with_finite_gradient():
    """Pairs from a network are traced: a dissimilar pair of identical points cannot be
    refused there. Its term is +inf; its gradient is 0, not inf * 0 = NaN, so one collapsed
    pair no longer turns every parameter NaN."""
    pairs, y = DATA["iris"]
    pairs = np.array(pairs, np.float32)
    i = int(np.flatnonzero(y < 0)[0])
    pairs[i, 1] = pairs[i, 0]
    f = jax.jit(jax.value_and_grad(
        lambda L, p: itml_loss_transform(L, p, y, bounds=np.array([0.2, 5.0])), (0, 1)))  # fmt: skip
    val, (g_l, g_p) = f(jnp.eye(4, dtype=jnp.float32), pairs)
    assert np.isposinf(val)
    assert np.all(np.isfinite(g_l)) and np.all(np.isfinite(g_p))
    np.testing.assert_array_equal(g_p[i], 0)
    # the other pairs' gradient is the one without the collapsed pair (weight 0)
    w = np.ones(len(y), np.float32)
    w[i] = 0
    absent = jax.jit(jax.value_and_grad(
        lambda L, p: itml_loss_transform(L, p, y, bounds=np.array([0.2, 5.0]), sample_weight=w),
        (0, 1)))  # fmt: skip
    val_w, (want_l, _) = absent(jnp.eye(4, dtype=jnp.float32), pairs)
    np.testing.assert_allclose(g_l, want_l, rtol=1e-5, atol=1e-6)
    # weight 0 is an absent pair, collapsed or not: a finite loss (0 * inf was NaN),
    # under jit and outside it (where a collapsed pair of weight 0 is accepted)
    assert np.isfinite(val_w)
    eager = itml_loss_transform(jnp.eye(4, dtype=jnp.float32), pairs, y,
                                bounds=np.array([0.2, 5.0]), sample_weight=w)  # fmt: skip
    np.testing.assert_allclose(eager, val_w, rtol=1e-6)


@pytest.mark.usefixtures("x64")
def test_itml_loss_minimiser_is_the_solver_fixed_point():
    """itml_loss is ITML's objective: its gradient vanishes at the Bregman fixed point.

    The loss is convex on the PD cone, so a zero gradient means the global minimum.
    """
    pairs, y = DATA["wine"]
    tight = itml_solve(pairs, y, tol=1e-10, max_iter=100000)
    assert bool(tight.converged)
    b = np.asarray(tight.bounds)
    f = jax.jit(functools.partial(itml_loss, bounds=b))
    g = jax.grad(f)(tight.metric, pairs, y)
    g0 = jax.grad(f)(jnp.eye(pairs.shape[2]), pairs, y)
    assert np.abs(g).max() < 1e-7 * np.abs(g0).max()
    # metric-learn stops at tol=1e-3, above the optimum
    m_ml = ml_itml(pairs, y).get_mahalanobis_matrix()
    assert float(f(tight.metric, pairs, y)) < float(f(m_ml, pairs, y))


# ----------------------------------------------------------------------------------
# sample weights (issue 14): one weight per pair, weight 0 = the pair is absent
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
def test_itml_loss_weighted_gradient_matches_autodiff_twin():
    pairs, y, metric, prior, w = _loss_setup()
    y = jnp.asarray(y)
    kw = dict(bounds=jnp.asarray([2.0, 9.0]), prior=prior, gamma=0.7)
    loss = lambda m, p: itml_loss(m, p, y, sample_weight=w, **kw)
    tloss = lambda L, p: itml_loss_transform(L, p, y, sample_weight=w, **kw)
    twin = lambda m, p: _twin(m, p, y, w=w, **kw)
    L = jnp.asarray(np.linalg.cholesky(np.asarray(metric)).T)
    np.testing.assert_allclose(loss(metric, pairs), twin(metric, pairs), rtol=1e-12)
    assert abs(float(loss(metric, pairs)) - float(itml_loss(metric, pairs, y, **kw))) > 1e-3
    got = jax.jit(jax.grad(loss, (0, 1)))(metric, pairs) + (jax.grad(tloss)(L, pairs),)
    want = jax.grad(twin, (0, 1))(metric, pairs) + (jax.grad(lambda L: twin(L.T @ L, pairs))(L),)
    for g, v in zip(got, want, strict=True):
        np.testing.assert_allclose(g, v, rtol=1e-10, atol=1e-12 * np.abs(v).max())


@pytest.mark.usefixtures("x64")
def test_itml_loss_weight_zero_is_an_absent_pair():
    pairs, y, metric, prior, _ = _loss_setup()
    w = jnp.ones(len(y)).at[::4].set(0.0)
    keep = np.asarray(w) > 0
    kw = dict(bounds=jnp.asarray([2.0, 9.0]), prior=prior, gamma=0.7)
    weighted = lambda m: itml_loss(m, pairs, y, sample_weight=w, **kw)
    dropped = lambda m: itml_loss(m, pairs[keep], y[keep], **kw)
    np.testing.assert_allclose(weighted(metric), dropped(metric), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(weighted)(metric), jax.grad(dropped)(metric), rtol=1e-11)
    # folds as a vmap over weight vectors
    folds = np.arange(len(y)) % 3
    W = jnp.asarray(np.stack([(folds != f).astype(float) for f in range(3)]))
    vals = jax.vmap(lambda w: itml_loss(metric, pairs, y, sample_weight=w, **kw))(W)
    for f in range(3):
        k = folds != f
        np.testing.assert_allclose(vals[f], itml_loss(metric, pairs[k], y[k], **kw), rtol=1e-12)


def test_supervised_drops_dissimilar_pairs_of_duplicate_rows():
    """Duplicate rows with different labels draw dissimilar pairs at distance 0 for every
    metric (ITML.fit refuses them): ITML_Supervised drops them and says so."""
    import warnings

    import metricjax as mj

    rng = np.random.RandomState(0)
    x = rng.randn(30, 3)
    y = np.arange(30) % 2
    X, Y = np.vstack([x, x]), np.concatenate([y, 1 - y])  # every row twice, both labels
    with pytest.warns(UserWarning, match=r"dropped \d+ of the 80 dissimilar pairs drawn"):
        model = mj.ITML_Supervised(random_state=0).fit(X, Y)
    assert np.all(np.isfinite(model.components_))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no duplicates: nothing dropped, no warning
        mj.ITML_Supervised(random_state=0).fit(x, y)
    # one point under two labels: every dissimilar pair is such a pair
    model = mj.ITML_Supervised(random_state=0)
    with pytest.raises(ValueError, match="`X`: every dissimilar pair drawn joins two identical"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Only generated ... constraints"
            model.fit(np.repeat(x[:1], 4, axis=0), np.array([0, 0, 1, 1]))
    assert not hasattr(model, "components_")
