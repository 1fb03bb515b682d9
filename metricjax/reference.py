r"""Autodiff references: the plain maths, differentiated by ``jax.jacfwd`` / ``jax.jacrev``.

``pairwise_sq_*`` compute every distance by the *difference form*
:math:`\sum_l (x_{il} - y_{jl}) \dots` with an ``(n, m, d)`` intermediate: slow and
memory hungry, but transparent and free of custom rules. They are the oracles the
closed-form rules are tested against, and they stay public so users can compare.

``expansion_sq_*`` are the honest autodiff baseline: the same centred expansion
:math:`D = q 1^\top + 1 r^\top - 2 X S Y^\top` that metricjax evaluates, in plain
``jnp`` without custom rules, so ``jax.grad`` of them is what autodiff alone makes of
the fast formula (``benchmarks/bench_pairwise.py`` times the rules against them).
They are neither clamped nor given an exact zero diagonal.
"""

import jax
import jax.numpy as jnp

from metricjax import _rules as R
from metricjax._typing import Metric, OtherPoints, Pairwise, Points, Transform

__all__ = [
    "pairwise_sq_euclidean",
    "pairwise_sq_mahalanobis",
    "pairwise_sq_transformed",
    "expansion_sq_euclidean",
    "expansion_sq_mahalanobis",
    "expansion_sq_transformed",
    "jacobian",
]


def _diff(x, y):
    y = x if y is None else y
    return x[:, None, :] - y[None, :, :]


def pairwise_sq_euclidean(x: Points, y: OtherPoints | None = None) -> Pairwise:
    """``D_ij = sum_l (x_il - y_jl)^2``, plain ``jnp`` (see :func:`metricjax.pairwise_sq_euclidean`)."""
    return jnp.sum(_diff(x, y) ** 2, axis=-1)


def pairwise_sq_mahalanobis(x: Points, metric: Metric, y: OtherPoints | None = None) -> Pairwise:
    """``D_ij = (x_i - y_j)^T M (x_i - y_j)``, plain ``jnp`` (any square ``M``)."""
    diff = _diff(x, y)
    return jnp.einsum("ijk,kl,ijl->ij", diff, metric, diff, precision=jax.lax.Precision.HIGHEST)


def pairwise_sq_transformed(
    x: Points, transform: Transform, y: OtherPoints | None = None
) -> Pairwise:
    """``D_ij = ||L (x_i - y_j)||^2``, plain ``jnp``."""
    z = jnp.einsum("ijl,kl->ijk", _diff(x, y), transform, precision=jax.lax.Precision.HIGHEST)
    return jnp.sum(z**2, axis=-1)


def _centred(x, y):
    c = R.centre(x, y)
    return x - c, (x if y is None else y) - c


def _expansion(u, x, v, y):
    """``q_i + r_j - 2 u_i . y_j`` with ``q_i = u_i . x_i``, ``r_j = v_j . y_j``."""
    return R.rowdot(u, x)[:, None] + R.rowdot(v, y)[None, :] - 2 * R.mm(u, y.T)


def expansion_sq_euclidean(x: Points, y: OtherPoints | None = None) -> Pairwise:
    """``D_ij = ||x_i||^2 + ||y_j||^2 - 2 x_i . y_j`` on centred points, plain ``jnp``."""
    xc, yc = _centred(x, y)
    return _expansion(xc, xc, yc, yc)


def expansion_sq_mahalanobis(x: Points, metric: Metric, y: OtherPoints | None = None) -> Pairwise:
    """``D_ij = x_i^T S x_i + y_j^T S y_j - 2 x_i^T S y_j``, ``S = (M + M^T)/2``, centred, plain ``jnp``."""
    xc, yc = _centred(x, y)
    sym = 0.5 * (metric + metric.T)
    return _expansion(R.mm(xc, sym), xc, R.mm(yc, sym), yc)


def expansion_sq_transformed(
    x: Points, transform: Transform, y: OtherPoints | None = None
) -> Pairwise:
    """``D_ij = ||z_i||^2 + ||w_j||^2 - 2 z_i . w_j``, ``z = X_c L^T``, ``w = Y_c L^T``, plain ``jnp``."""
    xc, yc = _centred(x, y)
    z, w = R.mm(xc, transform.T), R.mm(yc, transform.T)
    return _expansion(z, z, w, w)


def jacobian(fun, argnum: int, method: str, *args):
    """Full Jacobian of ``fun(*args)`` with respect to ``args[argnum]`` by autodiff.

    ``method`` is ``"jacfwd"`` or ``"jacrev"``.
    """
    if method == "jacfwd":
        return jax.jacfwd(fun, argnums=argnum)(*args)
    if method == "jacrev":
        return jax.jacrev(fun, argnums=argnum)(*args)
    raise ValueError(f"method must be 'jacfwd' or 'jacrev', got {method!r}")
