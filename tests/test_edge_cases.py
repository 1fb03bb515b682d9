"""Numerical edge cases stay finite; non-squared distances; low precision; determinism.

* Duplicate points, constant features, all points equal, scales 1e-8 and 1e8 (with
  and without an offset), and n = 2, in float32 and float64: every loss and distance
  and its gradient is finite (``docs/input_policy.md``, "Numerical range").
* ``pairwise_euclidean`` / ``pairwise_mahalanobis``: values against NumPy, exact zeros
  at coincident points, derivatives that are finite (zero) there and equal to autodiff
  of ``sqrt`` everywhere else.
* bfloat16 / float16: the distances keep the dtype with a documented accuracy; the
  losses compute in float32.
* Determinism: the same ``random_state`` gives bit-identical fits.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metricjax as mj
from metricjax import reference
from metricjax.estimators import LMNN, MLKR, NCA
from metricjax.losses import lmnn_loss, lmnn_target_neighbors, mlkr_loss, nca_loss

N, D, K = 8, 3, 2


# ============================================================================ datasets
def _base(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, D))


def _dataset(name, n=N):
    x = _base(n)
    if name == "random":
        return x
    if name == "duplicates":
        x[1] = x[0]
        x[-1] = x[0]
        if n > 4:
            x[3] = x[2]
        return x
    if name == "all-equal":
        return np.tile(x[:1], (n, 1))
    if name == "constant-feature":
        x[:, 1] = 7.0
        return x
    if name == "zero-feature":
        x[:, 0] = 0.0
        return x
    scale = {"1e-8": 1e-8, "1e8": 1e8}[name.split("+")[0]]
    return x * scale + (3.0 if name.endswith("+offset") else 0.0)


DATASETS = [
    "random",
    "duplicates",
    "all-equal",
    "constant-feature",
    "zero-feature",
    "1e-8",
    "1e-8+offset",
    "1e8",
    "1e8+offset",
]
DTYPES = [np.float32, np.float64]


def _transform(dtype):
    t = np.eye(K, D) + 0.3 * _base(K, seed=1)[:, :D]
    return t.astype(dtype)


def _labels(n):
    return np.arange(n) % 2


# ----------------------------------------------------------------------------- objectives
def _mlkr(t, x, y, labels):
    return mlkr_loss(t, x, y)


def _nca(t, x, y, labels):
    return nca_loss(t, x, labels)


def _lmnn(t, x, y, labels, tn):
    return lmnn_loss(t, x, labels, target_neighbors=tn)


def _weights(n, m, dtype):
    return jnp.asarray(np.random.default_rng(5).uniform(0.5, 1.5, (n, m)), dtype)


def _dist(kind):
    """``f(t, x)``: a weighted sum of a distance matrix, differentiable in both arguments."""

    def f(t, x):
        w = _weights(x.shape[0], x.shape[0], x.dtype)
        if kind == "sq_euclidean":
            d = mj.pairwise_sq_euclidean(x @ t.T)
        elif kind == "sq_mahalanobis":
            d = mj.pairwise_sq_mahalanobis(x, t.T @ t)
        elif kind == "sq_transformed":
            d = mj.pairwise_sq_transformed(x, t)
        elif kind == "euclidean":
            d = mj.pairwise_euclidean(x @ t.T)
        elif kind == "mahalanobis":
            d = mj.pairwise_mahalanobis(x, t.T @ t)
        elif kind == "euclidean-cross":
            d = mj.pairwise_euclidean(x, x[::-1] + 0)
        else:  # mahalanobis-cross
            d = mj.pairwise_mahalanobis(x, t.T @ t, x[::-1] + 0)
        return jnp.sum(w * d)

    return f


DISTANCES = [
    "sq_euclidean",
    "sq_mahalanobis",
    "sq_transformed",
    "euclidean",
    "mahalanobis",
    "euclidean-cross",
    "mahalanobis-cross",
]


def _finite(*arrays):
    return all(bool(jnp.all(jnp.isfinite(a))) for a in arrays)


# ============================================================================ edge cases
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("loss", ["mlkr", "nca", "lmnn"])
def test_losses_and_gradients_are_finite(loss, name, dtype):
    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(_dataset(name), dtype)
        t = jnp.asarray(_transform(dtype))
        y = jnp.asarray(np.linspace(-1, 1, N), dtype)
        labels = _labels(N)
        if loss == "mlkr":
            val, grads = jax.value_and_grad(_mlkr, argnums=(0, 1, 2))(t, x, y, labels)
        elif loss == "nca":
            val, grads = jax.value_and_grad(_nca, argnums=(0, 1))(t, x, y, labels)
        else:
            tn = lmnn_target_neighbors(np.asarray(x), labels, 2)
            val, grads = jax.value_and_grad(_lmnn, argnums=(0, 1))(t, x, y, labels, tn)
        assert val.dtype == dtype
        assert _finite(val, *grads), (float(val), [np.asarray(g) for g in grads])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["random", "duplicates", "all-equal", "1e8+offset"])
def test_two_points(name, dtype):
    """n = 2: each point has exactly one neighbour, so every softmax row is (0, 1)."""
    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(_dataset(name, n=2), dtype)
        t = jnp.asarray(_transform(dtype))
        y = jnp.asarray([0.5, -1.0], dtype)
        v, g = jax.value_and_grad(_mlkr, argnums=(0, 1, 2))(t, x, y, None)
        # leave-one-out: each point is predicted by the other one exactly
        np.testing.assert_allclose(float(v), 2 * 1.5**2, rtol=1e-6)
        assert _finite(*g)
        v, g = jax.value_and_grad(_nca, argnums=(0, 1))(t, x, y, np.array([0, 1]))
        assert float(v) == 0.0 and _finite(*g)
        v, g = jax.value_and_grad(_nca, argnums=(0, 1))(t, x, y, np.array([3, 3]))
        assert float(v) == -2.0 and _finite(*g)
        tn = np.array([[1], [0]])
        v, g = jax.value_and_grad(_lmnn, argnums=(0, 1))(t, x, y, np.array([0, 0]), tn)
        assert _finite(v, *g)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("kind", DISTANCES)
def test_distances_and_gradients_are_finite(kind, name, dtype):
    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(_dataset(name), dtype)
        t = jnp.asarray(_transform(dtype))
        val, grads = jax.value_and_grad(_dist(kind), argnums=(0, 1))(t, x)
        assert _finite(val, *grads)


@pytest.mark.parametrize("kind", ["euclidean", "sq_transformed", "mahalanobis"])
def test_distances_with_n_equal_1_and_2(kind):
    for n in (1, 2):
        x = jnp.asarray(_dataset("random", n), jnp.float32)
        t = jnp.asarray(_transform(np.float32))
        val, grads = jax.value_and_grad(_dist(kind), argnums=(0, 1))(t, x)
        assert _finite(val, *grads)


# ----------------------------------------------------------------------------- value checks
def _np_softmax(t, x):
    z = np.asarray(x, np.float64) @ np.asarray(t, np.float64).T
    d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    e = np.exp(-(d - d.min(1, keepdims=True)))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("name", ["duplicates", "all-equal", "1e-8+offset", "1e8", "1e8+offset"])
def test_loss_values_at_the_edges_match_numpy(x64, name):
    """Not only finite: right. At 1e8 the softmax is the nearest-neighbour indicator,
    at 1e-8 (and for equal points) it is uniform."""
    x = _dataset(name)
    t = _transform(np.float64)
    y = np.linspace(-1, 1, N)
    labels = _labels(N)
    p = _np_softmax(t, x)
    np.testing.assert_allclose(mlkr_loss(t, x, y), ((p @ y - y) ** 2).sum(), rtol=1e-9)
    same = labels[:, None] == labels[None, :]
    np.testing.assert_allclose(nca_loss(t, x, labels), -(p * same).sum(), rtol=1e-9)


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.float32, 1e15), (np.float64, 1e150), (np.float32, 1e-30), (np.float64, 1e-300)],
    ids=["float32-large", "float64-large", "float32-tiny", "float64-tiny"],
)
def test_losses_stay_finite_over_the_documented_range(dtype, scale):
    """Squared coordinates overflow near sqrt(finfo.max): up to ~1e-4 of that (and down to
    underflow, where all distances become 0 and the softmax uniform) all is finite."""
    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(_dataset("random") * scale, dtype)
        t = jnp.asarray(_transform(dtype))
        y = jnp.asarray(np.linspace(-1, 1, N), dtype)
        tn = np.array([[(i + 2) % N] for i in range(N)])
        for f, args in (
            (_mlkr, (t, x, y, None)),
            (_nca, (t, x, y, _labels(N))),
            (_lmnn, (t, x, y, _labels(N), tn)),
        ):
            val, grads = jax.value_and_grad(f, argnums=(0, 1))(*args)
            assert _finite(val, *grads), f.__name__
        for kind in ("euclidean", "mahalanobis", "sq_transformed"):
            val, grads = jax.value_and_grad(_dist(kind), argnums=(0, 1))(t, x)
            assert _finite(val, *grads), kind


# ============================================================================ sqrt distances
def _np_dist(x, y=None, metric=None):
    x = np.asarray(x, np.float64)
    y = x if y is None else np.asarray(y, np.float64)
    diff = x[:, None, :] - y[None, :, :]
    m = np.eye(x.shape[1]) if metric is None else np.asarray(metric, np.float64)
    return np.sqrt(np.maximum(np.einsum("ijk,kl,ijl->ij", diff, m, diff), 0))


def _spd(d, seed=2):
    a = np.random.default_rng(seed).standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _plain(kind, x, metric=None, y=None):
    if kind == "euclidean":
        return mj.pairwise_euclidean(x, y)
    return mj.pairwise_mahalanobis(x, metric, y)


PLAIN = ["euclidean", "mahalanobis"]


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("kind", PLAIN)
def test_sqrt_distances_match_numpy(kind, cross):
    rng = np.random.default_rng(0)
    x, y, m = rng.standard_normal((7, 4)), rng.standard_normal((5, 4)), _spd(4)
    yy = y if cross else None
    want = _np_dist(x, yy, None if kind == "euclidean" else m)
    with jax.enable_x64(True):
        got = _plain(kind, x, m, yy)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    got32 = _plain(kind, x.astype(np.float32), m.astype(np.float32), yy)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=2e-5, atol=2e-5)
    # under jit as well, and far from the origin (the centring keeps float32 accurate)
    got = jax.jit(lambda a, b, c: _plain(kind, a, b, c))(
        x + 1e4, m, None if yy is None else yy + 1e4
    )
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)


def test_sqrt_distance_documented_examples():
    x = jnp.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]])
    np.testing.assert_array_equal(
        mj.pairwise_euclidean(x), [[0, 5, 5], [5, 0, 0], [5, 0, 0]], strict=False
    )
    g = jax.grad(lambda x: mj.pairwise_euclidean(x).sum())(x)
    np.testing.assert_allclose(g, [[-2.4, -3.2], [1.2, 1.6], [1.2, 1.6]], rtol=1e-6)
    got = mj.pairwise_mahalanobis(jnp.eye(2), jnp.diag(jnp.array([9.0, 16.0])))
    np.testing.assert_array_equal(got, [[0, 5], [5, 0]], strict=False)


def _with_duplicates(n, d, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * 3 + 1
    for i, j in rng.integers(0, n, size=(max(1, n // 4), 2)):
        x[j] = x[i]
    x = x.astype(dtype)
    same = np.all(x[:, None, :] == x[None, :, :], axis=-1)
    return x, same


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("n", "d"), [(2, 1), (9, 1), (9, 2), (33, 5), (130, 17), (64, 300)])
def test_self_case_gives_exact_zeros_for_identical_rows(n, d, dtype):
    """The Gram-diagonal expansion: identical rows are at distance exactly 0."""
    x, same = _with_duplicates(n, d, seed=n + d, dtype=dtype)
    m = _spd(d).astype(dtype)
    with jax.enable_x64(dtype == np.float64):
        for got in (mj.pairwise_euclidean(x), mj.pairwise_mahalanobis(x, m)):
            got = np.asarray(got)
            assert got.dtype == dtype
            np.testing.assert_array_equal(got[same], 0)
            assert (got[~same] > 0).all()
            np.testing.assert_array_equal(got, got.T)


@pytest.mark.parametrize("d", [1, 4])
def test_exact_zeros_also_inside_an_outer_jit(x64, d):
    """The points may come from a computation fused into the same program.

    That computation must itself map equal rows to equal rows: ``2 x - 0.7`` does
    under any code generation, ``1.3 x - 0.7`` does not (XLA may contract it into a
    fused multiply-add in some vector lanes and not in others, so equal inputs can give
    outputs one rounding apart, whose true distance is then not 0)."""
    x, same = _with_duplicates(12, d, seed=d, dtype=np.float64)
    m = _spd(d)
    got = jax.jit(
        lambda x, m: mj.pairwise_euclidean(2.0 * x - 0.7) + mj.pairwise_mahalanobis(x / 3, 0.9 * m)
    )(x, m)
    np.testing.assert_array_equal(np.asarray(got)[same], 0)


@pytest.mark.parametrize("kind", PLAIN)
def test_gradient_is_zero_at_coincident_points(kind):
    """A cotangent supported on coincident pairs (diagonal and duplicate rows) gives a
    zero gradient, exactly; elsewhere the gradient is finite. Also through jacfwd."""
    x, same = _with_duplicates(9, 3, seed=4, dtype=np.float64)
    m = _spd(3)
    with jax.enable_x64(True):

        def f(x, m, g):
            return jnp.sum(g * _plain(kind, x, m))

        g_same = jnp.asarray(same, jnp.float64)
        gx, gm = jax.grad(f, argnums=(0, 1))(x, m, g_same)
        np.testing.assert_array_equal(gx, 0)
        np.testing.assert_array_equal(gm, 0)
        gx, gm = jax.grad(f, argnums=(0, 1))(x, m, jnp.ones_like(g_same))
        assert _finite(gx, gm)
        jx = jax.jit(jax.jacfwd(_plain, argnums=1), static_argnums=0)(kind, x, m)  # (n, n, n, d)
        assert _finite(jx)
        np.testing.assert_array_equal(jx[same], 0)
        jr = jax.jit(jax.jacrev(_plain, argnums=1), static_argnums=0)(kind, x, m)
        np.testing.assert_allclose(jx, jr, rtol=1e-12)
        if kind == "mahalanobis":
            jm = jax.jit(jax.jacfwd(_plain, argnums=2), static_argnums=0)(kind, x, m)
            np.testing.assert_array_equal(jm[same], 0)
            assert _finite(jm)


def _ref_sqrt(kind, x, metric, y, mask):
    """Autodiff reference: ``sqrt`` of the plain difference form on the entries of ``mask``."""
    if kind == "euclidean":
        sq = reference.pairwise_sq_euclidean(x, y)
    else:
        sq = reference.pairwise_sq_mahalanobis(x, metric, y)
    return jnp.where(mask, jnp.sqrt(jnp.where(mask, sq, 1.0)), 0.0)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("kind", PLAIN)
def test_derivatives_equal_autodiff_of_sqrt_elsewhere(kind, cross):
    """Away from coincident points the rule is d sqrt(D) = dD / (2 sqrt(D)), to 1e-10."""
    rng = np.random.default_rng(7)
    x, m = rng.standard_normal((6, 3)), _spd(3)
    y = rng.standard_normal((4, 3)) if cross else None
    mask = np.ones((6, 4 if cross else 6), bool) if cross else ~np.eye(6, dtype=bool)
    with jax.enable_x64(True):
        for argnum in (1, 2) if kind == "mahalanobis" else (1,):
            for jac in (jax.jacfwd, jax.jacrev):
                got = jax.jit(jac(_plain, argnums=argnum), static_argnums=0)(kind, x, m, y)
                want = jax.jit(jac(_ref_sqrt, argnums=argnum), static_argnums=0)(
                    kind, x, m, y, mask
                )
                np.testing.assert_allclose(got[mask], want[mask], rtol=1e-10, atol=1e-12)
        if cross:
            gy = jax.jit(jax.grad(lambda y: _plain(kind, x, m, y).sum()))(y)
            wy = jax.jit(jax.grad(lambda y: _ref_sqrt(kind, x, m, y, mask).sum()))(y)
            np.testing.assert_allclose(gy, wy, rtol=1e-10)
        # second order works and is finite
        h = jax.jit(jax.hessian(lambda x: jnp.sum(_plain(kind, x, m, y))))(x)
        assert _finite(h)


def test_indefinite_metric_is_clamped_at_zero_with_zero_derivative(x64):
    """Documented: negative squared values of an indefinite metric become 0 (not NaN)."""
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    m = np.diag([1.0, -1.0])
    sq = np.asarray(mj.pairwise_sq_mahalanobis(x, m))
    got = np.asarray(mj.pairwise_mahalanobis(x, m))
    np.testing.assert_array_equal(got, np.sqrt(np.maximum(sq, 0)))
    assert (sq < 0).any() and (got[sq < 0] == 0).all()
    gx, gm = jax.grad(
        lambda x, m: jnp.sum(jnp.asarray(sq < 0, jnp.float64) * mj.pairwise_mahalanobis(x, m)), argnums=(0, 1)
    )(x, m)
    np.testing.assert_array_equal(gx, 0)
    np.testing.assert_array_equal(gm, 0)


def test_sqrt_distances_vmap_and_jit(x64):
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((3, 5, 2))
    ms = np.stack([_spd(2, seed=s) for s in range(3)])
    got = jax.jit(jax.vmap(mj.pairwise_mahalanobis))(xs, ms)
    for b in range(3):
        np.testing.assert_allclose(got[b], _np_dist(xs[b], metric=ms[b]), rtol=1e-12, atol=1e-14)
    got = jax.vmap(mj.pairwise_euclidean)(xs)
    np.testing.assert_allclose(got[1], _np_dist(xs[1]), rtol=1e-12, atol=1e-14)


# ============================================================================ low precision
LOW = [jnp.bfloat16, jnp.float16]
#: documented accuracy of the half-precision distances, relative to the largest entry
HALF_TOL = {jnp.bfloat16: 2**-5, jnp.float16: 2**-8}


@pytest.mark.parametrize("dtype", LOW, ids=["bfloat16", "float16"])
@pytest.mark.parametrize(
    "kind", ["sq_euclidean", "sq_mahalanobis", "sq_transformed", "euclidean", "mahalanobis"]
)
def test_half_precision_distances_keep_dtype_with_documented_accuracy(kind, dtype):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((40, 5)) + 2, dtype)
    t = jnp.asarray(rng.standard_normal((3, 5)) / 2, dtype)
    m = jnp.asarray(_spd(5), dtype)
    call = {
        "sq_euclidean": lambda x, t, m: mj.pairwise_sq_euclidean(x),
        "sq_mahalanobis": lambda x, t, m: mj.pairwise_sq_mahalanobis(x, m),
        "sq_transformed": lambda x, t, m: mj.pairwise_sq_transformed(x, t),
        "euclidean": lambda x, t, m: mj.pairwise_euclidean(x),
        "mahalanobis": lambda x, t, m: mj.pairwise_mahalanobis(x, m),
    }[kind]
    got = call(x, t, m)
    assert got.dtype == dtype
    with jax.enable_x64(True):  # the same (rounded) inputs in float64
        want = np.asarray(call(*(jnp.asarray(a, jnp.float64) for a in (x, t, m))))
    err = np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max()
    assert err <= HALF_TOL[dtype], err
    grad = jax.grad(lambda x: jnp.sum(call(x, t, m).astype(jnp.float32)))(x)
    assert grad.dtype == dtype and _finite(grad)


@pytest.mark.parametrize("dtype", LOW, ids=["bfloat16", "float16"])
def test_half_precision_losses_are_computed_in_float32(dtype):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((30, 4)), dtype)
    t = jnp.asarray(rng.standard_normal((2, 4)) / 2, dtype)
    y = jnp.asarray(rng.standard_normal(30), dtype)
    labels = np.arange(30) % 3
    f32 = [jnp.asarray(a, jnp.float32) for a in (t, x, y)]
    for f, args in (
        (lambda t, x, y: mlkr_loss(t, x, y), (t, x, y)),
        (lambda t, x, y: nca_loss(t, x, labels), (t, x, y)),
        (lambda t, x, y: lmnn_loss(t, x, labels, n_neighbors=2), (t, x, y)),
    ):
        val, grad = jax.value_and_grad(f)(*args)
        assert val.dtype == jnp.float32 and grad.dtype == dtype
        want, want_grad = jax.value_and_grad(f)(*f32)
        np.testing.assert_array_equal(val, want)
        np.testing.assert_array_equal(grad, want_grad.astype(dtype))


# ============================================================================ determinism
ESTIMATORS = {"MLKR": (MLKR, "reg"), "NCA": (NCA, "cls"), "LMNN": (LMNN, "cls")}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_same_random_state_gives_bit_identical_fits(name, dtype):
    cls, kind = ESTIMATORS[name]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4)).astype(dtype)
    y = rng.standard_normal(30) if kind == "reg" else np.arange(30) % 3
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in (7, 7, 8):
            est = cls(n_components=2, init="random", random_state=seed, max_iter=30).fit(X, y)
            fits.append(est)
    a, b, c = fits
    assert a.components_.dtype == dtype
    np.testing.assert_array_equal(a.components_, b.components_, strict=True)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_, strict=True)
    np.testing.assert_array_equal(a.transform(X), b.transform(X), strict=True)
    assert a.n_iter_ == b.n_iter_
    assert not np.array_equal(a.components_, c.components_)  # the seed matters
    # a RandomState instance with the same seed is the same start
    d = cls(n_components=2, init="random", random_state=np.random.RandomState(7), max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d.fit(X, y)
    np.testing.assert_array_equal(a.components_, d.components_, strict=True)


def test_functional_losses_are_bitwise_repeatable():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    t = rng.standard_normal((2, 4)).astype(np.float32)
    y = rng.standard_normal(50).astype(np.float32)
    labels = np.arange(50) % 3
    for f in (
        lambda t: mlkr_loss(t, x, y, block_size=16),
        lambda t: nca_loss(t, x, labels, block_size=16),
        lambda t: lmnn_loss(t, x, labels, block_size=16),
        lambda t: jnp.sum(mj.pairwise_euclidean(x @ t.T)),
    ):
        v1, g1 = jax.jit(jax.value_and_grad(f))(t)
        v2, g2 = jax.jit(jax.value_and_grad(f))(t)  # a second compilation, same bits
        np.testing.assert_array_equal(v1, v2, strict=True)
        np.testing.assert_array_equal(g1, g2, strict=True)
