r"""LSML estimators: Least Squared-residual Metric Learning (Liu et al., 2012)."""

import numpy as np

from metricjax.constraints import Constraints
from metricjax.estimators import _tuples
from metricjax.estimators._base import class_doc
from metricjax.estimators._tuples import QuadrupletsLearner, SupervisedTuplesLearner, fit_solver
from metricjax.solvers import lsml_solve

_LSML_ARGS = _tuples.tuples_args(
    r"""
        tol: tolerance on the gradient norm. Default 1e-3.
        max_iter: maximum number of iterations. Default 1000.
        prior: the prior :math:`P` (also the starting metric): ``"identity"``
            (default), ``"covariance"`` (inverse covariance of the distinct points),
            ``"random"`` or a positive definite ``(n_features, n_features)`` array.
        verbose: print the number of iterations and whether the fit converged.""",
    "quadruplets",
    "(n, 4)",
    '``prior="random"``',
)

_LSML_ATTRS = (
    _tuples.COMPONENTS_ATTR
    + r"""
        n_iter_: number of iterations started (metric-learn's convention).
        converged_: whether a stopping rule (gradient norm below ``tol``, or no step
            decreasing the objective) ended the fit before ``max_iter``.
        loss_: the objective at the learned metric."""
    + _tuples.N_FEATURES_ATTR
)

_REFERENCES = r"""
        E. Y. Liu, Z. Guo, X. Zhang, V. Jojic, W. Wang, `Metric Learning from Relative
        Comparisons by Minimizing Squared Residual
        <https://doi.org/10.1109/ICDM.2012.38>`_, ICDM 2012."""


class _BaseLSML:
    """The solver call shared by :class:`LSML` and :class:`LSML_Supervised`."""

    def _fit_tuples(self, quadruplets, y=None, *, weights=None):
        return fit_solver(
            self, ("n_iter", "converged", "loss"), lsml_solve, quadruplets, weights,
            prior=self.prior, tol=self.tol, max_iter=self.max_iter,
            random_state=self.random_state,
        )  # fmt: skip


class LSML(_BaseLSML, QuadrupletsLearner):
    __doc__ = class_doc(
        r"""Least Squared-residual Metric Learning (LSML) from relative comparisons.

    Each quadruplet ``(a, b, c, d)`` says that the pair ``(a, b)`` should be closer than
    ``(c, d)``. LSML minimises the (weighted) squared residuals
    :math:`(\sqrt{d_M(a, b)} - \sqrt{d_M(c, d)})^2` of the violated comparisons plus
    the LogDet divergence to the prior (:func:`metricjax.solvers.lsml_solve`, one
    compiled ``lax.while_loop``; it reaches an objective at least as low as
    metric-learn 0.7.0's ``LSML``). ``decision_function``, ``predict`` and ``score``
    are metric-learn's.""",
        args=_LSML_ARGS,
        attrs=_LSML_ATTRS,
        references=_REFERENCES,
        examples="""
        >>> import numpy as np
        >>> from metricjax.estimators import LSML
        >>> q = np.array([[[1.2, 3.2], [2.3, 5.5], [2.4, 6.7], [2.1, 0.6]],
        ...               [[4.5, 2.3], [2.1, 2.3], [0.6, 1.2], [7.3, 3.4]]])
        >>> LSML().fit(q).predict(q).tolist()
        [1.0, 1.0]""",
    )

    def __init__(
        self,
        tol=1e-3,
        max_iter=1000,
        prior="identity",
        verbose=False,
        preprocessor=None,
        random_state=None,
    ):
        self._set_params(locals())


class LSML_Supervised(_BaseLSML, SupervisedTuplesLearner):
    __doc__ = class_doc(
        r"""LSML from class labels: quadruplets drawn as metric-learn's ``LSML_Supervised`` draws them.

    ``fit(X, y)`` draws ``n_constraints`` similar pairs ``(a, b)`` and as many
    dissimilar pairs ``(c, d)`` (:meth:`metricjax.constraints.Constraints.quadruplets`,
    the same draws as metric-learn 0.7.0 for the same ``random_state``) and fits
    :class:`LSML` on the quadruplets ``(a, b, c, d)``.""",
        args=_LSML_ARGS
        + r"""
        n_constraints: number of quadruplets to draw; ``None`` means
            ``20 * n_classes**2``.
        weights: weights of the quadruplets, ``(n_constraints,)``; ``None``: uniform."""
        + _tuples.NUM_CONSTRAINTS_ARG,
        attrs=_LSML_ATTRS,
        references=_REFERENCES,
        examples=_tuples.supervised_example("LSML_Supervised"),
    )

    def __init__(
        self,
        tol=1e-3,
        max_iter=1000,
        prior="identity",
        n_constraints=None,
        weights=None,
        verbose=False,
        preprocessor=None,
        random_state=None,
        num_constraints="deprecated",
    ):
        self._set_params(locals())

    def _draw(self, X, labels, n_constraints, random_state):
        abcd = Constraints(labels).quadruplets(n_constraints, random_state=random_state)
        return X[np.column_stack(abcd)], None, {"weights": self.weights}
