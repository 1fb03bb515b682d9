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
    CONTINUE_ARGS,
    SoftNeighbourLearner,
    check_block_size,
    check_mesh,
    check_real,
    class_doc,
    median_sq_distance,
)
from metricjax.losses import kernel_regression, mlkr_ridge_loss, sharded_mlkr_loss
from metricjax.losses._mlkr import ridge_penalty


def _sharded_mlkr_ridge(transform, x, y, weight, *, block_size, mesh, sample_weight=None):
    """:func:`metricjax.losses.mlkr_ridge_loss` with the rows split over ``mesh``."""
    loss = sharded_mlkr_loss(transform, x, y, sample_weight=sample_weight,
                             block_size=block_size, mesh=mesh)  # fmt: skip
    return loss + ridge_penalty(transform, weight)


@functools.cache
def _mlkr_objective(block_size, mesh=None):
    """One loss object per block size (and mesh), so refits reuse the compiled loop."""
    if mesh is not None:
        return functools.partial(_sharded_mlkr_ridge, block_size=block_size, mesh=mesh)
    return functools.partial(mlkr_ridge_loss, block_size=block_size)


def _weighted_mlkr_ridge(transform, x, y, sample_weight, weight, *, block_size, mesh=None):
    """:func:`metricjax.losses.mlkr_ridge_loss` (or its row-sharded version on ``mesh``)
    with the sample weights as a data argument."""
    if mesh is not None:
        return _sharded_mlkr_ridge(transform, x, y, weight, block_size=block_size, mesh=mesh,
                                   sample_weight=sample_weight)  # fmt: skip
    return mlkr_ridge_loss(transform, x, y, weight, sample_weight=sample_weight,
                           block_size=block_size)  # fmt: skip


@functools.cache
def _weighted_mlkr_objective(block_size, mesh=None):
    """One weighted loss object per block size and mesh (refits and sweeps reuse the
    compiled loop)."""
    return functools.partial(_weighted_mlkr_ridge, block_size=block_size, mesh=mesh)


def ridge_weight(X, y, alpha: float, k: int, sample_weight=None) -> float:
    r"""MLKR's penalty weight :math:`w = \alpha\,\mathrm{SST}\,m / k` for data ``(X, y)``.

    :math:`\mathrm{SST} = \sum_i s_i (y_i - \bar y)^2` (weighted mean :math:`\bar y`),
    :math:`m` the (weighted) median squared pairwise distance of ``X``
    (:func:`median_sq_distance`), :math:`k` the number of components: the penalty at
    the scaled initial map (median embedded squared distance 1,
    :math:`\lVert L_0\rVert_F^2 \approx k / m`) is about :math:`\alpha\,\mathrm{SST}`,
    the loss of predicting the mean. ``alpha`` is dimensionless.
    """
    return alpha * weighted_sst(y, sample_weight) * median_sq_distance(X, sample_weight) / max(k, 1)


def weighted_sst(y, sample_weight=None) -> float:
    r""":math:`\mathrm{SST} = \sum_i s_i (y_i - \bar y)^2` of targets ``(n,)``, :math:`\bar y`
    their weighted mean (all :math:`s_i = 1` without ``sample_weight``; then in the
    dtype of ``y``, else in float64)."""
    if sample_weight is None:
        return float(np.sum((y - np.mean(y, axis=0)) ** 2))
    y, s = np.asarray(y, np.float64), np.asarray(sample_weight, np.float64)
    return float(np.sum(s * (y - np.average(y, axis=0, weights=s)) ** 2))


def target_scale(y, sample_weight=None) -> float:
    r"""The spread :math:`\sqrt{\mathrm{SST} / \sum_i s_i}` of the targets (1 if they are constant).

    MLKR's loss and ridge penalty are both proportional to :math:`y^2`, so ``fit`` gives
    the optimiser ``y / target_scale(y)``: the same minimiser, at a loss of order ``n``
    whatever the units of ``y``.
    """
    y = np.asarray(y, np.float64)
    total = len(y) if sample_weight is None else float(np.sum(sample_weight))
    spread = float(np.sqrt(weighted_sst(y, sample_weight) / total))
    return spread if np.isfinite(spread) and spread > 0 else 1.0


#: Default ridge strength of :class:`MLKR` (see its ``alpha``), chosen by measurement.
DEFAULT_ALPHA = 0.01


class MLKR(RegressorMixin, SoftNeighbourLearner):
    __doc__ = class_doc(
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

    **Regularisation and scale.** ``fit`` minimises the loss plus a ridge penalty
    :math:`w\lVert L\rVert_F^2` (:func:`metricjax.losses.mlkr_ridge_loss`) with
    :math:`w = \alpha \sum_i (y_i - \bar y)^2 \, m / k`, :math:`m` the median squared
    pairwise distance of ``X`` and :math:`k` the number of components: ``alpha`` is
    dimensionless (at the initial map the penalty is about ``alpha`` times the loss of
    predicting the mean). A string ``init`` is rescaled so that the median squared
    pairwise distance of the initial embedding is 1. Both make the fit independent of
    the units of ``X`` and ``y``. ``alpha=0`` is metric-learn's unpenalised MLKR, which
    overfits small data (diabetes, 309 training rows: rows of ``L`` with norms of 6 and
    11, ``predict`` R² 0.03 and -0.17 on two splits, 0.41 and 0.43 with the default).""",
        args=r"""
        alpha: ridge strength :math:`\alpha \ge 0` (dimensionless, see above); the
            default :data:`DEFAULT_ALPHA` (``0.01``) was the best of 0, 0.01, 0.1, 1 on
            diabetes and ``make_friedman1`` with 10 noise features."""
        + COMMON_ARGS
        + BATCH_ARGS
        + CONTINUE_ARGS,
        attrs=COMMON_ATTRS
        + r"""        X_train_: training inputs used by :meth:`predict` (the samples of positive
            weight).
        y_train_: training targets used by :meth:`predict`.
        sample_weight_train_: ``None``, or the positive weights (counts of copies)
            of the training samples: :meth:`predict` weighs each one's kernel by it.
        ridge_weight_: the penalty weight :math:`w` used (``loss_history_`` holds
            :func:`metricjax.losses.mlkr_ridge_loss` with it).""",
        references="""
        K. Q. Weinberger and G. Tesauro, `Metric Learning for Kernel Regression
        <https://proceedings.mlr.press/v2/weinberger07a.html>`_, AISTATS 2007.""",
        examples="""
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
        True""",
    )

    _classification = False
    _unit_free_init = True

    def __init__(
        self,
        n_components=None,
        init="auto",  # metric-learn's order up to random_state (positional ports work)
        tol=None,
        max_iter=1000,
        verbose=False,
        preprocessor=None,
        random_state=None,
        *,
        alpha=DEFAULT_ALPHA,
        optimizer=None,
        block_size="auto",
        batch_size=None,
        mesh=None,
        warm_start=False,
        callback=None,
    ):
        self._set_params(locals())  # SoftNeighbourLearner's arguments and alpha

    def _n_components_or_features(self, n_features: int) -> int:
        return n_features if self.n_components is None else int(self.n_components)

    def _objective(self, X, y, classes, sample_weight=None):
        block_size, mesh = check_block_size(self.block_size), check_mesh(self.mesh)
        alpha = check_real(self.alpha, "alpha", 0.0)
        k = self._n_components_or_features(X.shape[1])
        # The loss and its ridge weight scale with y**2 and their minimiser does not:
        # the optimiser sees y / scale (unit spread), so that its stopping tests (a change
        # relative to max(|f|, 1), an absolute gradient norm) do not end a fit of small
        # targets at its first step; losses are reported in the units of y (_loss_unit).
        scale = target_scale(y, sample_weight)
        y_fit = np.asarray(y / scale, X.dtype)
        w_fit = ridge_weight(X, y_fit, alpha, k, sample_weight)
        weight = np.asarray(w_fit, X.dtype)
        # copies of the (validated) training data, for predict
        fitted = {
            "X_train_": np.array(X),
            "y_train_": np.array(y),
            "sample_weight_train_": None if sample_weight is None else np.array(sample_weight),
            "ridge_weight_": float(np.asarray(w_fit * scale**2, X.dtype)),
            "_loss_unit": scale**2,
        }
        if sample_weight is None:
            return _mlkr_objective(block_size, mesh), (y_fit, weight), fitted
        sw = np.asarray(sample_weight, X.dtype)
        return _weighted_mlkr_objective(block_size, mesh), (y_fit, sw, weight), fitted

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
            L, xt, yt = (
                jnp.asarray(a, dt) for a in (self.components_, self.X_train_, self.y_train_)
            )
            sw = getattr(self, "sample_weight_train_", None)
            sw = None if sw is None else jnp.asarray(sw, dt)
            parts = [
                np.asarray(kernel_regression(L, xt, yt, jnp.asarray(X[s : s + step], dt),
                                             sample_weight=sw))  # fmt: skip
                for s in range(0, X.shape[0], step)
            ]
        return np.concatenate(parts).astype(dt, copy=False)
