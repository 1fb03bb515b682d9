r"""Pairwise squared distances D(X), D(M), D(A) with closed-form derivative rules.

Each public function is a ``jax.custom_jvp`` whose tangent rule is the hand-derived
closed form (``metricjax._rules``), written linear in the tangents. JAX therefore

* evaluates it directly in forward mode (``jax.jvp``, ``jax.jacfwd``, Hessians), and
* *transposes* it in reverse mode (``jax.grad``, ``jax.vjp``, ``jax.jacrev``). The
  tangents are written so that their transposes are exactly the closed-form VJPs
  (e.g. ``P + P^T`` turns into one Laplacian matmul), so reverse mode never forms an
  ``(n, m, d)`` intermediate: memory ``O(nm + (n+m)d + d^2)``.

Why not ``jax.custom_vjp``: JAX refuses forward-mode differentiation of a
``custom_vjp`` function, which would break ``jax.jacfwd``, ``jax.jvp`` and
``jax.hessian`` of the public functions. The explicit closed-form VJPs live beside
the tangents (``metricjax._rules.vjp_*``) and the tests check they equal ``jax.vjp``
of the public functions; the losses (``metricjax.losses``) apply the same closed
forms block by block inside their own ``jax.custom_vjp`` rules.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from metricjax import _checks
from metricjax import _rules as R


def _nz(t):
    """``None`` for a symbolic-zero tangent, the tangent otherwise."""
    return None if isinstance(t, SymbolicZero) else t


def _finish(out, tangent):
    return out, (jnp.zeros_like(out) if isinstance(tangent, int) else tangent)


# ---------------------------------------------------------------------- D(X)
@jax.custom_jvp
def _sq_euclidean_self(x):
    xc = x - R.centre(x)
    return R.zero_diagonal(jnp.maximum(R.sq_euclidean(xc), 0))


def _sq_euclidean_self_jvp(primals, tangents):
    (x,), (xdot,) = primals, tangents
    out = _sq_euclidean_self(x)
    if _nz(xdot) is None:
        return _finish(out, 0)
    return out, R.jvp_sq_euclidean_self(x - R.centre(x), xdot)


_sq_euclidean_self.defjvp(_sq_euclidean_self_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _sq_euclidean(x, y):
    c = R.centre(x, y)
    return jnp.maximum(R.sq_euclidean(x - c, y - c), 0)


def _sq_euclidean_jvp(primals, tangents):
    (x, y), (xdot, ydot) = primals, tangents
    out = _sq_euclidean(x, y)
    xdot, ydot = _nz(xdot), _nz(ydot)
    c = R.centre(x, y)
    return _finish(out, R.jvp_sq_euclidean(x - c, y - c, xdot, ydot))


_sq_euclidean.defjvp(_sq_euclidean_jvp, symbolic_zeros=True)


# ---------------------------------------------------------------------- D(M)
@jax.custom_jvp
def _sq_mahalanobis_self(x, metric):
    xc = x - R.centre(x)
    return R.zero_diagonal(R.sq_mahalanobis(xc, 0.5 * (metric + metric.T)))


def _sq_mahalanobis_self_jvp(primals, tangents):
    (x, metric), (xdot, metricdot) = primals, tangents
    out = _sq_mahalanobis_self(x, metric)
    xdot, metricdot = _nz(xdot), _nz(metricdot)
    if xdot is None and metricdot is None:
        return _finish(out, 0)
    xc = x - R.centre(x)
    sym = 0.5 * (metric + metric.T)
    return out, R.jvp_sq_mahalanobis_self(xc, sym, xdot, metricdot)


_sq_mahalanobis_self.defjvp(_sq_mahalanobis_self_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _sq_mahalanobis(x, y, metric):
    c = R.centre(x, y)
    return R.sq_mahalanobis(x - c, 0.5 * (metric + metric.T), y - c)


def _sq_mahalanobis_jvp(primals, tangents):
    (x, y, metric), (xdot, ydot, metricdot) = primals, tangents
    out = _sq_mahalanobis(x, y, metric)
    c = R.centre(x, y)
    sym = 0.5 * (metric + metric.T)
    tan = R.jvp_sq_mahalanobis(x - c, y - c, sym, _nz(xdot), _nz(ydot), _nz(metricdot))
    return _finish(out, tan)


_sq_mahalanobis.defjvp(_sq_mahalanobis_jvp, symbolic_zeros=True)


# ---------------------------------------------------------------------- D(A), M = L^T L
@jax.custom_jvp
def _sq_transformed_self(x, transform):
    z = R.mm(x - R.centre(x), transform.T)
    return R.zero_diagonal(jnp.maximum(R.sq_euclidean(z), 0))


def _sq_transformed_self_jvp(primals, tangents):
    (x, transform), (xdot, transformdot) = primals, tangents
    out = _sq_transformed_self(x, transform)
    xc = x - R.centre(x)
    zdot = R.tangent_of_embedding(xc, transform, _nz(xdot), _nz(transformdot))
    if zdot is None:
        return _finish(out, 0)
    return out, R.jvp_sq_euclidean_self(R.mm(xc, transform.T), zdot)


_sq_transformed_self.defjvp(_sq_transformed_self_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _sq_transformed(x, y, transform):
    c = R.centre(x, y)
    return jnp.maximum(R.sq_euclidean(R.mm(x - c, transform.T), R.mm(y - c, transform.T)), 0)


def _sq_transformed_jvp(primals, tangents):
    (x, y, transform), (xdot, ydot, transformdot) = primals, tangents
    out = _sq_transformed(x, y, transform)
    c = R.centre(x, y)
    xc, yc, ldot = x - c, y - c, _nz(transformdot)
    zdot = R.tangent_of_embedding(xc, transform, _nz(xdot), ldot)
    wdot = R.tangent_of_embedding(yc, transform, _nz(ydot), ldot)
    z, w = R.mm(xc, transform.T), R.mm(yc, transform.T)
    return _finish(out, R.jvp_sq_euclidean(z, w, zdot, wdot))


_sq_transformed.defjvp(_sq_transformed_jvp, symbolic_zeros=True)


# ---------------------------------------------------------------------- public API
# Jitted entry points: eager calls run one compiled program instead of dispatching
# op by op; under an outer jit/grad they are inlined and the custom rules still apply.
_jit = {
    f.__name__: jax.jit(f)
    for f in (
        _sq_euclidean_self,
        _sq_euclidean,
        _sq_mahalanobis_self,
        _sq_mahalanobis,
        _sq_transformed_self,
        _sq_transformed,
    )
}


def _cast(dtype, *arrays):
    return [None if a is None else jnp.asarray(a, dtype) for a in arrays]


def pairwise_sq_euclidean(x, y=None) -> jax.Array:
    r"""Squared Euclidean distances between all rows of ``x`` and ``y``: ``D(X)``.

    .. math::
        D_{ij} = \lVert x_i - y_j \rVert^2

    Computed by the expansion :math:`\lVert x\rVert^2 + \lVert y\rVert^2 - 2 x^\top y`
    after subtracting the common mean of ``x`` and ``y`` (the distances are
    translation invariant), so float32 stays accurate for data far from the origin.
    Entries are clamped at 0; the diagonal of a self-distance matrix (``y=None``) is
    exactly 0. Derivatives use closed-form rules in both forward and reverse mode
    (``jax.grad``, ``jax.jacfwd``, ``jax.hessian`` all work); reverse mode never
    builds an ``(n, m, d)`` array. Derivations: ``docs/derivations.md``.

    Args:
        x: points, shape ``(n, d)``, one observation per row.
        y: points, shape ``(m, d)``; ``None`` means ``y = x`` (the self case).

    Returns:
        Distance matrix, shape ``(n, m)``, in the floating dtype of the inputs
        (integer input becomes JAX's default float).

    Raises:
        ValueError: wrong rank, empty input, or ``x`` and ``y`` disagree on ``d``.
        TypeError: complex or non-numeric input.

    Examples:
        >>> import jax.numpy as jnp, metricjax as mj
        >>> mj.pairwise_sq_euclidean(jnp.array([[0., 0.], [3., 4.]]))
        Array([[ 0., 25.],
               [25.,  0.]], dtype=float32)
    """
    x = _checks.points(x, "x")
    if y is None:
        (x,) = _cast(_checks.float_dtype(x), x)
        return _jit["_sq_euclidean_self"](x)
    y = _checks.points(y, "y")
    _checks.same_width(x, y)
    x, y = _cast(_checks.float_dtype(x, y), x, y)
    return _jit["_sq_euclidean"](x, y)


def pairwise_sq_mahalanobis(x, metric, y=None) -> jax.Array:
    r"""Squared Mahalanobis distances between all rows of ``x`` and ``y``: ``D(M)``.

    .. math::
        D_{ij} = (x_i - y_j)^\top M (x_i - y_j)

    ``metric`` may be any square matrix: the formula (and its derivatives) hold for
    non-symmetric and indefinite :math:`M`. Only the symmetric part
    :math:`(M + M^\top)/2` enters the value, and the gradient with respect to ``M`` is
    the symmetric :math:`\sum_{ij} G_{ij}(x_i-y_j)(x_i-y_j)^\top`. The result is **not
    clipped**: an indefinite ``metric`` gives negative entries. The self-distance
    diagonal is exactly 0.

    Args:
        x: points, shape ``(n, d)``.
        metric: matrix :math:`M`, shape ``(d, d)`` (positive semi-definite for a true metric).
        y: points, shape ``(m, d)``; ``None`` means ``y = x``.

    Returns:
        Distance matrix, shape ``(n, m)``.

    Raises:
        ValueError: if ``x``, ``y`` and ``metric`` disagree on ``d`` or ``metric`` is not square.

    References:
        P. C. Mahalanobis, *On the generalised distance in statistics*, 1936.

    Examples:
        >>> import jax.numpy as jnp, metricjax as mj
        >>> mj.pairwise_sq_mahalanobis(jnp.eye(2), jnp.diag(jnp.array([1., 4.])))
        Array([[0., 5.],
               [5., 0.]], dtype=float32)
    """
    x = _checks.points(x, "x")
    metric = _checks.square_metric(metric, x.shape[1])
    if y is None:
        x, metric = _cast(_checks.float_dtype(x, metric), x, metric)
        return _jit["_sq_mahalanobis_self"](x, metric)
    y = _checks.points(y, "y")
    _checks.same_width(x, y)
    x, y, metric = _cast(_checks.float_dtype(x, y, metric), x, y, metric)
    return _jit["_sq_mahalanobis"](x, y, metric)


def pairwise_sq_transformed(x, transform, y=None) -> jax.Array:
    r"""Squared distances after a linear map ``L``: ``D(A)`` with :math:`M = L^\top L`.

    .. math::
        D_{ij} = \lVert L x_i - L y_j \rVert^2 = (x_i - y_j)^\top L^\top L (x_i - y_j)

    ``L`` (called ``A`` in the seed documents) has shape ``(k, d)``; ``k`` may be
    smaller (a projection) or larger than ``d``. Never negative; exact zero diagonal
    in the self case. Gradient with respect to ``L``:
    :math:`\bar L = 2 L \sum_{ij} G_{ij}(x_i-y_j)(x_i-y_j)^\top`, computed without
    forming :math:`M`-sized sums over pairs.

    Args:
        x: points, shape ``(n, d)``.
        transform: matrix :math:`L`, shape ``(k, d)``.
        y: points, shape ``(m, d)``; ``None`` means ``y = x``.

    Returns:
        Distance matrix, shape ``(n, m)``.

    Raises:
        ValueError: if the width of ``transform`` is not ``d``, or shapes are wrong.

    Examples:
        >>> import jax.numpy as jnp, metricjax as mj
        >>> mj.pairwise_sq_transformed(jnp.eye(2), jnp.array([[2., 0.]]))
        Array([[0., 4.],
               [4., 0.]], dtype=float32)
    """
    x = _checks.points(x, "x")
    transform = _checks.transform_matrix(transform, x.shape[1])
    if y is None:
        x, transform = _cast(_checks.float_dtype(x, transform), x, transform)
        return _jit["_sq_transformed_self"](x, transform)
    y = _checks.points(y, "y")
    _checks.same_width(x, y)
    x, y, transform = _cast(_checks.float_dtype(x, y, transform), x, y, transform)
    return _jit["_sq_transformed"](x, y, transform)
