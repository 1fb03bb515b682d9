r"""Autodiff references: the plain maths, differentiated by ``jax.jacfwd`` / ``jax.jacrev``.

These functions compute every distance by the *difference form*
:math:`\sum_l (x_{il} - y_{jl}) \dots` with an ``(n, m, d)`` intermediate: slow and
memory hungry, but transparent and free of custom rules. They are the oracles the
closed-form rules are tested against, and they stay public so users can compare.
"""

import jax
import jax.numpy as jnp

from metricjax._typing import Metric, OtherPoints, Pairwise, Points, Transform

__all__ = [
    "pairwise_sq_euclidean",
    "pairwise_sq_mahalanobis",
    "pairwise_sq_transformed",
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


def jacobian(fun, argnum: int, method: str, *args):
    """Full Jacobian of ``fun(*args)`` with respect to ``args[argnum]`` by autodiff.

    ``method`` is ``"jacfwd"`` or ``"jacrev"``.
    """
    if method == "jacfwd":
        return jax.jacfwd(fun, argnums=argnum)(*args)
    if method == "jacrev":
        return jax.jacrev(fun, argnums=argnum)(*args)
    raise ValueError(f"method must be 'jacfwd' or 'jacrev', got {method!r}")
