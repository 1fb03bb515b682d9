r"""Full Jacobians of the pairwise squared-distance matrices (4th-order tensors).

Row convention: ``x`` is ``(n, d)``; the self-distance matrix ``D`` is ``(n, n)``.
With :math:`\Delta_{ij} = x_i - x_j` (a ``d``-vector) and :math:`\delta` the Kronecker
delta, the closed forms are

.. math::
    \frac{\partial D_{ij}}{\partial x_{kl}} &= (\delta_{ik} - \delta_{jk})\,
        [(M + M^\top)\Delta_{ij}]_l \quad (M = I: \; 2(\delta_{ik}-\delta_{jk})(x_{il}-x_{jl})) \\
    \frac{\partial D_{ij}}{\partial M_{kl}} &= \Delta_{ij,k}\,\Delta_{ij,l} \\
    \frac{\partial D_{ij}}{\partial L_{kl}} &= 2\,(L\Delta_{ij})_k\,\Delta_{ij,l}

Derivations and the mapping to the column convention of the papers are in
``docs/derivations.md``. These tensors have ``n^2 d^2``-ish entries: use them to
inspect or verify; for training use ``jax.grad`` (which never builds them).
"""

import jax.numpy as jnp

from metricjax import _checks, reference
from metricjax._rules import HIGHEST
from metricjax._typing import Array, Float, Metric, Points, Transform

_METHODS = ("closed_form", "jacfwd", "jacrev")


def _check_method(method):
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")


def _delta_diff(x):
    """``(delta_ik - delta_jk)`` as an ``(n, n, n)`` array and ``Delta_ij`` as ``(n, n, d)``."""
    n = x.shape[0]
    eye = jnp.eye(n, dtype=x.dtype)
    return eye[:, None, :] - eye[None, :, :], x[:, None, :] - x[None, :, :]


def wrt_x(
    x: Points, metric: Metric | None = None, *, method: str = "closed_form"
) -> Float[Array, "n n n d"]:
    r"""Jacobian of the self-distance matrix with respect to the points.

    .. math::
        J_{ijkl} = \frac{\partial D_{ij}}{\partial x_{kl}}
                 = (\delta_{ik} - \delta_{jk}) \, [(x_i - x_j)(M + M^\top)]_l

    which for the Euclidean ``D(X)`` (``metric=None``, :math:`M = I`) is
    :math:`2(\delta_{ik}-\delta_{jk})(x_{il} - x_{jl})`.

    Args:
        x: points, shape ``(n, d)``.
        metric: ``(d, d)`` matrix :math:`M` (any square matrix), or ``None`` for Euclidean.
        method: ``"closed_form"`` (the formula above, vectorised), ``"jacfwd"`` or
            ``"jacrev"`` (autodiff of :mod:`metricjax.reference`).

    Returns:
        Array of shape ``(n, n, n, d)``, ``[i, j, k, l] = dD_ij / dx_kl``.
    """
    _check_method(method)
    x = _checks.points(x, "x")
    if metric is not None:
        metric = _checks.square_metric(metric, x.shape[1])
    dt = _checks.float_dtype(x, metric)
    x = jnp.asarray(x, dt)
    if metric is None:
        if method != "closed_form":
            return reference.jacobian(reference.pairwise_sq_euclidean, 0, method, x)
        dlt, diff = _delta_diff(x)
        return 2 * dlt[:, :, :, None] * diff[:, :, None, :]
    metric = jnp.asarray(metric, dt)
    if method != "closed_form":
        return reference.jacobian(reference.pairwise_sq_mahalanobis, 0, method, x, metric)
    dlt, diff = _delta_diff(x)
    grad_i = jnp.einsum("ijm,ml->ijl", diff, metric + metric.T, precision=HIGHEST)
    return dlt[:, :, :, None] * grad_i[:, :, None, :]


def wrt_metric(x: Points, *, method: str = "closed_form") -> Float[Array, "n n d d"]:
    r"""Jacobian of the Mahalanobis self-distance matrix with respect to ``M``.

    .. math::
        J_{ijkl} = \frac{\partial D_{ij}}{\partial M_{kl}} = (x_{ik} - x_{jk})(x_{il} - x_{jl})

    ``D`` is linear in :math:`M`, so the Jacobian does not depend on :math:`M`; the
    autodiff references differentiate at :math:`M = I` (any point gives the same).

    Args:
        x: points, shape ``(n, d)``.
        method: ``"closed_form"``, ``"jacfwd"`` or ``"jacrev"``.

    Returns:
        Array of shape ``(n, n, d, d)``, ``[i, j, k, l] = dD_ij / dM_kl``.
    """
    _check_method(method)
    x = _checks.points(x, "x")
    x = jnp.asarray(x, _checks.float_dtype(x))
    if method != "closed_form":
        eye = jnp.eye(x.shape[1], dtype=x.dtype)
        return reference.jacobian(reference.pairwise_sq_mahalanobis, 1, method, x, eye)
    diff = x[:, None, :] - x[None, :, :]
    return diff[:, :, :, None] * diff[:, :, None, :]


def wrt_transform(
    x: Points, transform: Transform, *, method: str = "closed_form"
) -> Float[Array, "n n k d"]:
    r"""Jacobian of ``D(A)`` (:math:`M = L^\top L`) with respect to ``L``.

    .. math::
        J_{ijkl} = \frac{\partial D_{ij}}{\partial L_{kl}} = 2\,[L(x_i - x_j)]_k\,(x_{il} - x_{jl})

    Args:
        x: points, shape ``(n, d)``.
        transform: :math:`L`, shape ``(k, d)``.
        method: ``"closed_form"``, ``"jacfwd"`` or ``"jacrev"``.

    Returns:
        Array of shape ``(n, n, k, d)``, ``[i, j, k, l] = dD_ij / dL_kl``.
    """
    _check_method(method)
    x = _checks.points(x, "x")
    transform = _checks.transform_matrix(transform, x.shape[1])
    dt = _checks.float_dtype(x, transform)
    x, transform = jnp.asarray(x, dt), jnp.asarray(transform, dt)
    if method != "closed_form":
        return reference.jacobian(reference.pairwise_sq_transformed, 1, method, x, transform)
    diff = x[:, None, :] - x[None, :, :]
    proj = jnp.einsum("ijl,kl->ijk", diff, transform, precision=HIGHEST)
    return 2 * proj[:, :, :, None] * diff[:, :, None, :]
