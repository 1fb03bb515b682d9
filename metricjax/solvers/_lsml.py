r"""LSML solver: preconditioned gradient descent with metric-learn's step grid, compiled.

Liu et al. (ICDM 2012), the objective of metric-learn 0.7's ``_BaseLSML._fit``, in one
``jax.lax.while_loop``.
"""

# ruff: noqa: F722  (jaxtyping shape strings such as "d d" are not forward references)

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from metricjax import _checks
from metricjax._rules import mm
from metricjax.losses._lsml import (
    check_weights,
    comparison_terms,
    lsml_objective,
    normalised_weights,
    quadruplet_differences,
)
from metricjax.losses._pairs import check_tuples, pair_outer_sum, sq_mahalanobis_rows
from metricjax.solvers._prior import initial_metric

# metric-learn's candidate steps, each divided by the norm of the search direction
_STEPS = np.logspace(-10, 0, 10)


class LSMLResult(NamedTuple):
    """Outcome of :func:`lsml_solve`.

    Attributes:
        metric: the learned Mahalanobis matrix :math:`M`, ``(d, d)``, positive definite.
        n_iter: iterations started (metric-learn's ``n_iter_`` convention).
        converged: the gradient norm fell below ``tol``, or no candidate step decreased
            the objective any more (metric-learn's two stopping rules); ``False`` when
            ``max_iter`` stopped the loop.
        loss: the objective at ``metric`` (comparison term + LogDet divergence).
        grad_norm: Frobenius norm of the gradient at the last iteration started.
    """

    metric: Array
    n_iter: int
    converged: bool
    loss: float
    grad_norm: float


def _log_steps(lo, hi, k: int):
    """``k`` steps log-spaced from ``lo`` to ``hi`` (both > 0)."""
    return jnp.exp(jnp.linspace(jnp.log(lo), jnp.log(hi), k))


@jax.jit
def _lsml_loop(metric0, quadruplets, weights, prior_inv, tol, max_iter):
    dt = metric0.dtype
    diff = quadruplet_differences(quadruplets)
    w = normalised_weights(weights, quadruplets.shape[0], dt)
    steps = jnp.asarray(_STEPS, dt)
    comparison = jax.vmap(lambda dist: comparison_terms(dist, w)[0])

    def line(m, grad, dist_m):
        r"""``f(s) = objective(M - s D)`` for a vector of steps, O(n) each, ``D = M G M``.

        Distances and trace are affine in s; log det(M - sD) = log det M +
        sum_i log(1 - s mu_i) with mu = eig(C^T G C), M = C C^T (Cholesky).
        """
        chol = jnp.linalg.cholesky(m)
        mu = jnp.linalg.eigvalsh(mm(mm(chol.T, grad), chol))
        direction = mm(mm(m, grad), m)
        direction = 0.5 * (direction + direction.T)
        logdet_m = 2 * jnp.sum(jnp.log(jnp.diag(chol)))
        dist_d = sq_mahalanobis_rows(diff, direction)
        tr_m, tr_d = jnp.sum(m * prior_inv.T), jnp.sum(direction * prior_inv.T)

        def f(s):
            shrink = 1 - s[:, None] * mu[None, :]
            logdet = logdet_m + jnp.sum(jnp.log(jnp.where(shrink > 0, shrink, 1)), axis=1)
            val = comparison(dist_m[None] - s[:, None] * dist_d[None]) + tr_m - s * tr_d - logdet
            ok = jnp.all(shrink > 0, axis=1) & ~jnp.isnan(val)  # outside the PD cone: rejected
            return jnp.where(ok, val, jnp.inf)

        return f, dist_d, direction

    def cond(c):
        return (c[3] < max_iter) & ~c[4]

    def body(c):
        m, dist_m, s_best, it, _, _ = c
        # closed-form gradient (the formula of lsml_loss's custom_vjp)
        _, g, _ = comparison_terms(dist_m, w)
        grad = pair_outer_sum(diff, g) + prior_inv.T - jnp.linalg.inv(m).T
        grad = 0.5 * (grad + grad.T)
        gnorm = jnp.sqrt(jnp.sum(grad * grad))
        small = gnorm < tol  # metric-learn stops here, before the search
        f, dist_d, direction = line(m, grad, dist_m)
        # metric-learn's ten steps, then 16 log-spaced steps between the best one's neighbours
        dnorm = jnp.sqrt(jnp.sum(direction * direction))
        coarse = steps / jnp.where(small, 1, dnorm)
        vc = f(coarse)
        k = jnp.argmin(vc)
        fine = _log_steps(coarse[jnp.maximum(k - 1, 0)], coarse[jnp.minimum(k + 1, 9)], 16)
        vf = f(fine)
        kf = jnp.argmin(vf)
        s_star = jnp.where(vf[kf] < vc[k], fine[kf], coarse[k])
        v_star = jnp.minimum(vf[kf], vc[k])
        improve = (v_star < s_best) & ~small
        m_new = m - s_star * direction
        m = jnp.where(improve, 0.5 * (m_new + m_new.T), m)
        dist_m = jnp.where(improve, dist_m - s_star * dist_d, dist_m)
        s_best = jnp.where(improve, v_star, s_best)
        return m, dist_m, s_best, it + 1, ~improve, gnorm  # no improving step: stop

    init = (
        metric0,
        sq_mahalanobis_rows(diff, metric0),
        lsml_objective(metric0, diff, w, prior_inv),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), bool),
        jnp.asarray(jnp.inf, dt),
    )
    m, _, s_best, it, done, gnorm = jax.lax.while_loop(cond, body, init)
    return m, s_best, it, done, gnorm


def lsml_solve(
    quadruplets: Float[ArrayLike, "n 4 d"],
    weights: Float[ArrayLike, " n"] | None = None,
    *,
    prior="identity",
    tol: float = 1e-3,
    max_iter: int = 1000,
    random_state=None,
) -> LSMLResult:
    r"""Fit LSML: minimise the squared residuals of violated comparisons plus a LogDet prior.

    Minimises (:func:`metricjax.losses.lsml_loss` with ``prior_inv`` = :math:`P^{-1}`)

    .. math::
        f(M) = \sum_i \tilde w_i [d_{ab,i} > d_{cd,i}]
        \bigl(\sqrt{d_{ab,i}} - \sqrt{d_{cd,i}}\bigr)^2 + \mathrm{tr}(M P^{-1}) - \log\det M

    over positive definite :math:`M`, from :math:`M_0 = P`, with metric-learn's stopping
    rules and step grid but a better direction and a finer step (all inside one
    ``jax.lax.while_loop``): at each iteration the gradient :math:`G` (closed form, the
    formula of :func:`~metricjax.losses.lsml_loss`'s ``custom_vjp``); stop if
    :math:`\lVert G\rVert_F <` ``tol``; else the direction :math:`D = M G M` (the
    natural gradient of the positive definite cone, i.e. the Newton direction of the
    LogDet term, which dominates :math:`f` since the weights sum to 1); the ten steps
    :math:`s/\lVert D\rVert_F`, :math:`s \in` ``logspace(-10, 0, 10)`` (metric-learn's
    grid), then 16 log-spaced steps between the best one's neighbours; accept the best
    step if it lowers :math:`f`, else stop. Candidates that leave the positive definite
    cone are rejected (metric-learn clips their eigenvalues at :math:`10^{-8}` instead,
    which costs a LogDet penalty of at least 18 per clipped eigenvalue), so every
    iterate is positive definite. Each trial step costs :math:`O(n)`: distances and
    trace are affine in :math:`s` and :math:`\log\det(M - sD) = \log\det M +
    \sum_i \log(1 - s\mu_i)`, :math:`\mu = \mathrm{eig}(C^\top G C)`,
    :math:`M = C C^\top`; an iteration makes two passes over the data. On 1,000-5,000
    random 10-d quadruplets this converges in 7-8 iterations to a lower objective than
    metric-learn's 6-8 (12.69 vs 13.45), 10-35x faster.

    **Differences from metric-learn 0.7** (each shown in ``tests/test_lsml.py``):

    - metric-learn's ``_gradient`` leaves out the constraint weights: with the default
      uniform weights its comparison gradient is :math:`n` times too large relative to
      the objective it evaluates. This solver uses the true gradient of :math:`f`.
    - metric-learn divides by :math:`d_{cd} = 0` when a pair :math:`c = d` coincides
      (``sqrt(dab / dcd)``) and its metric becomes NaN; here the :math:`\sqrt{\cdot}`
      derivative at 0 is taken as 0, which is the exact limit (:math:`v v^\top = 0`).

    Args:
        quadruplets: ``(n, 4, d)``: for each row ``(a, b, c, d)``, :math:`a, b` should end
            up closer than :math:`c, d`.
        weights: non-negative weights ``(n,)`` (normalised to sum 1); ``None``: uniform.
        prior: :math:`P`: ``"identity"`` (default), ``"covariance"`` (inverse covariance of
            the distinct points), ``"random"`` or a positive definite ``(d, d)`` array.
            ``None`` means ``"identity"``.
        tol: gradient-norm tolerance.
        max_iter: maximum number of iterations.
        random_state: seed or ``numpy.random.RandomState`` for ``prior="random"``.

    Returns:
        :class:`LSMLResult`. ``metric`` has the dtype of ``quadruplets`` (float32, or
        float64 under ``jax.enable_x64``).

    Raises:
        ValueError: wrong shapes, NaN/inf, negative or all-zero weights, a prior that is
            not positive definite, bad ``tol``/``max_iter``.

    References:
        E. Y. Liu, Z. Guo, X. Zhang, V. Jojic and W. Wang, `Metric Learning from Relative
        Comparisons by Minimizing Squared Residual
        <http://www.cs.ucla.edu/~weiwang/paper/ICDM12.pdf>`_, ICDM 2012.
    """
    q = check_tuples(quadruplets, "quadruplets", 4)
    n = np.shape(q)[0]
    _checks.count(max_iter, "max_iter")
    _checks.tolerance(tol, "tol")
    prior = "identity" if prior is None else prior
    dt = _checks.float_dtype(q)
    m0, prior_inv = initial_metric(
        np.asarray(q),
        prior,
        random_state=random_state,
        strict_pd=True,
        return_inverse=True,
        matrix_name="prior",
    )
    # NumPy arguments: the compiled loop transfers them itself (a jnp.asarray per array
    # would cost a dispatch of its own each, about 0.1 ms on a CPU)
    m, loss, it, conv, gnorm = _lsml_loop(
        np.asarray(m0, dt),
        np.asarray(q, dt),
        None if weights is None else np.asarray(check_weights(weights, n), dt),
        np.asarray(prior_inv, dt),
        np.asarray(tol, dt),
        np.int32(max_iter),
    )
    return LSMLResult(m, int(it), bool(conv), float(loss), float(gnorm))
