r"""Flax (``flax.nnx``) layers: a learnable Mahalanobis metric for neural networks.

:class:`MahalanobisMetric` holds a linear map :math:`L` (shape ``(k, d)``) as an
``nnx.Param`` and computes squared distances in the metric :math:`M = L^\top L`,

.. math::
    D_{ij} = \lVert L x_i - L y_j \rVert^2 = (x_i - y_j)^\top L^\top L \, (x_i - y_j),

through :func:`metricjax.pairwise_sq_transformed`, so the gradients with respect to
``L`` and to the inputs use the closed-form derivative rules of the core (reverse
mode never forms an ``(n, m, d)`` array). Parametrising by :math:`L` rather than
:math:`M` makes the metric positive semi-definite by construction: every update of
``L`` by any optimizer gives a valid (pseudo-)metric, with no projection step.

Put it after a feature extractor to train a *metric head*::

    from flax import nnx
    from metricjax.nn import MahalanobisMetric

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.body = nnx.Linear(64, 32, rngs=rngs)
            self.head = MahalanobisMetric(32, 8, init="orthogonal", rngs=rngs)

        def __call__(self, x):            # (n, 64) -> (n, n) squared distances
            return self.head(nnx.relu(self.body(x)))

The module works under ``nnx.jit``, ``nnx.grad`` and ``nnx.value_and_grad`` and
with ``nnx.Optimizer``. This module needs flax, metricjax's optional extra
(``pip install "metricjax[flax]"``).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

try:
    from flax import nnx
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        'metricjax.nn needs flax (an optional extra); install it with pip install "metricjax[flax]" '
        '(or pip install "flax>=0.12")'
    ) from err

from metricjax import _checks
from metricjax._distances import pairwise_sq_transformed
from metricjax._typing import Array, Float, OtherPoints, Pairwise, Points
from metricjax.exceptions import InvalidParameterError

__all__ = ["MahalanobisMetric"]

_INITS = ("identity", "orthogonal", "normal")


class MahalanobisMetric(nnx.Module):
    r"""A learnable squared Mahalanobis distance :math:`\lVert Lx - Ly\rVert^2`.

    The parameter is the map :math:`L \in \mathbb R^{k\times d}` (``self.transform``,
    an ``nnx.Param``); the metric :math:`M = L^\top L` is positive semi-definite for
    every value of :math:`L` (of rank at most ``k``, so ``k < d`` learns a low-rank
    metric and a ``k``-dimensional embedding). Calling the module returns the matrix
    of squared distances

    .. math::
        D_{ij} = \lVert L x_i - L y_j \rVert^2 = (x_i - y_j)^\top L^\top L\,(x_i - y_j),

    computed by :func:`metricjax.pairwise_sq_transformed` (centred, clamped at 0, an
    exact zero diagonal in the self case) with its closed-form derivative rules: the
    gradient of a loss with cotangent :math:`G = \partial \ell / \partial D` is

    .. math::
        \frac{\partial \ell}{\partial L} = 2 L \sum_{ij} G_{ij}\,(x_i - y_j)(x_i - y_j)^\top,

    evaluated without an ``(n, m, d)`` intermediate.

    Args:
        in_features: input dimension :math:`d`.
        out_features: embedding dimension :math:`k` (rows of :math:`L`); ``None``
            means ``in_features`` (a full-rank metric).
        init: initial :math:`L`. ``"identity"`` (default): the first ``k`` rows of
            the identity, so a square layer starts as the Euclidean distance.
            ``"orthogonal"``: orthonormal rows (``k <= d``) or columns (``k > d``),
            drawn from ``rngs``. ``"normal"``: entries
            :math:`\mathcal N(0, 1/d)`, drawn from ``rngs`` (then
            :math:`\mathbb E[M] = (k/d) I`). A flax initializer
            ``init(key, shape, dtype)``, drawn from ``rngs``. Or an array of shape
            ``(k, d)``, e.g. the ``components_`` of a fitted
            :class:`metricjax.NCA` (copied).
        param_dtype: dtype of :math:`L`; ``None`` means the dtype of an array
            ``init``, else ``float32`` (``float64`` needs ``jax_enable_x64``).
        rngs: ``nnx.Rngs``; needed only by the random inits (its ``params`` stream
            is used).

    Attributes:
        transform: ``nnx.Param`` holding :math:`L`, shape ``(k, d)``.
        in_features: :math:`d`.
        out_features: :math:`k`.

    Raises:
        ValueError: a bad ``init`` name or shape, or non-positive dimensions.
        TypeError: a random ``init`` without ``rngs``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from metricjax.nn import MahalanobisMetric
        >>> layer = MahalanobisMetric(2, init=jnp.array([[2.0, 0.0], [0.0, 1.0]]))
        >>> layer(jnp.array([[0.0, 0.0], [1.0, 1.0]]))
        Array([[0., 5.],
               [5., 0.]], dtype=float32)
        >>> layer.metric()
        Array([[4., 0.],
               [0., 1.]], dtype=float32)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int | None = None,
        *,
        init: str | Callable | jax.Array | np.ndarray = "identity",
        param_dtype=None,
        rngs: nnx.Rngs | None = None,
    ):
        d = _positive_int(in_features, "in_features")
        k = d if out_features is None else _positive_int(out_features, "out_features")
        self.in_features = d
        self.out_features = k
        self.transform = nnx.Param(_initial_transform(init, k, d, param_dtype, rngs))

    # -- distances -------------------------------------------------------------------
    def __call__(self, x: Points, y: OtherPoints | None = None) -> Pairwise:
        r"""Squared distances in the learned metric.

        .. math::
            D_{ij} = \lVert L x_i - L y_j \rVert^2

        Args:
            x: points, shape ``(n, d)``.
            y: points, shape ``(m, d)``; ``None`` means ``y = x`` (then ``D`` is
                symmetric with an exact zero diagonal).

        Returns:
            Array of shape ``(n, m)`` (``(n, n)`` for ``y=None``), never negative,
            in the common floating dtype of the inputs and :math:`L`.
        """
        return pairwise_sq_transformed(x, self.transform[...], y)

    def embed(self, x: Points) -> Float[Array, "n k"]:
        r"""The embedding :math:`z_i = L x_i`, i.e. ``x @ L.T``.

        Euclidean distances between embeddings are the learned distances, so the
        embedding can go to any Euclidean method (nearest neighbours, plots).

        Args:
            x: array of shape ``(..., d)``.

        Returns:
            Array of shape ``(..., k)``, in the common floating dtype of ``x`` and
            :math:`L`.
        """
        L = self.transform[...]
        x = jnp.asarray(x)
        dt = _checks.float_dtype(x, L)  # as pairwise_sq_transformed: ints become floats
        if jnp.shape(x)[-1:] != (self.in_features,):
            raise ValueError(f"`x` must have shape (..., {self.in_features}), got {jnp.shape(x)}")
        return jnp.matmul(x.astype(dt), L.T.astype(dt), precision=jax.lax.Precision.HIGHEST)

    def metric(self) -> Float[Array, "d d"]:
        r"""The Mahalanobis matrix :math:`M = L^\top L` (``(d, d)``, symmetric PSD)."""
        L = self.transform[...]
        return jnp.matmul(L.T, L, precision=jax.lax.Precision.HIGHEST)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"`{name}` must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1, got {value}")
    return int(value)


def _needs_rngs(rngs, init_name: str):
    if rngs is None:
        raise TypeError(f"init={init_name!r} draws random numbers: pass `rngs=nnx.Rngs(seed)`")
    return rngs.params()


def _initial_transform(init, k: int, d: int, param_dtype, rngs) -> jax.Array:
    if isinstance(init, str):
        if init not in _INITS:
            raise ValueError(
                f"`init` must be one of {_INITS}, an initializer or a (k, d) array, got {init!r}"
            )
        dtype = jnp.float32 if param_dtype is None else param_dtype
        if init == "identity":
            return jnp.eye(k, d, dtype=dtype)
        key = _needs_rngs(rngs, init)
        if init == "orthogonal":
            return nnx.initializers.orthogonal()(key, (k, d), dtype)
        return jax.random.normal(key, (k, d), dtype) / np.sqrt(d)
    if callable(init) and not hasattr(init, "shape"):
        dtype = jnp.float32 if param_dtype is None else param_dtype
        out = jnp.asarray(
            init(_needs_rngs(rngs, getattr(init, "__name__", "initializer")), (k, d), dtype)
        )
    else:
        out = jnp.array(init, dtype=param_dtype)  # a copy
        if not jnp.issubdtype(out.dtype, jnp.floating):
            out = out.astype(jnp.float32)
    if out.shape != (k, d):
        raise ValueError(
            f"`init` must have shape (out_features, in_features) = {(k, d)}, got {out.shape}"
        )
    return out
