"""Sample weights in the LMNN loss (issue 14).

Weighted LMNN against a plain jnp twin (float64, rtol 1e-10 on the loss and on the
closed-form gradients vs autodiff of the twin); weight 0 equals dropping the point
(target neighbours recomputed); the traceable masked target-neighbour search equals
the host search; the active-set path agrees with the streaming one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metricjax._rules import top_k_rows
from metricjax.losses import lmnn_impostors, lmnn_loss, lmnn_target_neighbors
from metricjax.losses._lmnn import masked_target_neighbors


def _data(n=27, d=4, kl=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, d)))
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    L = jnp.asarray(0.7 * rng.standard_normal((kl, d)))
    w = jnp.asarray(rng.uniform(0.2, 2.0, size=n)).at[jnp.asarray([2, 7, 11])].set(0.0)
    return L, x, jnp.asarray(labels), w


def plain_weighted_lmnn(L, x, labels, tn, ok, w, push_weight, margin):
    """The weighted LMNN loss, plain jnp (autodiff oracle): pull a_ij D_ij, hinge a_ij s_l."""
    z = x @ L.T
    dist = jnp.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1)
    d_ij = jnp.take_along_axis(dist, tn, axis=1)
    a = jnp.where(ok, w[:, None] * w[tn], 0.0)
    h = margin + d_ij[:, :, None] - dist[:, None, :]
    impostor = (labels[:, None] != labels[None, :])[:, None, :]
    hinge = jnp.where((h > 0) & impostor, h, 0.0)
    return (1 - push_weight) * jnp.sum(a * d_ij) + push_weight * jnp.sum(
        a[:, :, None] * hinge * w[None, None, :]
    )


def _kink_gap(L, x, labels, tn, margin):
    z = np.asarray(x @ L.T)
    dist = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    h = margin + np.take_along_axis(dist, np.asarray(tn), 1)[:, :, None] - dist[:, None, :]
    lab = np.asarray(labels)
    return np.abs(h[np.broadcast_to((lab[:, None] != lab[None, :])[:, None, :], h.shape)]).min()


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block_size, push_weight", [(None, 0.5), (5, 0.7), (4, 0.0), (None, 1.0)])
def test_weighted_loss_and_gradient_match_twin(block_size, push_weight):
    L, x, labels, w = _data()
    tn = lmnn_target_neighbors(x, labels, 3)
    ok = jnp.ones(tn.shape, bool)
    assert _kink_gap(L, x, labels, tn, 1.0) > 1e-3  # away from the kinks
    f = lambda L, x: lmnn_loss(L, x, labels, target_neighbors=tn, push_weight=push_weight,
                               sample_weight=w, block_size=block_size)
    twin = lambda L, x: plain_weighted_lmnn(L, x, labels, tn, ok, w, push_weight, 1.0)
    np.testing.assert_allclose(f(L, x), twin(L, x), rtol=1e-10)
    g = jax.jit(jax.grad(f, argnums=(0, 1)))(L, x)
    want = jax.grad(twin, argnums=(0, 1))(L, x)
    for a, b in zip(g, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
    np.testing.assert_allclose(jax.jit(jax.grad(f))(L, x), want[0], rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_masked_search_matches_host_search():
    _, x, labels, w = _data(n=40)
    codes = jnp.asarray(labels, jnp.int32)
    for k in (1, 3):
        tn, ok = masked_target_neighbors(x, codes, jnp.ones(40), k, 7)
        np.testing.assert_array_equal(tn, lmnn_target_neighbors(x, labels, k))
        assert bool(jnp.all(ok))
    keep = np.asarray(w) > 0
    idx = np.flatnonzero(keep)
    tn, ok = masked_target_neighbors(x, codes, w, 3, 16)
    host = idx[lmnn_target_neighbors(x[keep], labels[keep], 3)]
    np.testing.assert_array_equal(np.asarray(tn)[keep], host)
    assert bool(jnp.all(ok))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_rows_equals_lax_top_k(dtype):
    # float64 takes k argmax passes (XLA's CPU top_k is ~90x slower there): the same
    # values and indices, ties to the smaller index, rows with -inf and the sentinel
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, size=(9, 40)).astype(dtype)  # many ties
    a[1, :] = -np.inf
    a[2, 5:] = -np.inf  # fewer finite entries than k
    a[3, 7] = -np.finfo(dtype).max
    a = jnp.asarray(a)
    for k in (1, 3, 5):
        vals, idx = jax.jit(top_k_rows, static_argnums=1)(a, k)
        want_vals, want_idx = jax.lax.top_k(a, k)
        assert idx.dtype == jnp.int32 and vals.dtype == a.dtype
        np.testing.assert_array_equal(vals, want_vals)
        finite = np.asarray(want_vals) > -np.inf  # -inf slots: any index
        np.testing.assert_array_equal(np.asarray(idx)[finite], np.asarray(want_idx)[finite])


def test_short_class_gets_itself_then_empty_slots(x64):
    # class 1 keeps only 2 positive-weight points: each has 1 neighbour, then itself
    # (metric-learn's rule, as lmnn_target_neighbors), and the 3rd slot is empty
    x = jnp.asarray(np.random.default_rng(1).standard_normal((10, 2)))
    codes = jnp.asarray([0] * 5 + [1] * 5, jnp.int32)
    w = jnp.asarray([1.0] * 5 + [1.0, 1.0, 0.0, 0.0, 0.0])
    tn, ok = masked_target_neighbors(x, codes, w, 3, 10)
    assert np.asarray(ok)[:7].tolist() == [[True] * 3] * 5 + [[True, True, False]] * 2
    assert np.asarray(tn)[5, :2].tolist() == [6, 5] and np.asarray(tn)[6, :2].tolist() == [5, 6]
    tn2, ok2 = masked_target_neighbors(x, codes, w, 2, 10)
    assert bool(jnp.all(ok2[:7])) and np.asarray(tn2)[5].tolist() == [6, 5]


def test_small_class_with_weights_same_outside_and_under_jit():
    """With sample_weight, a class of fewer than n_neighbors points keeps fewer target
    neighbours, as documented; outside jit this raised the unweighted loss's class-size
    error while jit gave the loss."""
    x = np.random.default_rng(2).standard_normal((12, 3)).astype(np.float32)
    labels = np.array([0] * 6 + [1] * 5 + [2])  # class 2 has one point
    w = np.ones(12, np.float32)

    def f(L, x, lab):
        return lmnn_loss(L, x, lab, n_neighbors=3, sample_weight=w)

    L = jnp.eye(3, dtype=jnp.float32)
    eager = jax.value_and_grad(f)(L, x, labels)
    jitted = jax.jit(jax.value_and_grad(f))(L, x, jnp.asarray(labels))
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.isfinite(eager[0]) and np.all(np.isfinite(eager[1]))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("push_weight", [0.5, 0.0])
def test_weight_zero_is_a_dropped_point(push_weight):
    L, x, labels, _ = _data()
    w = jnp.ones(x.shape[0]).at[jnp.asarray([0, 5, 9, 22])].set(0.0)
    keep = np.asarray(w) > 0
    weighted = lambda L, x: lmnn_loss(L, x, labels, sample_weight=w, push_weight=push_weight)
    tn_kept = lmnn_target_neighbors(x[keep], labels[keep], 3)  # recomputed on the kept points
    dropped = lambda L, x: lmnn_loss(L, x, labels[keep], target_neighbors=tn_kept,
                                     push_weight=push_weight)
    np.testing.assert_allclose(weighted(L, x), dropped(L, x[keep]), rtol=1e-12)
    gl, gx = jax.grad(weighted, argnums=(0, 1))(L, x)
    dl, dx = jax.grad(dropped, argnums=(0, 1))(L, x[keep])
    np.testing.assert_allclose(gl, dl, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gx)[keep], dx, rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(gx)[~keep] == 0)  # the dropped points get no gradient


def test_unit_weights_change_nothing():
    L, x, labels, _ = (jnp.asarray(a, jnp.float32) if a.dtype.kind == "f" else a for a in _data())
    ones = jnp.ones(x.shape[0], jnp.float32)
    got = lmnn_loss(L, x, labels, sample_weight=ones)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, lmnn_loss(L, x, labels), rtol=1e-6)


@pytest.mark.usefixtures("x64")
def test_vmap_over_fold_weights_equals_dropping():
    L, x, labels, _ = _data(n=30)
    folds = np.arange(30) % 3
    W = jnp.asarray(np.stack([(folds != f).astype(float) for f in range(3)]))
    vg = jax.jit(jax.vmap(jax.value_and_grad(
        lambda L, w: lmnn_loss(L, x, labels, sample_weight=w)), (None, 0)))
    vals, grads = vg(L, W)
    for i in range(3):
        keep = folds != i
        v, g = jax.value_and_grad(lmnn_loss)(L, x[keep], labels[keep])
        np.testing.assert_allclose(vals[i], v, rtol=1e-11)
        np.testing.assert_allclose(grads[i], g, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_jit_with_traced_x_and_weights():
    L, x, labels, w = _data()
    f = jax.jit(lambda L, x, lab, w: lmnn_loss(L, x, lab, sample_weight=w))
    np.testing.assert_allclose(f(L, x, labels, w), lmnn_loss(L, x, labels, sample_weight=w),
                               rtol=1e-12)


@pytest.mark.usefixtures("x64")
def test_active_set_path_is_weighted_too():
    L, x, labels, w = _data()
    tn = lmnn_target_neighbors(x, labels, 3)
    act = lmnn_impostors(L, x, labels, target_neighbors=tn)
    full = lambda L, x: lmnn_loss(L, x, labels, target_neighbors=tn, sample_weight=w)
    on_set = lambda L, x: lmnn_loss(L, x, labels, target_neighbors=tn, sample_weight=w,
                                    impostors=act)
    np.testing.assert_allclose(on_set(L, x), full(L, x), rtol=1e-12)
    for a, b in zip(jax.grad(on_set, (0, 1))(L, x), jax.grad(full, (0, 1))(L, x)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_active_set_searched_with_the_weighted_neighbours():
    L, x, labels, w = _data()
    act = lmnn_impostors(L, x, labels, sample_weight=w)
    full = lmnn_loss(L, x, labels, sample_weight=w)
    np.testing.assert_allclose(lmnn_loss(L, x, labels, sample_weight=w, impostors=act), full,
                               rtol=1e-12)
