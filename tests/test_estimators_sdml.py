"""SDML and SDML_Supervised on the SDML solver, and the other supervised learners' sklearn checks.

metric-learn 0.7.0's SDML fails on current scikit-learn (``tests/test_sdml.py`` shows
it, and compares the solver with it where it still runs); here the estimators are
checked to be the solver behind metric-learn's API.
"""

import warnings

import jax
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from metricjax.constraints import Constraints, wrap_pairs
from metricjax.estimators import SDML, LSML_Supervised, SDML_Supervised
from metricjax.solvers import SDMLWarning, sdml_solve

X, Y = load_iris(return_X_y=True)
X = StandardScaler().fit_transform(X)
PAIRS, YP = wrap_pairs(X, Constraints(Y).positive_negative_pairs(50, random_state=0))


def test_sdml_is_the_solver_and_supervised_draws_the_same_pairs():
    est = SDML(balance_param=1e-3).fit(PAIRS, YP)
    with jax.enable_x64(True):
        ref = sdml_solve(PAIRS, YP.astype(float), balance_param=1e-3)
    np.testing.assert_allclose(est.get_mahalanobis_matrix(), np.asarray(ref.metric), rtol=1e-12)
    assert est.converged_ and est.score(PAIRS, YP) > 0.85
    np.testing.assert_array_equal(
        est.predict(PAIRS), np.where(-est.decision_function(PAIRS) <= est.threshold_, 1, -1)
    )
    sup = SDML_Supervised(balance_param=1e-3, n_constraints=50, random_state=0).fit(X, Y)
    np.testing.assert_array_equal(sup.components_, est.components_)


def test_ill_posed_problem_warns_and_float32():
    with pytest.warns(SDMLWarning, match="not positive definite") as caught:
        SDML(balance_param=0.5).fit(PAIRS, YP)
    # and scikit-learn's ConvergenceWarning, metric-learn's category for this warning
    assert all(issubclass(w.category, ConvergenceWarning) for w in caught)
    est32 = SDML(balance_param=1e-3).fit(PAIRS.astype(np.float32), YP)
    assert est32.components_.dtype == np.float32


def test_bad_input_leaves_the_estimator_unchanged():
    est = SDML(balance_param=1e-3).fit(PAIRS, YP)
    comp = est.components_.copy()
    with pytest.raises(ValueError, match="`y` must hold"):
        est.fit(PAIRS, np.zeros_like(YP))
    with pytest.raises(ValueError, match=r"Tuples of 2 element\(s\) expected by SDML"):
        est.fit(PAIRS[:, :1], YP)
    np.testing.assert_array_equal(est.components_, comp)


@parametrize_with_checks([SDML_Supervised(balance_param=1e-3), LSML_Supervised(max_iter=50)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Only generated", category=UserWarning)
        warnings.filterwarnings("ignore", category=SDMLWarning)
        check(estimator)
