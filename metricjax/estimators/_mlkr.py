"""MLKR estimator: Metric Learning for Kernel Regression (Weinberger & Tesauro, 2007)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted

from metricjax.estimators._base import (
    BATCH_ARGS,
    COMMON_ARGS,
    COMMON_ATTRS,
    SoftNeighbourLearner,
    check_block_size,
    check_mesh,
)
from metricjax.losses import kernel_regression, mlkr_loss, sharded_mlkr_loss


@functools.cache
def _mlkr_objective(block_size, mesh=None):
    """One loss object per block size (and mesh), so refits reuse the compiled loop."""
    if mesh is not None:
        return functools.partial(sharded_mlkr_loss, block_size=block_size, mesh=mesh)
    return functools.partial(mlkr_loss, block_size=block_size)


class MLKR(RegressorMixin, SoftNeighbourLearner):
    __doc__ = (
        r"""Metric Learning for Kernel Regression (MLKR).

    Learns :math:`L` minimising the leave-one-out Nadaraya--Watson regression error
    with the Gaussian kernel :math:`k(x, x') = \exp(-\lVert Lx - Lx'\rVert^2)`
    (:func:`metricjax.losses.mlkr_loss`):

    .. math::
        \ell(L) = \sum_i (\hat y_i - y_i)^2, \qquad
        \hat y_i = \frac{\sum_{j \ne i} k(x_i, x_j)\, y_j}{\sum_{j \ne i} k(x_i, x_j)}.

    Besides ``transform`` (a supervised dimensionality reduction), the estimator is
    a regressor: :meth:`predict` is kernel regression against the training data with
    the learned metric, and ``score`` its :math:`R^2`. Since the kernel has unit
    bandwidth, the scale of ``X`` matters for the initial transformation: standardise
    the features (e.g. ``Pipeline([StandardScaler(), MLKR()])``).

    Args:"""
        + COMMON_ARGS
        + BATCH_ARGS
        + r"""
    Attributes:"""
        + COMMON_ATTRS
        + r"""        X_train_: training inputs used by :meth:`predict`.
        y_train_: training targets used by :meth:`predict`.

    References:
        K. Q. Weinberger and G. Tesauro, `Metric Learning for Kernel Regression
        <https://proceedings.mlr.press/v2/weinberger07a.html>`_, AISTATS 2007.

    Examples:
        >>> from sklearn.datasets import load_diabetes
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import StandardScaler
        >>> from metricjax.estimators import MLKR
        >>> X, y = load_diabetes(return_X_y=True)
        >>> model = make_pipeline(StandardScaler(), MLKR(n_components=2))
        >>> model = model.fit(X, y / y.std())
        >>> model.transform(X).shape
        (442, 2)
        >>> bool(model.score(X, y / y.std()) > 0.3)
        True
    """
    )

    _classification = False

    def _objective(self, X, y, classes):
        loss = _mlkr_objective(check_block_size(self.block_size), check_mesh(self.mesh))
        # copies of the (validated) training data, for predict
        return loss, (y,), {"X_train_": np.array(X), "y_train_": np.array(y)}

    def predict(self, X):
        r"""Kernel-regression prediction with the learned metric.

        :math:`\hat y(x) = \sum_j k(x, x_j) y_j / \sum_j k(x, x_j)` over the training
        points :math:`x_j` (all of them: a training point queried again gets its own
        weight, unlike the leave-one-out estimate minimised by ``fit``), with
        :math:`k(x, x') = \exp(-\lVert Lx - Lx'\rVert^2)`:
        :func:`metricjax.losses.kernel_regression` (max-shifted softmax, no underflow to
        0/0), in blocks of queries of about 32 MiB.

        Args:
            X: array-like of shape ``(n_queries, n_features)``.

        Returns:
            Predictions, shape ``(n_queries,)``, in the dtype of ``X`` and the model.
        """
        check_is_fitted(self, "components_")
        X = self._points(X, reset=False)
        dt = np.result_type(X.dtype, self.components_.dtype)
        step = max(1, (2**22) // max(1, self.X_train_.shape[0]))  # ~32 MiB per block
        with jax.enable_x64(dt == np.float64):
            L, xt, yt = (jnp.asarray(a, dt) for a in (self.components_, self.X_train_, self.y_train_))
            parts = [
                np.asarray(kernel_regression(L, xt, yt, jnp.asarray(X[s : s + step], dt)))
                for s in range(0, X.shape[0], step)
            ]
        return np.concatenate(parts).astype(dt, copy=False)
