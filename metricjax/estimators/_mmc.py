r"""MMC estimators: Mahalanobis Metric for Clustering (Xing et al., 2002)."""

from metricjax.estimators._tuples import PairsLearner, SupervisedTuplesLearner, solve_in_dtype
from metricjax.solvers import mmc_solve

_MMC_ARGS = r"""
        max_iter: maximum number of outer iterations. Default 100.
        max_proj: maximum number of alternating projections per iteration (full
            metric only). Default 10000.
        tol: convergence tolerance (relative step :math:`\|\alpha\Delta\|_F/\|M\|_F`
            for the full metric, relative objective change for the diagonal one).
            Default 1e-3 (``MMC``) and 1e-6 (``MMC_Supervised``), as metric-learn.
        init: starting metric: ``"identity"`` (default), ``"covariance"``,
            ``"random"`` or a PSD ``(n_features, n_features)`` array.
        diagonal: learn a diagonal metric (Newton's method on its diagonal). Default
            False.
        diagonal_c: weight :math:`c` of the dissimilarity term with ``diagonal=True``.
            Default 1.0.
        verbose: print the number of iterations and whether the fit converged.
        preprocessor: ``None``, an array of points (pairs may then be given as
            ``(n_pairs, 2)`` indices into it) or a callable from indices to points.
        random_state: seed or ``numpy.random.RandomState`` for ``init="random"``."""

_MMC_ATTRS = r"""
        components_: :math:`L` with :math:`M = L^\top L`, shape ``(n_features,
            n_features)``, in the fitted dtype.
        n_iter_: number of outer iterations run (metric-learn's ``n_iter_`` is this
            minus one for the full metric).
        converged_: whether the tolerance test stopped the fit before ``max_iter``.
        n_features_in_: number of features seen during ``fit``."""

_REFERENCES = r"""
    References:
        E. P. Xing, A. Y. Ng, M. I. Jordan, S. Russell, `Distance Metric Learning with
        Application to Clustering with Side-Information
        <https://papers.nips.cc/paper/2164>`_, NIPS 2002."""


class _BaseMMC:
    """The solver call shared by :class:`MMC` and :class:`MMC_Supervised`."""

    def _fit_tuples(self, pairs, y):
        components, res = solve_in_dtype(
            mmc_solve, pairs, y, max_iter=self.max_iter, max_proj=self.max_proj,
            tol=self.tol, init=self.init, diagonal=self.diagonal,
            diagonal_c=self.diagonal_c, random_state=self.random_state,
        )  # fmt: skip
        if self.verbose:
            print(f"mmc: {int(res.n_iter)} iterations, converged={bool(res.converged)}")
        return {
            "components_": components,
            "n_iter_": int(res.n_iter),
            "converged_": bool(res.converged),
        }


class MMC(_BaseMMC, PairsLearner):
    __doc__ = (
        r"""Mahalanobis Metric for Clustering (MMC) from similar / dissimilar pairs.

    Solves :math:`\min_{M \succeq 0} \sum_{S} d_M(a, b)^2` subject to
    :math:`\sum_{D} d_M(c, d) \ge 1` (:func:`metricjax.solvers.mmc_solve`: projected
    gradient for the full metric, Newton for the diagonal one, compiled ``lax``
    loops). Same metric as metric-learn 0.7.0's ``MMC`` on the same pairs and
    hyperparameters.

    ``fit(pairs, y, calibration_params=None)`` learns the metric, then calibrates
    ``threshold_`` on the training pairs; ``decision_function``, ``predict``,
    ``score`` (ROC AUC), ``set_threshold`` and ``calibrate_threshold`` are
    metric-learn's.

    Args:"""
        + _MMC_ARGS
        + r"""

    Attributes:"""
        + _MMC_ATTRS
        + r"""
        threshold_: distance below which :meth:`predict` says similar.
"""
        + _REFERENCES
        + r"""

    Examples:
        >>> import numpy as np
        >>> from metricjax.estimators import MMC
        >>> pairs = np.array([[[1.2, 7.5], [1.3, 1.5]], [[6.4, 2.6], [6.2, 9.7]],
        ...                   [[1.3, 4.5], [3.2, 4.6]], [[6.2, 5.5], [5.4, 5.4]]])
        >>> mmc = MMC(random_state=0).fit(pairs, [1, 1, -1, -1])
        >>> mmc.predict(pairs).tolist()
        [1, 1, -1, -1]
    """
    )

    def __init__(
        self,
        *,
        max_iter=100,
        max_proj=10000,
        tol=1e-3,
        init="identity",
        diagonal=False,
        diagonal_c=1.0,
        verbose=False,
        preprocessor=None,
        random_state=None,
    ):
        self.max_iter = max_iter
        self.max_proj = max_proj
        self.tol = tol
        self.init = init
        self.diagonal = diagonal
        self.diagonal_c = diagonal_c
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state

    def fit(self, pairs, y, calibration_params=None):
        """Learn the metric from pairs, then calibrate ``threshold_`` on them.

        Args:
            pairs: ``(n_pairs, 2, n_features)`` or ``(n_pairs, 2)`` indices into the
                ``preprocessor``.
            y: ``(n_pairs,)``, ``+1`` similar and ``-1`` dissimilar (both needed).
            calibration_params: keyword arguments of :meth:`calibrate_threshold`.

        Returns:
            ``self``.

        Raises:
            ValueError: bad pairs, labels or hyperparameters; the estimator is then
                left unchanged.
        """
        return self._fit_pairs(pairs, y, calibration_params)


class MMC_Supervised(_BaseMMC, SupervisedTuplesLearner):
    __doc__ = (
        r"""MMC from class labels: pairs drawn as metric-learn's ``MMC_Supervised`` draws them.

    ``fit(X, y)`` draws ``n_constraints`` similar and as many dissimilar pairs with
    :class:`metricjax.constraints.Constraints` (the same draws as metric-learn 0.7.0
    for the same ``random_state``) and fits :class:`MMC` on them.

    Args:"""
        + _MMC_ARGS
        + r"""
        n_constraints: number of similar and of dissimilar pairs to draw; ``None``
            means ``20 * n_classes**2``.

    Attributes:"""
        + _MMC_ATTRS
        + "\n"
        + _REFERENCES
        + r"""

    Examples:
        >>> from sklearn.datasets import load_iris
        >>> from metricjax.estimators import MMC_Supervised
        >>> X, y = load_iris(return_X_y=True)
        >>> mmc = MMC_Supervised(n_constraints=200, random_state=0).fit(X, y)
        >>> mmc.transform(X).shape
        (150, 4)
    """
    )

    def __init__(
        self,
        *,
        max_iter=100,
        max_proj=10000,
        tol=1e-6,
        n_constraints=None,
        init="identity",
        diagonal=False,
        diagonal_c=1.0,
        verbose=False,
        preprocessor=None,
        random_state=None,
    ):
        self.max_iter = max_iter
        self.max_proj = max_proj
        self.tol = tol
        self.n_constraints = n_constraints
        self.init = init
        self.diagonal = diagonal
        self.diagonal_c = diagonal_c
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state

    def fit(self, X, y):
        """Draw pairs from the labels and learn the MMC metric.

        Args:
            X: points ``(n_samples, n_features)`` (or 1-D indices with a
                ``preprocessor``).
            y: class labels ``(n_samples,)`` (at least 2 classes).

        Returns:
            ``self``.
        """
        return self._supervised_fit(X, y)
