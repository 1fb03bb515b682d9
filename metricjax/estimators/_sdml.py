r"""SDML estimators: Sparse Determinant Metric Learning (Qi et al., 2009)."""

from metricjax.estimators._tuples import PairsLearner, SupervisedTuplesLearner, solve_in_dtype
from metricjax.solvers import sdml_solve

_SDML_ARGS = r"""
        balance_param: weight :math:`\eta \ge 0` of the pair-graph scatter. Default 0.5.
        sparsity_param: :math:`\ell_1` weight :math:`\lambda` of the graphical lasso.
            Default 0.01.
        prior: the prior :math:`P`: ``"identity"`` (default), ``"covariance"``,
            ``"random"`` or a positive definite ``(n_features, n_features)`` array.
        verbose: print whether the graphical lasso converged.
        preprocessor: ``None``, an array of points (pairs may then be given as
            ``(n_pairs, 2)`` indices into it) or a callable from indices to points.
        random_state: seed or ``numpy.random.RandomState`` for ``prior="random"``."""

_SDML_ATTRS = r"""
        components_: :math:`L` with :math:`M = L^\top L`, shape ``(n_features,
            n_features)``, in the fitted dtype.
        n_iter_: sweeps of the graphical lasso.
        converged_: whether the graphical lasso converged.
        n_features_in_: number of features seen during ``fit``."""

_REFERENCES = r"""
    References:
        G.-J. Qi, J. Tang, Z.-J. Zha, T.-S. Chua, H.-J. Zhang, `An Efficient Sparse Metric
        Learning in High-Dimensional Space via l1-Penalized Log-Determinant
        Regularization <https://doi.org/10.1145/1553374.1553482>`_, ICML 2009."""


class _BaseSDML:
    """The solver call shared by :class:`SDML` and :class:`SDML_Supervised`."""

    def _fit_tuples(self, pairs, y):
        components, res = solve_in_dtype(
            sdml_solve, pairs, y.astype(pairs.dtype), balance_param=self.balance_param,
            sparsity_param=self.sparsity_param, prior=self.prior,
            random_state=self.random_state,
        )  # fmt: skip
        if self.verbose:
            print(f"sdml: converged={bool(res.converged)}")
        return {
            "components_": components,
            "n_iter_": int(res.n_iter),
            "converged_": bool(res.converged),
        }


class SDML(_BaseSDML, PairsLearner):
    __doc__ = (
        r"""Sparse Determinant Metric Learning (SDML) from similar / dissimilar pairs.

    The graphical-lasso precision :math:`M` of :math:`S = P^{-1} + \eta \sum_p y_p
    (a_p - b_p)(a_p - b_p)^\top` (:func:`metricjax.solvers.sdml_solve`; where
    :math:`S` is not positive definite it is projected onto the cone, where
    metric-learn 0.7.0 fails). ``decision_function``, ``predict``, ``score`` (ROC AUC),
    ``set_threshold`` and ``calibrate_threshold`` are metric-learn's.

    Args:"""
        + _SDML_ARGS
        + r"""

    Attributes:"""
        + _SDML_ATTRS
        + r"""
        threshold_: distance below which :meth:`predict` says similar.
"""
        + _REFERENCES
        + "\n"
    )

    def __init__(
        self,
        *,
        balance_param=0.5,
        sparsity_param=0.01,
        prior="identity",
        verbose=False,
        preprocessor=None,
        random_state=None,
    ):
        self.balance_param = balance_param
        self.sparsity_param = sparsity_param
        self.prior = prior
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
        """
        return self._fit_pairs(pairs, y, calibration_params)


class SDML_Supervised(_BaseSDML, SupervisedTuplesLearner):
    __doc__ = (
        r"""SDML from class labels: pairs drawn as metric-learn's ``SDML_Supervised`` draws them.

    ``fit(X, y)`` draws ``n_constraints`` similar and as many dissimilar pairs with
    :class:`metricjax.constraints.Constraints` (the same draws as metric-learn 0.7.0)
    and fits :class:`SDML` on them.

    Args:"""
        + _SDML_ARGS
        + r"""
        n_constraints: number of similar and of dissimilar pairs to draw; ``None``
            means ``20 * n_classes**2``.

    Attributes:"""
        + _SDML_ATTRS
        + "\n"
        + _REFERENCES
        + "\n"
    )

    def __init__(
        self,
        *,
        balance_param=0.5,
        sparsity_param=0.01,
        prior="identity",
        n_constraints=None,
        verbose=False,
        preprocessor=None,
        random_state=None,
    ):
        self.balance_param = balance_param
        self.sparsity_param = sparsity_param
        self.prior = prior
        self.n_constraints = n_constraints
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state

    def fit(self, X, y):
        """Draw pairs from the labels and learn the SDML metric.

        Args:
            X: points ``(n_samples, n_features)`` (or 1-D indices with a
                ``preprocessor``).
            y: class labels ``(n_samples,)`` (at least 2 classes).

        Returns:
            ``self``.
        """
        return self._supervised_fit(X, y)
