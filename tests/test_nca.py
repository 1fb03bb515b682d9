"""NCA loss: independent oracles (scikit-learn), autodiff agreement, blocking, labels, numerics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _loss_oracles import data as _data
from _loss_oracles import far_and_spread_data, np_nca, plain_nca
from jax.test_util import check_grads

from metricjax.losses import nca_loss


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
    L, x, _, labels = _data(n=9, d=3, k=2)
    check_grads(lambda L, x: nca_loss(L, x, labels, block_size=4), (L, x), order=1,
                modes=("rev",))


def test_nca_labels_of_any_type_and_under_jit():
    L, x, _, labels = _data()
    names = np.array(["a", "b", "c"])[labels]
    ref = nca_loss(L, x, labels)
    np.testing.assert_allclose(nca_loss(L, x, names), ref, rtol=1e-6)
    jitted = jax.jit(lambda L, x, lab: nca_loss(L, x, lab, num_classes=3))
    np.testing.assert_allclose(jitted(L, x, jnp.asarray(labels)), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="num_classes"):
        jax.jit(lambda L, x, lab: nca_loss(L, x, lab))(L, x, jnp.asarray(labels))
    # boolean labels are two classes, under jit as outside it
    two = jnp.asarray(labels == 0)
    jit2 = jax.jit(lambda L, x, lab: nca_loss(L, x, lab, num_classes=2))
    np.testing.assert_allclose(jit2(L, x, two), nca_loss(L, x, np.asarray(two)), rtol=1e-6)


@pytest.mark.parametrize("bad", [-1, 3, 10])
def test_label_out_of_range_under_jit_gives_nan_not_a_wrong_loss(bad):
    """Under jit a label outside [0, num_classes) cannot raise; one_hot alone made its row
    zero, a finite, wrong loss. The loss and the gradient are NaN instead."""
    L, x, _, labels = _data()
    lab = jnp.asarray(labels).at[0].set(bad)
    f = jax.jit(jax.value_and_grad(lambda L, x, lab: nca_loss(L, x, lab, num_classes=3)))
    val, g = f(L, x, lab)
    assert np.isnan(val) and np.all(np.isnan(g))
    # 1-based labels within range: the loss of their distinct values, as outside jit
    one_based = jnp.asarray(labels) + 1
    val4, _ = jax.jit(jax.value_and_grad(lambda L, x, lab: nca_loss(L, x, lab, num_classes=4)))(
        L, x, one_based
    )
    np.testing.assert_allclose(val4, nca_loss(L, x, labels), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_by_the_gradient(dtype):
    L, x, _, labels = _data()
    with jax.enable_x64(dtype == np.float64):
        g = jax.grad(nca_loss)(L.astype(dtype), x.astype(dtype), labels)
        assert g.dtype == dtype


def test_float32_stable_for_far_and_spread_data():
    L, x, y = far_and_spread_data()
    val, g = jax.value_and_grad(nca_loss)(L, x, (y > 0).astype(int))
    assert np.isfinite(val) and np.all(np.isfinite(g))


@pytest.mark.usefixtures("as_user")
def test_bad_input_raises():
    L, x, y, _ = _data()
    with pytest.raises(ValueError, match="labels"):
        nca_loss(L, x, y[:3])
