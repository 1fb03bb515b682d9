r"""SCML: Sparse Compositional Metric Learning (Shi, Bellet & Sha, AAAI 2014) as a loss.

The metric is a sparse non-negative combination of rank-one bases,
:math:`M = B^\top \mathrm{diag}(w) B = \sum_k w_k b_k b_k^\top`, learned from triplets
:math:`(a, b, c)` (":math:`a` is closer to :math:`b` than to :math:`c`") with a
margin hinge and an :math:`\ell_1` penalty on :math:`w`.
"""

# ruff: noqa: F722  (jaxtyping shape strings such as "d d" are not forward references)


import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Shaped

from metricjax import _checks
from metricjax._rules import mm
from metricjax.losses._pairs import check_tuples, sq_mahalanobis_rows, sq_mahalanobis_vjp


def triplet_differences(triplets):
    r"""``(2n, d)``: rows :math:`u_i = a_i - b_i` (first ``n``), then :math:`v_i = a_i - c_i`."""
    t = triplets
    return jnp.concatenate([t[:, 0] - t[:, 1], t[:, 0] - t[:, 2]], axis=0)


def basis_metric(weights, basis):
    r""":math:`M = B^\top \mathrm{diag}(w) B`, shape ``(d, d)``."""
    return mm(basis.T, weights[:, None] * basis)


def hinge(slack):
    r"""``(terms, active)``: :math:`[s]_+` and the strict activity mask :math:`s > 0`.

    The subgradient at :math:`s = 0` is 0 (a triplet exactly on the margin is inactive),
    as metric-learn.
    """
    active = slack > 0
    return jnp.where(active, slack, 0), active


def _slack(dist, n: int):
    """Margin slack :math:`1 + d(a, b) - d(a, c)` per triplet from the ``2n`` distances."""
    return 1 + dist[:n] - dist[n:]


def _hinge_slopes(active, tw, n: int, dtype):
    """Per-triplet slopes of the mean hinge: ``1/n`` (``tw`` None) or the weights ``tw``."""
    a = active.astype(dtype)
    return a / n if tw is None else a * tw


@jax.custom_vjp
def _triplet_hinge(metric, diff, tw):
    n = diff.shape[0] // 2
    terms, _ = hinge(_slack(sq_mahalanobis_rows(diff, metric), n))
    return jnp.sum(terms) / n if tw is None else jnp.sum(tw * terms)


def _triplet_hinge_fwd(metric, diff, tw):
    n = diff.shape[0] // 2
    terms, active = hinge(_slack(sq_mahalanobis_rows(diff, metric), n))
    a = _hinge_slopes(active, tw, n, diff.dtype)
    loss = jnp.sum(terms) / n if tw is None else jnp.sum(tw * terms)
    return loss, (metric, diff, jnp.concatenate([a, -a]))


def _triplet_hinge_bwd(res, ct):
    metric, diff, g = res
    # slack_i = 1 + u_i^T M u_i - v_i^T M v_i:  dM = sum_i a_i (u_i u_i^T - v_i v_i^T) / n
    # (weighted: a_i times the normalised weight instead of 1/n; weights not differentiated)
    return (*sq_mahalanobis_vjp(diff, metric, ct * g), None)


_triplet_hinge.defvjp(_triplet_hinge_fwd, _triplet_hinge_bwd)


def scml_objective(weights, diff, basis, beta, triplet_weight=None):
    r"""The SCML objective on difference rows ``diff = [U; V]`` (pure jnp, jit-able).

    :math:`\beta \lVert w\rVert_1 + \frac1n \sum_i [1 + d_M(a_i, b_i) - d_M(a_i, c_i)]_+`;
    with ``triplet_weight`` (normalised, summing to 1) the mean becomes
    :math:`\sum_i \tilde s_i [\ldots]_+`.
    """
    hinge_part = _triplet_hinge(basis_metric(weights, basis), diff, triplet_weight)
    return beta * jnp.sum(jnp.abs(weights)) + hinge_part


@jax.jit
def _scml_loss_jit(weights, triplets, basis, beta, sample_weight):
    # eager calls run one compiled program; inside an outer jit or grad this is inlined
    tw = None if sample_weight is None else sample_weight / jnp.sum(sample_weight)
    return scml_objective(weights, triplet_differences(triplets), basis, beta, tw)


def check_beta(beta) -> float:
    """``beta`` as a non-negative finite Python float."""
    return _checks.nonnegative_float(beta, "beta")


def scml_loss(
    weights: Float[ArrayLike, " K"],
    triplets: Float[ArrayLike, "n 3 d"],
    basis: Float[ArrayLike, "K d"],
    *,
    beta: float = 1e-5,
    sample_weight: Shaped[ArrayLike, " n"] | None = None,
) -> Float[Array, ""]:
    r"""SCML objective of basis weights :math:`w`: triplet hinge plus :math:`\ell_1` penalty.

    With :math:`M = B^\top \mathrm{diag}(w) B`, :math:`u_i = a_i - b_i`,
    :math:`v_i = a_i - c_i`:

    .. math::
        \ell(w) = \beta \lVert w\rVert_1 + \frac1n \sum_{i=1}^n
        \bigl[\,1 + u_i^\top M u_i - v_i^\top M v_i\,\bigr]_+ .

    For :math:`w \ge 0` this is the objective metric-learn 0.7's ``SCML`` evaluates every
    ``output_iter`` iterations (``beta * sum(w) + sum(slack[slack > 0]) / n``; tested
    equal). **Gradient**: the hinge part has a ``jax.custom_vjp`` on :math:`M`,
    :math:`\bar M = \frac1n \sum_{\text{active}} (u_i u_i^\top - v_i v_i^\top) =
    W^\top \mathrm{diag}(g) W` (one matmul, :math:`W = [U; V]`), so
    :math:`\nabla_{w_k} = b_k^\top \bar M b_k + \beta\,\mathrm{sign}(w_k)` costs
    :math:`O(n d^2 + K d^2)`, never an :math:`n \times K` array. The hinge's subgradient
    at 0 is 0, so is :math:`\mathrm{sign}(0)`. Gradients also flow to ``triplets`` and
    ``basis``.

    Args:
        weights: :math:`w`, shape ``(K,)`` (non-negative for a PSD metric).
        triplets: shape ``(n, 3, d)``; row ``(a, b, c)``: :math:`a` should be closer to
            :math:`b` than to :math:`c` by a margin of 1.
        basis: :math:`B`, shape ``(K, d)``, one rank-one basis vector :math:`b_k` per row.
        beta: :math:`\ell_1` weight :math:`\beta \ge 0` (metric-learn's default 1e-5).
        sample_weight: weights :math:`s_i \ge 0` of the triplets, shape ``(n,)``
            (``None``: uniform): the mean :math:`\frac1n \sum_i` becomes the weighted
            mean :math:`\sum_i s_i [\ldots]_+ / \sum_j s_j`, so weight 0 is exactly an
            absent triplet (folds are weight vectors to ``jax.vmap`` over). Not
            differentiated.

    Returns:
        Scalar loss in the floating dtype of the inputs.

    Raises:
        ValueError: wrong shapes, NaN/inf in ``triplets``, a negative or non-finite ``beta``,
            bad ``sample_weight``.

    References:
        Y. Shi, A. Bellet and F. Sha, `Sparse Compositional Metric Learning
        <https://arxiv.org/abs/1404.4105>`_, AAAI 2014.
    """
    t = check_tuples(triplets, "triplets", 3)
    d = np.shape(t)[2]
    b = check_beta(beta)
    basis = _checks._asarray(basis, "basis")
    if np.ndim(basis) != 2 or np.shape(basis)[1] != d or np.shape(basis)[0] < 1:
        raise ValueError(
            f"`basis` must have shape (n_basis, d) with d={d} (the triplets' width), got "
            f"{np.shape(basis)}"
        )
    weights = _checks._asarray(weights, "weights")
    if np.shape(weights) != (np.shape(basis)[0],):
        raise ValueError(
            f"`weights` must have shape ({np.shape(basis)[0]},), one per basis vector, got "
            f"{np.shape(weights)}"
        )
    dt = _checks.compute_dtype(weights, t, basis)
    sw = None
    if sample_weight is not None:
        sw = _checks.sample_weight(
            sample_weight, np.shape(t)[0], dt, per="constraint", min_positive=1
        )
    cast = lambda a: jnp.asarray(a, dt)
    return _scml_loss_jit(cast(weights), cast(t), cast(basis), cast(b), sw)
