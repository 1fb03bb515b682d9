"""scikit-learn estimators, shared behaviour: estimator checks, round trips, pipelines,
options and errors. Estimator-specific tests are in ``test_estimators_{mlkr,nca,lmnn}.py``.

Every fit of a new (loss, shape, dtype) compiles the optimisation loop once, so the
tests below reuse a few dataset shapes (``_estimator_data.py``); refits of the same
shape hit the cache.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _estimator_data import (
    D,
    N,
    classification,
    data_for,
    no_convergence_warnings,
    regression,
    x64_context,
)
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import metricjax as mj
from metricjax.estimators import DEFAULT_TOL, LMNN, MLKR, NCA
from metricjax.losses import lmnn_loss, mlkr_ridge_loss, nca_loss

ESTIMATORS = [MLKR(), NCA(), LMNN()]
IDS = ["MLKR", "NCA", "LMNN"]


# ------------------------------------------------------------------ estimator checks
# every check passes, sample-weight equivalence included (integer weights are repeated samples)
@parametrize_with_checks([MLKR(), NCA(), LMNN()])
def test_sklearn_estimator_checks(estimator, check):
    with no_convergence_warnings():
        check(estimator)


# ------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_fit_transform_metric_round_trip(est):
    x, y = data_for(est)
    model = clone(est).fit(x, y)
    L = model.components_
    assert isinstance(L, np.ndarray) and L.shape == (D, D)
    assert model.n_features_in_ == D
    assert model.n_iter_ >= 1 and model.converged_
    assert model.loss_history_.shape == (model.n_iter_ + 1,)
    assert model.loss_history_[-1] < model.loss_history_[0]
    np.testing.assert_allclose(model.transform(x), x @ L.T, rtol=1e-12)
    np.testing.assert_allclose(clone(est).fit_transform(x, y), x @ L.T, rtol=1e-10, atol=1e-12)
    M = model.get_mahalanobis_matrix()
    np.testing.assert_allclose(M, L.T @ L)
    metric = model.get_metric()
    diff = x[0] - x[1]
    assert metric(x[0], x[1], squared=True) == pytest.approx(diff @ M @ diff, rel=1e-10)
    assert metric(x[0], x[1]) == pytest.approx(np.sqrt(diff @ M @ diff), rel=1e-10)
    with pytest.raises(ValueError, match="1-D"):
        metric(x[:2], x[1])
    names = model.get_feature_names_out()
    assert list(names) == [f"{type(est).__name__.lower()}{i}" for i in range(D)]
    if not isinstance(est, MLKR):
        np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    # the metric is usable by scikit-learn's neighbours estimators
    knn = KNeighborsClassifier(n_neighbors=1, metric=metric).fit(x[:10], np.arange(10) % 2)
    assert knn.predict(x[:3]).shape == (3,)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_final_loss_matches_the_functional_loss(est):
    x, y = data_for(est)
    model = clone(est).fit(x, y)
    L = model.components_
    with x64_context():
        if isinstance(est, MLKR):
            ref = mlkr_ridge_loss(L, x, y, model.ridge_weight_)
        elif isinstance(est, NCA):
            ref = nca_loss(L, x, y)
        else:
            ref = lmnn_loss(L, x, y, target_neighbors=model.target_neighbors_)
        assert model.loss_history_[-1] == pytest.approx(float(ref), rel=1e-9, abs=1e-9)


def test_unfitted_estimators_raise():
    for est in (MLKR(), NCA(), LMNN()):
        for method in ("transform", "get_mahalanobis_matrix", "get_metric"):
            with pytest.raises(NotFittedError):
                args = (np.zeros((2, D)),) if method == "transform" else ()
                getattr(est, method)(*args)
    with pytest.raises(NotFittedError):
        MLKR().predict(np.zeros((2, D)))


def test_transform_checks_feature_count():
    x, y = classification()
    model = NCA().fit(x, y)
    with pytest.raises(ValueError, match=f"expecting {D} features"):
        model.transform(x[:, :-1])


def test_mlkr_in_pipeline_and_grid_search():
    x, y = regression()
    pipe = Pipeline([("scale", StandardScaler()), ("mlkr", MLKR(n_components=2))]).fit(x, y)
    assert pipe.transform(x).shape == (N, 2)
    assert pipe.predict(x).shape == (N,)
    assert pipe.score(x, y) > 0.5
    # 75 samples: 5 training folds of 60, then a refit on all 75
    x, y = regression(n=75)
    with no_convergence_warnings():
        grid = GridSearchCV(MLKR(max_iter=20), {"n_components": [1, 2]}, cv=5).fit(x, y)
    k = grid.best_params_["n_components"]
    assert k in (1, 2)
    assert grid.best_estimator_.components_.shape == (k, D)
    assert grid.best_estimator_.n_iter_ <= 20
    assert np.isfinite(grid.best_score_)


# ---------------------------------------------------------------------- init options
@pytest.mark.parametrize("init", ["auto", "pca", "identity", "random"])
@pytest.mark.parametrize("est", [MLKR(), NCA()], ids=["MLKR", "NCA"])
def test_init_options(est, init):
    x, y = data_for(est)
    model = clone(est).set_params(init=init, random_state=0).fit(x, y)
    assert model.components_.shape == (D, D)


def test_init_lda_and_auto_rule():
    x, y = classification()
    model = NCA(n_components=2, init="lda").fit(x, y)
    assert model.components_.shape == (2, D)
    # 'auto': lda if n_components <= min(n_features, n_classes - 1) (here 2, 3 classes),
    # else pca if n_components < min(n_features, n_samples), else identity
    with no_convergence_warnings():
        for est, k, rule in [(NCA(), 2, "lda"), (MLKR(), 2, "pca"), (MLKR(), D, "identity")]:
            xx, yy = data_for(est)
            auto = clone(est).set_params(n_components=k, init="auto", max_iter=1).fit(xx, yy)
            ref = clone(est).set_params(n_components=k, init=rule, max_iter=1).fit(xx, yy)
            np.testing.assert_array_equal(auto.loss_history_, ref.loss_history_)
            np.testing.assert_array_equal(auto.components_, ref.components_)


def test_init_array_is_used_and_not_modified():
    x, y = classification()
    init = np.eye(D)[:2] * 0.5
    keep = init.copy()
    with no_convergence_warnings():
        one = NCA(init=init, max_iter=1).fit(x, y)
    np.testing.assert_array_equal(init, keep)
    with x64_context():
        ref = float(nca_loss(init, x, y))
    assert one.loss_history_[0] == pytest.approx(ref, rel=1e-12)
    # n_components=None takes the number of rows of the array
    assert one.components_.shape == (2, D)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init": "bogus"}, "`init` must be 'auto', 'pca', 'identity', 'random', 'lda' or"),
        ({"init": np.eye(3)}, r"The input dimensionality \(3\) of the given linear"),
        ({"init": np.eye(D), "n_components": 2}, r"`n_components` \(2\) does not match.*\(4\)!"),
        ({"init": np.ones((5, D))}, r"The output dimensionality \(5\).*cannot be greater"),
        ({"init": np.full((2, D), np.nan)}, "`init` contains NaN"),
        ({"init": "lda", "n_components": 3}, "init='lda' needs n_components"),
        ({"n_components": 0}, r"Invalid n_components, must be in \[1, 4\]"),
        ({"n_components": D + 1}, r"Invalid n_components, must be in \[1, 4\]"),
        ({"max_iter": 0}, "`max_iter` must be >= 1"),
        ({"tol": -1.0}, "`tol` must lie in"),
        ({"block_size": 0}, "`block_size` must be a positive int"),
    ],
)
def test_parameter_errors(kwargs, match):
    x, y = classification()
    with pytest.raises(ValueError, match=match):
        NCA(**kwargs).fit(x, y)


def test_classification_target_errors():
    x, y = classification()
    with pytest.raises(ValueError, match="at least 2 classes"):
        LMNN().fit(x, np.zeros(N))
    with pytest.raises(ValueError, match="Unknown label type"):
        LMNN().fit(x, np.linspace(0, 1, N))
    with pytest.raises(ValueError, match="contains NaN"):
        MLKR().fit(x, np.full(N, np.nan))


# -------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_float32_in_float32_out(est):
    x, y = data_for(est, np.float32)
    model = clone(est).fit(x, y)
    assert model.components_.dtype == np.float32
    assert model.loss_history_.dtype == np.float32
    assert model.transform(x).dtype == np.float32
    if isinstance(est, MLKR):
        assert model.predict(x).dtype == np.float32


def test_float64_is_really_float64():
    x, y = classification(np.float64)
    model = NCA().fit(x, y)
    assert model.components_.dtype == np.float64
    assert model.loss_history_.dtype == np.float64
    # float64 precision: the recorded loss agrees with a float64 evaluation to 1e-12
    with x64_context():
        ref = float(nca_loss(model.components_, x, y))
    assert model.loss_history_[-1] == pytest.approx(ref, rel=1e-12)
    assert jnp.zeros(()).dtype == jnp.float32  # the global default was left alone


def test_integer_input_is_fitted_in_float64():
    x, y = classification()
    xi = np.round(3 * x).astype(np.int64)
    model = NCA().fit(xi, y)
    assert model.components_.dtype == np.float64
    assert model.transform(xi).dtype == np.float64


# ------------------------------------------------------------------ failures and warnings
def test_failed_fit_leaves_fitted_estimator_unchanged():
    x, y = classification()
    model = NCA().fit(x, y)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(model).items()}
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, y)
    with pytest.raises(ValueError, match="The input dimensionality .* `init` must match"):
        model.set_params(init=np.eye(3)).fit(x[:, :2], y)  # also a different n_features
    model.set_params(init="auto")
    assert vars(model).keys() == before.keys()
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(getattr(model, k), v)
        else:
            assert getattr(model, k) == v, k
    np.testing.assert_allclose(model.transform(x), x @ before["components_"].T)


def test_convergence_warning_when_max_iter_is_hit():
    x, y = classification()
    with pytest.warns(ConvergenceWarning, match="did not converge within max_iter=1"):
        model = NCA(max_iter=1).fit(x, y)
    assert model.n_iter_ == 1 and not model.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        NCA().fit(x, y)  # converges: no warning


def test_tol_none_means_default_tol():
    x, y = classification()
    a = NCA(tol=None).fit(x, y)
    b = NCA(tol=DEFAULT_TOL).fit(x, y)
    assert DEFAULT_TOL == 1e-6
    np.testing.assert_array_equal(a.components_, b.components_)
    assert a.n_iter_ == b.n_iter_


# ------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("est", [MLKR(), LMNN()], ids=["MLKR", "LMNN"])
def test_same_random_state_gives_identical_results(est):
    x, y = data_for(est)
    a = clone(est).set_params(init="random", random_state=3).fit(x, y)
    b = clone(est).set_params(init="random", random_state=3).fit(x, y)
    c = clone(est).set_params(init="random", random_state=4).fit(x, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_)
    assert not np.array_equal(a.components_, c.components_)


# ---------------------------------------------------------------- optimizer and verbose
def test_custom_optimizer_and_verbose(capsys):
    x, y = classification()
    with no_convergence_warnings():
        model = NCA(optimizer=optax.adam(0.05), max_iter=300, tol=1e-5).fit(x, y)
    assert model.loss_history_[-1] < model.loss_history_[0]
    # verbose runs the same loop one reported iteration at a time: same result
    quiet = NCA().fit(x, y)
    loud = NCA(verbose=True).fit(x, y)
    np.testing.assert_array_equal(quiet.components_, loud.components_)
    assert quiet.n_iter_ == loud.n_iter_
    out = capsys.readouterr().out
    assert out.count("\n[NCA] ") == 2 + loud.n_iter_ + 1  # header, rows, training time


@pytest.mark.parametrize(
    ("init", "line"),
    [("pca", "Finding principal components... "),
     ("lda", "Finding most discriminative components... "),
     ("identity", None)],
)  # fmt: skip
def test_verbose_logs_the_initialisation_as_metric_learn(init, line, capsys):
    """metric-learn's ``_initialize_components`` log: the line, then ``done in  0.01s``."""
    x, y = classification()
    with no_convergence_warnings():
        NCA(init=init, n_components=1, verbose=True, max_iter=2).fit(x, y)
    out = capsys.readouterr().out.splitlines()
    if line is None:
        assert out[0] == "[NCA]"
    else:
        assert out[0] == line
        assert re.fullmatch(r"done in [ \d]+\d\.\d\ds", out[1])
        assert out[2] == "[NCA]"


# ------------------------------------------------------------------------------ imports
def test_lazy_top_level_access():
    assert mj.MLKR is MLKR and mj.NCA is NCA and mj.LMNN is LMNN


def test_missing_sklearn_gives_install_hint(monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    for name in [m for m in sys.modules if m.startswith("metricjax.estimators")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r'pip install "metricjax\[sklearn\]"'):
        importlib.import_module("metricjax.estimators")


def test_pipeline_with_classifier():
    x, y = classification()
    pipe = make_pipeline(StandardScaler(), LMNN(), KNeighborsClassifier(n_neighbors=3))
    assert pipe.fit(x, y).score(x, y) > 0.8


@pytest.mark.usefixtures("x64")
def test_nca_one_class_returns_its_initial_map():
    # one class: the loss is constant; scikit-learn's and metric-learn's NCA return the
    # initial map (both test it), and so does this one, without optimising
    x, _ = classification()
    init = np.random.default_rng(0).normal(size=(2, x.shape[1]))
    est = NCA(init=init, max_iter=30).fit(x, np.full(N, "a"))
    np.testing.assert_array_equal(est.components_, init)
    assert est.n_iter_ == 0 and est.converged_ and list(est.classes_) == ["a"]
    np.testing.assert_allclose(est.loss_history_, [-N], rtol=1e-12)
    np.testing.assert_array_equal(est.transform(x), x @ init.T)
    # string inits too (metric-learn's "auto" picks PCA here: LDA needs 2 classes)
    assert NCA().fit(x, np.zeros(N)).n_iter_ == 0
