"""metric-learn 0.7.0's deprecated argument names of the weakly supervised learners.

metric-learn renamed ``convergence_threshold`` to ``tol`` (ITML, MMC and their
``*_Supervised``) and ``num_constraints`` to ``n_constraints`` (every pairs or
quadruplets ``*_Supervised``), keeping the old names with the default ``'deprecated'``
and a ``FutureWarning``. Code written for metric-learn must not crash here: the old name
is accepted, its value is used, and the warning says which name to use. Unlike
metric-learn (which warns in ``__init__`` and overwrites the argument), the warning comes
at ``fit`` and ``get_params`` returns what was passed, as scikit-learn requires.
"""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from benchmarks._reference_libs import metric_learn_compat
from metricjax.constraints import Constraints, wrap_pairs
from metricjax.estimators import (
    ITML,
    MMC,
    ITML_Supervised,
    LSML_Supervised,
    MMC_Supervised,
    SDML_Supervised,
)
from metricjax.solvers import SDMLWarning

ml = metric_learn_compat()

X, Y = load_iris(return_X_y=True)
X = StandardScaler().fit_transform(X)
PAIRS, YP = wrap_pairs(X, Constraints(Y).positive_negative_pairs(40, random_state=0))

# (estimator, fast hyperparameters, fit arguments)
TOL_CASES = [
    (ITML, {"max_iter": 50}, (PAIRS, YP)),
    (MMC, {"max_iter": 20}, (PAIRS, YP)),
    (ITML_Supervised, {"max_iter": 50, "n_constraints": 30, "random_state": 0}, (X, Y)),
    (MMC_Supervised, {"max_iter": 20, "n_constraints": 30, "random_state": 0}, (X, Y)),
]
N_CONSTRAINTS_CASES = [
    (ITML_Supervised, {"max_iter": 50}),
    (MMC_Supervised, {"max_iter": 20}),
    (SDML_Supervised, {"balance_param": 1e-3}),
    (LSML_Supervised, {"max_iter": 50}),
]


def _fit_quiet(est, *args):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Only generated", category=UserWarning)
        warnings.filterwarnings("ignore", category=SDMLWarning)  # SDML's default draws
        return est.fit(*args)


@pytest.mark.parametrize(("cls", "kw", "data"), TOL_CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_convergence_threshold_is_used_as_tol(cls, kw, data):
    want = _fit_quiet(cls(tol=0.05, **kw), *data)
    est = cls(convergence_threshold=0.05, **kw)
    with pytest.warns(
        FutureWarning, match='"convergence_threshold" parameter has been renamed to "tol"'
    ):
        got = _fit_quiet(est, *data)
    np.testing.assert_array_equal(got.components_, want.components_)
    assert got.n_iter_ == want.n_iter_
    # the value passed stays a parameter (clone, get_params), as scikit-learn requires
    assert clone(est).get_params()["convergence_threshold"] == 0.05
    assert est.get_params()["tol"] == cls().get_params()["tol"]
    # the deprecated value wins over tol, as in metric-learn
    with pytest.warns(FutureWarning, match="using tol=0.05"):
        again = _fit_quiet(cls(tol=1e-9, convergence_threshold=0.05, **kw), *data)
    np.testing.assert_array_equal(again.components_, want.components_)


@pytest.mark.parametrize(
    ("cls", "kw"), N_CONSTRAINTS_CASES, ids=lambda c: getattr(c, "__name__", "")
)
def test_num_constraints_is_used_as_n_constraints(cls, kw):
    want = _fit_quiet(cls(n_constraints=25, random_state=0, **kw), X, Y)
    est = cls(num_constraints=25, random_state=0, **kw)
    with pytest.warns(
        FutureWarning, match='"num_constraints" parameter has been renamed to "n_constraints"'
    ):
        got = _fit_quiet(est, X, Y)
    np.testing.assert_array_equal(got.components_, want.components_)
    assert clone(est).get_params()["num_constraints"] == 25
    # the default draws 20 * n_classes**2 = 180 constraints: a different fit
    default = _fit_quiet(cls(random_state=0, **kw), X, Y)
    assert not np.array_equal(default.components_, want.components_)


@pytest.mark.parametrize(
    "cls", [ITML, MMC, ITML_Supervised, MMC_Supervised, SDML_Supervised, LSML_Supervised]
)
def test_deprecated_names_default_to_the_sentinel_and_do_not_warn(cls):
    params = cls().get_params()
    for name in ("convergence_threshold", "num_constraints"):
        if name in params:
            assert params[name] == "deprecated"  # metric-learn's default
    # no FutureWarning without them (pytest runs with filterwarnings = error)
    if cls in (ITML, MMC):
        _fit_quiet(cls(max_iter=5), PAIRS, YP)
    else:
        _fit_quiet(cls(n_constraints=10, random_state=0, **dict(N_CONSTRAINTS_CASES)[cls]), X, Y)


def test_same_metric_as_metric_learn_with_the_deprecated_names():
    """metric-learn 0.7.0 itself, given the old names, fits the same ITML_Supervised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.ITML_Supervised(num_constraints=30, convergence_threshold=1e-2, random_state=0)
        ref.fit(X, Y)
    with pytest.warns(FutureWarning) as record:
        ours = _fit_quiet(
            ITML_Supervised(num_constraints=30, convergence_threshold=1e-2, random_state=0), X, Y
        )
    assert sorted(str(w.message).split('"')[1] for w in record) == [
        "convergence_threshold",
        "num_constraints",
    ]
    np.testing.assert_allclose(
        ours.get_mahalanobis_matrix(), ref.get_mahalanobis_matrix(), rtol=1e-8, atol=1e-10
    )
