"""Sample weights in the soft-neighbour losses (issue 14).

Weighted MLKR / NCA against plain jnp twins (float64, rtol 1e-10 on the loss and on
the closed-form gradients vs autodiff of the twin); weight 0 equals dropping the point,
an integer weight repeating it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typecheck import unchecked

from metricjax.losses import mlkr_loss, nca_loss


def _probs(L, x, w):
    z = x @ L.T
    d = jnp.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1)
    logits = -d + jnp.log(w)[None, :]
    # p_ii: the w_i - 1 other copies of a point of weight w_i > 1, at distance 0
    self_logit = jnp.log(jnp.maximum(w - 1, 0))
    logits = jnp.where(jnp.eye(x.shape[0], dtype=bool), self_logit[:, None], logits)
    return jax.nn.softmax(logits, axis=1)


def _mlkr_twin(L, x, y, w):
    yhat = _probs(L, x, w) @ y
    return jnp.sum(w * (yhat - y) ** 2)


def _nca_twin(L, x, labels, w):
    same = labels[:, None] == labels[None, :]
    return -jnp.sum(w * jnp.sum(jnp.where(same, _probs(L, x, w), 0), axis=1))


def _data(n=23, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, d)))
    y = jnp.asarray(x[:, 0] - x[:, 2] + 0.1 * rng.normal(size=n))
    labels = jnp.asarray(rng.integers(0, 3, size=n))
    w = jnp.asarray(rng.uniform(0.2, 2.0, size=n)).at[jnp.asarray([2, 7, 11])].set(0.0)
    L = jnp.asarray(0.5 * rng.normal(size=(3, d)))
    return L, x, y, labels, w


@pytest.mark.parametrize("block_size", ["auto", 5])
def test_weighted_mlkr_matches_twin(x64, block_size):
    L, x, y, _, w = _data()
    loss = lambda L, x, y: mlkr_loss(L, x, y, sample_weight=w, block_size=block_size)
    twin = lambda L, x, y: _mlkr_twin(L, x, y, w)
    np.testing.assert_allclose(loss(L, x, y), twin(L, x, y), rtol=1e-10)
    # all three gradients in one compiled program per side (not op by op)
    got = jax.jit(jax.grad(loss, (0, 1, 2)))(L, x, y)
    want = jax.jit(jax.grad(twin, (0, 1, 2)))(L, x, y)
    for g, t in zip(got, want):
        np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("block_size", ["auto", 5])
def test_weighted_nca_matches_twin(x64, block_size):
    L, x, _, labels, w = _data()
    loss = lambda L, x: nca_loss(L, x, labels, sample_weight=w, block_size=block_size)
    twin = lambda L, x: _nca_twin(L, x, labels, w)
    np.testing.assert_allclose(loss(L, x), twin(L, x), rtol=1e-10)
    got = jax.jit(jax.grad(loss, (0, 1)))(L, x)
    want = jax.jit(jax.grad(twin, (0, 1)))(L, x)
    for g, t in zip(got, want):
        np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-12)


def test_weight_zero_is_a_dropped_point(x64):
    L, x, y, labels, _ = _data()
    w = jnp.ones(x.shape[0]).at[jnp.asarray([0, 5, 9, 22])].set(0.0)
    keep = np.asarray(w) > 0
    cases = [
        (lambda L, x, w: mlkr_loss(L, x, y, sample_weight=w), lambda L: mlkr_loss(L, x[keep], y[keep])),
        (
            lambda L, x, w: nca_loss(L, x, labels, sample_weight=w),
            lambda L: nca_loss(L, x[keep], labels[keep]),
        ),
    ]
    for weighted, dropped in cases:
        np.testing.assert_allclose(weighted(L, x, w), dropped(L), rtol=1e-12)
        np.testing.assert_allclose(
            jax.grad(weighted)(L, x, w), jax.grad(dropped)(L), rtol=1e-10, atol=1e-13
        )
        # the dropped points get no gradient at all
        gx = jax.grad(weighted, 1)(L, x, w)
        assert np.all(np.asarray(gx)[~keep] == 0)


@pytest.mark.parametrize("block_size", ["auto", 4])
def test_integer_weight_is_the_point_repeated(x64, block_size):
    """Weight c = the point c times (scikit-learn's meaning), copies being each other's
    neighbours at distance 0: loss and gradients wrt L, x (summed over the copies) and,
    for MLKR, y."""
    L, x, y, labels, _ = _data()
    w = np.random.default_rng(3).integers(0, 5, size=x.shape[0]).astype(float)
    w[:3] = (3.0, 0.0, 1.0)
    owner = np.repeat(np.arange(x.shape[0]), w.astype(int))

    def per_point(g):  # the cotangents of the copies of each point, summed
        return jax.ops.segment_sum(g, jnp.asarray(owner), num_segments=x.shape[0])

    cases = [
        (lambda L, x, y: mlkr_loss(L, x, y, sample_weight=w, block_size=block_size),
         lambda L, x, y: mlkr_loss(L, x, y, block_size=block_size), y),
        (lambda L, x, y: nca_loss(L, x, y, sample_weight=w, block_size=block_size),
         lambda L, x, y: nca_loss(L, x, y, block_size=block_size), labels),
    ]  # fmt: skip
    for weighted, plain, target in cases:
        argnums = (0, 1, 2) if target is y else (0, 1)
        va, ga = jax.value_and_grad(weighted, argnums)(L, x, target)
        vb, gb = jax.value_and_grad(plain, argnums)(L, x[owner], target[owner])
        np.testing.assert_allclose(va, vb, rtol=1e-12)
        np.testing.assert_allclose(ga[0], gb[0], rtol=1e-10, atol=1e-12)
        for got, want in zip(ga[1:], gb[1:]):
            np.testing.assert_allclose(got, per_point(want), rtol=1e-10, atol=1e-12)


def test_unit_weights_change_nothing():
    L, x, y, labels, _ = (jnp.asarray(a, jnp.float32) if a.dtype.kind == "f" else a for a in _data())
    ones = jnp.ones(x.shape[0], jnp.float32)
    assert float(mlkr_loss(L, x, y, sample_weight=ones)) == float(mlkr_loss(L, x, y))
    assert float(nca_loss(L, x, labels, sample_weight=ones)) == float(nca_loss(L, x, labels))
    assert mlkr_loss(L, x, y, sample_weight=ones).dtype == jnp.float32


def test_vmap_over_fold_weights_equals_loop(x64):
    L, x, y, _, _ = _data()
    folds = np.arange(x.shape[0]) % 4
    W = jnp.asarray(np.stack([(folds != f).astype(float) for f in range(4)]))
    vg = jax.vmap(jax.value_and_grad(lambda L, w: mlkr_loss(L, x, y, sample_weight=w)), (None, 0))
    vals, grads = vg(L, W)
    for i in range(4):
        keep = folds != i
        v, g = jax.value_and_grad(mlkr_loss)(L, x[keep], y[keep])
        np.testing.assert_allclose(vals[i], v, rtol=1e-11)
        np.testing.assert_allclose(grads[i], g, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "w, match",
    [
        (np.ones(5), r"`sample_weight` must have shape \(23,\)"),
        (-np.ones(23), "finite and >= 0"),
        (np.full(23, np.nan), "finite and >= 0"),
        (np.eye(23)[0], "at least 2 positive"),
    ],
)
def test_bad_weights_are_refused(w, match):
    L, x, y, labels, _ = _data()
    with pytest.raises(ValueError, match=match):
        unchecked(mlkr_loss)(L, x, y, sample_weight=w)
    with pytest.raises(ValueError, match=match):
        unchecked(nca_loss)(L, x, labels, sample_weight=w)
