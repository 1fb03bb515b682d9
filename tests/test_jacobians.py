"""Full Jacobians: closed forms against jacfwd / jacrev and against the printed formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metricjax as mj

pytestmark = pytest.mark.usefixtures("x64")

TOL = {"rtol": 1e-10, "atol": 1e-12}
# jitted entry points: eager (op-by-op) autodiff recompiles every primitive per shape
WRT_X = jax.jit(mj.jacobians.wrt_x, static_argnames="method")
WRT_METRIC = jax.jit(mj.jacobians.wrt_metric, static_argnames="method")
WRT_TRANSFORM = jax.jit(mj.jacobians.wrt_transform, static_argnames="method")
EUCLID_FWD = jax.jit(jax.jacfwd(mj.pairwise_sq_euclidean))
EUCLID_REV = jax.jit(jax.jacrev(mj.pairwise_sq_euclidean))
MAHAL_FWD_X = jax.jit(jax.jacfwd(mj.pairwise_sq_mahalanobis))
MAHAL_REV_M = jax.jit(jax.jacrev(mj.pairwise_sq_mahalanobis, argnums=1))
TRANS_FWD_L = jax.jit(jax.jacfwd(mj.pairwise_sq_transformed, argnums=1))
METHODS = ("closed_form", "jacfwd", "jacrev")
# (n, d): a single point, more points than features, fewer points than features
POINT_SHAPES = [(1, 3), (6, 3), (3, 7)]


def _points(n, d, seed=0):
    return np.random.default_rng(seed + 10 * n + d).standard_normal((n, d))


def _all_methods(fn):
    out = {m: np.asarray(fn(m)) for m in METHODS}
    for m in METHODS:
        assert out[m].dtype == np.float64
    return out


def _assert_methods_agree(out):
    np.testing.assert_allclose(out["closed_form"], out["jacfwd"], **TOL)
    np.testing.assert_allclose(out["closed_form"], out["jacrev"], **TOL)
    np.testing.assert_allclose(out["jacfwd"], out["jacrev"], **TOL)


@pytest.mark.parametrize("n,d", POINT_SHAPES)
def test_wrt_x_euclidean_methods_agree(n, d):
    x = _points(n, d)
    out = _all_methods(lambda m: WRT_X(x, method=m))
    assert out["closed_form"].shape == (n, n, n, d)
    _assert_methods_agree(out)
    # and the public custom_jvp function differentiates to the same tensor
    np.testing.assert_allclose(EUCLID_FWD(x), out["closed_form"], **TOL)
    np.testing.assert_allclose(EUCLID_REV(x), out["closed_form"], **TOL)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("n,d", POINT_SHAPES)
def test_wrt_x_mahalanobis_methods_agree(n, d, symmetric):
    rng = np.random.default_rng(1)
    x = _points(n, d)
    metric = rng.standard_normal((d, d))
    if symmetric:
        metric = metric + metric.T
    out = _all_methods(lambda m: WRT_X(x, metric, method=m))
    assert out["closed_form"].shape == (n, n, n, d)
    _assert_methods_agree(out)
    public = MAHAL_FWD_X(x, metric)
    np.testing.assert_allclose(public, out["closed_form"], **TOL)


@pytest.mark.parametrize("n,d", POINT_SHAPES)
def test_wrt_metric_methods_agree(n, d):
    x = _points(n, d)
    out = _all_methods(lambda m: WRT_METRIC(x, method=m))
    assert out["closed_form"].shape == (n, n, d, d)
    _assert_methods_agree(out)
    # D is linear in M: the Jacobian of the public function is the same at any metric
    metric = np.random.default_rng(2).standard_normal((d, d))
    public = MAHAL_REV_M(x, metric)
    np.testing.assert_allclose(public, out["closed_form"], **TOL)


@pytest.mark.parametrize(
    "n,d,k", [(1, 5, 2), (6, 5, 2), (6, 5, 5), (6, 5, 9), (3, 7, 2), (3, 7, 9)]
)  # k < d, k = d, k > d
def test_wrt_transform_methods_agree(n, d, k):
    x = _points(n, d)
    transform = np.random.default_rng(3).standard_normal((k, d))
    out = _all_methods(lambda m: WRT_TRANSFORM(x, transform, method=m))
    assert out["closed_form"].shape == (n, n, k, d)
    _assert_methods_agree(out)
    public = TRANS_FWD_L(x, transform)
    np.testing.assert_allclose(public, out["closed_form"], **TOL)


# ----------------------------------------------------------------------------- explicit entries
def test_wrt_x_euclidean_explicit_entries():
    x = _points(5, 3)
    jac = np.asarray(WRT_X(x))
    n, d = x.shape
    for i, j, l in [(0, 1, 0), (3, 1, 2), (4, 0, 1), (2, 4, 2)]:
        # dD_ij/dx_il = 2 (x_il - x_jl), dD_ij/dx_jl = -2 (x_il - x_jl)
        assert jac[i, j, i, l] == pytest.approx(2 * (x[i, l] - x[j, l]), rel=1e-12)
        assert jac[i, j, j, l] == pytest.approx(-2 * (x[i, l] - x[j, l]), rel=1e-12)
        for k in set(range(n)) - {i, j}:
            assert jac[i, j, k, l] == 0.0
    # the diagonal D_ii == 0 does not depend on anything
    for i in range(n):
        np.testing.assert_array_equal(jac[i, i], np.zeros((n, d)))
    # full index formula 2 (delta_ik - delta_jk)(x_il - x_jl)
    eye = np.eye(n)
    want = 2 * np.einsum("ik,ijl->ijkl", eye, x[:, None] - x[None]) - 2 * np.einsum(
        "jk,ijl->ijkl", eye, x[:, None] - x[None]
    )
    np.testing.assert_allclose(jac, want, **TOL)


def test_wrt_x_mahalanobis_explicit_entries():
    rng = np.random.default_rng(4)
    x = _points(4, 3)
    metric = rng.standard_normal((3, 3))  # non-symmetric: (M + M^T) must appear
    jac = np.asarray(WRT_X(x, metric))
    for i, j in [(0, 1), (2, 3), (3, 0)]:
        delta = x[i] - x[j]
        np.testing.assert_allclose(jac[i, j, i], (metric + metric.T) @ delta, **TOL)
        np.testing.assert_allclose(jac[i, j, j], -(metric + metric.T) @ delta, **TOL)
        # M @ delta alone (the symmetric-M shortcut 2 M delta) would be wrong here
        assert not np.allclose(jac[i, j, i], 2 * metric @ delta)


def test_wrt_metric_explicit_entries():
    x = _points(4, 3)
    jac = np.asarray(WRT_METRIC(x))
    for i, j, k, l in [(0, 1, 0, 2), (2, 3, 1, 1), (3, 0, 2, 0)]:
        want = (x[i, k] - x[j, k]) * (x[i, l] - x[j, l])
        assert jac[i, j, k, l] == pytest.approx(want, rel=1e-12)
    np.testing.assert_array_equal(jac[1, 1], 0.0)


def test_wrt_transform_explicit_entries():
    rng = np.random.default_rng(5)
    x = _points(4, 3)
    transform = rng.standard_normal((2, 3))
    jac = np.asarray(WRT_TRANSFORM(x, transform))
    for i, j, k, l in [(0, 1, 0, 2), (2, 3, 1, 1), (3, 0, 1, 0)]:
        delta = x[i] - x[j]
        assert jac[i, j, k, l] == pytest.approx(2 * (transform @ delta)[k] * delta[l], rel=1e-12)


def test_contracting_jacobians_gives_the_distances():
    """Euler's theorem: D is 2-homogeneous in x, in M (degree 1) and in L (degree 2)."""
    rng = np.random.default_rng(6)
    x = _points(5, 3)
    metric = rng.standard_normal((3, 3))
    transform = rng.standard_normal((4, 3))
    euclid = jax.jit(mj.pairwise_sq_euclidean)(x)
    mahal = jax.jit(mj.pairwise_sq_mahalanobis)(x, metric)
    trans = jax.jit(mj.pairwise_sq_transformed)(x, transform)
    np.testing.assert_allclose(np.einsum("ijkl,kl->ij", WRT_X(x), x), 2 * euclid, **TOL)
    np.testing.assert_allclose(np.einsum("ijkl,kl->ij", WRT_X(x, metric), x), 2 * mahal, **TOL)
    np.testing.assert_allclose(np.einsum("ijkl,kl->ij", WRT_METRIC(x), metric), mahal, **TOL)
    np.testing.assert_allclose(
        np.einsum("ijkl,kl->ij", WRT_TRANSFORM(x, transform), transform), 2 * trans, **TOL
    )


def test_jacobian_dtype_follows_input():
    with jax.enable_x64(False):
        x = np.ones((3, 2), np.float32)
        assert WRT_X(x).dtype == jnp.float32
        assert WRT_METRIC(x).dtype == jnp.float32
        assert WRT_TRANSFORM(x, np.ones((2, 2), np.float32)).dtype == jnp.float32
    assert WRT_X(np.ones((3, 2))).dtype == jnp.float64
    assert WRT_X(np.ones((3, 2), np.int32)).dtype == jnp.float64


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("method", ["closed", "jacobian", "", None, "JACFWD"])
@pytest.mark.usefixtures("as_user")
def test_invalid_method_raises(method):
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="method"):
        mj.jacobians.wrt_x(x, method=method)
    with pytest.raises(ValueError, match="method"):
        mj.jacobians.wrt_x(x, np.eye(2), method=method)
    with pytest.raises(ValueError, match="method"):
        mj.jacobians.wrt_metric(x, method=method)
    with pytest.raises(ValueError, match="method"):
        mj.jacobians.wrt_transform(x, np.eye(2), method=method)


def test_method_is_keyword_only():
    with pytest.raises(TypeError):
        mj.jacobians.wrt_metric(np.ones((3, 2)), "jacfwd")


@pytest.mark.usefixtures("as_user")
def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        mj.jacobians.wrt_x(np.ones(3))
    with pytest.raises(ValueError):
        mj.jacobians.wrt_x(np.ones((3, 2)), np.eye(3))
    with pytest.raises(ValueError):
        mj.jacobians.wrt_metric(np.ones((2, 3, 2)))
    with pytest.raises(ValueError):
        mj.jacobians.wrt_transform(np.ones((3, 2)), np.ones((2, 3)))
    with pytest.raises(TypeError):
        mj.jacobians.wrt_x(np.ones((3, 2), np.complex128))
