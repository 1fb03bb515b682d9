"""scikit-learn estimators: estimator checks, round trips, quality, options and errors.

Every fit of a new (loss, shape, dtype) compiles the optimisation loop once, so the
tests below reuse a few dataset shapes; refits of the same shape hit the cache.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import metricjax as mj
from metricjax.estimators import DEFAULT_TOL, LMNN, MLKR, NCA
from metricjax.losses import kernel_regression, lmnn_loss, mlkr_loss, nca_loss

N, D = 60, 4  # the shared dataset shape (one compilation per estimator and dtype)


def _classification(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % 3
    x = rng.standard_normal((N, D))
    x[:, 0] += 2.0 * y  # one informative direction among noise
    return x.astype(dtype), y


def _regression(dtype=np.float64, seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D))
    y = np.sin(x[:, 0]) + 0.1 * x[:, 1]
    return x.astype(dtype), y.astype(dtype)


def _x64():
    """Context for float64 reference computations with the functional losses."""
    return jax.enable_x64(True)


@contextlib.contextmanager
def _no_convergence_warnings():
    """For fits that stop at a deliberately small max_iter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data_for(est, dtype=np.float64):
    return _regression(dtype) if isinstance(est, MLKR) else _classification(dtype)


ESTIMATORS = [MLKR(), NCA(), LMNN()]
IDS = ["MLKR", "NCA", "LMNN"]


# ------------------------------------------------------------------ estimator checks
@parametrize_with_checks([MLKR(), NCA(), LMNN()])
def test_sklearn_estimator_checks(estimator, check):
    with _no_convergence_warnings():
        check(estimator)


# ------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_fit_transform_metric_round_trip(est):
    x, y = _data_for(est)
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
    x, y = _data_for(est)
    model = clone(est).fit(x, y)
    L = model.components_
    with _x64():
        if isinstance(est, MLKR):
            ref = mlkr_loss(L, x, y)
        elif isinstance(est, NCA):
            ref = nca_loss(L, x, y)
        else:
            ref = lmnn_loss(L, x, y, target_neighbors=model.target_neighbors_)
        assert model.loss_history_[-1] == pytest.approx(float(ref), rel=1e-9, abs=1e-9)


def test_same_result_as_metricjax_fit():
    # the estimator runs the loop of metricjax.fit (cached, maybe with quicker XLA
    # settings): same iterations, same result up to rounding
    x, y = _classification()
    model = NCA(init="identity").fit(x, y)
    with _x64():
        ref = mj.fit(
            lambda L, x, c: nca_loss(L, x, c, num_classes=3), jnp.eye(D), x, y.astype(np.int32)
        )
    assert model.n_iter_ == ref.num_iter and model.converged_ == ref.converged
    np.testing.assert_allclose(model.components_, np.asarray(ref.params), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(model.loss_history_, ref.loss_history, rtol=1e-10)


def test_string_labels_and_classes():
    x, y = _classification()
    names = np.array(["setosa", "versicolor", "virginica"])
    a = NCA().fit(x, names[y])
    b = NCA().fit(x, y)
    np.testing.assert_array_equal(a.classes_, names)
    np.testing.assert_array_equal(a.components_, b.components_)


def test_unfitted_estimators_raise():
    for est in (MLKR(), NCA(), LMNN()):
        for method in ("transform", "get_mahalanobis_matrix", "get_metric"):
            with pytest.raises(NotFittedError):
                args = (np.zeros((2, D)),) if method == "transform" else ()
                getattr(est, method)(*args)
    with pytest.raises(NotFittedError):
        MLKR().predict(np.zeros((2, D)))


def test_transform_checks_feature_count():
    x, y = _classification()
    model = NCA().fit(x, y)
    with pytest.raises(ValueError, match=f"expecting {D} features"):
        model.transform(x[:, :-1])


# --------------------------------------------------------------------- MLKR predict
def test_mlkr_predict_is_kernel_regression():
    x, y = _regression()
    model = MLKR().fit(x, y)
    xq = x[:7] + 0.1
    with _x64():
        ref = np.asarray(kernel_regression(model.components_, x, y, xq))
    np.testing.assert_allclose(model.predict(xq), ref, rtol=1e-9, atol=1e-12)
    assert model.predict(x).shape == (N,)
    np.testing.assert_array_equal(model.X_train_, x)
    np.testing.assert_array_equal(model.y_train_, y)
    assert model.score(x, y) > 0.5  # R^2 on the training data


def test_mlkr_in_pipeline_and_grid_search():
    x, y = _regression()
    pipe = Pipeline([("scale", StandardScaler()), ("mlkr", MLKR(n_components=2))]).fit(x, y)
    assert pipe.transform(x).shape == (N, 2)
    assert pipe.predict(x).shape == (N,)
    assert pipe.score(x, y) > 0.5
    # 75 samples: 5 training folds of 60, then a refit on all 75
    x, y = _regression(n=75)
    with _no_convergence_warnings():
        grid = GridSearchCV(MLKR(max_iter=20), {"n_components": [1, 2]}, cv=5).fit(x, y)
    k = grid.best_params_["n_components"]
    assert k in (1, 2)
    assert grid.best_estimator_.components_.shape == (k, D)
    assert grid.best_estimator_.n_iter_ <= 20
    assert np.isfinite(grid.best_score_)


# ---------------------------------------------------------------------------- quality
def _knn_accuracy(x_train, y_train, x_test, y_test):
    knn = KNeighborsClassifier(n_neighbors=3).fit(x_train, y_train)
    return knn.score(x_test, y_test)


@pytest.mark.parametrize("loader", [load_iris, load_wine], ids=["iris", "wine"])
def test_nca_knn_accuracy_not_worse_than_euclidean(loader):
    x, y = loader(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    base = _knn_accuracy(x_tr, y_tr, x_te, y_te)
    nca = NCA(max_iter=100, random_state=0).fit(x_tr, y_tr)
    acc = _knn_accuracy(nca.transform(x_tr), y_tr, nca.transform(x_te), y_te)
    assert acc >= base - 0.05, (acc, base)


def test_lmnn_knn_accuracy_not_worse_than_euclidean():
    x, y = load_iris(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    base = _knn_accuracy(x_tr, y_tr, x_te, y_te)
    lmnn = LMNN(max_iter=100).fit(x_tr, y_tr)
    assert lmnn.n_neighbors_ == 3
    acc = _knn_accuracy(lmnn.transform(x_tr), y_tr, lmnn.transform(x_te), y_te)
    assert acc >= base - 0.05, (acc, base)


def test_mlkr_lowers_kernel_regression_error_on_diabetes():
    # MLKR minimises the leave-one-out kernel-regression error on the training set.
    # (On held-out diabetes data the full-rank metric overfits: 55 free parameters of
    # M for a few hundred noisy targets; the held-out check is the synthetic test below.)
    x, y = load_diabetes(return_X_y=True)
    x, y = x[:300], y[:300]  # small enough for the quick-compile path
    x = StandardScaler().fit_transform(x)
    y = (y - y.mean()) / y.std()
    with _no_convergence_warnings():
        model = MLKR(max_iter=30).fit(x, y)
    with _x64():
        loo_base = np.asarray(kernel_regression(np.eye(x.shape[1]), x, y))
        loo = np.asarray(kernel_regression(model.components_, x, y))
    mse_base, mse = np.mean((loo_base - y) ** 2), np.mean((loo - y) ** 2)
    assert mse < 0.75 * mse_base, (mse, mse_base)
    assert model.loss_history_[-1] == pytest.approx(len(y) * mse, rel=1e-9)


def test_mlkr_held_out_error_beats_euclidean():
    # y depends on x[:, 0] (and weakly x[:, 1]); x[:, 2:] are noise the metric must drop
    x, y = _regression(seed=0)
    x_new, y_new = _regression(seed=1)
    model = MLKR().fit(x, y)
    with _x64():
        base = np.asarray(kernel_regression(np.eye(D), x, y, x_new))
    mse_base = np.mean((base - y_new) ** 2)
    mse = np.mean((model.predict(x_new) - y_new) ** 2)
    assert mse < 0.7 * mse_base, (mse, mse_base)


# ---------------------------------------------------------------------- init options
@pytest.mark.parametrize("init", ["auto", "pca", "identity", "random"])
@pytest.mark.parametrize("est", [MLKR(), NCA()], ids=["MLKR", "NCA"])
def test_init_options(est, init):
    x, y = _data_for(est)
    model = clone(est).set_params(init=init, random_state=0).fit(x, y)
    assert model.components_.shape == (D, D)


def test_init_lda_and_auto_rule():
    x, y = _classification()
    model = NCA(n_components=2, init="lda").fit(x, y)
    assert model.components_.shape == (2, D)
    # 'auto': lda if n_components <= min(n_features, n_classes - 1) (here 2, 3 classes),
    # else pca if n_components < min(n_features, n_samples), else identity
    with _no_convergence_warnings():
        for est, k, rule in [(NCA(), 2, "lda"), (MLKR(), 2, "pca"), (MLKR(), D, "identity")]:
            xx, yy = _data_for(est)
            auto = clone(est).set_params(n_components=k, init="auto", max_iter=1).fit(xx, yy)
            ref = clone(est).set_params(n_components=k, init=rule, max_iter=1).fit(xx, yy)
            np.testing.assert_array_equal(auto.loss_history_, ref.loss_history_)
            np.testing.assert_array_equal(auto.components_, ref.components_)


def test_init_array_is_used_and_not_modified():
    x, y = _classification()
    init = np.eye(D)[:2] * 0.5
    keep = init.copy()
    with _no_convergence_warnings():
        one = NCA(init=init, max_iter=1).fit(x, y)
    np.testing.assert_array_equal(init, keep)
    with _x64():
        ref = float(nca_loss(init, x, y))
    assert one.loss_history_[0] == pytest.approx(ref, rel=1e-12)
    # n_components=None takes the number of rows of the array
    assert one.components_.shape == (2, D)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init": "bogus"}, "`init` must be one of"),
        ({"init": np.eye(3)}, r"`init` must have shape \(n_components, n_features\)"),
        ({"init": np.eye(D), "n_components": 2}, r"= \(2, 4\).*got \(4, 4\)"),
        ({"init": np.ones((5, D))}, "n_components <= n_features"),
        ({"init": np.full((2, D), np.nan)}, "`init` contains NaN"),
        ({"init": "lda", "n_components": 3}, "init='lda' needs n_components"),
        ({"n_components": 0}, r"`n_components` must lie in \[1, n_features\]"),
        ({"n_components": D + 1}, r"\[1, 4\], got 5"),
        ({"max_iter": 0}, "`max_iter` must be >= 1"),
        ({"tol": -1.0}, "`tol` must lie in"),
        ({"block_size": 0}, "`block_size` must be a positive int"),
    ],
)
def test_parameter_errors(kwargs, match):
    x, y = _classification()
    with pytest.raises(ValueError, match=match):
        NCA(**kwargs).fit(x, y)


def test_type_errors_and_mlkr_refuses_lda():
    x, y = _regression()
    with pytest.raises(ValueError, match="`init` must be one of"):
        MLKR(init="lda").fit(x, y)
    with pytest.raises(TypeError, match="`n_components` must be an int"):
        MLKR(n_components=1.5).fit(x, y)
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        MLKR(optimizer="adam").fit(x, y)


def test_classification_target_errors():
    x, y = _classification()
    with pytest.raises(ValueError, match="at least 2 classes"):
        NCA().fit(x, np.zeros(N))
    with pytest.raises(ValueError, match="Unknown label type"):
        LMNN().fit(x, np.linspace(0, 1, N))
    with pytest.raises(ValueError, match="contains NaN"):
        MLKR().fit(x, np.full(N, np.nan))


# ------------------------------------------------------------------------ LMNN specifics
def test_lmnn_small_classes():
    x, y = _classification()
    y = y.copy()
    y[y == 2] = 1
    y[:3] = 2  # a class of 3 members: at most 2 target neighbours
    with pytest.warns(UserWarning, match="n_neighbors=3 is too large.*using n_neighbors=2"):
        model = LMNN(n_neighbors=3).fit(x, y)
    assert model.n_neighbors_ == 2 and model.target_neighbors_.shape == (N, 2)
    y[0] = 7  # a class with a single member
    with pytest.raises(ValueError, match="class 7 has 1 sample"):
        LMNN().fit(x, y)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n_neighbors": 0}, ValueError),
        ({"push_weight": 1.5}, ValueError),
        ({"margin": -1.0}, ValueError),
        ({"n_neighbors": 2.5}, TypeError),
    ],
)
def test_lmnn_parameter_errors(kwargs, error):
    x, y = _classification()
    with pytest.raises(error):
        LMNN(**kwargs).fit(x, y)


# -------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_float32_in_float32_out(est):
    x, y = _data_for(est, np.float32)
    model = clone(est).fit(x, y)
    assert model.components_.dtype == np.float32
    assert model.loss_history_.dtype == np.float32
    assert model.transform(x).dtype == np.float32
    if isinstance(est, MLKR):
        assert model.predict(x).dtype == np.float32


def test_float64_is_really_float64():
    x, y = _classification(np.float64)
    model = NCA().fit(x, y)
    assert model.components_.dtype == np.float64
    assert model.loss_history_.dtype == np.float64
    # float64 precision: the recorded loss agrees with a float64 evaluation to 1e-12
    with _x64():
        ref = float(nca_loss(model.components_, x, y))
    assert model.loss_history_[-1] == pytest.approx(ref, rel=1e-12)
    assert jnp.zeros(()).dtype == jnp.float32  # the global default was left alone


def test_integer_input_is_fitted_in_float64():
    x, y = _classification()
    xi = np.round(3 * x).astype(np.int64)
    model = NCA().fit(xi, y)
    assert model.components_.dtype == np.float64
    assert model.transform(xi).dtype == np.float64


# ------------------------------------------------------------------ failures and warnings
def test_failed_fit_leaves_fitted_estimator_unchanged():
    x, y = _classification()
    model = NCA().fit(x, y)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(model).items()}
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, y)
    with pytest.raises(ValueError, match="`init` must have shape"):
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
    x, y = _classification()
    with pytest.warns(ConvergenceWarning, match="did not converge within max_iter=1"):
        model = NCA(max_iter=1).fit(x, y)
    assert model.n_iter_ == 1 and not model.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        NCA().fit(x, y)  # converges: no warning


def test_tol_none_means_default_tol():
    x, y = _classification()
    a = NCA(tol=None).fit(x, y)
    b = NCA(tol=DEFAULT_TOL).fit(x, y)
    assert DEFAULT_TOL == 1e-6
    np.testing.assert_array_equal(a.components_, b.components_)
    assert a.n_iter_ == b.n_iter_


# ------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("est", [MLKR(), LMNN()], ids=["MLKR", "LMNN"])
def test_same_random_state_gives_identical_results(est):
    x, y = _data_for(est)
    a = clone(est).set_params(init="random", random_state=3).fit(x, y)
    b = clone(est).set_params(init="random", random_state=3).fit(x, y)
    c = clone(est).set_params(init="random", random_state=4).fit(x, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_)
    assert not np.array_equal(a.components_, c.components_)


# ---------------------------------------------------------------- optimizer and verbose
def test_custom_optimizer_and_verbose(capsys):
    x, y = _classification()
    with _no_convergence_warnings():
        model = NCA(optimizer=optax.adam(0.05), max_iter=300, tol=1e-5).fit(x, y)
    assert model.loss_history_[-1] < model.loss_history_[0]
    # verbose runs the same loop in chunks behind a progress bar: same result
    quiet = NCA().fit(x, y)
    loud = NCA(verbose=True).fit(x, y)
    np.testing.assert_array_equal(quiet.components_, loud.components_)
    assert quiet.n_iter_ == loud.n_iter_
    assert "fit" in capsys.readouterr().err


# ------------------------------------------------------------------------------ imports
def test_lazy_top_level_access():
    assert mj.MLKR is MLKR and mj.NCA is NCA and mj.LMNN is LMNN


def test_missing_sklearn_gives_install_hint(monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "metricjax.estimators")
    with pytest.raises(ImportError, match=r'pip install "metricjax\[sklearn\]"'):
        importlib.import_module("metricjax.estimators")


def test_pipeline_with_classifier():
    x, y = _classification()
    pipe = make_pipeline(StandardScaler(), LMNN(), KNeighborsClassifier(n_neighbors=3))
    assert pipe.fit(x, y).score(x, y) > 0.8
