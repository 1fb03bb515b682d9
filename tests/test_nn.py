"""The flax.nnx metric layer ``metricjax.nn.MahalanobisMetric`` and the example that uses it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

pytest.importorskip("flax")
from flax import nnx  # noqa: E402

import metricjax as mj  # noqa: E402
from metricjax import reference  # noqa: E402
from metricjax.nn import MahalanobisMetric  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _data(n=9, m=5, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, d)),
        rng.standard_normal((m, d)),
        rng.standard_normal((k, d)),
        rng.standard_normal((n, n)),
        rng.standard_normal((n, m)),
    )


def _loss_of_distances(d, w):
    # a smooth scalar of all entries: linear and nonlinear parts
    return jnp.sum(w * d) + jnp.sum(jnp.exp(-d)) + jnp.sum(d**2) / d.size


# ----------------------------------------------------------------------------------
# gradients use the closed-form rules and equal the reference maths
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_gradient_through_module_equals_core_and_reference(cross):
    x, y, L, w_self, w_cross = _data()
    y_arg = y if cross else None
    w = w_cross if cross else w_self
    layer = MahalanobisMetric(4, 3, init=L, param_dtype=jnp.float64)
    assert layer.transform[...].dtype == jnp.float64

    def module_loss(model, x):
        return _loss_of_distances(model(x, y_arg), w)

    val, grads = nnx.value_and_grad(module_loss)(layer, x)
    g_module = np.asarray(grads["transform"][...])
    g_x_module = np.asarray(nnx.grad(module_loss, argnums=1)(layer, x))

    core = lambda L, x: _loss_of_distances(mj.pairwise_sq_transformed(x, L, y_arg), w)
    ref = lambda L, x: _loss_of_distances(reference.pairwise_sq_transformed(x, L, y_arg), w)
    g_core, g_x_core = jax.grad(core, argnums=(0, 1))(jnp.asarray(L), jnp.asarray(x))
    g_ref, g_x_ref = jax.grad(ref, argnums=(0, 1))(jnp.asarray(L), jnp.asarray(x))

    assert g_module.dtype == np.float64
    np.testing.assert_allclose(float(val), float(core(L, x)), rtol=1e-12)
    np.testing.assert_allclose(g_module, g_core, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_x_module, g_x_core, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_module, g_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g_x_module, g_x_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.usefixtures("x64")
def test_gradient_matches_closed_form_formula():
    # dl/dL = 2 L sum_ij G_ij (x_i - x_j)(x_i - x_j)^T for l = sum(G * D)
    x, _, L, g, _ = _data()
    layer = MahalanobisMetric(4, 3, init=L, param_dtype=jnp.float64)
    grads = nnx.grad(lambda m: jnp.sum(g * m(x)))(layer)
    diff = x[:, None, :] - x[None, :, :]
    expected = 2 * L @ np.einsum("ij,ijk,ijl->kl", g, diff, diff)
    np.testing.assert_allclose(np.asarray(grads["transform"][...]), expected, rtol=1e-10)


def test_works_under_nnx_jit_and_matches_eager():
    x, y, L, w, _ = (np.asarray(a, np.float32) for a in _data())
    layer = MahalanobisMetric(4, 3, init=L)

    @nnx.jit
    def dist(model, x, y):
        return model(x, y)

    @nnx.jit
    def loss_and_grad(model, x):
        return nnx.value_and_grad(lambda m: _loss_of_distances(m(x), w))(model)

    np.testing.assert_allclose(dist(layer, x, y), layer(x, y), rtol=1e-5, atol=1e-5)
    val, grads = loss_and_grad(layer, x)
    val_eager, grads_eager = nnx.value_and_grad(lambda m: _loss_of_distances(m(x), w))(layer)
    np.testing.assert_allclose(val, val_eager, rtol=1e-5)
    np.testing.assert_allclose(
        grads["transform"][...], grads_eager["transform"][...], rtol=1e-4, atol=1e-4
    )


# ----------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
def test_metric_is_psd_and_consistent_with_distances():
    x, y, _, _, _ = _data(d=5)
    layer = MahalanobisMetric(5, 3, init="normal", param_dtype=jnp.float64, rngs=nnx.Rngs(1))
    L = np.asarray(layer.transform[...])
    M = np.asarray(layer.metric())
    np.testing.assert_allclose(M, L.T @ L, rtol=1e-12)
    np.testing.assert_array_equal(M, M.T)
    eig = np.linalg.eigvalsh(M)
    assert eig.min() > -1e-12 * eig.max()
    assert np.sum(eig > 1e-10 * eig.max()) == 3  # rank k = 3 < d = 5
    np.testing.assert_allclose(layer(x, y), mj.pairwise_sq_mahalanobis(x, M, y), rtol=1e-10)
    np.testing.assert_allclose(layer(x, y), reference.pairwise_sq_transformed(x, L, y), rtol=1e-10)
    z, w = np.asarray(layer.embed(x)), np.asarray(layer.embed(y))
    np.testing.assert_allclose(layer(x, y), mj.pairwise_sq_euclidean(z, w), rtol=1e-10)


@pytest.mark.usefixtures("as_user")
def test_self_and_cross_shapes():
    x, y, _, _, _ = (np.asarray(a, np.float32) for a in _data(n=7, m=3, d=4))
    layer = MahalanobisMetric(4, 2, init="orthogonal", rngs=nnx.Rngs(0))
    d_self, d_cross = layer(x), layer(x, y)
    assert d_self.shape == (7, 7) and d_cross.shape == (7, 3)
    assert d_self.dtype == jnp.float32
    np.testing.assert_array_equal(np.diag(d_self), 0.0)
    np.testing.assert_array_equal(d_self, d_self.T)
    assert np.all(np.asarray(d_cross) >= 0)
    assert layer.embed(x).shape == (7, 2)
    assert layer.embed(x[None]).shape == (1, 7, 2)  # leading batch axes are fine
    assert layer.metric().shape == (4, 4)
    with pytest.raises(ValueError, match="width"):
        layer(np.ones((3, 5)))
    with pytest.raises(ValueError):
        layer.embed(np.ones((3, 5)))


# ----------------------------------------------------------------------------------
# initialisation
# ----------------------------------------------------------------------------------
def test_inits():
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    ident = MahalanobisMetric(4)
    assert ident.out_features == 4 and ident.in_features == 4
    np.testing.assert_array_equal(ident.transform[...], np.eye(4))
    np.testing.assert_allclose(ident(x), mj.pairwise_sq_euclidean(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(MahalanobisMetric(4, 2).transform[...], np.eye(2, 4))

    ortho = MahalanobisMetric(6, 3, init="orthogonal", rngs=nnx.Rngs(0))
    L = np.asarray(ortho.transform[...])
    np.testing.assert_allclose(L @ L.T, np.eye(3), atol=1e-5)

    a = MahalanobisMetric(4, 3, init="normal", rngs=nnx.Rngs(0))
    b = MahalanobisMetric(4, 3, init="normal", rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(a.transform[...], b.transform[...])  # seeded

    custom = MahalanobisMetric(4, 2, init=nnx.initializers.lecun_normal(), rngs=nnx.Rngs(0))
    assert custom.transform[...].shape == (2, 4)

    arr = np.arange(8.0, dtype=np.float32).reshape(2, 4)
    from_array = MahalanobisMetric(4, 2, init=arr)
    arr[0, 0] = 100.0  # the layer holds a copy
    assert float(from_array.transform[0, 0]) == 0.0
    assert MahalanobisMetric(4, 2, init=np.ones((2, 4), int)).transform[...].dtype == jnp.float32
    assert MahalanobisMetric(4, param_dtype=jnp.bfloat16).transform[...].dtype == jnp.bfloat16


def test_init_errors():
    with pytest.raises(ValueError, match="init"):
        MahalanobisMetric(4, init="pca")
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        MahalanobisMetric(4, 3, init=np.ones((4, 3)))
    with pytest.raises(TypeError, match="rngs"):
        MahalanobisMetric(4, 3, init="orthogonal")
    with pytest.raises(ValueError, match="in_features"):
        MahalanobisMetric(0)
    with pytest.raises(TypeError, match="out_features"):
        MahalanobisMetric(4, 2.5)


def test_from_fitted_estimator_components():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    with pytest.warns(ConvergenceWarning):  # stops at max_iter
        nca = mj.NCA(n_components=2, max_iter=3, tol=0.0).fit(X, y)
    layer = MahalanobisMetric(4, 2, init=nca.components_.astype(np.float32))
    np.testing.assert_allclose(layer.embed(X), nca.transform(X), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------
# inside a network, trained with optax
# ----------------------------------------------------------------------------------
class _Net(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(6, 8, rngs=rngs)
        self.head = MahalanobisMetric(8, 3, init="orthogonal", rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.linear(x)))


def _soft_neighbour_loss(model, x, labels):
    d = model(x)
    eye = jnp.eye(d.shape[0], dtype=bool)
    log_p = jax.nn.log_softmax(jnp.where(eye, -jnp.inf, -d), axis=1)
    same = (labels[:, None] == labels[None, :]) & ~eye
    return -jnp.mean(jax.nn.logsumexp(jnp.where(same, log_p, -jnp.inf), axis=1))


@pytest.mark.usefixtures("standard_promotion")
def test_tiny_network_trains_with_optax():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    x = rng.standard_normal((30, 6)).astype(np.float32)
    x[:, 0] += 2.0 * labels  # one informative feature among noise
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    model = _Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, labels):
        loss, grads = nnx.value_and_grad(_soft_neighbour_loss)(model, x, labels)
        optimizer.update(model, grads)
        return loss

    head_before = np.array(model.head.transform[...])
    losses = [float(step(model, optimizer, x, labels)) for _ in range(60)]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    assert not np.allclose(model.head.transform[...], head_before)  # the head learns too
    eig = np.linalg.eigvalsh(np.asarray(model.head.metric(), np.float64))
    assert eig.min() > -1e-5 * eig.max()  # still PSD after training


def test_lazy_imports():
    code = textwrap.dedent(
        """
        import sys
        import metricjax as mj
        assert "metricjax.nn" not in sys.modules and "flax" not in sys.modules
        assert "metricjax.plot" not in sys.modules and "matplotlib" not in sys.modules
        assert mj.nn.MahalanobisMetric.__name__ == "MahalanobisMetric"
        assert "metricjax.plot" not in sys.modules
        import metricjax.plot
        assert "matplotlib" not in sys.modules  # imported on the first plot only
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_missing_flax_names_the_package():
    code = "import sys; sys.modules['flax'] = None\nimport metricjax.nn"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "pip install" in proc.stderr and "flax" in proc.stderr
