"""LSML: loss, closed-form gradients, the compiled solver, and metric-learn 0.7 as oracle."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _typecheck import unchecked

import metricjax as mj
from metricjax.losses._lsml import lsml_loss, lsml_transform_loss
from metricjax.solvers._lsml import lsml_solve

ml = pytest.importorskip("benchmarks._reference_libs").metric_learn_compat()


def _iris():
    from sklearn.datasets import load_iris

    x, _ = load_iris(return_X_y=True)
    return x


def _quadruplets(x, n, seed, distinct=True):
    rng = np.random.default_rng(seed)
    q = x[rng.integers(0, len(x), size=(4 * n, 4))]
    if distinct:  # no coincident a = b or c = d
        ok = (np.abs(q[:, 0] - q[:, 1]).sum(1) > 0) & (np.abs(q[:, 2] - q[:, 3]).sum(1) > 0)
        q = q[ok]
    return q[:n]


def _spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


def _ml_lsml(n, weights=None):
    """A metric-learn LSML instance whose objective/gradient can be evaluated directly."""
    m = ml.LSML()
    w = np.ones(n) if weights is None else np.asarray(weights, float).copy()
    m.w_ = w / w.sum()
    return m


# ----------------------------------------------------------------------------------
# plain jnp twins (autodiff references)
# ----------------------------------------------------------------------------------
def _twin_metric(metric, quads, weights, prior_inv):
    u, v = quads[:, 0] - quads[:, 1], quads[:, 2] - quads[:, 3]
    dab = jnp.einsum("ni,ij,nj->n", u, metric, u)
    dcd = jnp.einsum("ni,ij,nj->n", v, metric, v)
    w = weights / jnp.sum(weights)
    res = jnp.where(dab > dcd, (jnp.sqrt(dab) - jnp.sqrt(dcd)) ** 2, 0.0)
    return jnp.sum(w * res) + jnp.trace(metric @ prior_inv) - jnp.linalg.slogdet(metric)[1]


def _twin_transform(transform, quads, weights, prior_inv):
    u, v = quads[:, 0] - quads[:, 1], quads[:, 2] - quads[:, 3]
    dab = jnp.sum((u @ transform.T) ** 2, axis=1)
    dcd = jnp.sum((v @ transform.T) ** 2, axis=1)
    w = weights / jnp.sum(weights)
    res = jnp.where(dab > dcd, (jnp.sqrt(dab) - jnp.sqrt(dcd)) ** 2, 0.0)
    out = jnp.sum(w * res)
    if prior_inv is not None:
        m = transform.T @ transform
        out = out + jnp.trace(m @ prior_inv) - jnp.linalg.slogdet(m)[1]
    return out


# ----------------------------------------------------------------------------------
# loss values and gradients
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
def test_lsml_loss_equals_metric_learn_total_loss():
    q = _quadruplets(_iris(), 60, 0)
    n = len(q)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, n)
    metric, prior_inv = _spd(4, 2), np.linalg.inv(_spd(4, 3))
    vab, vcd = q[:, 0] - q[:, 1], q[:, 2] - q[:, 3]
    for w in (None, weights):
        want = _ml_lsml(n, w)._total_loss(metric, vab, vcd, prior_inv)
        got = float(lsml_loss(metric, q, prior_inv=prior_inv, sample_weight=w))
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # without a prior: the comparison term only
    want = _ml_lsml(n)._comparison_loss(metric, vab, vcd)
    np.testing.assert_allclose(float(lsml_loss(metric, q)), want, rtol=1e-12)


@pytest.mark.usefixtures("x64")
def test_lsml_loss_gradients_match_autodiff_twin():
    q = jnp.asarray(_quadruplets(_iris(), 50, 3))
    n = q.shape[0]
    w = jnp.asarray(np.random.default_rng(4).uniform(0.5, 2.0, n))
    metric = jnp.asarray(_spd(4, 5) + 0.1 * np.random.default_rng(6).normal(size=(4, 4)))
    pinv = jnp.asarray(np.linalg.inv(_spd(4, 7)))
    fast = lambda m, qq, ww, p: lsml_loss(m, qq, prior_inv=p, sample_weight=ww)
    assert (
        0
        < float(
            jnp.mean(
                jnp.asarray(
                    np.einsum("ni,ij,nj->n", q[:, 0] - q[:, 1], metric, q[:, 0] - q[:, 1])
                    > np.einsum("ni,ij,nj->n", q[:, 2] - q[:, 3], metric, q[:, 2] - q[:, 3])
                )
            )
        )
        < 1
    )  # some constraints violated, some not
    np.testing.assert_allclose(
        fast(metric, q, w, pinv), _twin_metric(metric, q, w, pinv), rtol=1e-12
    )
    # sample_weight is data (not differentiated); the deprecated `weights` is, see below
    got = jax.jit(jax.grad(fast, argnums=(0, 1, 3)))(metric, q, w, pinv)
    want = jax.jit(jax.grad(_twin_metric, argnums=(0, 1, 3)))(metric, q, w, pinv)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("k", [4, 2])
def test_lsml_transform_gradients_match_autodiff_twin(k):
    q = jnp.asarray(_quadruplets(_iris(), 50, 8))
    w = jnp.ones(q.shape[0])
    transform = jnp.asarray(np.linalg.cholesky(_spd(4, 9)).T[:k])
    pinv = jnp.asarray(np.linalg.inv(_spd(4, 10))) if k == 4 else None
    fast = lambda t, qq, ww: lsml_transform_loss(t, qq, prior_inv=pinv, sample_weight=ww)
    twin = lambda t, qq, ww: _twin_transform(t, qq, ww, pinv)
    np.testing.assert_allclose(fast(transform, q, w), twin(transform, q, w), rtol=1e-12)
    got = jax.jit(jax.grad(fast, argnums=(0, 1)))(transform, q, w)
    want = jax.jit(jax.grad(twin, argnums=(0, 1)))(transform, q, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    if k == 4:  # the transform form is the metric form of M = L^T L
        m = transform.T @ transform
        np.testing.assert_allclose(
            fast(transform, q, w), lsml_loss(m, q, prior_inv=pinv, sample_weight=w), rtol=1e-12
        )


@pytest.mark.usefixtures("x64")
def test_metric_learn_gradient_leaves_out_the_weights():
    """metric-learn's LSML._gradient is not the gradient of its own objective; ours is."""
    q = _quadruplets(_iris(), 40, 11)
    n = len(q)
    metric, pinv = _spd(4, 12), np.eye(4)
    vab, vcd = q[:, 0] - q[:, 1], q[:, 2] - q[:, 3]
    m = _ml_lsml(n)
    theirs = m._gradient(metric, vab, vcd, pinv)
    ours = np.asarray(jax.grad(lsml_loss)(metric, q, prior_inv=pinv))
    # central differences of metric-learn's own objective, symmetric perturbations
    fd = np.zeros((4, 4))
    h = 1e-6
    for i in range(4):
        for j in range(4):
            e = np.zeros((4, 4))
            e[i, j] = h
            fd[i, j] = (
                m._total_loss(metric + e, vab, vcd, pinv)
                - m._total_loss(metric - e, vab, vcd, pinv)
            ) / (2 * h)
    np.testing.assert_allclose(ours, fd, rtol=1e-6, atol=1e-8)
    reg = pinv - np.linalg.inv(metric)
    # their comparison part is n times ours: the weights 1/n are missing
    np.testing.assert_allclose(theirs - reg, n * (ours - reg), rtol=1e-10)
    assert np.abs(theirs - fd).max() > 1.0


@pytest.mark.usefixtures("x64")
def test_coincident_pair_gives_finite_gradient_where_metric_learn_gives_nan():
    q = _quadruplets(_iris(), 30, 13)
    q[0, 3] = q[0, 2]  # c = d: d_cd = 0, the constraint is violated
    n = len(q)
    metric = np.eye(4)
    vab, vcd = q[:, 0] - q[:, 1], q[:, 2] - q[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.isnan(_ml_lsml(n)._gradient(metric, vab, vcd, np.eye(4))).any()
    g = np.asarray(jax.grad(lsml_loss)(metric, q))
    assert np.all(np.isfinite(g))
    # the limit: the coincident constraint contributes w * d/dM (sqrt(d_ab))^2 = w u u^T
    rest = np.asarray(jax.grad(lambda m: lsml_loss(m, q[1:]) * (n - 1) / n)(metric))
    np.testing.assert_allclose(g, rest + np.outer(vab[0], vab[0]) / n, rtol=1e-12, atol=1e-14)
    gl = np.asarray(jax.grad(lsml_transform_loss)(np.eye(4), q))
    np.testing.assert_allclose(gl, 2 * g, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------
# the solver against metric-learn
# ----------------------------------------------------------------------------------
# one shape for all float64 solver tests: one compilation
N_SOLVE = 200


@pytest.mark.usefixtures("x64")
def test_lsml_solve_reaches_a_lower_objective_than_metric_learn():
    q = _quadruplets(_iris(), N_SOLVE, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ml.LSML(prior="identity").fit(q).get_mahalanobis_matrix()
    res = lsml_solve(q)
    objective = lambda m: float(lsml_loss(m, q, prior_inv=np.eye(4)))
    assert res.converged and res.grad_norm < 1e-3
    np.testing.assert_allclose(res.loss, objective(res.metric), rtol=1e-10)
    assert objective(res.metric) <= objective(theirs)
    assert np.all(np.linalg.eigvalsh(np.asarray(res.metric)) > 0)


@pytest.mark.usefixtures("x64")
def test_lsml_solve_on_random_quadruplets_where_metric_learn_fails():
    q = _quadruplets(_iris(), N_SOLVE, 30, distinct=False)  # iris has duplicate points
    vcd = q[:, 2] - q[:, 3]
    assert np.any(np.all(vcd == 0, axis=1))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="infs or NaNs"):
            ml.LSML(prior="identity").fit(q)
    res = lsml_solve(q)
    m = np.asarray(res.metric)
    assert np.all(np.isfinite(m)) and np.all(np.linalg.eigvalsh(m) > 0)
    assert res.converged
    assert res.loss < float(lsml_loss(np.eye(4), q, prior_inv=np.eye(4)))


@pytest.mark.usefixtures("x64")
def test_lsml_solve_weights_and_priors():
    q = _quadruplets(_iris(), N_SOLVE, 40)
    w = np.random.default_rng(41).uniform(0.1, 3.0, len(q))
    res = lsml_solve(q, w, prior="covariance", max_iter=200)
    pinv = np.cov(np.unique(q.reshape(-1, 4), axis=0), rowvar=False)
    np.testing.assert_allclose(
        res.loss, float(lsml_loss(res.metric, q, prior_inv=pinv, sample_weight=w)), rtol=1e-9
    )
    start = float(lsml_loss(np.linalg.inv(pinv), q, prior_inv=pinv, sample_weight=w))
    assert res.loss < start
    r1 = lsml_solve(q, prior="random", random_state=3, max_iter=5)
    r2 = lsml_solve(q, prior="random", random_state=3, max_iter=5)
    np.testing.assert_array_equal(np.asarray(r1.metric), np.asarray(r2.metric))
    assert r1.n_iter == 5 and not r1.converged


def test_lsml_float32_runs_and_is_finite():
    q = _quadruplets(_iris(), 200, 50, distinct=False).astype(np.float32)
    res = lsml_solve(q)
    assert res.metric.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(res.metric)))
    val, g = jax.value_and_grad(lsml_loss)(jnp.eye(4, dtype=jnp.float32), q)
    assert val.dtype == jnp.float32 and g.dtype == jnp.float32
    assert np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(g)))


def test_lsml_losses_train_with_fit_and_optax():
    q = jnp.asarray(_quadruplets(_iris(), 200, 60), jnp.float32)
    pinv = jnp.eye(4, dtype=jnp.float32)
    start = float(lsml_transform_loss(jnp.eye(4), q, prior_inv=pinv))
    res = mj.fit(
        lambda t, qq: lsml_transform_loss(t, qq, prior_inv=pinv), jnp.eye(4), q, max_iter=100
    )
    assert res.loss_history[-1] < start
    assert np.all(np.isfinite(np.asarray(res.params)))


def test_lsml_loss_inside_a_flax_model():
    nnx = pytest.importorskip("flax.nnx")
    q = jnp.asarray(_quadruplets(_iris(), 100, 70), jnp.float32)
    model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))

    def loss(model):
        z = model(q.reshape(-1, 4)).reshape(q.shape[0], 4, 3)
        return lsml_loss(jnp.eye(3), z)

    opt = nnx.Optimizer(model, optax.sgd(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt):
        value, grads = nnx.value_and_grad(loss)(model)
        opt.update(model, grads)
        return value

    first = float(step(model, opt))
    assert np.isfinite(first) and float(step(model, opt)) < first


# ----------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------
def test_lsml_bad_input():
    q = _quadruplets(_iris(), 20, 80)
    with pytest.raises(ValueError, match="quadruplets"):
        unchecked(lsml_solve)(q[:, :3])
    with pytest.raises(ValueError, match="quadruplets"):
        unchecked(lsml_loss)(np.eye(4), q[:, :, :, None])
    bad = q.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="quadruplets.*NaN"):
        unchecked(lsml_solve)(bad)
    with pytest.raises(ValueError, match="weights"):
        unchecked(lsml_solve)(q, -np.ones(len(q)))
    with pytest.raises(ValueError, match="weights"):
        unchecked(lsml_solve)(q, np.zeros(len(q)))
    with pytest.raises(ValueError, match=r"`sample_weight` must have shape \(\d+,\), one weight per constraint"):
        unchecked(lsml_loss)(np.eye(4), q, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="prior"):
        unchecked(lsml_solve)(q, prior=np.diag([1.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="prior"):
        unchecked(lsml_solve)(q, prior="pca")
    with pytest.raises(ValueError, match="metric"):
        unchecked(lsml_loss)(np.eye(3), q)
    with pytest.raises(ValueError, match="square transform"):
        unchecked(lsml_transform_loss)(np.eye(4)[:2], q, prior_inv=np.eye(4))
    with pytest.raises(ValueError, match="max_iter"):
        unchecked(lsml_solve)(q, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        unchecked(lsml_solve)(q, tol=-1.0)
    with pytest.raises(TypeError):
        unchecked(lsml_loss)(np.eye(4), q.astype(complex))


# ----------------------------------------------------------------------------------
# sample weights (issue 14): weight 0 = the constraint is absent; `weights` deprecated
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
def test_lsml_weight_zero_is_an_absent_constraint():
    q = jnp.asarray(_quadruplets(_iris(), 50, 3))
    metric = jnp.asarray(_spd(4, 5))
    pinv = jnp.asarray(np.linalg.inv(_spd(4, 7)))
    mask = jnp.ones(q.shape[0]).at[::3].set(0.0)
    keep = np.asarray(mask) > 0
    weighted = lambda m, t: lsml_transform_loss(t, q, prior_inv=pinv, sample_weight=3.0 * mask) + \
        lsml_loss(m, q, sample_weight=mask)
    dropped = lambda m, t: lsml_transform_loss(t, q[keep], prior_inv=pinv) + lsml_loss(m, q[keep])
    L = jnp.asarray(np.linalg.cholesky(_spd(4, 9)).T)
    np.testing.assert_allclose(weighted(metric, L), dropped(metric, L), rtol=1e-12)
    for a, b in zip(jax.grad(weighted, (0, 1))(metric, L), jax.grad(dropped, (0, 1))(metric, L)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    # folds as a vmap over weight vectors
    folds = np.arange(q.shape[0]) % 3
    W = jnp.asarray(np.stack([(folds != f).astype(float) for f in range(3)]))
    vals = jax.vmap(lambda w: lsml_loss(metric, q, prior_inv=pinv, sample_weight=w))(W)
    for f in range(3):
        want = lsml_loss(metric, q[folds != f], prior_inv=pinv)
        np.testing.assert_allclose(vals[f], want, rtol=1e-12)


@pytest.mark.usefixtures("x64")
def test_lsml_weights_argument_is_deprecated_but_works():
    q = jnp.asarray(_quadruplets(_iris(), 50, 3))
    w = jnp.asarray(np.random.default_rng(4).uniform(0.5, 2.0, q.shape[0]))
    metric = jnp.asarray(_spd(4, 5) + 0.1 * np.random.default_rng(6).normal(size=(4, 4)))
    pinv = jnp.asarray(np.linalg.inv(_spd(4, 7)))
    with pytest.warns(FutureWarning, match="pass `sample_weight=`"):
        old = lsml_loss(metric, q, w, prior_inv=pinv)
    np.testing.assert_allclose(old, lsml_loss(metric, q, prior_inv=pinv, sample_weight=w),
                               rtol=1e-15)
    with pytest.warns(FutureWarning, match="pass `sample_weight=`"):
        # the old spelling keeps its gradient with respect to the weights
        got = jax.grad(lambda ww: lsml_loss(metric, q, ww, prior_inv=pinv))(w)
    np.testing.assert_allclose(got, jax.grad(_twin_metric, 2)(metric, q, w, pinv), rtol=1e-10,
                               atol=1e-13)
    with pytest.raises(TypeError, match="not both"):
        unchecked(lsml_transform_loss)(jnp.eye(4), q, w, sample_weight=w)
