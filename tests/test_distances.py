"""Values of the pairwise squared distances D(X), D(M), D(A).

The oracle is plain NumPy in float64 (difference form, no JAX), so a bug shared by the
library and :mod:`metricjax.reference` cannot hide here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metricjax as mj

KINDS = ("euclidean", "mahalanobis", "transformed")
# shapes of the tests that also run eagerly (op-by-op compiles are cached per shape)
N, M, D, K = 5, 3, 4, 2


# ----------------------------------------------------------------------------- oracle
def np_sq_dist(x, y=None, *, metric=None, transform=None):
    """Brute-force float64 ``D_ij = (x_i - y_j)^T M (x_i - y_j)`` in NumPy."""
    x = np.asarray(x, np.float64)
    y = x if y is None else np.asarray(y, np.float64)
    diff = x[:, None, :] - y[None, :, :]
    if transform is not None:
        z = diff @ np.asarray(transform, np.float64).T
        return np.sum(z * z, axis=-1)
    if metric is not None:
        return np.einsum("ijk,kl,ijl->ij", diff, np.asarray(metric, np.float64), diff)
    return np.sum(diff * diff, axis=-1)


def random_spd(rng, d, dtype=np.float64):
    a = rng.standard_normal((d, d))
    return (a @ a.T / d + 0.1 * np.eye(d)).astype(dtype)


def make_param(kind, rng, d, dtype=np.float64, k=None):
    """The matrix argument of ``kind`` (``None`` for Euclidean)."""
    if kind == "mahalanobis":
        return random_spd(rng, d, dtype)
    if kind == "transformed":
        return rng.standard_normal((d if k is None else k, d)).astype(dtype)
    return None


def _call(kind, x, param=None, y=None):
    if kind == "euclidean":
        return mj.pairwise_sq_euclidean(x, y)
    if kind == "mahalanobis":
        return mj.pairwise_sq_mahalanobis(x, param, y)
    return mj.pairwise_sq_transformed(x, param, y)


_call_jit = jax.jit(_call, static_argnums=0)


def call(kind, x, param=None, y=None, *, jit=True):
    """The public function of ``kind``, jitted unless ``jit=False``.

    Eager (op-by-op) execution compiles every primitive for every new shape, which is
    slow on CPU; only the tests parametrized over ``jit`` run it eagerly.
    """
    return (_call_jit if jit else _call)(kind, x, param, y)


def oracle(kind, x, param=None, y=None):
    if kind == "euclidean":
        return np_sq_dist(x, y)
    if kind == "mahalanobis":
        return np_sq_dist(x, y, metric=param)
    return np_sq_dist(x, y, transform=param)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,m,d,k", [(1, 1, 1, 1), (5, 3, 4, 2), (6, 7, 3, 5)])
def test_values_float64(x64, kind, cross, n, m, d, k):
    rng = np.random.default_rng(n * 100 + d)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((m, d)) if cross else None
    param = make_param(kind, rng, d, k=k)
    out = call(kind, x, param, y)
    assert out.dtype == jnp.float64
    assert out.shape == (n, m if cross else n)
    np.testing.assert_allclose(out, oracle(kind, x, param, y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_values_float32(kind, cross, jit):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, D)).astype(np.float32)
    y = rng.standard_normal((M, D)).astype(np.float32) if cross else None
    param = make_param(kind, rng, D, np.float32, k=K)
    out = call(kind, x, param, y, jit=jit)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, oracle(kind, x, param, y), rtol=1e-5, atol=1e-5)


def test_documented_examples():
    e = call("euclidean", jnp.array([[0.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(e, [[0.0, 25.0], [25.0, 0.0]])
    m = call("mahalanobis", jnp.eye(2), jnp.diag(jnp.array([1.0, 4.0])))
    np.testing.assert_array_equal(m, [[0.0, 5.0], [5.0, 0.0]])
    t = call("transformed", jnp.eye(2), jnp.array([[2.0, 0.0]]))
    np.testing.assert_array_equal(t, [[0.0, 4.0], [4.0, 0.0]])


@pytest.mark.parametrize("cross", [False, True])
def test_identity_metric_and_transform_give_euclidean(x64, cross):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 4))
    y = rng.standard_normal((5, 4)) if cross else None
    e = call("euclidean", x, None, y)
    np.testing.assert_allclose(call("mahalanobis", x, np.eye(4), y), e, rtol=1e-12)
    np.testing.assert_allclose(call("transformed", x, np.eye(4), y), e, rtol=1e-12)


@pytest.mark.parametrize("cross", [False, True])
def test_transformed_equals_mahalanobis_with_gram(x64, cross):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 4))
    y = rng.standard_normal((5, 4)) if cross else None
    for k in (2, 4, 6):
        l = rng.standard_normal((k, 4))
        np.testing.assert_allclose(
            call("transformed", x, l, y),
            call("mahalanobis", x, l.T @ l, y),
            rtol=1e-11,
            atol=1e-12,
        )


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_self_symmetric_with_exact_zero_diagonal(kind, jit):
    rng = np.random.default_rng(4)
    # far from the origin and with a duplicated row: worst case for the diagonal
    x = (100.0 + rng.standard_normal((N, D))).astype(np.float32)
    x[3] = x[1]
    param = make_param(kind, rng, D, np.float32, k=K)
    out = np.asarray(call(kind, x, param, jit=jit))
    assert np.all(np.diag(out) == 0.0)  # exact, not allclose
    np.testing.assert_allclose(out, out.T, rtol=1e-5, atol=1e-5)
    assert abs(out[3, 1]) < 1e-3 and abs(out[1, 3]) < 1e-3


def test_euclidean_self_is_tightly_symmetric_float64(x64):
    x = np.random.default_rng(5).standard_normal((20, 6))
    out = np.asarray(call("euclidean", x))
    np.testing.assert_allclose(out, out.T, rtol=1e-14, atol=0)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("kind", ["euclidean", "transformed"])
def test_nonnegative_even_for_coincident_points(kind, cross):
    rng = np.random.default_rng(6)
    base = (1000.0 + rng.standard_normal((4, 6))).astype(np.float32)
    x = np.concatenate([base, base, base + np.float32(1e-3)])  # exact + near duplicates
    y = x[::-1].copy() if cross else None
    param = make_param(kind, rng, 6, np.float32, k=4)
    out = np.asarray(call(kind, x, param, y))
    assert np.all(out >= 0.0)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("cross", [False, True])
def test_mahalanobis_indefinite_metric_is_not_clipped(x64, cross):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((10, 3))
    y = rng.standard_normal((6, 3)) if cross else None
    metric = np.diag([1.0, -2.0, 0.5])
    out = np.asarray(call("mahalanobis", x, metric, y))
    assert np.min(out) < -0.1  # negative entries survive
    np.testing.assert_allclose(out, np_sq_dist(x, y, metric=metric), rtol=1e-12, atol=1e-12)
    if not cross:
        assert np.all(np.diag(out) == 0.0)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_mahalanobis_nonsymmetric_metric_equals_symmetric_part(cross, jit):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((N, D)).astype(np.float32)
    y = rng.standard_normal((M, D)).astype(np.float32) if cross else None
    metric = rng.standard_normal((D, D)).astype(np.float32)  # neither symmetric nor definite
    out = call("mahalanobis", x, metric, y, jit=jit)
    sym = call("mahalanobis", x, 0.5 * (metric + metric.T), y, jit=jit)
    np.testing.assert_allclose(out, sym, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, np_sq_dist(x, y, metric=metric), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_translation_invariance(x64, kind, cross):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((8, 3))
    y = rng.standard_normal((5, 3)) if cross else None
    shift = 50.0 * rng.standard_normal(3)
    param = make_param(kind, rng, 3, k=2)
    out = call(kind, x, param, y)
    moved = call(kind, x + shift, param, None if y is None else y + shift)
    np.testing.assert_allclose(moved, out, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("kind", KINDS)
def test_dtype_float32_preserved(kind):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    param = make_param(kind, rng, 3, np.float32)
    assert call(kind, x, param).dtype == jnp.float32
    assert call(kind, x, param, x[:2]).dtype == jnp.float32
    assert call(kind, jnp.asarray(x), None if param is None else jnp.asarray(param)).dtype == (
        jnp.float32
    )


@pytest.mark.parametrize("kind", KINDS)
def test_dtype_float64_preserved_under_x64(x64, kind):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 3))
    param = make_param(kind, rng, 3)
    assert call(kind, x, param).dtype == jnp.float64
    assert call(kind, x, param, x[:2]).dtype == jnp.float64
    # the widest floating input wins
    assert call(kind, x.astype(np.float32), param, x[:2]).dtype == jnp.float64


@pytest.mark.parametrize("use_x64", [False, True])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("as_user")
def test_integer_input_becomes_default_float(kind, use_x64):
    x = np.arange(12).reshape(4, 3)
    param = None if kind == "euclidean" else np.eye(3, dtype=np.int32) * 2
    with jax.enable_x64(use_x64):
        want = jnp.float64 if use_x64 else jnp.float32
        assert jnp.result_type(float) == want
        out = call(kind, x, param)
        assert out.dtype == want
        assert call(kind, x, param, x[:2] + 1).dtype == want
        scale = {"euclidean": 1.0, "mahalanobis": 2.0, "transformed": 4.0}[kind]
        np.testing.assert_allclose(out, scale * np_sq_dist(x), rtol=1e-6)
        if kind == "euclidean" and not use_x64:  # Python lists are accepted too (eager)
            np.testing.assert_array_equal(call(kind, x.tolist(), jit=False), out)


# ----------------------------------------------------------------------------- vmap
@pytest.mark.parametrize("cross", [False, True])
def test_vmap_over_metrics_equals_loop(x64, cross):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((6, 3))
    y = rng.standard_normal((4, 3)) if cross else None
    metrics = rng.standard_normal((5, 3, 3))  # (B, d, d), arbitrary square
    looped = np.stack([call("mahalanobis", x, m, y) for m in metrics])
    batched = jax.jit(jax.vmap(lambda m: mj.pairwise_sq_mahalanobis(x, m, y)))(metrics)
    assert batched.shape == (5, 6, 4 if cross else 6)
    np.testing.assert_allclose(batched, looped, rtol=1e-12, atol=1e-12)
    if not cross:  # eager vmap too
        eager = jax.vmap(lambda m: mj.pairwise_sq_mahalanobis(x, m, y))(metrics)
        np.testing.assert_allclose(eager, looped, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("cross", [False, True])
def test_vmap_over_transforms_equals_loop(x64, cross, k):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((6, 3))
    y = rng.standard_normal((4, 3)) if cross else None
    transforms = rng.standard_normal((4, k, 3))
    batched = jax.jit(jax.vmap(lambda l: mj.pairwise_sq_transformed(x, l, y)))(transforms)
    looped = np.stack([call("transformed", x, l, y) for l in transforms])
    np.testing.assert_allclose(batched, looped, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_over_point_sets_equals_loop(x64, kind):
    rng = np.random.default_rng(14)
    xs = rng.standard_normal((3, 5, 4))
    param = make_param(kind, rng, 4, k=2)
    batched = jax.jit(jax.vmap(lambda x: _call(kind, x, param)))(xs)
    looped = np.stack([call(kind, x, param) for x in xs])
    np.testing.assert_allclose(batched, looped, rtol=1e-12, atol=1e-12)
    assert np.all(np.diagonal(np.asarray(batched), axis1=1, axis2=2) == 0.0)


# ----------------------------------------------------------------------------- float32 far away
N_FAR, M_FAR, D_FAR = 500, 300, 10


@pytest.fixture(scope="module")
def far_data():
    rng = np.random.default_rng(2024)
    x = (1000.0 + rng.standard_normal((N_FAR, D_FAR))).astype(np.float32)
    y = (1000.0 + rng.standard_normal((M_FAR, D_FAR))).astype(np.float32)
    return rng, x, y


def _max_rel_err(out, truth, self_case):
    out = np.asarray(out, np.float64)
    if self_case:
        off = ~np.eye(truth.shape[0], dtype=bool)
        out, truth = out[off], truth[off]
    return float(np.max(np.abs(out - truth) / np.abs(truth)))


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize(
    "kind,k", [("euclidean", None), ("mahalanobis", None), ("transformed", 4), ("transformed", 10)]
)
def test_float32_far_from_origin(far_data, kind, k, cross):
    rng, x, y = far_data
    y = y if cross else None
    param = make_param(kind, np.random.default_rng(5 + (k or 0)), D_FAR, np.float32, k=k)
    out = call(kind, x, param, y)
    assert out.dtype == jnp.float32
    truth = oracle(kind, x, param, y)  # float64 from the same float32 data
    err = _max_rel_err(out, truth, self_case=not cross)
    assert err < 1e-4, f"max relative error {err:.3g}"


def test_float32_far_from_origin_naive_expansion_fails(far_data):
    """Sanity check of the test above: the uncentred float32 expansion is far off."""
    _, x, _ = far_data
    q = np.sum(x * x, axis=1)
    naive = q[:, None] + q[None, :] - np.float32(2) * (x @ x.T)
    assert naive.dtype == np.float32
    assert _max_rel_err(naive, np_sq_dist(x), self_case=True) > 1e-2


# ----------------------------------------------------------------------------- input errors
BAD_SHAPES = [
    ("euclidean", (5,), None, None),  # x rank 1
    ("euclidean", (2, 5, 3), None, None),  # x rank 3
    ("euclidean", (0, 3), None, None),  # no rows
    ("euclidean", (4, 0), None, None),  # no columns
    ("euclidean", (4, 3), None, (2, 4)),  # y width mismatch
    ("euclidean", (4, 3), None, (3,)),  # y rank 1
    ("mahalanobis", (4, 3), (3, 4), None),  # non-square metric
    ("mahalanobis", (4, 3), (4, 4), None),  # metric d mismatch
    ("mahalanobis", (4, 3), (3,), None),  # metric rank 1
    ("mahalanobis", (4, 3), (2, 3, 3), None),  # metric rank 3
    ("mahalanobis", (3,), (3, 3), None),  # x rank 1
    ("mahalanobis", (4, 3), (3, 3), (2, 2)),  # y width mismatch
    ("transformed", (4, 3), (2, 4), None),  # transform wrong width
    ("transformed", (4, 3), (3, 2), None),  # transposed transform
    ("transformed", (4, 3), (3,), None),  # transform rank 1
    ("transformed", (4, 3), (0, 3), None),  # no rows
    ("transformed", (4, 3), (2, 3), (5, 2)),  # y width mismatch
]


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("kind,xs,ps,ys", BAD_SHAPES)
@pytest.mark.usefixtures("as_user")
def test_bad_shapes_raise_value_error(kind, xs, ps, ys, jit):
    x = np.ones(xs, np.float32)
    p = None if ps is None else np.ones(ps, np.float32)
    y = None if ys is None else np.ones(ys, np.float32)
    with pytest.raises(ValueError):
        call(kind, x, p, y, jit=jit)


@pytest.mark.parametrize(
    "kind,where",
    [(k, w) for k in KINDS for w in ("x", "param", "y") if (k, w) != ("euclidean", "param")],
)
def test_complex_input_raises_type_error(kind, where):
    x = np.ones((4, 3), np.float32)
    p = None if kind == "euclidean" else np.eye(3, dtype=np.float32)
    y = np.ones((2, 3), np.float32)
    if where == "x":
        x = x.astype(np.complex64)
    elif where == "param":
        p = p.astype(np.complex64)
    else:
        y = y.astype(np.complex64)
    with pytest.raises(TypeError):
        call(kind, x, p, y, jit=False)


def test_non_numeric_input_raises_type_error():
    with pytest.raises(TypeError):
        mj.pairwise_sq_euclidean([["a", "b"], ["c", "d"]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_self_distances_are_bitwise_symmetric(dtype):
    rng = np.random.default_rng(3)
    x = (1000 + 10 * rng.standard_normal((40, 6))).astype(dtype)
    metric = rng.standard_normal((6, 6)).astype(dtype)
    with jax.enable_x64(dtype == np.float64):
        for d in (
            mj.pairwise_sq_euclidean(x),
            mj.pairwise_sq_mahalanobis(x, metric),
            mj.pairwise_sq_transformed(x, metric[:3]),
        ):
            d = np.asarray(d)
            assert np.array_equal(d, d.T)
            assert np.all(np.diag(d) == 0)
