"""LSML and LSML_Supervised: metric-learn 0.7.0's API, an objective at least as good."""

import warnings

import jax
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, load_wine
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import StandardScaler

from benchmarks._reference_libs import metric_learn_compat
from metricjax.constraints import Constraints
from metricjax.estimators import LSML, LSML_Supervised
from metricjax.losses import lsml_loss

ml = metric_learn_compat()


def _data(name):
    X, y = (load_iris if name == "iris" else load_wine)(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _objective(metric, q):
    with jax.enable_x64(True):
        return float(lsml_loss(np.asarray(metric, np.float64), q, prior_inv=np.eye(q.shape[2])))


@pytest.mark.parametrize("data", ["iris", "wine"])
@pytest.mark.parametrize("seed", [0, 1])
def test_supervised_objective_at_least_metric_learns(data, seed):
    X, y = _data(data)
    ours = LSML_Supervised(n_constraints=100, random_state=seed).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.LSML_Supervised(n_constraints=100, random_state=seed).fit(X, y)
    q = X[np.column_stack(Constraints(y).quadruplets(100, random_state=seed))]
    ours_obj = _objective(ours.get_mahalanobis_matrix(), q)
    np.testing.assert_allclose(ours.loss_, ours_obj, rtol=1e-8)
    assert ours_obj <= _objective(ref.get_mahalanobis_matrix(), q) * (1 + 1e-9)
    # the same quadruplets through LSML give the same fit
    weak = LSML().fit(q)
    np.testing.assert_allclose(weak.components_, ours.components_, rtol=1e-10)


def test_quadruplets_api_matches_metric_learn():
    X, y = _data("iris")
    q = X[np.column_stack(Constraints(y).quadruplets(60, random_state=0))]
    est = LSML().fit(q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.LSML().fit(q)
    ref.components_ = est.components_  # same metric: compare the API functions
    np.testing.assert_allclose(est.decision_function(q), ref.decision_function(q), rtol=1e-12)
    np.testing.assert_array_equal(est.predict(q), ref.predict(q))
    assert est.score(q) == pytest.approx(ref.score(q))
    assert est.score(q) > 0.8


def test_preprocessor_weights_clone_cv_and_float32():
    X, y = _data("iris")
    idx = np.column_stack(Constraints(y).quadruplets(60, random_state=0))
    a = LSML(preprocessor=X).fit(idx)
    b = LSML().fit(X[idx])
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-12)
    w = np.ones(len(idx))
    np.testing.assert_allclose(LSML().fit(X[idx], weights=2 * w).components_, b.components_)
    np.testing.assert_array_equal(clone(a).get_params()["preprocessor"], X)
    scores = cross_val_score(LSML(), X[idx], cv=3)
    assert np.all(scores > 0.6)
    est32 = LSML().fit(X[idx].astype(np.float32))
    assert est32.components_.dtype == np.float32


def test_bad_input_and_failed_fit_leaves_estimator_unchanged():
    X, y = _data("iris")
    q = X[np.column_stack(Constraints(y).quadruplets(60, random_state=0))]
    est = LSML().fit(q)
    comp = est.components_.copy()
    with pytest.raises(ValueError, match=r"Tuples of 4 element\(s\) expected by LSML"):
        est.fit(q[:, :3])
    bad = q.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`quadruplets` contains NaN"):
        est.fit(bad)
    with pytest.raises(ValueError, match="weights"):
        est.fit(q[:, :, :3], weights=-np.ones(len(q)))
    np.testing.assert_array_equal(est.components_, comp)
    assert est.n_features_in_ == 4
    with pytest.raises(ValueError, match="at least 2 classes in `y`"):
        LSML_Supervised().fit(X, np.zeros(len(X), int))
