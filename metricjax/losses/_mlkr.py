r"""MLKR: Metric Learning for Kernel Regression (Weinberger & Tesauro, 2007)."""


import jax
import jax.numpy as jnp
import numpy as np

from metricjax import _checks
from metricjax._typing import (
    Array,
    ArrayLike,
    Float,
    OtherPoints,
    Points,
    SampleWeight,
    Scalar,
    Targets,
    Transform,
)
from metricjax.losses import _engine as sn


def _sq_error(a, u):
    return jnp.sum((a - u) ** 2, axis=-1)


# y enters as both the regressed values v and the targets u (and is differentiated).
_mlkr_jit = sn.soft_neighbour_loss(_sq_error, values_are_targets=True)


def mlkr_loss(
    transform: Transform,
    x: Points,
    y: Targets,
    *,
    sample_weight: SampleWeight | None = None,
    block_size: int | str | None = "auto",
) -> Scalar:
    r"""MLKR leave-one-out kernel-regression loss of a linear map ``L``.

    .. math::
        \ell(L) = \sum_i \lVert \hat y_i - y_i \rVert^2, \qquad
        \hat y_i = \frac{\sum_{j \ne i} k_{ij} y_j}{\sum_{j \ne i} k_{ij}}, \qquad
        k_{ij} = \exp(-\lVert L x_i - L x_j \rVert^2)

    This is exactly the cost minimised by metric-learn's ``MLKR`` (Gaussian kernel of
    unit bandwidth, leave-one-out Nadaraya--Watson estimate, self-weight exactly 0).
    The softmax is max-shifted (log-sum-exp stable) in float32 and float64.

    The gradient is a closed form wired into ``jax.custom_vjp``: with
    :math:`p_{ij} = k_{ij}/\sum_l k_{il}` and :math:`e_i = \hat y_i - y_i`,

    .. math::
        G_{ij} = \frac{\partial \ell}{\partial D_{ij}} = -2\,p_{ij}\,(y_j - \hat y_i)\cdot e_i,
        \qquad \nabla_L \ell = 2\, L X^\top (\mathrm{diag}(H 1) - H) X, \quad H = G + G^\top,

    computed block by block together with the loss (``docs/derivations.md``).
    Gradients flow to ``transform``, ``x`` and ``y``.

    **Differentiation.** ``jax.grad``, ``jax.value_and_grad``, ``jax.vjp`` and
    ``jax.jacrev`` use the closed-form gradient; second derivatives work by
    differentiating it again (``jax.hessian``, ``jax.jacrev(jax.jacrev(loss))``).
    Forward mode on the loss itself (``jax.jvp``, ``jax.jacfwd``) is not supported: the
    gradient is a ``jax.custom_vjp`` rule, and JAX refuses forward mode through one
    ("can't apply forward-mode autodiff (jvp) to a custom_vjp function").

    Args:
        transform: :math:`L`, shape ``(k, d)``.
        x: inputs, shape ``(n, d)``, ``n >= 2``.
        y: targets, shape ``(n,)`` (or ``(n, c)`` for several outputs).
        sample_weight: weights :math:`s_i \ge 0`, shape ``(n,)`` (``None``: all 1):
            :math:`\ell = \sum_i s_i \lVert \hat y_i - y_i\rVert^2` with
            :math:`k_{ij}` multiplied by :math:`s_j` and, for :math:`s_i > 1`, the
            :math:`s_i - 1` other copies of point :math:`i` among its neighbours (at
            distance 0): an integer weight is the point repeated. Weight 0 is exactly
            a dropped point (neither predicted nor a neighbour), so cross-validation
            folds are weight vectors to ``jax.vmap`` over. Not differentiated
            (``docs/derivations.md`` §12).
        block_size: rows of the pairwise matrix processed at a time. ``"auto"`` (or
            ``None``) uses one dense block when its temporaries fit 32 MiB, else
            rows of 128 to 1024 (memory then grows linearly in ``n``, see
            ``docs/scaling.md`` and :func:`metricjax.losses.block_size_for`); an int
            fixes it (``n`` or more: one dense block). Results do not depend on it
            beyond rounding.

    Returns:
        Scalar loss in the floating dtype of the inputs (float32 for float16 or
        bfloat16 input, which is computed in float32).

    References:
        K. Q. Weinberger and G. Tesauro, `Metric Learning for Kernel Regression
        <https://proceedings.mlr.press/v2/weinberger07a.html>`_, AISTATS 2007.
    """
    transform, x, y2 = _prepare(transform, x, y)
    b = sn.resolve_block_size(block_size, x.shape[0], x.dtype.itemsize)
    w = _checks.sample_weight(sample_weight, x.shape[0], x.dtype)
    return _mlkr_jit(transform, x, y2, w, b)


def _prepare(transform, x, y, xname="x", yname="y"):
    x = _checks.points(x, xname)
    transform = _checks.transform_matrix(transform, x.shape[1])
    y = _checks._asarray(y, yname)
    if np.ndim(y) not in (1, 2):
        raise ValueError(f"`{yname}` must have shape (n,) or (n, c), got {np.shape(y)}")
    if np.shape(y)[0] != np.shape(x)[0]:
        raise ValueError(f"`{yname}` has {np.shape(y)[0]} rows but `{xname}` has {np.shape(x)[0]}")
    if np.shape(x)[0] < 2:
        raise ValueError(f"MLKR needs at least 2 samples in `{xname}`, got n={np.shape(x)[0]}")
    # half precision is computed in float32 (see metricjax._checks.compute_dtype)
    dt = _checks.compute_dtype(x, transform, y)
    y = jnp.asarray(y, dt)
    y2 = y[:, None] if y.ndim == 1 else y
    return jnp.asarray(transform, dt), jnp.asarray(x, dt), y2


def kernel_regression(
    transform: Transform,
    x_train: Points,
    y_train: Targets,
    x_query: OtherPoints | None = None,
    *,
    sample_weight: SampleWeight | None = None,
) -> Float[Array, " m *c"]:
    r"""Nadaraya--Watson prediction with the learned metric (Gaussian kernel).

    :math:`\hat y(q) = \sum_j k(q, x_j) y_j / \sum_j k(q, x_j)` with
    :math:`k(q, x) = \exp(-\lVert L q - L x\rVert^2)`. With ``x_query=None`` it returns
    the leave-one-out predictions on the training set (self-weight 0), i.e. the
    :math:`\hat y` of :func:`mlkr_loss`. With ``sample_weight`` :math:`s`, the kernel
    of training point :math:`j` is multiplied by :math:`s_j` (as in :func:`mlkr_loss`):
    a training point of weight 0 is not used at all.

    Args:
        transform: :math:`L`, shape ``(k, d)``.
        x_train: ``(n, d)``.
        y_train: ``(n,)`` or ``(n, c)``.
        x_query: ``(m, d)`` or ``None``.
        sample_weight: weights :math:`s_j \ge 0` of the training points, shape
            ``(n,)`` (``None``: all 1). Not differentiated.

    Returns:
        Predictions of shape ``(m,)`` (or ``(m, c)``).

    Raises:
        ValueError: mismatched shapes (``x_query`` must have the width of ``x_train``),
            fewer than 2 training points.
        TypeError: complex or non-numeric input.
    """
    from metricjax._distances import pairwise_sq_transformed

    transform, x_train, y2 = _prepare(transform, x_train, y_train, "x_train", "y_train")
    if x_query is not None:
        x_query = _checks.points(x_query, "x_query")
        _checks.same_width(x_train, x_query, "x_train", "x_query")
    if x_query is None:
        d = pairwise_sq_transformed(x_train, transform)
        i = jnp.arange(d.shape[0])
        d = d.at[i, i].set(jnp.inf)
    else:
        d = pairwise_sq_transformed(jnp.asarray(x_query, x_train.dtype), transform, x_train)
    if sample_weight is not None:
        w = _checks.sample_weight(sample_weight, x_train.shape[0], x_train.dtype)
        d = jnp.where(w[None, :] > 0, d - jnp.log(jnp.where(w > 0, w, 1))[None, :], jnp.inf)
    p = jax.nn.softmax(-d, axis=1)
    out = jnp.matmul(p, y2, precision=jax.lax.Precision.HIGHEST)
    return out[:, 0] if np.ndim(y_train) == 1 else out


def mlkr_ridge_loss(
    transform: Transform,
    x: Points,
    y: Targets,
    weight: Float[ArrayLike, ""] | float,
    *,
    sample_weight: SampleWeight | None = None,
    block_size: int | str | None = "auto",
) -> Scalar:
    r"""MLKR loss plus a ridge penalty on the map: :math:`\ell(L) + w \lVert L \rVert_F^2`.

    .. math::
        \ell_w(L) = \sum_i \lVert \hat y_i - y_i \rVert^2 + w \sum_{ab} L_{ab}^2,
        \qquad \nabla_L \ell_w = \nabla_L \ell + 2 w L .

    Shrinking :math:`L` widens the Gaussian kernel :math:`\exp(-\lVert Lx - Lx'\rVert^2)`
    (a smoother regression), which is what the unpenalised loss lacks: on small data it
    drives a few rows of :math:`L` to large norms (a kernel narrower than the spacing of
    the points, a leave-one-out fit that does not generalise). The penalty's gradient is
    the closed form :math:`2wL` (``docs/derivations.md``); the MLKR part keeps its
    closed-form ``custom_vjp``. :class:`metricjax.estimators.MLKR` sets ``w`` from a
    dimensionless ``alpha`` so that the fit does not depend on the units of ``x`` or
    ``y``.

    Args:
        transform: :math:`L`, shape ``(k, d)``.
        x: inputs, shape ``(n, d)``.
        y: targets, shape ``(n,)`` or ``(n, c)``.
        weight: :math:`w \ge 0`, a scalar (an array, so that changing it does not
            recompile a fit).
        sample_weight: as in :func:`mlkr_loss` (weights the MLKR part; the penalty is
            not per point).
        block_size: as in :func:`mlkr_loss`.

    Returns:
        Scalar loss in the floating dtype of the inputs.
    """
    loss = mlkr_loss(transform, x, y, sample_weight=sample_weight, block_size=block_size)
    return loss + ridge_penalty(transform, weight)


def ridge_penalty(transform, weight):
    r"""The penalty :math:`w \lVert L \rVert_F^2` of :func:`mlkr_ridge_loss`, in the dtype of ``L``.

    Also added to the row-sharded MLKR loss by :class:`metricjax.estimators.MLKR`.
    """
    transform = jnp.asarray(transform)
    return jnp.asarray(weight, transform.dtype) * jnp.sum(transform**2)
