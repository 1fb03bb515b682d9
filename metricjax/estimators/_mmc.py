r"""MMC estimators: Mahalanobis Metric for Clustering (Xing et al., 2002)."""

from metricjax.estimators import _tuples
from metricjax.estimators._base import class_doc
from metricjax.estimators._tuples import PairsLearner, SupervisedTuplesLearner, fit_solver
from metricjax.solvers import mmc_solve

_MMC_ARGS = _tuples.tuples_args(
    r"""
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
        verbose: print the number of iterations and whether the fit converged.""",
    "pairs",
    "(n_pairs, 2)",
    '``init="random"``',
)

_MMC_ATTRS = (
    _tuples.COMPONENTS_ATTR
    + r"""
        n_iter_: number of outer iterations run (metric-learn's ``n_iter_`` is this
            minus one for the full metric).
        converged_: whether the tolerance test stopped the fit before ``max_iter``."""
    + _tuples.N_FEATURES_ATTR
)

_REFERENCES = r"""
        E. P. Xing, A. Y. Ng, M. I. Jordan, S. Russell, `Distance Metric Learning with
        Application to Clustering with Side-Information
        <https://papers.nips.cc/paper/2164>`_, NIPS 2002."""


class _BaseMMC:
    """The solver call shared by :class:`MMC` and :class:`MMC_Supervised`."""

    def _fit_tuples(self, pairs, y):
        return fit_solver(
            self, ("n_iter", "converged"), mmc_solve, pairs, y, max_iter=self.max_iter,
            max_proj=self.max_proj, tol=self._renamed("tol", "convergence_threshold"),
            init=self.init, diagonal=self.diagonal, diagonal_c=self.diagonal_c,
            random_state=self.random_state,
        )  # fmt: skip


class MMC(_BaseMMC, PairsLearner):
    __doc__ = class_doc(
        r"""Mahalanobis Metric for Clustering (MMC) from similar / dissimilar pairs.

    Solves :math:`\min_{M \succeq 0} \sum_{S} d_M(a, b)^2` subject to
    :math:`\sum_{D} d_M(c, d) \ge 1` (:func:`metricjax.solvers.mmc_solve`: projected
    gradient for the full metric, Newton for the diagonal one, compiled ``lax``
    loops). Same metric as metric-learn 0.7.0's ``MMC`` on the same pairs and
    hyperparameters.

    ``fit(pairs, y, calibration_params=None)`` learns the metric, then calibrates
    ``threshold_`` on the training pairs; ``decision_function``, ``predict``,
    ``score`` (ROC AUC), ``set_threshold`` and ``calibrate_threshold`` are
    metric-learn's.""",
        args=_MMC_ARGS + _tuples.CONVERGENCE_THRESHOLD_ARG,
        attrs=_MMC_ATTRS + _tuples.THRESHOLD_ATTR,
        references=_REFERENCES,
        examples=_tuples.pairs_example("MMC"),
    )

    def __init__(
        self,
        max_iter=100,
        max_proj=10000,
        tol=1e-3,
        init="identity",
        diagonal=False,
        diagonal_c=1.0,
        verbose=False,
        preprocessor=None,
        random_state=None,
        convergence_threshold="deprecated",
    ):
        self._set_params(locals())


class MMC_Supervised(_BaseMMC, SupervisedTuplesLearner):
    __doc__ = class_doc(
        r"""MMC from class labels: pairs drawn as metric-learn's ``MMC_Supervised`` draws them.

    ``fit(X, y)`` draws ``n_constraints`` similar and as many dissimilar pairs with
    :class:`metricjax.constraints.Constraints` (the same draws as metric-learn 0.7.0
    for the same ``random_state``) and fits :class:`MMC` on them.""",
        args=_MMC_ARGS + _tuples.SUPERVISED_PAIRS_ARGS + _tuples.CONVERGENCE_THRESHOLD_ARG,
        attrs=_MMC_ATTRS,
        references=_REFERENCES,
        examples=_tuples.supervised_example("MMC_Supervised"),
    )

    def __init__(
        self,
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
        num_constraints="deprecated",
        convergence_threshold="deprecated",
    ):
        self._set_params(locals())
