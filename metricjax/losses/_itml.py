r"""ITML: Information-Theoretic Metric Learning (Davis et al., 2007) as a differentiable loss.

The squared distances of the pairs, :math:`d_p = u_p^T M u_p` with
:math:`u_p = a_p - b_p`, and their closed-form cotangent come from
:mod:`metricjax.losses._pairs` (shared with MMC, LSML and SCML).
"""


import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Shaped

from metricjax import _checks
from metricjax._checks import _is_traced, check_pairs
from metricjax._host import member_difference
from metricjax._rules import mm
from metricjax.exceptions import InvalidParameterError
from metricjax.losses._pairs import pair_differences, pair_sq_mahalanobis


# ----------------------------------------------------------------------------------
# argument checks shared with the solver
# ----------------------------------------------------------------------------------
def check_gamma(gamma, *, allow_inf: bool) -> float:
    """``gamma`` as a positive Python float (``inf`` only if ``allow_inf``)."""
    if _is_traced(gamma) or isinstance(gamma, bool):
        raise InvalidParameterError(f"`gamma` must be a positive Python number, got {gamma!r}")
    try:
        g = float(gamma)
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(f"`gamma` must be a positive number, got {gamma!r}") from err
    if not g > 0 or (math.isinf(g) and not allow_inf):
        extra = " (inf means hard constraints: use the solver)" if math.isinf(g) else ""
        raise ValueError(f"`gamma` must be a positive finite number, got {gamma!r}{extra}")
    return g


def check_bounds(bounds) -> np.ndarray:
    """``bounds`` as two finite non-negative float64 numbers; exact zeros become 1e-9.

    metric-learn's rule (``bounds_[bounds_ == 0] = 1e-9``): the constraints divide by them.
    """
    try:
        b = np.array(bounds, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(f"`bounds` must be an array-like of two numbers, got {bounds!r}") from err
    if b.size != 2:
        raise ValueError(f"`bounds` must be an array-like of two elements, got {b.size}")
    if not np.all(np.isfinite(b)) or np.any(b < 0):
        raise ValueError(f"`bounds` must be two finite non-negative numbers, got {b}")
    b[b == 0] = 1e-9
    return b


# ----------------------------------------------------------------------------------
# the loss
# ----------------------------------------------------------------------------------
def _itml_value(metric, diff, y, bounds, prior, gamma, weight=None):
    """LogDet divergence to ``prior`` + ``gamma`` times the profiled slack divergence
    (each pair's term times its weight, when given)."""
    dim = metric.shape[0]
    dist = pair_sq_mahalanobis(diff, metric)
    sign, logdet_m = jnp.linalg.slogdet(metric)
    _, logdet_p = jnp.linalg.slogdet(prior)
    logdet_div = jnp.trace(jnp.linalg.solve(prior, metric)) - logdet_m + logdet_p - dim
    similar = y > 0
    r = dist / jnp.where(similar, bounds[0], bounds[1])
    r = jnp.where(similar, jnp.maximum(r, 1), jnp.minimum(r, 1))
    # a dissimilar pair at distance 0 (identical points, or a metric that collapses them;
    # refused outside jit, not checkable under it): its term is +inf, and its gradient,
    # (1 - 1/r) times d d_p = 0, is taken as 0 rather than inf * 0 = NaN (the distance is
    # flat there: no direction separates the points to first order)
    collapsed = r <= 0
    r_safe = jnp.where(collapsed, 1, r)
    terms = jnp.where(collapsed, jnp.inf, r_safe - jnp.log(r_safe) - 1)
    # weight 0 is an absent pair, even a collapsed one (0 * inf would be NaN)
    slack = jnp.sum(terms if weight is None else jnp.where(weight > 0, weight * terms, 0))
    return jnp.where(sign > 0, logdet_div + gamma * slack, jnp.inf)


def _cast_common(metric, pairs, y, bounds, prior):
    dt = _checks.compute_dtype(metric, pairs)
    pairs = jnp.asarray(pairs, dt)
    d = pairs.shape[2]
    metric = _checks.square_metric(metric, d, "metric")
    metric = jnp.asarray(metric, dt)
    if prior is None:
        prior = jnp.eye(d, dtype=dt)
    else:
        prior = jnp.asarray(_checks.square_metric(prior, d, "prior"), dt)
    return metric, pair_differences(pairs), jnp.asarray(y), jnp.asarray(bounds, dt), prior


def itml_loss(
    metric: Float[ArrayLike, "d d"],
    pairs: Float[ArrayLike, "p 2 d"],
    y: Int[ArrayLike, " p"],
    *,
    bounds: Float[ArrayLike, " 2"],
    prior: Float[ArrayLike, "d d"] | None = None,
    gamma: float = 1.0,
    sample_weight: Shaped[ArrayLike, " p"] | None = None,
) -> Float[Array, ""]:
    r"""ITML's objective: LogDet divergence to the prior plus the slack penalty.

    Davis et al. (2007) solve, with slack variables :math:`\xi_p` started at the bounds
    (:math:`\xi^0_p = u` for similar, :math:`\ell` for dissimilar pairs),

    .. math::
        \min_{M \succ 0,\ \xi}\ D_{\ell d}(M, M_0) + \gamma \sum_p
            \Big(\frac{\xi_p}{\xi^0_p} - \log\frac{\xi_p}{\xi^0_p} - 1\Big)
        \quad\text{s.t.}\quad d_p \le \xi_p\ (y_p = +1),\quad d_p \ge \xi_p\ (y_p = -1),

    with :math:`d_p = (a_p - b_p)^T M (a_p - b_p)` and
    :math:`D_{\ell d}(M, M_0) = \mathrm{tr}(M M_0^{-1}) - \log\det(M M_0^{-1}) - d`.
    The optimal slack for a given :math:`M` is :math:`\xi_p = \max(d_p, u)` (similar) or
    :math:`\min(d_p, \ell)` (dissimilar), so the problem equals the minimisation over
    :math:`M` alone of this loss:

    .. math::
        \mathcal{L}(M) = D_{\ell d}(M, M_0) + \gamma \sum_p h(r_p),\quad h(r) = r - \log r - 1,
        \quad r_p = \begin{cases} \max(d_p/u, 1) & y_p = +1 \\ \min(d_p/\ell, 1) & y_p = -1 \end{cases}

    It is convex in :math:`M` on the positive definite cone and continuously
    differentiable (:math:`h(1) = h'(1) = 0`); its gradient is

    .. math::
        \nabla \mathcal{L} = M_0^{-1} - M^{-1} + U^T \mathrm{diag}(g) U,\quad
        g_p = \gamma\,(1/b_p - 1/d_p)\ \text{on violated pairs, else } 0,

    (:math:`b_p` the pair's bound), whose pair part is computed by a closed-form
    ``custom_vjp`` (one matmul). Its minimiser is the fixed point of ITML's cyclic Bregman
    projections (:func:`metricjax.solvers.itml_solve`, metric-learn's ``ITML``): same
    ``bounds``, ``prior`` and ``gamma`` give the same problem. Note the bounds apply to
    *squared* distances, as in metric-learn.

    A non positive-definite ``metric`` gives ``+inf`` (the LogDet barrier), so line
    searches step back; for unconstrained optimisers use :func:`itml_loss_transform`.
    So does a dissimilar pair at squared distance 0 (:math:`h(0) = +\infty`): refused
    outside ``jit``; under it (pairs from a network) the loss is ``+inf`` and that pair's
    part of the gradient is 0 (the distance is flat at 0), never NaN.

    Args:
        metric: Mahalanobis matrix :math:`M`, shape ``(d, d)``, symmetric positive definite.
        pairs: pair constraints, shape ``(n_pairs, 2, d)``.
        y: labels, shape ``(n_pairs,)``: +1 similar, -1 dissimilar.
        bounds: :math:`(u, \ell)`, the similar and dissimilar bounds on squared distances
            (e.g. ``ITMLResult.bounds``); exact zeros are replaced by 1e-9 as in metric-learn.
        prior: :math:`M_0`, shape ``(d, d)``, symmetric positive definite; ``None`` is the
            identity (see :func:`metricjax.solvers.initial_metric` for the others).
        gamma: weight :math:`\gamma > 0` of the slack term (finite).
        sample_weight: weights :math:`s_p \ge 0` of the pairs, shape ``(n_pairs,)``
            (``None``: all 1): the slack term becomes
            :math:`\gamma \sum_p s_p h(r_p)`, so weight 0 is exactly an absent pair
            (cross-validation folds are weight vectors to ``jax.vmap`` over). Not
            differentiated.

    Returns:
        The loss, a scalar in the compute dtype (float32 for float32 input).

    Raises:
        ValueError: bad shapes, labels outside {-1, +1}, a single class, NaN in ``pairs``,
            bad ``bounds``, ``gamma`` or ``sample_weight``, or a dissimilar pair of
            identical points (of positive weight).

    References:
        J. V. Davis, B. Kulis, P. Jain, S. Sra, I. S. Dhillon, *Information-Theoretic Metric
        Learning*, ICML 2007.
    """
    pairs, y = check_pairs(pairs, y)
    gamma = check_gamma(gamma, allow_inf=False)
    if not _is_traced(bounds):
        bounds = check_bounds(bounds)
    n = np.shape(pairs)[0]
    w = None
    if sample_weight is not None:
        dt = _checks.compute_dtype(metric, pairs)
        w = _checks.sample_weight(sample_weight, n, dt, per="constraint", min_positive=1)
    if not (_is_traced(pairs) or _is_traced(y)):
        diff = member_difference(np.asarray(pairs), 0, 1)
        coincident = (np.asarray(y) == -1) & ~np.any(diff != 0, axis=1)
        if w is not None and not _is_traced(w):
            coincident &= np.asarray(w) > 0  # an absent pair is no problem
        if coincident.any():
            raise ValueError(
                f"`pairs`: dissimilar pair(s) {np.flatnonzero(coincident)[:5]} have two "
                "identical points; no metric separates them (the slack term is infinite)"
            )
    metric, diff, y, bounds, prior = _cast_common(metric, pairs, y, bounds, prior)
    return _itml_value(metric, diff, y, bounds, prior, gamma, w)


def itml_loss_transform(
    transform: Float[ArrayLike, "d d"],
    pairs: Float[ArrayLike, "p 2 d"],
    y: Int[ArrayLike, " p"],
    *,
    bounds: Float[ArrayLike, " 2"],
    prior: Float[ArrayLike, "d d"] | None = None,
    gamma: float = 1.0,
    sample_weight: Shaped[ArrayLike, " p"] | None = None,
) -> Float[Array, ""]:
    r""":func:`itml_loss` of :math:`M = L^T L`, for unconstrained optimisers.

    ``L`` must be square ``(d, d)`` and invertible for a finite LogDet (a ``(k, d)`` map
    with ``k < d`` has :math:`\det M = 0`: the loss is ``+inf``). The gradient is
    :math:`\bar L = L (\bar M + \bar M^T)`.

    Args:
        transform: linear map :math:`L`, shape ``(d, d)``.
        pairs, y, bounds, prior, gamma, sample_weight: as in :func:`itml_loss`.

    Returns:
        The loss, a scalar.
    """
    pairs, y = check_pairs(pairs, y)
    d = np.shape(pairs)[2]
    transform = _checks.transform_matrix(transform, d, "transform")
    dt = _checks.compute_dtype(transform, pairs)
    transform = jnp.asarray(transform, dt)
    return itml_loss(
        mm(transform.T, transform), pairs, y, bounds=bounds, prior=prior, gamma=gamma,
        sample_weight=sample_weight,
    )
