"""The engine's transform-only gradient (the ``X^T G X`` form) against plain jnp twins.

When only ``L`` is differentiated and ``d <= 2k`` the blocked pass accumulates
``X^T G X`` from one ``G X`` product per block and finishes with
``Lbar = 2 L (X^T diag(G^T 1) X - X^T G X - X^T G^T X)``; small ``c`` forms
``W V^T`` by broadcast products. Each path is compared in float64 at ``rtol = 1e-10``
with ``jax.grad`` of a plain dense twin (with sample weights, several outputs, one-hot
labels of 3 and of 10 classes, coincident points), and in float32 far from the origin.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metricjax as mj
from metricjax.losses import _engine as sn
from metricjax.losses import mlkr_loss, nca_loss

N = 41  # prime: every block size but 1 and N leaves a partial last block


def _data(n=N, d=5, k=3, c=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, c)) if c > 1 else rng.standard_normal(n)
    L = 0.6 * rng.standard_normal((k, d))
    w = rng.uniform(0.2, 2.0, n)
    w[[3, 17]] = 0.0  # dropped points
    return L, x, y, w


def _plain_p(L, x, w):
    """Dense softmax rows with column weights: p_ij ∝ w_j exp(-D_ij), p_ii ∝ (w_i - 1)_+
    (the other copies of a point of weight w_i, at distance 0)."""
    d = mj.reference.pairwise_sq_transformed(x, L)
    logits = -d + jnp.log(w)[None, :]
    self_logit = jnp.log(jnp.maximum(w - 1, 0))
    logits = jnp.where(jnp.eye(x.shape[0], dtype=bool), self_logit[:, None], logits)
    return jax.nn.softmax(logits, axis=1)


def _plain_mlkr(L, x, y, w):
    y2 = y[:, None] if y.ndim == 1 else y
    r = _plain_p(L, x, w) @ y2 - y2
    return jnp.sum(jnp.where(w > 0, w * jnp.sum(r**2, axis=1), 0))


def _plain_nca(L, x, labels, w):
    p = _plain_p(L, x, w)
    same = (labels[:, None] == labels[None, :]).astype(p.dtype)
    return -jnp.sum(jnp.where(w > 0, w * jnp.sum(p * same, axis=1), 0))


def _close(got, want, rtol=1e-10):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        scale = float(np.max(np.abs(b))) or 1.0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol * scale)


def test_transform_only_gradient_takes_the_xgx_form():
    """The selector: L alone and d <= 2k -> X^T G X form; x differentiated -> zbar form."""
    assert sn.use_lbar_form(need_x=False, d=5, k=3)
    assert not sn.use_lbar_form(need_x=True, d=5, k=3)
    assert not sn.use_lbar_form(need_x=False, d=7, k=3)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block_size", [1, 7, N, "auto"])
@pytest.mark.parametrize("weighted", [False, True])
def test_mlkr_transform_gradient_equals_plain_twin(block_size, weighted):
    L, x, y, w = _data()
    sw = w if weighted else np.ones(N)
    want = jax.value_and_grad(_plain_mlkr)(L, x, jnp.asarray(y), jnp.asarray(sw))
    f = lambda L: mlkr_loss(L, x, y, sample_weight=sw if weighted else None,
                            block_size=block_size)
    _close(jax.value_and_grad(f)(L), want)
    _close(jax.jit(jax.value_and_grad(f))(L), want)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block_size", [1, 7, "auto"])
def test_mlkr_several_outputs_and_y_cotangent_equal_plain_twin(block_size):
    """c = 3 outputs, gradient in (L, y): the X^T G X form with the values' cotangent."""
    L, x, y, w = _data(c=3, seed=1)
    want = jax.grad(_plain_mlkr, argnums=(0, 2))(L, x, jnp.asarray(y), jnp.asarray(w))
    got = jax.grad(
        lambda L, y: mlkr_loss(L, x, y, sample_weight=w, block_size=block_size), argnums=(0, 1)
    )(L, jnp.asarray(y))
    _close(got, want)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("classes", [3, 10])  # broadcast W V^T (c <= 8) and the matmul
@pytest.mark.parametrize("block_size", [1, 7, "auto"])
def test_nca_transform_gradient_equals_plain_twin(classes, block_size):
    L, x, _, w = _data(d=6, k=4, seed=2)
    labels = np.arange(N) % classes
    np.random.default_rng(2).shuffle(labels)
    for sw in (None, w):
        want = jax.value_and_grad(_plain_nca)(
            L, x, jnp.asarray(labels), jnp.asarray(np.ones(N) if sw is None else sw)
        )
        f = lambda L, sw=sw: nca_loss(L, x, labels, sample_weight=sw, block_size=block_size)
        _close(jax.value_and_grad(f)(L), want)


@pytest.mark.usefixtures("x64")
def test_coincident_points_give_finite_gradients_equal_to_plain_twin():
    L, x, y, _ = _data(seed=3)
    x[5] = x[6] = x[7]  # three coincident points
    labels = np.arange(N) % 3
    ones = jnp.ones(N)
    for b in (4, "auto"):
        got = jax.value_and_grad(lambda L, b=b: mlkr_loss(L, x, y, block_size=b))(L)
        assert np.all(np.isfinite(np.asarray(got[1])))
        _close(got, jax.value_and_grad(_plain_mlkr)(L, x, jnp.asarray(y), ones))
        got = jax.value_and_grad(lambda L, b=b: nca_loss(L, x, labels, block_size=b))(L)
        assert np.all(np.isfinite(np.asarray(got[1])))
        _close(got, jax.value_and_grad(_plain_nca)(L, x, jnp.asarray(labels), ones))


def test_float32_far_from_the_origin_matches_float64():
    """Centred inputs keep the X^T G X form accurate in float32 at |x| ~ 1e4."""
    rng = np.random.default_rng(4)
    # float32 inputs (rounded once), the float64 reference on the same rounded numbers
    x = (1e4 + rng.standard_normal((300, 6))).astype(np.float32).astype(np.float64)
    y = np.sin(x[:, 0])
    labels = np.arange(300) % 3
    L = 0.5 * rng.standard_normal((4, 6))
    for loss, t in ((mlkr_loss, y), (nca_loss, labels)):
        with jax.enable_x64(True):
            want = np.asarray(jax.grad(loss)(L, x, t, block_size=64))
        got = jax.grad(loss)(L.astype(np.float32), x.astype(np.float32),
                             t.astype(np.float32) if t is y else t, block_size=64)
        assert got.dtype == jnp.float32
        err = np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want))
        assert err < 2e-5, err  # 1e-4 to 1e-3 with a float32 mean of the raw inputs


def test_compile_time_at_n_10000_is_small():
    """The blocked pass compiles quickly at n = 10,000 (XLA once hung on n x n selects)."""
    n, d = 10_000, 20
    x = jax.ShapeDtypeStruct((n, d), jnp.float32)
    L = jax.ShapeDtypeStruct((d, d), jnp.float32)
    y = jax.ShapeDtypeStruct((n,), jnp.float32)
    lab = jax.ShapeDtypeStruct((n,), jnp.int32)
    for f, t in (
        (lambda L, x, y: mlkr_loss(L, x, y), y),
        (lambda L, x, c: nca_loss(L, x, c, num_classes=3), lab),
    ):
        t0 = time.perf_counter()
        jax.jit(jax.value_and_grad(f)).lower(L, x, t).compile()
        assert time.perf_counter() - t0 < 30.0  # seconds, on a loaded 2-core machine
