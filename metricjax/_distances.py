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

The non-squared distances (:func:`pairwise_euclidean`, :func:`pairwise_mahalanobis`)
are :math:`E = \sqrt{D}` through one more ``custom_jvp``, :func:`_sqrt_dist`, whose
tangent :math:`\dot E = \dot D / (2E)` is set to exactly 0 where :math:`E = 0`, so
their derivatives are finite (zero) at coincident points, in both modes.
"""

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from metricjax import _checks
from metricjax import _rules as R
from metricjax._typing import Metric, OtherPoints, Pairwise, Points, Transform


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


# ---------------------------------------------------------------------- E = sqrt(D)
@jax.custom_jvp
def _sqrt_dist(d):
    """``sqrt(max(d, 0))`` with the tangent ``ddot / (2 sqrt(d))``, exactly 0 where the value is 0."""
    return jnp.sqrt(jnp.maximum(d, 0))


def _sqrt_dist_jvp(primals, tangents):
    (d,), (ddot,) = primals, tangents
    e = _sqrt_dist(d)
    pos = e > 0
    # Double where: the division never sees a zero, so neither the tangent nor its
    # transpose (the VJP) can produce inf * 0 = NaN at coincident points.
    return e, jnp.where(pos, ddot / (2 * jnp.where(pos, e, 1)), 0)


_sqrt_dist.defjvp(_sqrt_dist_jvp)


def _gram_sq_self(x, sym=None):
    """Self squared distances that are exactly 0 between identical rows.

    ``D_ij = (G_ii - G_ij) + (G_jj - G_ji)`` with ``G = X_c S X_c^T`` on the centred
    points (``S = I`` when ``sym`` is None). Identical rows give identical Gram entries
    (one matrix product computes them all the same way), hence ``D_ij = 0`` exactly,
    where the expansion with separately computed norms leaves a rounding residue
    whose square root would be far from 0. The optimisation barrier asks XLA not to
    recompute entries of ``G`` inside the fusions that use them. For ``d = 1`` XLA
    turns the product into elementwise multiplies that it fuses (and contracts into
    fused multiply-adds, differently for different entries), so that case uses the
    differences ``D_ij = s (x_i - x_j)^2`` of the raw points: exact 0 for equal
    points, ``O(n^2)`` work like the product, and no centring needed.
    """
    if x.shape[1] == 1:
        diff = x - x.T  # (n, 1) - (1, n)
        sdiff = diff if sym is None else sym[0, 0] * diff
        return R.zero_diagonal(sdiff * diff)
    xc = x - R.centre(x)
    u = xc if sym is None else R.mm(xc, sym)
    g = jax.lax.optimization_barrier(R.mm(u, xc.T))
    a = jnp.diagonal(g)[:, None] - g
    return R.zero_diagonal(a + a.T)


@jax.custom_jvp
def _euclidean_self(x):
    return _sqrt_dist(_gram_sq_self(x))


def _euclidean_self_jvp(primals, tangents):
    (x,), (xdot,) = primals, tangents
    d = _gram_sq_self(x)
    if _nz(xdot) is None:
        return _finish(_sqrt_dist(d), 0)
    return jax.jvp(_sqrt_dist, (d,), (R.jvp_sq_euclidean_self(x - R.centre(x), xdot),))


_euclidean_self.defjvp(_euclidean_self_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _mahalanobis_self(x, metric):
    return _sqrt_dist(_gram_sq_self(x, 0.5 * (metric + metric.T)))


def _mahalanobis_self_jvp(primals, tangents):
    (x, metric), (xdot, metricdot) = primals, tangents
    xdot, metricdot = _nz(xdot), _nz(metricdot)
    sym = 0.5 * (metric + metric.T)
    d = _gram_sq_self(x, sym)
    if xdot is None and metricdot is None:
        return _finish(_sqrt_dist(d), 0)
    ddot = R.jvp_sq_mahalanobis_self(x - R.centre(x), sym, xdot, metricdot)
    return jax.jvp(_sqrt_dist, (d,), (ddot,))


_mahalanobis_self.defjvp(_mahalanobis_self_jvp, symbolic_zeros=True)


def _euclidean(x, y):
    return _sqrt_dist(_sq_euclidean(x, y))


def _mahalanobis(x, y, metric):
    return _sqrt_dist(_sq_mahalanobis(x, y, metric))


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
        _euclidean_self,
        _euclidean,
        _mahalanobis_self,
        _mahalanobis,
    )
}


def _cast(dtype, *arrays):
    return [None if a is None else jnp.asarray(a, dtype) for a in arrays]


def _dispatch(name, x, y, param=None, check_param=None):
    """Validate, cast to one floating dtype and call the jitted self or cross kernel.

    ``param`` (a metric or transform) is checked against the points' width by
    ``check_param``; shape errors are raised here, at trace time.
    """
    x = _checks.points(x, "x")
    if param is not None:
        param = check_param(param, x.shape[1])
    if y is not None:
        y = _checks.points(y, "y")
        _checks.same_width(x, y)
    x, y, param = _cast(_checks.float_dtype(x, y, param), x, y, param)
    args = (x,) if y is None else (x, y)
    if param is not None:
        args = (*args, param)
    return _jit[f"_{name}_self" if y is None else f"_{name}"](*args)


def pairwise_sq_euclidean(x: Points, y: OtherPoints | None = None) -> Pairwise:
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
    return _dispatch("sq_euclidean", x, y)


def pairwise_sq_mahalanobis(x: Points, metric: Metric, y: OtherPoints | None = None) -> Pairwise:
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
    return _dispatch("sq_mahalanobis", x, y, metric, _checks.square_metric)


def pairwise_sq_transformed(
    x: Points, transform: Transform, y: OtherPoints | None = None
) -> Pairwise:
    r"""Squared distances after a linear map ``L``: ``D(A)`` with :math:`M = L^\top L`.

    .. math::
        D_{ij} = \lVert L x_i - L y_j \rVert^2 = (x_i - y_j)^\top L^\top L (x_i - y_j)

    ``L`` (called ``A`` in ``docs/derivations.md``) has shape ``(k, d)``; ``k`` may be
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
    return _dispatch("sq_transformed", x, y, transform, _checks.transform_matrix)


def pairwise_euclidean(x: Points, y: OtherPoints | None = None) -> Pairwise:
    r"""Euclidean distances (not squared) between all rows of ``x`` and ``y``.

    .. math::
        E_{ij} = \lVert x_i - y_j \rVert = \sqrt{D_{ij}}, \qquad
        \frac{\partial E_{ij}}{\partial D_{ij}} = \frac{1}{2 E_{ij}} \ (E_{ij} > 0),
        \quad 0 \ (E_{ij} = 0)

    :math:`D` is the squared distance of :func:`pairwise_sq_euclidean` (centred norm
    expansion, clamped at 0; in the self case the squared norms are read off the Gram
    diagonal, so that identical rows give exactly 0). The derivative of :math:`\lVert x_i - y_j\rVert` is the unit vector
    :math:`(x_i - y_j)/E_{ij}`, undefined at coincident points; there the derivative
    is defined as **0** (a valid subgradient: the distance is minimal there). So
    ``jax.grad``, ``jax.jacfwd`` and ``jax.jvp`` are finite everywhere, including the
    diagonal of the self case and duplicate points, where plain ``jnp.sqrt`` gives
    ``inf * 0 = NaN``. Implemented as a ``jax.custom_jvp`` on top of the closed-form
    tangent :math:`\dot D` of the squared distances, so reverse mode keeps their
    memory footprint.

    Accuracy: the expansion has an absolute error of about
    :math:`u\,(\lVert x_i - c\rVert^2 + \lVert y_j - c\rVert^2)` (:math:`u` the unit
    roundoff, :math:`c` the mean point), so for nearly coincident points the square
    root is accurate to about :math:`\sqrt{u}` times the spread of the data
    (about :math:`3\cdot 10^{-4}` relative in float32, :math:`10^{-8}` in float64); use
    float64 when such small distances matter. In the self case (``y=None``) the
    diagonal and the distance between identical rows are exactly 0; in the cross case
    a point of ``x`` equal to a point of ``y`` gets a value at that rounding level.

    Args:
        x: points, shape ``(n, d)``, one observation per row.
        y: points, shape ``(m, d)``; ``None`` means ``y = x`` (the self case).

    Returns:
        Distance matrix, shape ``(n, m)``, non-negative, in the floating dtype of the
        inputs (integer input becomes JAX's default float).

    Raises:
        ValueError: wrong rank, empty input, or ``x`` and ``y`` disagree on ``d``.
        TypeError: complex or non-numeric input.

    Examples:
        >>> import jax, jax.numpy as jnp, metricjax as mj
        >>> x = jnp.array([[0., 0.], [3., 4.], [3., 4.]])
        >>> mj.pairwise_euclidean(x)
        Array([[0., 5., 5.],
               [5., 0., 0.],
               [5., 0., 0.]], dtype=float32)
        >>> jax.grad(lambda x: mj.pairwise_euclidean(x).sum())(x)
        Array([[-2.4, -3.2],
               [ 1.2,  1.6],
               [ 1.2,  1.6]], dtype=float32)
    """
    return _dispatch("euclidean", x, y)


def pairwise_mahalanobis(x: Points, metric: Metric, y: OtherPoints | None = None) -> Pairwise:
    r"""Mahalanobis distances (not squared) between all rows of ``x`` and ``y``.

    .. math::
        E_{ij} = \sqrt{\max\bigl(0,\ (x_i - y_j)^\top M (x_i - y_j)\bigr)}

    ``metric`` must be **positive semi-definite** for this to be a distance (only its
    symmetric part :math:`(M + M^\top)/2` matters). For a PSD :math:`M` the squared
    value is non-negative up to rounding, and the clamp at 0 only removes rounding
    residue. For an indefinite :math:`M` the negative squared values are clamped to
    0 as well, with derivative 0: the result is then *not* a distance, and no error
    can be raised under ``jax.jit`` (it would need the values). To be PSD by
    construction, parametrise :math:`M = L^\top L` and use
    :func:`pairwise_sq_transformed`; to see the signed squared values, use
    :func:`pairwise_sq_mahalanobis`.

    Derivatives are those of :func:`pairwise_euclidean`: :math:`\dot E = \dot D / (2E)`
    where :math:`E > 0` and exactly 0 where :math:`E = 0` (coincident points, the
    diagonal, clamped entries), with respect to ``x``, ``metric`` and ``y``, in forward
    and reverse mode. Accuracy near coincident points: as for
    :func:`pairwise_euclidean`.

    Args:
        x: points, shape ``(n, d)``.
        metric: positive semi-definite matrix :math:`M`, shape ``(d, d)``.
        y: points, shape ``(m, d)``; ``None`` means ``y = x``.

    Returns:
        Distance matrix, shape ``(n, m)``, non-negative.

    Raises:
        ValueError: if ``x``, ``y`` and ``metric`` disagree on ``d`` or ``metric`` is not square.
        TypeError: complex or non-numeric input.

    Examples:
        >>> import jax.numpy as jnp, metricjax as mj
        >>> mj.pairwise_mahalanobis(jnp.eye(2), jnp.diag(jnp.array([9., 16.])))
        Array([[0., 5.],
               [5., 0.]], dtype=float32)
    """
    return _dispatch("mahalanobis", x, y, metric, _checks.square_metric)
