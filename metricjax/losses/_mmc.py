r"""MMC: Mahalanobis Metric for Clustering (Xing et al., 2002) as a smooth, convex loss."""


import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Shaped

from metricjax import _checks
from metricjax._checks import _is_traced, check_pairs
from metricjax._host import member_difference
from metricjax._rules import mm
from metricjax.losses._pairs import pair_differences, pair_sq_mahalanobis


def _safe_sqrt(d):
    """:math:`\\sqrt{\\max(d, 0)}` with derivative 0 (not inf/NaN) at :math:`d \\le 0`."""
    pos = d > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, d, 1)), 0)


def _mmc_value(dist, y, c, weight=None):
    r""":math:`\sum_S s_p d_p - c \log \sum_D s_p \sqrt{d_p}` from the pair distances
    ``dist`` (``weight`` :math:`s`; ``None``: all 1)."""
    similar = y > 0
    root = _safe_sqrt(dist)
    if weight is not None:
        dist, root = weight * dist, weight * root
    return jnp.sum(jnp.where(similar, dist, 0)) - c * jnp.log(
        jnp.sum(jnp.where(similar, 0, root))
    )


def _check_values(pairs, y, weight=None):
    if _is_traced(pairs) or _is_traced(y) or _is_traced(weight):
        return
    diff = member_difference(np.asarray(pairs), 0, 1)
    yy = np.asarray(y)
    present = np.ones(len(yy), bool) if weight is None else np.asarray(weight) > 0
    if weight is not None and not np.any(present & (yy == -1)):
        raise ValueError(
            "`sample_weight` leaves no dissimilar pair (y == -1) with a positive weight; "
            "the MMC loss is +inf for every metric"
        )
    if not np.any(diff[(yy == -1) & present] != 0):
        raise ValueError(
            "`pairs`: every dissimilar pair (y == -1) is made of two identical points; "
            "the MMC loss is +inf for every metric"
        )


def mmc_loss(
    metric: Float[ArrayLike, "d d"] | Float[ArrayLike, " d"],
    pairs: Float[ArrayLike, "p 2 d"],
    y: Int[ArrayLike, " p"],
    *,
    diagonal: bool = False,
    diagonal_c: float = 1.0,
    sample_weight: Shaped[ArrayLike, " p"] | None = None,
) -> Float[Array, ""]:
    r"""MMC's objective in penalised form (Xing et al., 2002).

    MMC learns :math:`M \succeq 0` by

    .. math::
        \min_{M \succeq 0} f_S(M) = \sum_{p \in S} d_p(M)\quad\text{s.t.}\quad
        h_D(M) = \sum_{p \in D} \sqrt{d_p(M)} \ge 1,\qquad d_p(M) = u_p^T M u_p

    (:math:`S`/:math:`D` the similar/dissimilar pairs, :math:`u_p = a_p - b_p`). This loss
    is the penalised form of Xing et al.'s eq. (4):

    .. math::
        \mathcal{L}(M) = f_S(M) - c \log h_D(M),

    convex on the PSD cone and smooth where :math:`h_D > 0`. **Relation to MMC.**
    :math:`f_S` is homogeneous of degree 1 in :math:`M` and :math:`h_D` of degree 1/2, so
    along a ray :math:`\mathcal{L}(sB) = s f_S(B) - \tfrac{c}{2}\log s - c\log h_D(B)` is
    minimised at :math:`s = c / (2 f_S(B))`, where it equals
    :math:`\tfrac{c}{2}\log(f_S(B)/h_D(B)^2)` plus a constant. Hence the minimisers of
    :math:`\mathcal{L}` are exactly the minimisers of the scale-invariant ratio
    :math:`f_S/h_D^2`, normalised to :math:`f_S(M_{\mathcal{L}}) = c/2`, and MMC's solution
    is :math:`M^\star = M_{\mathcal{L}} / h_D(M_{\mathcal{L}})^2` (scaled so that
    :math:`h_D = 1`). metric-learn's full MMC solves the same problem up to scale (it
    maximises :math:`\log h_D` subject to :math:`f_S \le f_S(M_0)/100`): compare metrics
    through :math:`f_S/h_D^2`.

    With ``diagonal=True`` the metric is :math:`\mathrm{diag}(w)` (``metric`` is ``w``,
    shape ``(d,)``, or a ``(d, d)`` matrix of which only the diagonal is used) and
    :math:`c` = ``diagonal_c``: the objective of metric-learn's diagonal MMC,
    :math:`s^T w - c \log \sum_D \sqrt{q_p^T w}` with :math:`s = \sum_S u_p^2`,
    :math:`q_p = u_p^2`. For the full metric :math:`c = 1` (a :math:`c` would only scale
    the minimiser).

    The gradient is :math:`\nabla\mathcal{L} = U^T \mathrm{diag}(g) U` with
    :math:`g_p = 1` on similar pairs and :math:`-c / (2 h_D \sqrt{d_p})` on dissimilar
    ones, through the closed-form pair rule (one matmul). A dissimilar pair at distance
    0 gets :math:`g_p = 0` (a subgradient) instead of NaN.

    The formula needs :math:`M \succeq 0` (for an indefinite ``metric``, negative
    distances are taken as 0 and :math:`f_S` is unbounded below): with unconstrained
    optimisers use :func:`mmc_loss_transform` (:math:`M = L^T L`) or project onto the PSD
    cone; for the diagonal, parametrise :math:`w = v^2`.

    Args:
        metric: :math:`M`, shape ``(d, d)`` PSD; with ``diagonal=True`` also ``w``, ``(d,)``.
        pairs: pair constraints, shape ``(n_pairs, 2, d)``.
        y: labels, shape ``(n_pairs,)``: +1 similar, -1 dissimilar (both needed).
        diagonal: learn a diagonal metric.
        diagonal_c: weight :math:`c \ge 0` of the dissimilarity term (diagonal only).
        sample_weight: weights :math:`s_p \ge 0` of the pairs, shape ``(n_pairs,)``
            (``None``: all 1): :math:`\mathcal{L} = \sum_S s_p d_p - c \log \sum_D
            s_p \sqrt{d_p}`, so weight 0 is exactly an absent pair (folds are weight
            vectors to ``jax.vmap`` over). At least one dissimilar pair needs a positive
            weight. Not differentiated.

    Returns:
        The loss, a scalar in the compute dtype.

    Raises:
        ValueError: bad shapes, labels outside {-1, +1}, a single class, NaN in ``pairs``,
            or all dissimilar pairs (of positive weight) made of identical points; bad
            ``sample_weight``.

    References:
        E. P. Xing, A. Y. Ng, M. I. Jordan, S. Russell, *Distance Metric Learning with
        Application to Clustering with Side-Information*, NIPS 2002.
    """
    pairs, y = check_pairs(pairs, y)
    n, _, d = np.shape(pairs)
    metric = _checks._asarray(metric, "metric")
    dt = _checks.compute_dtype(metric, pairs)
    sw = None
    if sample_weight is not None:
        sw = _checks.sample_weight(sample_weight, n, dt, per="constraint", min_positive=1)
    _check_values(pairs, y, sw)
    diff = pair_differences(jnp.asarray(pairs, dt))
    y = jnp.asarray(y)
    if diagonal:
        if np.ndim(metric) == 2:
            w = jnp.diagonal(jnp.asarray(_checks.square_metric(metric, d, "metric"), dt))
        elif np.shape(metric) == (d,):
            w = jnp.asarray(metric, dt)
        else:
            raise ValueError(
                f"`metric` must have shape ({d},) (the diagonal) or ({d}, {d}) with "
                f"diagonal=True, got {np.shape(metric)}"
            )
        c = float(diagonal_c)
        if not c >= 0:
            raise ValueError(f"`diagonal_c` must be a non-negative number, got {diagonal_c!r}")
        return _mmc_value(mm(diff * diff, w), y, c, sw)
    metric = jnp.asarray(_checks.square_metric(metric, d, "metric"), dt)
    return _mmc_value(pair_sq_mahalanobis(diff, metric), y, 1.0, sw)


def mmc_loss_transform(
    transform: Float[ArrayLike, "k d"],
    pairs: Float[ArrayLike, "p 2 d"],
    y: Int[ArrayLike, " p"],
    *,
    sample_weight: Shaped[ArrayLike, " p"] | None = None,
) -> Float[Array, ""]:
    r""":func:`mmc_loss` of :math:`M = L^T L` (PSD by construction), for unconstrained optimisers.

    ``L`` may be ``(k, d)`` with ``k < d`` (a low-rank metric). The factorised form is not
    convex in ``L``, but a local minimum at a rank-deficient ``L`` is a global minimum of
    the convex problem in ``M`` (Burer & Monteiro, 2005; Journee et al., 2010). Gradient:
    :math:`\bar L = L(\bar M + \bar M^T)`.

    Args:
        transform: linear map :math:`L`, shape ``(k, d)``.
        pairs, y, sample_weight: as in :func:`mmc_loss`.

    Returns:
        The loss, a scalar.
    """
    pairs, y = check_pairs(pairs, y)
    transform = _checks.transform_matrix(transform, np.shape(pairs)[2], "transform")
    dt = _checks.compute_dtype(transform, pairs)
    transform = jnp.asarray(transform, dt)
    return mmc_loss(mm(transform.T, transform), pairs, y, sample_weight=sample_weight)
