r"""SDML estimators: Sparse Determinant Metric Learning (Qi et al., 2009)."""

from sklearn.exceptions import ConvergenceWarning

from metricjax.estimators import _tuples
from metricjax.estimators._base import class_doc
from metricjax.estimators._tuples import PairsLearner, SupervisedTuplesLearner, fit_solver
from metricjax.solvers._sdml import SDMLWarning, _sdml_checked


class SDMLConvergenceWarning(SDMLWarning, ConvergenceWarning):
    """The estimators' SDML warnings: a :class:`metricjax.solvers.SDMLWarning` and
    scikit-learn's ``ConvergenceWarning``, metric-learn's category for them (a matrix
    that is not positive definite, a graphical lasso that did not converge), so filters
    written for either catch them."""

_SDML_ARGS = _tuples.tuples_args(
    r"""
        balance_param: weight :math:`\eta \ge 0` of the pair-graph scatter. Default 0.5.
        sparsity_param: :math:`\ell_1` weight :math:`\lambda` of the graphical lasso.
            Default 0.01.
        prior: the prior :math:`P`: ``"identity"`` (default), ``"covariance"``,
            ``"random"`` or a positive definite ``(n_features, n_features)`` array.
        verbose: print whether the graphical lasso converged.""",
    "pairs",
    "(n_pairs, 2)",
    '``prior="random"``',
)

_SDML_ATTRS = (
    _tuples.COMPONENTS_ATTR
    + r"""
        n_iter_: sweeps of the graphical lasso.
        converged_: whether the graphical lasso converged."""
    + _tuples.N_FEATURES_ATTR
)

_REFERENCES = r"""
        G.-J. Qi, J. Tang, Z.-J. Zha, T.-S. Chua, H.-J. Zhang, `An Efficient Sparse Metric
        Learning in High-Dimensional Space via l1-Penalized Log-Determinant
        Regularization <https://doi.org/10.1145/1553374.1553482>`_, ICML 2009."""


class _BaseSDML:
    """The solver call shared by :class:`SDML` and :class:`SDML_Supervised`."""

    def _fit_tuples(self, pairs, y):
        return fit_solver(
            # the pairs and labels are validated already: the solver's core, not sdml_solve
            self, ("n_iter", "converged"), _sdml_checked, pairs, y.astype(pairs.dtype),
            balance_param=self.balance_param, sparsity_param=self.sparsity_param,
            prior=self.prior, random_state=self.random_state, warning=SDMLConvergenceWarning,
        )  # fmt: skip


class SDML(_BaseSDML, PairsLearner):
    __doc__ = class_doc(
        r"""Sparse Determinant Metric Learning (SDML) from similar / dissimilar pairs.

    The graphical-lasso precision :math:`M` of :math:`S = P^{-1} + \eta \sum_p y_p
    (a_p - b_p)(a_p - b_p)^\top` (:func:`metricjax.solvers.sdml_solve`; where
    :math:`S` is not positive definite it is projected onto the cone, where
    metric-learn 0.7.0 fails). ``decision_function``, ``predict``, ``score`` (ROC AUC),
    ``set_threshold`` and ``calibrate_threshold`` are metric-learn's. Its warnings (a
    projected :math:`S`, a graphical lasso that did not converge) are both
    :class:`metricjax.solvers.SDMLWarning` and scikit-learn's ``ConvergenceWarning``.""",
        args=_SDML_ARGS,
        attrs=_SDML_ATTRS + _tuples.THRESHOLD_ATTR,
        references=_REFERENCES,
    )

    def __init__(
        self,
        balance_param=0.5,
        sparsity_param=0.01,
        prior="identity",
        verbose=False,
        preprocessor=None,
        random_state=None,
    ):
        self._set_params(locals())


class SDML_Supervised(_BaseSDML, SupervisedTuplesLearner):
    __doc__ = class_doc(
        r"""SDML from class labels: pairs drawn as metric-learn's ``SDML_Supervised`` draws them.

    ``fit(X, y)`` draws ``n_constraints`` similar and as many dissimilar pairs with
    :class:`metricjax.constraints.Constraints` (the same draws as metric-learn 0.7.0)
    and fits :class:`SDML` on them.""",
        args=_SDML_ARGS + _tuples.SUPERVISED_PAIRS_ARGS,
        attrs=_SDML_ATTRS,
        references=_REFERENCES,
    )

    def __init__(
        self,
        balance_param=0.5,
        sparsity_param=0.01,
        prior="identity",
        n_constraints=None,
        verbose=False,
        preprocessor=None,
        random_state=None,
        num_constraints="deprecated",
    ):
        self._set_params(locals())
