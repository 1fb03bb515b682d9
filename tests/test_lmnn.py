"""LMNN loss: independent brute-force oracle, autodiff agreement, metric-learn, jit, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from metricjax.losses import lmnn_loss, lmnn_target_neighbors


def _data(n=24, d=4, kl=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    L = 0.7 * rng.standard_normal((kl, d))
    return L, x, labels


# ----------------------------------------------------------------- NumPy brute force
def np_target_neighbors(x, labels, k):
    """Per point: sort the other same-class points by exact squared distance."""
    out = []
    for i in range(len(x)):
        cand = [j for j in range(len(x)) if j != i and labels[j] == labels[i]]
        dist = [float(np.sum((x[i] - x[j]) ** 2)) for j in cand]
        order = sorted(range(len(cand)), key=lambda a: (dist[a], cand[a]))
        out.append([cand[a] for a in order[:k]])
    return np.array(out)


def np_lmnn(L, x, labels, tn, push_weight, margin):
    """Triple loop over (i, j in N_i, l) in float64; no vectorised distance tricks."""
    z = x @ L.T
    pull = push = 0.0
    for i in range(len(x)):
        for j in tn[i]:
            d_ij = float(np.sum((z[i] - z[j]) ** 2))
            pull += d_ij
            for l in range(len(x)):
                if labels[l] != labels[i]:
                    push += max(0.0, margin + d_ij - float(np.sum((z[i] - z[l]) ** 2)))
    return (1 - push_weight) * pull + push_weight * push


def np_min_abs_hinge(L, x, labels, tn, margin):
    """Distance of the closest triplet to its hinge kink (keeps tests off the kinks)."""
    z = x @ L.T
    dist = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    d_ij = np.take_along_axis(dist, tn, axis=1)
    h = margin + d_ij[:, :, None] - dist[:, None, :]
    return np.abs(
        h[np.broadcast_to((labels[:, None] != labels[None, :])[:, None, :], h.shape)]
    ).min()


# ----------------------------------------------------------------- plain jnp twin (autodiff)
@jax.jit
def plain_lmnn(L, x, labels, tn, push_weight, margin):
    z = x @ L.T
    dist = jnp.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1)
    d_ij = jnp.take_along_axis(dist, tn, axis=1)
    h = margin + d_ij[:, :, None] - dist[:, None, :]
    impostor = (labels[:, None] != labels[None, :])[:, None, :]
    # jnp.where(h > 0, ...) differentiates to 0 at h == 0: the same subgradient choice
    hinge = jnp.where((h > 0) & impostor, h, 0.0)
    return (1 - push_weight) * jnp.sum(d_ij) + push_weight * jnp.sum(hinge)


# ----------------------------------------------------------------- oracle agreement
def test_target_neighbors_match_bruteforce():
    _, x, labels = _data(n=31, seed=1)
    for k in (1, 3):
        np.testing.assert_array_equal(
            lmnn_target_neighbors(x, labels, k), np_target_neighbors(x, labels, k)
        )


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    "block_size, push_weight, margin",
    [(None, 0.5, 1.0), (1, 0.3, 2.0), (7, 0.8, 0.5), (24, 1.0, 1.0), (5, 0.0, 1.0)],
)
def test_loss_matches_bruteforce(block_size, push_weight, margin):
    L, x, labels = _data()
    tn = np_target_neighbors(x, labels, 3)
    got = lmnn_loss(
        L, x, labels, n_neighbors=3, push_weight=push_weight, margin=margin, block_size=block_size
    )
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, np_lmnn(L, x, labels, tn, push_weight, margin), rtol=1e-10)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    "block_size, push_weight, margin", [(None, 0.5, 1.0), (7, 0.8, 3.0), (5, 0.0, 1.0)]
)
def test_gradient_matches_autodiff(block_size, push_weight, margin):
    L, x, labels = _data()
    tn = lmnn_target_neighbors(x, labels, 3)
    assert np_min_abs_hinge(L, x, labels, tn, margin) > 1e-3  # away from the kinks
    f = lambda L, x: lmnn_loss(
        L,
        x,
        labels,
        target_neighbors=tn,
        push_weight=push_weight,
        margin=margin,
        block_size=block_size,
    )
    g = jax.jit(jax.grad(f, argnums=(0, 1)))(L, x)
    want = jax.grad(plain_lmnn, argnums=(0, 1))(L, x, labels, tn, push_weight, margin)
    for a, b in zip(g, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
    if block_size is None:  # transform alone (the x cotangent is skipped in that case)
        np.testing.assert_allclose(jax.jit(jax.grad(f))(L, x), want[0], rtol=1e-10, atol=1e-10)


@pytest.mark.usefixtures("x64")
def test_check_grads_away_from_kinks():
    L, x, labels = _data(n=15, d=3, kl=2, seed=3)
    tn = lmnn_target_neighbors(x, labels, 2)
    assert np_min_abs_hinge(L, x, labels, tn, 1.0) > 1e-2
    f = lambda L, x: lmnn_loss(L, x, labels, target_neighbors=tn, block_size=4)
    check_grads(jax.jit(f), (L, x), order=1, modes=("rev",))


@pytest.mark.usefixtures("x64")
def test_hinge_exactly_at_zero_uses_zero_subgradient():
    # 1-D, L = 1, margin 3: triplet (i=0, j=1, l=2) has 3 + 1 - 4 = 0 exactly (dyadic data,
    # exact in float64); it must contribute neither loss nor gradient.
    x = np.array([[0.0], [1.0], [2.0], [6.0]])
    labels = np.array([0, 0, 1, 1])
    tn = np.array([[1], [0], [3], [2]])
    L = np.array([[1.0]])
    f = lambda L, x: lmnn_loss(L, x, labels, target_neighbors=tn, margin=3.0)
    np.testing.assert_allclose(f(L, x), np_lmnn(L, x, labels, tn, 0.5, 3.0), rtol=1e-14)
    g = jax.jit(jax.grad(f, argnums=(0, 1)))(L, x)
    want = jax.grad(plain_lmnn, argnums=(0, 1))(L, x, labels, tn, 0.5, 3.0)
    for a, b in zip(g, want):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)
    # explicitly: active triplets are (1,0,2), (2,3,0), (2,3,1) -> G on pairs
    # (0,1): 0.5; (1,0): 1.0; (2,3): 1.5; (3,2): 0.5; (1,2): -0.5; (2,0): -0.5; (2,1): -0.5
    pairs = {(0, 1): 0.5, (1, 0): 1.0, (2, 3): 1.5, (3, 2): 0.5, (1, 2): -0.5, (2, 0): -0.5}
    pairs[(2, 1)] = -0.5
    manual = 2 * L[0, 0] * sum(w * (x[i, 0] - x[j, 0]) ** 2 for (i, j), w in pairs.items())
    np.testing.assert_allclose(g[0], [[manual]], rtol=1e-14)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("regularization", [0.2])
def test_matches_metric_learn_loss_grad(regularization):
    # metric-learn 0.7 evaluates its objective and gradient at a given L in
    # LMNN._loss_grad. Its impostor search keeps every pair within 1 + max_j D_ij of
    # either point, a superset of the active triplets, so with margin = 1 and
    # push_weight = 1 - regularization the two objectives coincide exactly.
    ml_lmnn = pytest.importorskip("metric_learn.lmnn")
    L, x, labels = _data(n=36, d=5, kl=4, seed=2)
    k = 3
    ml = ml_lmnn.LMNN(n_neighbors=k, regularization=regularization)
    ml.labels_ = np.arange(3)  # set by fit()
    tn = ml._select_targets(x, labels)
    np.testing.assert_array_equal(tn, lmnn_target_neighbors(x, labels, k))
    assert np_min_abs_hinge(L, x, labels, tn, 1.0) > 1e-6
    df_pull = ml_lmnn._sum_outer_products(x, tn.ravel(), np.repeat(np.arange(len(x)), k))
    grad, objective, _ = ml._loss_grad(x, L, df_pull, k, regularization, tn, labels)
    f = lambda L: lmnn_loss(L, x, labels, push_weight=1 - regularization, margin=1.0)
    val, g = jax.jit(jax.value_and_grad(f))(L)
    np.testing.assert_allclose(val, objective, rtol=1e-10)
    np.testing.assert_allclose(g, grad, rtol=1e-10, atol=1e-10 * np.abs(grad).max())


@pytest.mark.usefixtures("x64")
def test_small_classes_are_their_own_last_target_as_in_metric_learn():
    # metric-learn's rule: a class of exactly k members lists itself last (k = 3 here,
    # and a class of one with k = 1); target neighbours, loss and gradient as metric-learn's
    ml_lmnn = pytest.importorskip("metric_learn.lmnn")
    L, x, labels = _data(n=30, d=5, kl=4, seed=3)
    labels = labels.copy()
    labels[np.flatnonzero(labels == 2)[3:]] = 1  # class 2 keeps 3 members
    for k, lab in ((3, labels), (1, np.where(np.arange(30) == 4, 9, labels))):
        ml = ml_lmnn.LMNN(n_neighbors=k, regularization=0.3)
        ml.labels_ = np.unique(lab)
        tn = ml._select_targets(x, lab)
        np.testing.assert_array_equal(tn, lmnn_target_neighbors(x, lab, k))
        own = np.flatnonzero(tn[:, -1] == np.arange(30))
        assert own.size == (3 if k == 3 else 1)
        assert np_min_abs_hinge(L, x, lab, tn, 1.0) > 1e-6
        pairs = np.repeat(np.arange(len(x)), k)
        df_pull = ml_lmnn._sum_outer_products(x, tn.ravel(), pairs)
        grad, objective, _ = ml._loss_grad(x, L, df_pull, k, 0.3, tn, lab)
        f = lambda L, lab=lab, k=k: lmnn_loss(L, x, lab, n_neighbors=k, push_weight=0.7)
        val, g = jax.jit(jax.value_and_grad(f))(L)
        np.testing.assert_allclose(val, objective, rtol=1e-10)
        np.testing.assert_allclose(g, grad, rtol=1e-10, atol=1e-10 * np.abs(grad).max())
        # the brute-force oracle, and autodiff of the plain twin, with the self targets
        np.testing.assert_allclose(val, np_lmnn(L, x, lab, tn, 0.7, 1.0), rtol=1e-10)
        want = jax.grad(plain_lmnn)(L, x, lab, tn, 0.7, 1.0)
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)
        # the weighted (traceable) search lists the same targets
        w = np.ones(30)
        np.testing.assert_allclose(
            lmnn_loss(L, x, lab, n_neighbors=k, push_weight=0.7, sample_weight=w), val, rtol=1e-10
        )


# ----------------------------------------------------------------- dtypes, jit, labels
def test_float32_preserved_and_close_to_float64():
    L, x, labels = _data()
    L32, x32 = L.astype(np.float32), x.astype(np.float32)
    got, g = jax.jit(jax.value_and_grad(lambda L: lmnn_loss(L, x32, labels, block_size=5)))(L32)
    assert got.dtype == jnp.float32 and g.dtype == jnp.float32
    tn = np_target_neighbors(x, labels, 3)
    np.testing.assert_allclose(got, np_lmnn(L, x, labels, tn, 0.5, 1.0), rtol=1e-5)
    with jax.enable_x64(True):
        g64 = jax.jit(jax.grad(lambda L: lmnn_loss(L, x, labels, block_size=5)))(L)
    np.testing.assert_allclose(g, g64, rtol=1e-4, atol=1e-4 * np.abs(g64).max())


def test_jit_with_target_neighbors_and_integer_labels():
    L, x, labels = _data()
    L, x = L.astype(np.float32), x.astype(np.float32)
    tn = lmnn_target_neighbors(x, labels, 3)

    @jax.jit
    def loss_and_grad(L, x, labels, tn):
        f = lambda L, x: lmnn_loss(L, x, labels, target_neighbors=tn, block_size=8)
        return jax.value_and_grad(f, argnums=(0, 1))(L, x)

    val, (gl, gx) = loss_and_grad(L, x, jnp.asarray(labels), jnp.asarray(tn))
    assert val.dtype == gl.dtype == gx.dtype == jnp.float32
    want = np_lmnn(L.astype(float), x.astype(float), labels, tn, 0.5, 1.0)
    np.testing.assert_allclose(val, want, rtol=1e-5)
    wl, wx = jax.grad(plain_lmnn, argnums=(0, 1))(L, x, labels, tn, 0.5, 1.0)
    np.testing.assert_allclose(gl, wl, rtol=1e-4, atol=1e-4 * np.abs(wl).max())
    np.testing.assert_allclose(gx, wx, rtol=1e-4, atol=1e-4 * np.abs(wx).max())
    # only label equality matters under jit: shifted integer codes give the same loss
    np.testing.assert_allclose(
        loss_and_grad(L, x, jnp.asarray(labels) + 7, jnp.asarray(tn))[0], val, rtol=1e-6
    )


def test_host_labels_of_any_type():
    L, x, labels = _data()
    names = np.array(["setosa", "versicolor", "virginica"])[labels]
    np.testing.assert_array_equal(
        lmnn_target_neighbors(x, names, 2), lmnn_target_neighbors(x, labels, 2)
    )
    want = lmnn_loss(L, x, labels)
    np.testing.assert_allclose(lmnn_loss(L, x, names.tolist()), want)
    np.testing.assert_allclose(lmnn_loss(L, x, labels.astype(float) / 3), want)


@pytest.mark.usefixtures("x64")
def test_single_class_is_pull_only():
    L, x, _ = _data(n=10)
    labels = np.zeros(10, int)
    tn = np_target_neighbors(x, labels, 2)
    z = x @ L.T
    pull = sum(np.sum((z[i] - z[j]) ** 2) for i in range(10) for j in tn[i])
    got = lmnn_loss(L, x, labels, n_neighbors=2, push_weight=0.25)
    np.testing.assert_allclose(got, 0.75 * pull, rtol=1e-12)


# ----------------------------------------------------------------- errors
@pytest.mark.usefixtures("as_user")
def test_errors():
    L, x, labels = _data(n=12)
    small = labels.copy()
    small[np.flatnonzero(small == 2)[1:]] = 0  # class 2 keeps 1 member
    with pytest.raises(ValueError, match=r"class 2 has 1 member.*n_neighbors=3"):
        lmnn_target_neighbors(x, small, 3)
    with pytest.raises(ValueError, match=r"class 2 has 1 member"):
        lmnn_loss(L, x, small)
    with pytest.raises(ValueError, match="class 0 has 4 member.*needs at least 5"):
        lmnn_loss(L, x, labels, n_neighbors=5)  # 4 per class
    with pytest.raises(ValueError, match="NaN"):
        lmnn_target_neighbors(x, np.where(labels == 0, np.nan, labels), 1)
    with pytest.raises(ValueError, match="NaN"):
        lmnn_loss(L, x, np.where(labels == 0, np.nan, labels))
    with pytest.raises(ValueError, match="NaN or inf"):
        lmnn_target_neighbors(np.where(x > 1, np.nan, x), labels, 1)
    with pytest.raises(ValueError, match="shape"):
        lmnn_loss(L, x, labels[:-1])
    with pytest.raises(ValueError, match="at least 1"):
        lmnn_target_neighbors(x, labels, 0)
    with pytest.raises(ValueError, match=r"push_weight.*\[0, 1\]"):
        lmnn_loss(L, x, labels, push_weight=1.5)
    with pytest.raises(ValueError, match="margin"):
        lmnn_loss(L, x, labels, margin=-1.0)
    tn = lmnn_target_neighbors(x, labels, 2)
    with pytest.raises(ValueError, match="shape"):
        lmnn_loss(L, x, labels, target_neighbors=tn[:-1])
    bad = tn.copy()
    bad[0, 0] = 99
    with pytest.raises(ValueError, match=r"\[0, 12\)"):
        lmnn_loss(L, x, labels, target_neighbors=bad)
    bad = tn.copy()
    bad[0, 0] = np.flatnonzero(labels != labels[0])[0]
    with pytest.raises(ValueError, match="different label"):
        lmnn_loss(L, x, labels, target_neighbors=bad)
    bad = tn.copy()
    bad[0, 1] = bad[0, 0]
    with pytest.raises(ValueError, match="twice"):
        lmnn_loss(L, x, labels, target_neighbors=bad)
    with pytest.raises(TypeError, match="target_neighbors"):
        jax.jit(lambda x: lmnn_loss(L, x, labels))(x)
    with pytest.raises(TypeError, match="integers under jit"):
        jax.jit(lambda lab: lmnn_loss(L, x, lab, target_neighbors=tn))(labels.astype(float))
