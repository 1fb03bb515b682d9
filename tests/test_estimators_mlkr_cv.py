"""MLKRCV: the (alpha, fold) grid of MLKR as one compiled program, against GridSearchCV."""

import numpy as np
import pytest
from _estimator_data import no_convergence_warnings
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import parametrize_with_checks

import metricjax as mj
from metricjax.estimators import MLKR, MLKRCV
from metricjax.estimators._mlkr_cv import DEFAULT_ALPHAS

ALPHAS = [1e-3, 1e-2, 0.1, 1.0]


def _data(n=60, d=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = np.sin(x[:, 0]) + 0.1 * x[:, 1] + 0.1 * rng.standard_normal(n)
    return x.astype(dtype), y.astype(dtype)


def _grid_scores(search, n_splits):
    return np.stack([search.cv_results_[f"split{i}_test_score"] for i in range(n_splits)], axis=1)


@pytest.mark.slow  # one grid compilation (~10 s)
def test_mlkrcv_equals_grid_search_cv():
    x, y = _data()
    cv = KFold(3, shuffle=True, random_state=0)
    model = MLKRCV(alphas=ALPHAS, cv=cv, batch="grid").fit(x, y)
    search = GridSearchCV(MLKR(), {"alpha": ALPHAS}, cv=cv).fit(x, y)
    assert model.scores_.shape == (len(ALPHAS), 3)
    np.testing.assert_allclose(model.scores_, _grid_scores(search, 3), rtol=1e-6)
    mean = search.cv_results_["mean_test_score"]
    np.testing.assert_allclose(model.scores_.mean(1), mean, rtol=1e-6)
    assert model.alpha_ == search.best_params_["alpha"]
    assert model.best_score_ == pytest.approx(search.best_score_, rel=1e-6)
    # the refit on all the data is MLKR's, and predict / score / transform are its own
    best = search.best_estimator_
    np.testing.assert_allclose(model.components_, best.components_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.predict(x[:5]), best.predict(x[:5]), rtol=1e-8)
    np.testing.assert_allclose(model.transform(x[:5]), best.transform(x[:5]), rtol=1e-8)
    assert model.score(x, y) == pytest.approx(best.score(x, y), rel=1e-8)
    assert model.ridge_weight_ == best.ridge_weight_
    assert model.cv_n_iter_.shape == (len(ALPHAS), 3) and np.all(model.cv_n_iter_ >= 1)
    # one alpha per call of the same program: the same results
    folds = MLKRCV(alphas=ALPHAS, cv=cv, batch="folds").fit(x, y)
    np.testing.assert_allclose(folds.scores_, model.scores_, rtol=1e-10)
    np.testing.assert_array_equal(folds.cv_n_iter_, model.cv_n_iter_)
    assert folds.alpha_ == model.alpha_
    # an int cv is KFold(cv), as in GridSearchCV; a second fit reuses the compiled grid
    a = MLKRCV(alphas=ALPHAS[:2], cv=2).fit(x, y)
    b = GridSearchCV(MLKR(), {"alpha": ALPHAS[:2]}, cv=2).fit(x, y)
    np.testing.assert_allclose(a.scores_, _grid_scores(b, 2), rtol=1e-6)


@pytest.mark.slow
def test_mlkrcv_with_sample_weight_equals_grid_search_cv():
    x, y = _data()
    w = np.random.default_rng(3).integers(0, 3, size=len(x)).astype(float)
    cv = KFold(3, shuffle=True, random_state=1)
    model = MLKRCV(alphas=ALPHAS[1:3], cv=cv).fit(x, y, sample_weight=w)
    search = GridSearchCV(MLKR(), {"alpha": ALPHAS[1:3]}, cv=cv).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(model.scores_, _grid_scores(search, 3), rtol=1e-6)
    assert model.alpha_ == search.best_params_["alpha"]
    np.testing.assert_allclose(
        model.components_, search.best_estimator_.components_, rtol=1e-8, atol=1e-12
    )


@pytest.mark.slow  # one grid compilation (~10 s)
def test_mlkrcv_folds_of_different_sizes_are_padded_and_equal_grid_search_cv():
    """61 rows in 4 folds: training parts of 45 and 46 rows, gathered to 46 (the shorter
    padded with a row of weight 0), held-out parts of 16 and 15 rows."""
    x, y = _data(n=61, seed=2)
    cv = KFold(4, shuffle=True, random_state=0)
    args = MLKRCV(alphas=ALPHAS[1:3], cv=cv)._grid(x, y, None)["args"]
    assert args[2].shape == (4, 46, 4) and args[5].shape == (4, 16, 4)
    assert sorted(np.asarray(args[4]).sum(axis=1).tolist()) == [45, 46, 46, 46]
    assert sorted(np.asarray(args[7]).sum(axis=1).tolist()) == [15, 15, 15, 16]
    model = MLKRCV(alphas=ALPHAS[1:3], cv=cv).fit(x, y)
    search = GridSearchCV(MLKR(), {"alpha": ALPHAS[1:3]}, cv=cv).fit(x, y)
    np.testing.assert_allclose(model.scores_, _grid_scores(search, 4), rtol=1e-6)
    assert model.alpha_ == search.best_params_["alpha"]


@pytest.mark.slow  # one grid compilation (~10 s)
def test_mlkrcv_float32_and_api():
    x, y = _data(dtype=np.float32)
    model = MLKRCV(alphas=[0.01, 1.0], cv=3).fit(x, y)
    assert model.components_.dtype == np.float32 and model.scores_.shape == (2, 3)
    assert model.alpha_ in (0.01, 1.0)
    assert model.predict(x).dtype == np.float32
    assert mj.MLKRCV is MLKRCV
    params = clone(MLKRCV(alphas=(1.0,), cv=4)).get_params()
    assert params["alphas"] == (1.0,) and params["cv"] == 4 and "alpha" not in params
    assert len(DEFAULT_ALPHAS) == 8 and 0.01 in DEFAULT_ALPHAS


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"alphas": []}, ValueError, "`alphas` must be a non-empty 1-D"),
        ({"alphas": [[0.1]]}, ValueError, "`alphas` must be a non-empty 1-D"),
        ({"alphas": [-1.0]}, ValueError, "`alphas` must be finite and >= 0"),
        ({"alphas": [np.nan]}, ValueError, "`alphas` must be finite and >= 0"),
        ({"alphas": ["a"]}, TypeError, "`alphas` must be a sequence of real numbers"),
        ({"cv": 1}, ValueError, "`cv` must be >= 2"),
        ({"batch": "alphas"}, ValueError, "`batch` must be 'auto', 'grid' or 'folds'"),
    ],
)
def test_mlkrcv_bad_parameters(kw, exc, match):
    x, y = _data()
    with pytest.raises(exc, match=match):
        MLKRCV(**kw).fit(x, y)


@parametrize_with_checks([MLKRCV(alphas=(0.01, 0.3), cv=3)])
def test_sklearn_estimator_checks(estimator, check):
    """scikit-learn's estimator checks, all of them (sample-weight equivalence included:
    MLKR's weights are counts of copies)."""
    with no_convergence_warnings():
        check(estimator)
