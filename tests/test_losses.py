"""MLKR and NCA losses: independent oracles, autodiff agreement, blocking, numerics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import metricjax as mj
from metricjax.losses import kernel_regression, mlkr_loss, nca_loss


def _data(n=23, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    labels = rng.integers(0, 3, n)
    L = 0.5 * rng.standard_normal((k, d))
    return L, x, y, labels


# ----------------------------------------------------------------- NumPy oracles
def _np_softmax_rows(L, x):
    z = x @ L.T
    d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    logits = -d - (-d).max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def np_mlkr(L, x, y):
    yhat = _np_softmax_rows(L, x) @ y
    return ((yhat - y) ** 2).sum()


def np_nca(L, x, labels):
    p = _np_softmax_rows(L, x)
    return -(p * (labels[:, None] == labels[None, :])).sum()


# ----------------------------------------------------------------- plain jnp twins (autodiff)
def _plain_p(L, x):
    d = mj.reference.pairwise_sq_transformed(x, L)
    d = d + jnp.diag(jnp.full(x.shape[0], jnp.inf, d.dtype))
    return jax.nn.softmax(-d, axis=1)


def plain_mlkr(L, x, y):
    return jnp.sum((_plain_p(L, x) @ y - y) ** 2)


def plain_nca(L, x, labels):
    return -jnp.sum(_plain_p(L, x) * (labels[:, None] == labels[None, :]))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block_size", [None, 1, 5, 23, 64])
def test_mlkr_matches_numpy_oracle_and_autodiff(block_size):
    L, x, y, _ = _data()
    got = mlkr_loss(L, x, y, block_size=block_size)
    np.testing.assert_allclose(got, np_mlkr(L, x, y), rtol=1e-12)
    g = jax.grad(mlkr_loss, argnums=(0, 1, 2))(L, x, y, block_size=block_size)
    want = jax.grad(plain_mlkr, argnums=(0, 1, 2))(L, x, y)
    for a, b in zip(g, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_mlkr_matches_metric_learn_cost_and_gradient():
    metric_learn = pytest.importorskip("metric_learn")
    L, x, y, _ = _data(n=40, d=5, k=5)
    ml = metric_learn.MLKR()
    ml.n_iter_ = 0  # _loss reads it for verbose output
    cost, grad = ml._loss(L.ravel(), x, y)
    np.testing.assert_allclose(mlkr_loss(L, x, y), cost, rtol=1e-12)
    np.testing.assert_allclose(jax.grad(mlkr_loss)(L, x, y), grad.reshape(L.shape), rtol=1e-10)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block_size", [None, 4, 23])
def test_nca_matches_sklearn_and_autodiff(block_size):
    nca_mod = pytest.importorskip("sklearn.neighbors")
    L, x, _, labels = _data()
    est = nca_mod.NeighborhoodComponentsAnalysis()
    est.n_iter_ = 0
    cost, grad = est._loss_grad_lbfgs(L.ravel(), x, labels[:, None] == labels[None, :], -1.0)
    np.testing.assert_allclose(nca_loss(L, x, labels, block_size=block_size), cost, rtol=1e-12)
    np.testing.assert_allclose(nca_loss(L, x, labels), np_nca(L, x, labels), rtol=1e-12)
    g = jax.grad(nca_loss, argnums=(0, 1))(L, x, labels, block_size=block_size)
    np.testing.assert_allclose(g[0], grad.reshape(L.shape), rtol=1e-10, atol=1e-12)
    want = jax.grad(plain_nca, argnums=(0, 1))(L, x, labels)
    for a, b in zip(g, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_check_grads_through_custom_rules():
    L, x, y, labels = _data(n=9, d=3, k=2)
    check_grads(lambda L, x, y: mlkr_loss(L, x, y, block_size=4), (L, x, y), order=1,
                modes=("rev",))
    check_grads(lambda L, x: nca_loss(L, x, labels, block_size=4), (L, x), order=1,
                modes=("rev",))


@pytest.mark.usefixtures("x64")
def test_second_order_reverse_works():
    L, x, y, _ = _data(n=8, d=3, k=2)
    h = jax.jacrev(jax.jacrev(lambda L: mlkr_loss(L, x, y)))(L)
    want = jax.hessian(lambda L: plain_mlkr(L, x, y))(L)
    np.testing.assert_allclose(h, want, rtol=1e-8, atol=1e-10)


def test_multi_output_mlkr_is_sum_of_single_outputs():
    L, x, y, _ = _data()
    y2 = np.stack([y, 2 * y + 1], axis=1)
    both = mlkr_loss(L, x, y2)
    np.testing.assert_allclose(both, mlkr_loss(L, x, y2[:, 0]) + mlkr_loss(L, x, y2[:, 1]),
                               rtol=1e-5)


def test_nca_labels_of_any_type_and_under_jit():
    L, x, _, labels = _data()
    names = np.array(["a", "b", "c"])[labels]
    ref = nca_loss(L, x, labels)
    np.testing.assert_allclose(nca_loss(L, x, names), ref, rtol=1e-6)
    jitted = jax.jit(lambda L, x, lab: nca_loss(L, x, lab, num_classes=3))
    np.testing.assert_allclose(jitted(L, x, jnp.asarray(labels)), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="num_classes"):
        jax.jit(lambda L, x, lab: nca_loss(L, x, lab))(L, x, jnp.asarray(labels))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_loss_jits(dtype):
    L, x, y, labels = _data()
    with jax.enable_x64(dtype == np.float64):
        out = jax.jit(mlkr_loss)(L.astype(dtype), x.astype(dtype), y.astype(dtype))
        assert out.dtype == dtype
        g = jax.grad(nca_loss)(L.astype(dtype), x.astype(dtype), labels)
        assert g.dtype == dtype


def test_float32_stable_for_far_and_spread_data():
    rng = np.random.default_rng(1)
    # far from the origin, and points far apart (exp underflows without the max shift)
    x = (1e4 + 50 * rng.standard_normal((50, 3))).astype(np.float32)
    y = rng.standard_normal(50).astype(np.float32)
    L = np.eye(3, dtype=np.float32)
    val, g = jax.value_and_grad(mlkr_loss)(L, x, y)
    assert np.isfinite(val) and np.all(np.isfinite(g))
    with jax.enable_x64(True):
        want = np_mlkr(L.astype(np.float64), x.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(val, want, rtol=1e-4)
    val, g = jax.value_and_grad(nca_loss)(L, x, (y > 0).astype(int))
    assert np.isfinite(val) and np.all(np.isfinite(g))


def test_duplicate_points_give_finite_gradients():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]], np.float32)
    y = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    g = jax.grad(mlkr_loss, argnums=(0, 1))(np.eye(2, dtype=np.float32), x, y)
    assert all(np.all(np.isfinite(a)) for a in g)


@pytest.mark.usefixtures("x64")
def test_kernel_regression_matches_oracle():
    L, x, y, _ = _data()
    loo = kernel_regression(L, x, y)
    np.testing.assert_allclose(loo, _np_softmax_rows(L, x) @ y, rtol=1e-12)
    q = x[:5] + 0.1
    z, zq = x @ L.T, q @ L.T
    w = np.exp(-((zq[:, None] - z[None]) ** 2).sum(-1))
    np.testing.assert_allclose(kernel_regression(L, x, y, q), (w @ y) / w.sum(1), rtol=1e-10)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda L, x, y: mlkr_loss(L, x[:1], y[:1]), "at least 2"),
        (lambda L, x, y: mlkr_loss(L, x, y[:-1]), "rows"),
        (lambda L, x, y: mlkr_loss(L[:, :-1], x, y), "width"),
        (lambda L, x, y: mlkr_loss(L, x, y, block_size=0), "block_size"),
        (lambda L, x, y: nca_loss(L, x, y[:3]), "labels"),
    ],
)
def test_bad_input_raises(call, match):
    L, x, y, _ = _data()
    with pytest.raises(ValueError, match=match):
        call(L, x, y)
