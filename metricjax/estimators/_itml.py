r"""ITML estimators: Information-Theoretic Metric Learning (Davis et al., 2007)."""

import warnings

import numpy as np

from metricjax.estimators import _tuples
from metricjax.estimators._base import class_doc
from metricjax.estimators._tuples import PairsLearner, SupervisedTuplesLearner, fit_solver
from metricjax.solvers import itml_solve

_ITML_ARGS = _tuples.tuples_args(
    r"""
        gamma: slack weight :math:`\gamma > 0` (``inf``: hard constraints). Default 1.0.
        max_iter: maximum number of sweeps over the constraints. Default 1000.
        tol: convergence tolerance on the dual variables (the relative :math:`L_1`
            change of :math:`\lambda` over a sweep). Default 1e-3.
        prior: the prior Mahalanobis matrix :math:`M_0`: ``"identity"`` (default),
            ``"covariance"`` (inverse covariance of the distinct points of the pairs),
            ``"random"`` (a random SPD matrix from ``random_state``) or a symmetric
            positive definite ``(n_features, n_features)`` array.
        verbose: print the number of sweeps and whether the fit converged.""",
    "pairs",
    "(n_pairs, 2)",
    '``prior="random"``',
)

_ITML_ATTRS = (
    r"""
        components_: :math:`L` with :math:`M = L^\top L`, shape ``(n_features,
            n_features)`` (metric-learn's ``components_from_metric``), in the fitted dtype.
        bounds_: the bounds :math:`(u, \ell)` used, shape ``(2,)``.
        n_iter_: number of sweeps run (metric-learn's ``n_iter_`` is this minus one).
        converged_: whether the tolerance test stopped the fit before ``max_iter``."""
    + _tuples.N_FEATURES_ATTR
)

_REFERENCES = r"""
        J. V. Davis, B. Kulis, P. Jain, S. Sra, I. S. Dhillon, `Information-Theoretic
        Metric Learning <https://doi.org/10.1145/1273496.1273523>`_, ICML 2007."""


class _BaseITML:
    """The solver call shared by :class:`ITML` and :class:`ITML_Supervised`."""

    def _fit_tuples(self, pairs, y, *, bounds=None):
        fitted = fit_solver(
            self, ("n_iter", "converged", "bounds"), itml_solve, pairs, y, gamma=self.gamma,
            max_iter=self.max_iter, tol=self._renamed("tol", "convergence_threshold"),
            prior=self.prior, bounds=bounds, random_state=self.random_state,
        )  # fmt: skip
        fitted["bounds_"] = fitted["bounds_"].astype(np.float64)
        return fitted


class ITML(_BaseITML, PairsLearner):
    __doc__ = class_doc(
        r"""Information-Theoretic Metric Learning (ITML) from similar / dissimilar pairs.

    Minimises the LogDet divergence :math:`D_{\ell d}(M, M_0)` to the prior subject to
    :math:`d_M(a, b) \le u` for similar and :math:`d_M(c, d) \ge \ell` for dissimilar
    pairs (squared distances, with slack weighted by ``gamma``), by cyclic Bregman
    projections (:func:`metricjax.solvers.itml_solve`, compiled ``lax`` loops). Same
    metric as metric-learn 0.7.0's ``ITML`` on the same pairs and hyperparameters.

    ``fit(pairs, y, bounds=None, calibration_params=None)`` learns the metric, then
    calibrates ``threshold_`` on the training pairs; ``decision_function`` (pair
    scores), ``predict`` (``+1`` similar / ``-1``), ``score`` (ROC AUC),
    ``set_threshold`` and ``calibrate_threshold`` are metric-learn's.""",
        args=_ITML_ARGS + _tuples.CONVERGENCE_THRESHOLD_ARG,
        attrs=_ITML_ATTRS + _tuples.THRESHOLD_ATTR,
        references=_REFERENCES,
        examples=_tuples.pairs_example("ITML"),
    )

    def __init__(
        self,
        gamma=1.0,
        max_iter=1000,
        tol=1e-3,
        prior="identity",
        verbose=False,
        preprocessor=None,
        random_state=None,
        convergence_threshold="deprecated",
    ):
        self._set_params(locals())

    def fit(self, pairs, y, bounds=None, calibration_params=None):
        r"""Learn the metric from pairs, then calibrate ``threshold_`` on them.

        Args:
            pairs: ``(n_pairs, 2, n_features)`` or ``(n_pairs, 2)`` indices into the
                ``preprocessor``.
            y: ``(n_pairs,)``, ``+1`` similar and ``-1`` dissimilar (both needed).
            bounds: :math:`(u, \ell)` on the squared learned distances; ``None``: the
                5th and 95th percentiles of the Euclidean distances between the
                distinct points of ``pairs`` (metric-learn's default).
            calibration_params: keyword arguments of :meth:`calibrate_threshold`.

        Returns:
            ``self``.

        Raises:
            ValueError: bad pairs, labels, bounds or hyperparameters; the estimator is
                then left unchanged.
        """
        return self._fit_pairs(pairs, y, calibration_params, bounds=bounds)


class ITML_Supervised(_BaseITML, SupervisedTuplesLearner):
    __doc__ = class_doc(
        r"""ITML from class labels: pairs drawn as metric-learn's ``ITML_Supervised`` draws them.

    ``fit(X, y, bounds=None)`` draws ``n_constraints`` similar (same class) and as many
    dissimilar pairs with :class:`metricjax.constraints.Constraints` (the same draws as
    metric-learn 0.7.0 for the same ``random_state``; integer labels ``< 0`` mark
    unlabelled points) and fits :class:`ITML` on them.""",
        args=_ITML_ARGS + _tuples.SUPERVISED_PAIRS_ARGS + _tuples.CONVERGENCE_THRESHOLD_ARG,
        attrs=_ITML_ATTRS,
        references=_REFERENCES,
        examples=_tuples.supervised_example("ITML_Supervised"),
    )

    def __init__(
        self,
        gamma=1.0,
        max_iter=1000,
        tol=1e-3,
        n_constraints=None,
        prior="identity",
        verbose=False,
        preprocessor=None,
        random_state=None,
        num_constraints="deprecated",
        convergence_threshold="deprecated",
    ):
        self._set_params(locals())

    def fit(self, X, y, bounds=None):
        r"""Draw pairs from the labels and learn the ITML metric.

        Args:
            X: points ``(n_samples, n_features)`` (or 1-D indices with a
                ``preprocessor``).
            y: class labels ``(n_samples,)`` (at least 2 classes). A negative
                integer label marks an unlabelled point (metric-learn's
                convention): it draws no constraint, with a ``UserWarning``.
            bounds: :math:`(u, \ell)`, as in :meth:`ITML.fit`.

        Returns:
            ``self``.
        """
        return self._supervised_fit(X, y, bounds=bounds)

    def _draw(self, X, labels, n_constraints, random_state):
        """The drawn pairs without the dissimilar ones of two identical rows.

        Duplicate rows of ``X`` with different labels make dissimilar pairs at distance 0
        for every metric, which ITML's constraints cannot hold (``ITML.fit`` refuses
        them): those pairs are dropped, with a ``UserWarning`` that says how many.
        """
        pairs, y, more = super()._draw(X, labels, n_constraints, random_state)
        collapsed = (y == -1) & np.all(pairs[:, 0] == pairs[:, 1], axis=1)
        n_bad, n_neg = int(collapsed.sum()), int(np.sum(y == -1))
        if n_bad == n_neg and n_bad:
            raise ValueError(
                "`X`: every dissimilar pair drawn joins two identical rows with different "
                "labels (duplicate points); no metric separates them"
            )
        if n_bad:
            warnings.warn(
                f"ITML_Supervised: dropped {n_bad} of the {n_neg} dissimilar pairs drawn: "
                "each joins two identical rows of `X` with different labels (duplicate "
                "points), which no metric separates",
                UserWarning,
                stacklevel=4,
            )
            pairs, y = pairs[~collapsed], y[~collapsed]
        return pairs, y, more
