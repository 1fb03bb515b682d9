"""The self-distance rules against plain autodiff of the same expansion, on several row blocks.

The self cases of ``D(X)``, ``D(M)``, ``D(A)`` are written without ``n^2`` transposes:
the value as ``q_i + q_j - (products)`` (``D(M)`` in row blocks of
``metricjax._rules.SYM_BLOCK_ROWS``) and the tangents as sums of products whose
transposes need no ``A + A^T``. Here, at sizes that span several blocks (and a last
block that overlaps its neighbour), values, reverse-mode and forward-mode derivatives
equal ``jax`` autodiff of ``metricjax.reference.expansion_sq_*`` (plain ``jnp``, no custom
rules) at float64 rtol 1e-10, and the values stay bitwise symmetric.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metricjax as mj
from metricjax import _rules as R
from metricjax import reference as ref

TOL = {"rtol": 1e-10, "atol": 1e-12}
BLOCK = R.SYM_BLOCK_ROWS
SIZES = [1, 5, BLOCK, BLOCK + 1, 2 * BLOCK + 88]  # one block, exact blocks, overlapping last block

PUBLIC = {
    "euclidean": (mj.pairwise_sq_euclidean, ref.expansion_sq_euclidean, None),
    "mahalanobis": (mj.pairwise_sq_mahalanobis, ref.expansion_sq_mahalanobis, "metric"),
    "transformed": (mj.pairwise_sq_transformed, ref.expansion_sq_transformed, "transform"),
}


def _args(dist, n, d=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = (3.0 + rng.standard_normal((n, d))).astype(dtype)
    param = PUBLIC[dist][2]
    if param is None:
        return (x,)
    if param == "metric":  # neither symmetric nor definite: only its symmetric part counts
        return x, rng.standard_normal((d, d)).astype(dtype)
    return x, rng.standard_normal((3, d)).astype(dtype)


@pytest.mark.parametrize("n", SIZES)
def test_blocked_expansion_equals_plain_formula(x64, n):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 5))
    sym = rng.standard_normal((5, 5))
    sym = sym + sym.T
    u = x @ sym
    q = np.sum(u * x, axis=1)
    got = np.asarray(jax.jit(R._sym_expansion)(q, u, x))
    want = q[:, None] + q[None, :] - 2 * (u @ x.T)
    np.testing.assert_allclose(got, want, **TOL)
    assert np.array_equal(got, got.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dist", list(PUBLIC))
def test_self_values_bitwise_symmetric_over_blocks(dist, dtype):
    args = _args(dist, 2 * BLOCK + 88, d=7, seed=2, dtype=dtype)
    args = (1000 + 10 * args[0], *args[1:])  # far from the origin
    with jax.enable_x64(dtype == np.float64):
        d = np.asarray(PUBLIC[dist][0](*args))
    assert d.dtype == dtype
    assert np.array_equal(d, d.T)
    assert np.all(np.diag(d) == 0)


@pytest.mark.parametrize("n", [5, 2 * BLOCK + 88])
@pytest.mark.parametrize("dist", list(PUBLIC))
def test_self_values_equal_plain_expansion(x64, dist, n):
    public, plain, _ = PUBLIC[dist]
    args = _args(dist, n)
    want = np.array(plain(*args))
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(public(*args), want, **TOL)


def _wrt(dist):
    return [(0,)] if PUBLIC[dist][2] is None else [(0,), (1,), (0, 1)]


@pytest.mark.parametrize("n", [5, 2 * BLOCK + 88])
@pytest.mark.parametrize("dist", list(PUBLIC))
def test_self_gradients_equal_plain_autodiff(x64, dist, n):
    """Reverse mode: the transposed tangents against ``jax.grad`` of the plain expansion."""
    public, plain, _ = PUBLIC[dist]
    args = _args(dist, n, seed=3)
    weights = np.random.default_rng(4).standard_normal((n, n))  # G dense, non-symmetric

    def loss(fn):
        return lambda *a: jnp.sum(jnp.sin(fn(*a)) * weights)

    for argnums in _wrt(dist):
        got = jax.jit(jax.grad(loss(public), argnums=argnums))(*args)
        want = jax.jit(jax.grad(loss(plain), argnums=argnums))(*args)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, **TOL, err_msg=str(argnums))


@pytest.mark.parametrize("dist", list(PUBLIC))
def test_self_tangents_equal_plain_jvp(x64, dist):
    """Forward mode: the tangents against ``jax.jvp`` of the plain expansion, off the diagonal."""
    public, plain, _ = PUBLIC[dist]
    n = 2 * BLOCK + 88
    args = _args(dist, n, seed=5)
    rng = np.random.default_rng(6)
    tangents = tuple(rng.standard_normal(a.shape) for a in args)
    got = jax.jit(lambda *a: jax.jvp(public, a, tangents)[1])(*args)
    want = np.array(jax.jit(lambda *a: jax.jvp(plain, a, tangents)[1])(*args))
    np.fill_diagonal(want, 0.0)  # the plain expansion's diagonal tangent is rounding only
    scale = np.max(np.abs(want))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * scale)
    assert np.all(np.diag(np.asarray(got)) == 0)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("dist", list(PUBLIC))
def test_expansion_references_equal_difference_form(x64, dist, cross):
    """The plain-expansion references compute the same distances as the difference form."""
    fns = {
        "euclidean": (ref.expansion_sq_euclidean, ref.pairwise_sq_euclidean),
        "mahalanobis": (ref.expansion_sq_mahalanobis, ref.pairwise_sq_mahalanobis),
        "transformed": (ref.expansion_sq_transformed, ref.pairwise_sq_transformed),
    }[dist]
    args = _args(dist, 9, seed=7)
    y = np.random.default_rng(8).standard_normal((6, 4)) if cross else None
    got, want = (np.asarray(f(*args, y=y)) for f in fns)
    assert got.shape == want.shape == (9, 6 if cross else 9)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.max(np.abs(want)))
