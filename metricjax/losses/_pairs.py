r"""Constraint tuples as difference vectors: checks, squared distances and their cotangent.

Shared by the pair (ITML, MMC), quadruplet (LSML) and triplet (SCML) losses and their
solvers. A constraint contributes difference vectors :math:`u_p` (the rows of
:math:`U`), whose squared Mahalanobis distances are :math:`d_p = u_p^\top M u_p`. For a
cotangent :math:`g` of the distances the reverse rule is closed-form:
:math:`\bar M = \sum_p g_p u_p u_p^\top = U^\top \mathrm{diag}(g) U` (one matmul, the
pair form of the ``D(M)`` Laplacian rule of ``_rules``) and
:math:`\bar u_p = g_p (M + M^\top) u_p`.
"""

import jax
import numpy as np

from metricjax import _checks
from metricjax._checks import _is_traced
from metricjax._rules import mm, rowdot


def check_tuples(tuples, name: str, size: int):
    """``tuples`` as an ``(n, size, d)`` array-like (n, d >= 1); NaN/inf refused when concrete."""
    t = _checks._asarray(tuples, name)
    shape = np.shape(t)
    if len(shape) != 3 or shape[1] != size:
        raise ValueError(
            f"`{name}` must have shape (n_{name}, {size}, d) ({size} points per tuple), "
            f"got shape {shape}"
        )
    if shape[0] < 1 or shape[2] < 1:
        raise ValueError(f"`{name}` must hold at least one tuple of d >= 1 features, got {shape}")
    if not _is_traced(t):
        arr = np.asarray(t)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains NaN or inf")
    return t


def pair_differences(pairs):
    """``U`` with rows :math:`u_p = a_p - b_p`, shape ``(n_pairs, d)``."""
    return pairs[:, 0, :] - pairs[:, 1, :]


def sq_mahalanobis_rows(diff, metric):
    r"""Squared distances of difference vectors :math:`d_p = u_p^\top M u_p`, shape ``(m,)``.

    Plain ``jnp`` (any autodiff mode); :func:`pair_sq_mahalanobis` is the same value
    with the closed-form reverse rule.
    """
    return rowdot(mm(diff, metric), diff)


def pair_outer_sum(diff, g):
    r""":math:`\sum_p g_p u_p u_p^\top = U^\top \mathrm{diag}(g) U`, shape ``(d, d)``: one matmul."""
    return mm(diff.T, g[:, None] * diff)


def sq_mahalanobis_vjp(diff, metric, g):
    r"""Cotangents ``(M̄, Ū)`` of :func:`sq_mahalanobis_rows` for a cotangent ``g`` of the distances.

    :math:`\bar M = U^\top \mathrm{diag}(g) U` and :math:`\bar u_p = g_p (M + M^\top) u_p`.
    """
    # d d_p / d M = u_p u_p^T ;  d d_p / d u_p = (M + M^T) u_p
    return pair_outer_sum(diff, g), g[:, None] * mm(diff, metric + metric.T)


@jax.custom_vjp
def pair_sq_mahalanobis(diff, metric):
    r"""Squared distances of pairs :math:`d_p = u_p^\top M u_p`, shape ``(n_pairs,)``.

    Closed-form reverse rule (:func:`sq_mahalanobis_vjp`). ``jax.jvp`` / ``jax.jacfwd``
    of it are not available (``custom_vjp``); forward mode through its gradient is
    (``jax.hessian``).
    """
    return sq_mahalanobis_rows(diff, metric)


def _pair_sq_mahalanobis_fwd(diff, metric):
    # the plain form, not the custom_vjp function itself: forward mode through the
    # reverse rule (jax.hessian = jacfwd(jacrev)) then traces plain jnp only
    return sq_mahalanobis_rows(diff, metric), (diff, metric)


def _pair_sq_mahalanobis_bwd(res, g):
    diff, metric = res
    metric_bar, diff_bar = sq_mahalanobis_vjp(diff, metric, g)
    return diff_bar, metric_bar


pair_sq_mahalanobis.defvjp(_pair_sq_mahalanobis_fwd, _pair_sq_mahalanobis_bwd)
