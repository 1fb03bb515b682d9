"""Streamed (blocked) losses: equal to the dense pass, memory linear in n, one sweep."""

import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from metricjax.losses import _engine as sn
from metricjax.losses import (
    block_size_for,
    lmnn_loss,
    lmnn_target_neighbors,
    mlkr_loss,
    nca_loss,
)

N = 37  # prime: every block size below but 1 and N leaves a partial last block


def _data(n=N, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    y2 = rng.standard_normal((n, 2))
    labels = np.arange(n) % 3
    rng.shuffle(labels)
    L = 0.6 * rng.standard_normal((k, d))
    return L, x, y, y2, labels


def _close(got, want, rtol=1e-10):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        scale = float(np.max(np.abs(b))) or 1.0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol * scale)


# ----------------------------------------------------------------- dense == blocked
@functools.cache
def _dense(kind, multi=False):
    """Value and gradients of the one-block (dense) pass, float64."""
    L, x, y, y2, labels = _data()
    with jax.enable_x64(True):
        if kind == "mlkr":
            return jax.value_and_grad(mlkr_loss, argnums=(0, 1, 2))(
                L, x, y2 if multi else y, block_size=N
            )
        if kind == "nca":
            return jax.value_and_grad(nca_loss, argnums=(0, 1))(L, x, labels, block_size=N)
        tn = lmnn_target_neighbors(x, labels, 3)
        f = lambda L, x: lmnn_loss(L, x, labels, target_neighbors=tn, block_size=N)
        return jax.value_and_grad(f, argnums=(0, 1))(L, x)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block_size", [1, 5, 13, 36, "auto", None, 64])
def test_mlkr_blocked_equals_dense(block_size):
    L, x, y, y2, _ = _data()
    for multi, target in ((False, y), (True, y2)):
        dense = _dense("mlkr", multi)
        got = jax.value_and_grad(mlkr_loss, argnums=(0, 1, 2))(L, x, target, block_size=block_size)
        _close(got, dense)
        # gradient with respect to L alone takes the other form of the pass (G [X 1])
        g_l = jax.grad(mlkr_loss)(L, x, target, block_size=block_size)
        _close(g_l, dense[1][0])


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block_size", [2, 8, 16, "auto"])
def test_nca_blocked_equals_dense(block_size):
    L, x, _, _, labels = _data()
    f = lambda L, x, b: nca_loss(L, x, labels, block_size=b)
    dense = _dense("nca")
    _close(jax.value_and_grad(f, argnums=(0, 1))(L, x, block_size), dense)
    _close(jax.grad(f)(L, x, block_size), dense[1][0])


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block_size", [1, 8, 36, "auto"])
def test_lmnn_blocked_equals_dense(block_size):
    L, x, _, _, labels = _data()
    tn = lmnn_target_neighbors(x, labels, 3)
    f = lambda L, x, b: lmnn_loss(L, x, labels, target_neighbors=tn, block_size=b)
    _close(jax.value_and_grad(f, argnums=(0, 1))(L, x, block_size), _dense("lmnn"))


@pytest.mark.usefixtures("x64")
def test_both_gradient_forms_agree():
    """Lbar from X^T G X (d <= 2k, L only) and from Zbar^T X (otherwise) are equal."""
    L, x, y, _, _ = _data(k=3, seed=1)  # d = 5 <= 2k: G [X 1] for L alone
    f = lambda L, x: mlkr_loss(L, x, y, block_size=6)
    _close(jax.grad(f)(L, x), jax.grad(f, argnums=(0, 1))(L, x)[0])
    L, x, _, _, labels = _data(k=4, seed=4)  # d <= 2k: G [X 1] for L alone
    f = lambda L, x: nca_loss(L, x, labels, block_size=6)
    _close(jax.grad(f)(L, x), jax.grad(f, argnums=(0, 1))(L, x)[0])


@pytest.mark.usefixtures("x64")
def test_larger_n_blocked_equals_dense():
    rng = np.random.default_rng(3)
    n, d = 700, 6
    x = rng.standard_normal((n, d)) + 50.0  # far from the origin: centring matters
    y = np.sin(x[:, 0])
    L = 0.4 * rng.standard_normal((4, d))
    dense = jax.jit(jax.value_and_grad(lambda L: mlkr_loss(L, x, y, block_size=n)))(L)
    for b in (64, 100, 333):
        got = jax.jit(jax.value_and_grad(lambda L, b=b: mlkr_loss(L, x, y, block_size=b)))(L)
        _close(got, dense)


# ----------------------------------------------------------------- one sweep, tiny residual
def _count(jaxpr, name):
    total = 0
    for eqn in jaxpr.eqns:
        total += eqn.primitive.name == name
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            total += _count(sub, name)
    return total


def test_loss_and_gradient_take_one_pass_over_the_pairs():
    """value_and_grad runs one scan over the row blocks (no second, backward sweep)."""
    L, x, y, _, labels = _data()
    for f in (
        lambda L: mlkr_loss(L, x, y, block_size=8),
        lambda L: nca_loss(L, x, labels, block_size=8),
    ):
        jaxpr = jax.make_jaxpr(jax.value_and_grad(f))(jnp.asarray(L, jnp.float32))
        assert _count(jaxpr.jaxpr, "scan") == 1


def test_backward_scales_the_stored_gradient():
    L, x, y, _, _ = _data()
    L = jnp.asarray(L, jnp.float32)
    g1 = jax.grad(lambda L: mlkr_loss(L, x, y, block_size=5))(L)
    g3 = jax.grad(lambda L: -3.0 * mlkr_loss(L, x, y, block_size=5))(L)
    np.testing.assert_allclose(g3, -3.0 * g1, rtol=1e-6)


# ----------------------------------------------------------------- memory
def _temp_bytes(f, *args):
    return jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("loss", ["mlkr", "nca"])
def test_compiled_memory_grows_linearly_in_n(loss):
    """XLA temporaries of value_and_grad: ~linear in n at a fixed block, ~n^2 dense."""
    rng = np.random.default_rng(0)
    d = 8

    def temp(n, b):
        x = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
        L = jnp.eye(d, dtype=jnp.float32)
        if loss == "mlkr":
            y = jnp.asarray(rng.standard_normal(n), jnp.float32)
            f = jax.value_and_grad(lambda L, x, y: mlkr_loss(L, x, y, block_size=b))
        else:
            y = jnp.asarray(np.arange(n) % 3)
            f = jax.value_and_grad(lambda L, x, y: nca_loss(L, x, y, num_classes=3, block_size=b))
        return _temp_bytes(f, L, x, y)

    blocked = temp(8000, 64) / temp(2000, 64)
    dense = temp(8000, 8000) / temp(2000, 2000)
    assert blocked < 6, blocked
    assert dense > 12, dense
    # and far below one n x n float32 matrix at n = 8000 (256 MB)
    assert temp(8000, 64) < 8000 * 8000 * 4 / 20


# ----------------------------------------------------------------- block-size rule
def test_auto_rule_is_dense_when_the_matrix_fits():
    budget = sn._BLOCK_BYTES
    for itemsize in (4, 8):
        n_dense = int((budget / (8 * itemsize)) ** 0.5)
        assert sn.auto_block_size(n_dense, itemsize) == n_dense
        assert sn.auto_block_size(10, itemsize) == 10
        b = sn.auto_block_size(n_dense + 1, itemsize)
        assert 128 <= b <= 1024 and b < n_dense + 1
        assert sn.auto_block_size(5000, itemsize) == max(128, budget // (8 * 5000 * itemsize))
        assert sn.auto_block_size(100_000, itemsize) == 128  # the floor: still linear in n
    assert sn.resolve_block_size("auto", 500, 8) == 500
    assert sn.resolve_block_size(None, 5000, 4) == sn.auto_block_size(5000, 4)
    assert sn.resolve_block_size(10_000, 50, 4) == 50


def test_block_size_for():
    assert block_size_for(1000, 2**30) == 1000  # 32 MB of (n, n) temporaries: dense
    assert block_size_for(4000, 2**30, "float32") == 4000
    assert block_size_for(4000, 2**30, "float64") == 4000
    assert block_size_for(20_000, 2**30, "float32") == 1024  # capped
    assert block_size_for(100_000, 2**28) == 83
    assert block_size_for(100_000, 2**20) == 1  # the budget is kept, down to one row
    assert block_size_for(100_000, 2**28, "float64") < block_size_for(100_000, 2**28)
    with pytest.raises(ValueError, match="memory_bytes"):
        block_size_for(100, 0)
    with pytest.raises(ValueError, match="`n`"):
        block_size_for(0, 2**20)
    with pytest.raises(ValueError, match="block_size"):
        mlkr_loss(np.eye(2), np.ones((3, 2)), np.ones(3), block_size="big")
