"""MLKR loss and kernel regression: independent oracles, autodiff agreement, blocking, numerics."""

import jax
import numpy as np
import pytest
from _loss_oracles import data as _data
from _loss_oracles import far_and_spread_data, np_mlkr, np_softmax_rows, plain_mlkr
from jax.test_util import check_grads

from metricjax.losses import kernel_regression, mlkr_loss


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
def test_check_grads_through_custom_rules():
    L, x, y, _ = _data(n=9, d=3, k=2)
    check_grads(lambda L, x, y: mlkr_loss(L, x, y, block_size=4), (L, x, y), order=1,
                modes=("rev",))


@pytest.mark.usefixtures("x64")
def test_second_order_reverse_works():
    L, x, y, _ = _data(n=8, d=3, k=2)
    # compiled: one program each instead of op-by-op compiles of the nested VJPs
    h = jax.jit(jax.jacrev(jax.jacrev(lambda L: mlkr_loss(L, x, y))))(L)
    want = jax.jit(jax.hessian(lambda L: plain_mlkr(L, x, y)))(L)
    np.testing.assert_allclose(h, want, rtol=1e-8, atol=1e-10)


def test_multi_output_mlkr_is_sum_of_single_outputs():
    L, x, y, _ = _data()
    y2 = np.stack([y, 2 * y + 1], axis=1)
    both = mlkr_loss(L, x, y2)
    np.testing.assert_allclose(both, mlkr_loss(L, x, y2[:, 0]) + mlkr_loss(L, x, y2[:, 1]),
                               rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_loss_jits(dtype):
    L, x, y, _ = _data()
    with jax.enable_x64(dtype == np.float64):
        out = jax.jit(mlkr_loss)(L.astype(dtype), x.astype(dtype), y.astype(dtype))
        assert out.dtype == dtype


def test_float32_stable_for_far_and_spread_data():
    L, x, y = far_and_spread_data()
    val, g = jax.value_and_grad(mlkr_loss)(L, x, y)
    assert np.isfinite(val) and np.all(np.isfinite(g))
    with jax.enable_x64(True):
        want = np_mlkr(L.astype(np.float64), x.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(val, want, rtol=1e-4)


def test_duplicate_points_give_finite_gradients():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]], np.float32)
    y = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    g = jax.grad(mlkr_loss, argnums=(0, 1))(np.eye(2, dtype=np.float32), x, y)
    assert all(np.all(np.isfinite(a)) for a in g)


@pytest.mark.usefixtures("x64")
def test_kernel_regression_matches_oracle():
    L, x, y, _ = _data()
    loo = kernel_regression(L, x, y)
    np.testing.assert_allclose(loo, np_softmax_rows(L, x) @ y, rtol=1e-12)
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
    ],
)
@pytest.mark.usefixtures("as_user")
def test_bad_input_raises(call, match):
    L, x, y, _ = _data()
    with pytest.raises(ValueError, match=match):
        call(L, x, y)
