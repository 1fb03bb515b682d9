r"""LSML: metric learning from relative comparisons by minimising squared residuals.

Liu, Guo, Zhang, Jojic & Wang (ICDM 2012). The tuple checks and the squared distances
of difference vectors with their closed-form cotangent come from
:mod:`metricjax.losses._pairs` (shared with ITML, MMC and SCML).
"""

# ruff: noqa: F722  (jaxtyping shape strings such as "d d" are not forward references)

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Shaped

from metricjax import _checks
from metricjax._checks import _is_traced
from metricjax._rules import mm, rowdot
from metricjax.losses._pairs import check_tuples, sq_mahalanobis_rows, sq_mahalanobis_vjp


# ----------------------------------------------------------------------------------
# quadruplet constraints: weights and differences
# ----------------------------------------------------------------------------------
def check_weights(weights, n: int):
    """``weights`` as an ``(n,)`` array-like or ``None``; concrete ones must be finite,
    non-negative and not all zero."""
    if weights is None:
        return None
    w = _checks._asarray(weights, "weights")
    if np.shape(w) != (n,):
        raise ValueError(f"`weights` must have shape ({n},), one per constraint, got {np.shape(w)}")
    if not _is_traced(w):
        arr = np.asarray(w, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError("`weights` contains NaN or inf")
        if np.any(arr < 0):
            raise ValueError(f"`weights` must be non-negative, got min {arr.min():.6g}")
        if not arr.sum() > 0:
            raise ValueError("`weights` are all zero: at least one constraint needs a weight > 0")
    return w


def normalised_weights(weights, n: int, dtype):
    r"""Constraint weights :math:`w_i / \sum_j w_j` (``None``: all :math:`1/n`), as metric-learn."""
    if weights is None:
        return jnp.full((n,), 1.0 / n, dtype)
    w = jnp.asarray(weights, dtype)
    return w / jnp.sum(w)


def quadruplet_differences(quadruplets):
    r"""``(2n, d)``: rows :math:`u_i = a_i - b_i` (first ``n``), then :math:`v_i = c_i - d_i`."""
    q = quadruplets
    return jnp.concatenate([q[:, 0] - q[:, 1], q[:, 2] - q[:, 3]], axis=0)


# ----------------------------------------------------------------------------------
# the LSML comparison term: one formula, its closed-form slopes
# ----------------------------------------------------------------------------------
def comparison_terms(dist, w):
    r"""LSML residuals from the ``2n`` squared distances (``[d_ab; d_cd]``) and weights.

    Returns ``(loss, g, c)``: :math:`\ell = \sum_i w_i c_i` with
    :math:`c_i = [d_{ab} > d_{cd}] (\sqrt{d_{ab}} - \sqrt{d_{cd}})^2`, the slopes
    :math:`g = \partial \ell / \partial [d_{ab}; d_{cd}]` and the per-constraint terms
    :math:`c`. With :math:`r = \sqrt{d_{ab}} - \sqrt{d_{cd}}` on a violated constraint,
    :math:`\partial \ell / \partial d_{ab} = w r / \sqrt{d_{ab}}` and
    :math:`\partial \ell / \partial d_{cd} = -w r / \sqrt{d_{cd}}`; the derivative of
    :math:`\sqrt{\cdot}` at 0 is taken as 0 (a coincident pair :math:`c = d` has
    :math:`v = 0`, so its outer product vanishes anyway: this is the limit, not a NaN).
    Distances are clamped at 0 (an indefinite metric gives no NaN).
    """
    n = w.shape[0]
    dist = jnp.maximum(dist, 0)
    dab, dcd = dist[:n], dist[n:]
    rab, rcd = jnp.sqrt(dab), jnp.sqrt(dcd)
    viol = dab > dcd  # strict, as metric-learn: a tie is not a violation
    r = jnp.where(viol, rab - rcd, 0)
    c = r * r
    g_ab = w * r / jnp.where(rab > 0, rab, 1)  # rab > 0 on every violated constraint
    g_cd = jnp.where(rcd > 0, -w * r / jnp.where(rcd > 0, rcd, 1), 0)
    return jnp.sum(w * c), jnp.concatenate([g_ab, g_cd]), c


@jax.custom_vjp
def _comparison_metric(metric, diff, w):
    return comparison_terms(sq_mahalanobis_rows(diff, metric), w)[0]


def _comparison_metric_fwd(metric, diff, w):
    loss, g, c = comparison_terms(sq_mahalanobis_rows(diff, metric), w)
    return loss, (metric, diff, g, c)


def _comparison_metric_bwd(res, ct):
    metric, diff, g, c = res
    return (*sq_mahalanobis_vjp(diff, metric, ct * g), ct * c)


_comparison_metric.defvjp(_comparison_metric_fwd, _comparison_metric_bwd)


@jax.custom_vjp
def _comparison_transform(transform, diff, w):
    z = mm(diff, transform.T)
    return comparison_terms(rowdot(z, z), w)[0]


def _comparison_transform_fwd(transform, diff, w):
    z = mm(diff, transform.T)
    loss, g, c = comparison_terms(rowdot(z, z), w)
    return loss, (transform, diff, z, g, c)


def _comparison_transform_bwd(res, ct):
    transform, diff, z, g, c = res
    gz = (2 * ct) * g[:, None] * z
    # d_p = ||L u_p||^2:  dL = 2 sum_p g_p (L u_p) u_p^T ;  du_p = 2 g_p L^T L u_p
    return mm(gz.T, diff), mm(gz, transform), ct * c


_comparison_transform.defvjp(_comparison_transform_fwd, _comparison_transform_bwd)


def logdet_divergence(metric, prior_inv):
    r""":math:`\mathrm{tr}(M P^{-1}) - \log\det M`; :math:`+\infty` if :math:`\det M \le 0`."""
    sign, logabs = jnp.linalg.slogdet(metric)
    reg = jnp.sum(metric * prior_inv.T) - logabs
    return jnp.where(sign > 0, reg, jnp.inf)


def lsml_objective(metric, diff, w, prior_inv):
    """Comparison term plus LogDet divergence (the solver's objective): pure jnp, jit-able."""
    return _comparison_metric(metric, diff, w) + logdet_divergence(metric, prior_inv)


# ----------------------------------------------------------------------------------
# public losses
# ----------------------------------------------------------------------------------
def _prepare(param, quadruplets, weights, prior_inv, *, square: bool, name: str, sample_weight=None):
    """Checks (static shapes; values when concrete) and the common compute dtype.

    ``weights`` is the deprecated spelling of ``sample_weight`` (still differentiable).
    """
    q = check_tuples(quadruplets, "quadruplets", 4)
    n, _, d = np.shape(q)
    if square:
        param = _checks.square_metric(param, d, name)
    else:
        param = _checks.transform_matrix(param, d, name)
    if prior_inv is not None:
        prior_inv = _checks.square_metric(prior_inv, d, "prior_inv")
        if not square and np.shape(param)[0] != d:
            raise ValueError(
                f"the LogDet regulariser needs a square transform (d, d) = ({d}, {d}); "
                f"`{name}` has shape {np.shape(param)} (pass prior_inv=None for a low-rank L)"
            )
    if weights is not None:
        if sample_weight is not None:
            raise TypeError("pass `sample_weight` only (`weights` is its deprecated spelling), not both")
        warnings.warn(
            "the `weights` argument of lsml_loss / lsml_transform_loss is deprecated: pass "
            "`sample_weight=` (the same constraint weights, normalised to sum 1; as data, "
            "not differentiated)",
            FutureWarning,
            stacklevel=3,
        )
    weights = check_weights(weights, n)
    others = [] if weights is None else [weights]
    others += [] if prior_inv is None else [prior_inv]
    dt = _checks.compute_dtype(param, q, *others)
    if sample_weight is not None:
        weights = _checks.sample_weight(sample_weight, n, dt, per="constraint", min_positive=1)
    cast = lambda a: None if a is None else jnp.asarray(a, dt)
    return cast(param), cast(q), cast(weights), cast(prior_inv)


# Eager calls run one compiled program each (not one per operation); inside an outer
# jit or grad these are inlined.
@jax.jit
def _lsml_metric_jit(metric, q, weights, prior_inv):
    w = normalised_weights(weights, q.shape[0], q.dtype)
    loss = _comparison_metric(metric, quadruplet_differences(q), w)
    if prior_inv is not None:
        loss = loss + logdet_divergence(metric, prior_inv)
    return loss


@jax.jit
def _lsml_transform_jit(transform, q, weights, prior_inv):
    w = normalised_weights(weights, q.shape[0], q.dtype)
    loss = _comparison_transform(transform, quadruplet_differences(q), w)
    if prior_inv is not None:
        # tr(L^T L P^-1) - log det(L^T L), with log det(L^T L) = 2 log|det L| (square L)
        reg = jnp.sum(mm(transform, prior_inv) * transform) - 2 * jnp.linalg.slogdet(transform)[1]
        loss = loss + reg
    return loss


def lsml_loss(
    metric: Float[ArrayLike, "d d"],
    quadruplets: Float[ArrayLike, "n 4 d"],
    weights: Float[ArrayLike, " n"] | None = None,
    *,
    prior_inv: Float[ArrayLike, "d d"] | None = None,
    sample_weight: Shaped[ArrayLike, " n"] | None = None,
) -> Float[Array, ""]:
    r"""LSML loss of a Mahalanobis matrix: squared residuals of violated comparisons.

    A quadruplet :math:`(a, b, c, d)` says that :math:`a, b` are more similar than
    :math:`c, d`. With :math:`u = a - b`, :math:`v = c - d`,
    :math:`d_{ab} = u^\top M u`, :math:`d_{cd} = v^\top M v`:

    .. math::
        \ell(M) = \sum_i \tilde w_i \,[d_{ab,i} > d_{cd,i}]\,
        \bigl(\sqrt{d_{ab,i}} - \sqrt{d_{cd,i}}\bigr)^2
        \;+\; \mathrm{tr}(M P^{-1}) - \log\det M ,

    with normalised weights :math:`\tilde w_i = w_i / \sum_j w_j` (all :math:`1/n` when
    ``sample_weight`` is ``None``) and the LogDet divergence to the prior :math:`P` only when
    ``prior_inv`` (:math:`P^{-1}`) is given. This is metric-learn 0.7's
    ``LSML._total_loss`` (tested equal); the loss is :math:`+\infty` where
    :math:`\det M \le 0`, and distances are clamped at 0.

    **Gradient** (``jax.custom_vjp``, one pass over the data, one matmul):

    .. math::
        \nabla_M \ell = \sum_{i\ \text{violated}} \tilde w_i \Bigl[
        \bigl(1 - \tfrac{\sqrt{d_{cd}}}{\sqrt{d_{ab}}}\bigr) u u^\top
        + \bigl(1 - \tfrac{\sqrt{d_{ab}}}{\sqrt{d_{cd}}}\bigr) v v^\top\Bigr]
        + P^{-\top} - M^{-\top} = W^\top \mathrm{diag}(g) W + P^{-\top} - M^{-\top},

    :math:`W = [U; V]`. The derivative of :math:`\sqrt{\cdot}` at 0 is taken as 0, so a
    coincident pair (:math:`c = d`) gives a finite gradient (metric-learn divides by
    :math:`d_{cd} = 0` there and returns NaN). Gradients also flow to ``quadruplets``
    and ``prior_inv`` (and to the deprecated ``weights``).

    Args:
        metric: :math:`M`, shape ``(d, d)`` (positive definite with a prior).
        quadruplets: shape ``(n, 4, d)``: ``(a, b, c, d)`` per row.
        weights: deprecated (``FutureWarning``): the former name of ``sample_weight``,
            same values and normalisation; still differentiated.
        prior_inv: :math:`P^{-1}`, shape ``(d, d)``, or ``None`` (no regulariser).
        sample_weight: non-negative constraint weights :math:`w_i`, shape ``(n,)``,
            normalised to sum 1 as metric-learn's ``weights`` (``None``: uniform).
            Weight 0 is exactly an absent constraint (the normaliser runs over the
            others), so cross-validation folds are weight vectors to ``jax.vmap``
            over. Not differentiated.

    Returns:
        Scalar loss in the floating dtype of the inputs.

    Raises:
        ValueError: wrong shapes, NaN/inf in ``quadruplets`` or the weights, negative or
            all-zero weights.
        TypeError: both ``weights`` and ``sample_weight``.

    References:
        E. Y. Liu, Z. Guo, X. Zhang, V. Jojic and W. Wang, `Metric Learning from Relative
        Comparisons by Minimizing Squared Residual
        <http://www.cs.ucla.edu/~weiwang/paper/ICDM12.pdf>`_, ICDM 2012.
    """
    return _lsml_metric_jit(
        *_prepare(metric, quadruplets, weights, prior_inv, square=True, name="metric",
                  sample_weight=sample_weight)
    )


def lsml_transform_loss(
    transform: Float[ArrayLike, "k d"],
    quadruplets: Float[ArrayLike, "n 4 d"],
    weights: Float[ArrayLike, " n"] | None = None,
    *,
    prior_inv: Float[ArrayLike, "d d"] | None = None,
    sample_weight: Shaped[ArrayLike, " n"] | None = None,
) -> Float[Array, ""]:
    r""":func:`lsml_loss` of :math:`M = L^\top L`, as a function of the transform :math:`L`.

    .. math::
        \ell(L) = \sum_i \tilde w_i\,[\ldots]\,\bigl(\lVert L u_i\rVert - \lVert L v_i\rVert\bigr)^2
        + \mathrm{tr}(L P^{-1} L^\top) - 2 \log\lvert\det L\rvert .

    Unconstrained in :math:`L` (any optax optimizer, ``mj.fit``, a flax layer): the
    metric stays PSD by construction. The regulariser needs a square :math:`L`
    (:math:`k = d`); a low-rank :math:`L` (:math:`k < d`) works with ``prior_inv=None``.
    Gradient: :math:`\nabla_L = 2 L\,W^\top \mathrm{diag}(g) W + L(P^{-1} + P^{-\top})
    - 2 L^{-\top}`, the comparison part in a ``jax.custom_vjp`` (one matmul, finite at
    coincident points).

    Args:
        transform: :math:`L`, shape ``(k, d)``.
        quadruplets: shape ``(n, 4, d)``.
        weights: deprecated spelling of ``sample_weight`` (``FutureWarning``).
        prior_inv: :math:`P^{-1}` ``(d, d)`` or ``None`` (no regulariser).
        sample_weight: constraint weights ``(n,)`` as in :func:`lsml_loss`.

    Returns:
        Scalar loss.

    Raises:
        ValueError: as :func:`lsml_loss`, and a non-square ``transform`` with a prior.

    References:
        E. Y. Liu et al., Metric Learning from Relative Comparisons by Minimizing Squared
        Residual, ICDM 2012.
    """
    return _lsml_transform_jit(
        *_prepare(transform, quadruplets, weights, prior_inv, square=False, name="transform",
                  sample_weight=sample_weight)
    )
