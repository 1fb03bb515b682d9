"""The shared estimator base: metric-learn's Mahalanobis API, pairs, preprocessor, LMNN's arguments."""

import warnings

import jax
import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import metricjax as mj  # noqa: E402
from metricjax.estimators import LMNN, MLKR, NCA, MahalanobisLearner  # noqa: E402


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def _quiet(est, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args)


@pytest.mark.parametrize("cls", [MLKR, NCA, LMNN])
def test_every_estimator_is_a_mahalanobis_learner(cls):
    assert issubclass(cls, MahalanobisLearner)
    for name in ("transform", "get_mahalanobis_matrix", "get_metric", "pair_distance",
                 "pair_score", "score_pairs"):  # fmt: skip
        assert callable(getattr(cls, name))
    assert "preprocessor" in cls().get_params()


def test_pair_distance_and_score_match_the_definition(iris):
    X, y = iris
    est = _quiet(NCA(n_components=2, max_iter=20), X, y)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(X), size=(25, 2))
    pairs = X[idx]  # (25, 2, 4)
    L = est.components_
    want = np.linalg.norm((pairs[:, 1] - pairs[:, 0]) @ L.T, axis=1)
    np.testing.assert_allclose(est.pair_distance(pairs), want, rtol=1e-12)
    np.testing.assert_allclose(est.pair_score(pairs), -want, rtol=1e-12)
    metric = est.get_metric()
    np.testing.assert_allclose([metric(a, b) for a, b in pairs], want, rtol=1e-10)
    with pytest.warns(FutureWarning, match="score_pairs will be deprecated in release 0.7.0"):
        np.testing.assert_allclose(est.score_pairs(pairs), want, rtol=1e-12)


def test_transformers_are_the_learners_metric_learn_makes_transformers():
    # metric-learn's tuples learners are not scikit-learn transformers (a fit_transform of
    # pairs could not work); the learners fitted on points are, with fit_transform
    from sklearn.base import TransformerMixin

    from benchmarks._reference_libs import metric_learn_compat

    ml = metric_learn_compat()
    for name in ("ITML", "MMC", "SDML", "LSML", "SCML", "ITML_Supervised", "MMC_Supervised",
                 "SDML_Supervised", "LSML_Supervised", "SCML_Supervised", "NCA", "LMNN",
                 "MLKR", "Covariance", "LFDA", "RCA", "RCA_Supervised"):  # fmt: skip
        ours = getattr(mj.estimators, name)
        want = issubclass(getattr(ml, name), TransformerMixin)
        assert issubclass(ours, TransformerMixin) == want, name
        assert hasattr(ours, "fit_transform") == want, name
        assert issubclass(ours, MahalanobisLearner) and hasattr(ours, "transform"), name


POINTS_LEARNERS = ("NCA", "LMNN", "MLKR", "Covariance", "LFDA", "RCA_Supervised",
                   "ITML_Supervised", "MMC_Supervised", "SDML_Supervised", "LSML_Supervised",
                   "SCML_Supervised")  # fmt: skip


@pytest.mark.parametrize("name", POINTS_LEARNERS)
def test_set_output_configures_transform(name):
    # scikit-learn's set_output wraps the transform a class defines itself: transform,
    # not only fit_transform, returns the chosen container
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    df = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"], index=np.arange(150) + 1000)
    kw = {"max_iter": 5} if name in ("NCA", "MLKR", "LMNN") else {}
    if name.endswith("_Supervised"):
        kw["random_state"] = 0
    if name == "RCA_Supervised":
        kw["n_chunks"] = 30
    est = getattr(mj.estimators, name)(**kw).set_output(transform="pandas")
    target = X[:, 0] if name == "MLKR" else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and constraint-count warnings
        est.fit(df, target)
    out = est.transform(df)
    assert isinstance(out, pd.DataFrame), type(out)
    assert list(out.columns) == list(est.get_feature_names_out())
    assert list(out.index) == list(df.index)
    np.testing.assert_array_equal(out.to_numpy(), df.to_numpy() @ est.components_.T)
    est.set_output(transform="default")
    assert isinstance(est.transform(df), np.ndarray)


def test_set_output_in_a_pipeline():
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    df = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    pipe = make_pipeline(StandardScaler(), mj.estimators.Covariance()).set_output(transform="pandas")
    out = pipe.fit(df, y).transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == [f"covariance{i}" for i in range(4)]


def test_get_metric_squeezes_its_points_as_metric_learn():
    # metric-learn's metric_fun squeezes u and v (scipy's validate_vector): a (1, d) row is
    # a point, and with one feature so is a scalar; two rows are refused
    from benchmarks._reference_libs import metric_learn_compat

    ml = metric_learn_compat()
    X, _ = load_iris(return_X_y=True)
    ours, theirs = mj.estimators.Covariance().fit(X), ml.Covariance().fit(X)
    f, g = ours.get_metric(), theirs.get_metric()
    want = f(X[0], X[1])
    assert f(X[0][None], X[1][None]) == want
    assert f(X[0][None], X[1]) == want
    np.testing.assert_allclose(want, g(X[0][None], X[1][None]), rtol=1e-12)
    with pytest.raises(ValueError, match="u and v must be"):
        f(X[:2], X[2:4])
    ours.components_, theirs.components_ = np.array([[3.1]]), np.array([3.1])
    np.testing.assert_allclose(ours.get_metric()(5, 6.7), 3.1 * 1.7, rtol=1e-12)
    np.testing.assert_allclose(ours.get_metric()(5, 6.7), theirs.get_metric()(5, 6.7), rtol=1e-12)
    np.testing.assert_allclose(ours.get_metric()([5], [[6.7]], squared=True), (3.1 * 1.7) ** 2)
    ours.components_ = np.array([3.1])  # 1-D, as metric-learn's own test sets it
    for u, v in [(5, 6.7), ([5], [6.7]), ([[5]], [[6.7]])]:
        np.testing.assert_allclose(ours.get_metric()(u, v), theirs.get_metric()(u, v), rtol=1e-12)


def test_pair_distance_equals_metric_learns(iris):
    from benchmarks._reference_libs import metric_learn_compat

    ml = metric_learn_compat()
    X, y = iris
    ours = _quiet(NCA(n_components=2, max_iter=20), X, y)
    theirs = ml.NCA(n_components=2, max_iter=5).fit(X, y)
    theirs.components_ = ours.components_.copy()  # same map, compare the pair API only
    pairs = X[np.random.default_rng(1).integers(0, len(X), size=(30, 2))]
    np.testing.assert_allclose(ours.pair_distance(pairs), theirs.pair_distance(pairs), rtol=1e-12)
    np.testing.assert_allclose(ours.pair_score(pairs), theirs.pair_score(pairs), rtol=1e-12)
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), rtol=1e-12)
    np.testing.assert_allclose(ours.get_mahalanobis_matrix(), theirs.get_mahalanobis_matrix())


@pytest.mark.parametrize("kind", ["array", "callable"])
def test_preprocessor_turns_indices_into_points(iris, kind):
    X, y = iris
    prep = X if kind == "array" else (lambda idx: X[idx])
    idx = np.arange(len(X))
    a = _quiet(NCA(n_components=2, max_iter=15, preprocessor=prep), idx, y)
    b = _quiet(NCA(n_components=2, max_iter=15), X, y)
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-10)
    np.testing.assert_allclose(a.transform(idx[:7]), b.transform(X[:7]), rtol=1e-10)
    pair_idx = np.array([[0, 1], [5, 100], [3, 3]])
    np.testing.assert_allclose(a.pair_distance(pair_idx), b.pair_distance(X[pair_idx]), rtol=1e-10)


def test_preprocessor_failures_are_metric_learns_preprocessor_error(iris):
    # metric-learn wraps every failure of the preprocessor in its PreprocessorError:
    # ported code that catches it catches ours; ours is also a ValueError
    from benchmarks._reference_libs import metric_learn_compat
    from metricjax.exceptions import PreprocessorError

    ml = metric_learn_compat()
    from metric_learn.exceptions import PreprocessorError as MLPreprocessorError

    X, y = iris
    pairs = np.array([[0, 1000], [1, 2]])
    py = np.array([1, -1])

    def failing(indices):
        raise KeyError("no such point")

    for prep, idx in ((X, pairs), (X, pairs.astype(float)), (failing, pairs[1:] % 150)):
        with pytest.raises(PreprocessorError) as ours:
            mj.estimators.ITML(preprocessor=prep).fit(idx, py[: len(idx)])
        with pytest.raises(MLPreprocessorError) as theirs, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ml.ITML(preprocessor=prep).fit(idx, py[: len(idx)])
        prefix = "An error occurred when trying to use the preprocessor: "
        assert str(ours.value).startswith(prefix) and str(theirs.value).startswith(prefix)
        assert isinstance(ours.value, ValueError)
        assert isinstance(ours.value.__cause__, type(ours.value.original_error))
    assert isinstance(ours.value.original_error, KeyError)


def test_preprocessor_errors_name_the_argument(iris):
    X, y = iris
    est = _quiet(NCA(n_components=2, max_iter=5, preprocessor=X), np.arange(len(X)), y)
    with pytest.raises(ValueError, match="out of range for the `preprocessor`"):
        est.pair_distance(np.array([[0, 1000]]))
    with pytest.raises(ValueError, match=r"Tuples of 2 element\(s\) expected by NCA"):
        est.pair_distance(X[np.zeros((4, 3), int)])
    with pytest.raises(ValueError, match="Invalid type for the `preprocessor`"):
        NCA(preprocessor="not an array").fit(X, y)
    plain = _quiet(NCA(n_components=2, max_iter=5), X, y)
    with pytest.raises(ValueError, match="3D array of formed tuples expected by NCA. Found 2D"):
        plain.pair_distance(np.array([[0, 1]]))
    with pytest.raises(ValueError, match="`pairs` contains NaN"):
        plain.pair_distance(np.full((2, 2, 4), np.nan))
    with pytest.raises(ValueError, match="has 3 features, but NCA was fitted with 4"):
        plain.pair_distance(np.zeros((2, 2, 3)))


def test_mlkr_predict_is_kernel_regression(iris):
    X, _ = iris
    y = X[:, 0] + 0.1 * np.random.default_rng(0).standard_normal(len(X))
    est = _quiet(MLKR(n_components=2, max_iter=30), X[:, 1:], y)
    with jax.enable_x64(True):
        want = mj.losses.kernel_regression(est.components_, X[:, 1:], y, X[:10, 1:])
    np.testing.assert_allclose(est.predict(X[:10, 1:]), want, rtol=1e-10)
    # and the plain softmax formula in NumPy
    z, zq = X[:, 1:] @ est.components_.T, X[:10, 1:] @ est.components_.T
    d = ((zq[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    w = np.exp(-(d - d.min(1, keepdims=True)))
    np.testing.assert_allclose(est.predict(X[:10, 1:]), (w @ y) / w.sum(1), rtol=1e-10)


def test_lmnn_accepts_metric_learns_constructor_arguments(iris):
    X, y = iris
    base = _quiet(LMNN(n_neighbors=3, push_weight=0.3, max_iter=30), X, y)
    # regularization is the pull weight: push_weight = 1 - regularization
    same = _quiet(LMNN(n_neighbors=3, regularization=0.7, max_iter=30), X, y)
    np.testing.assert_allclose(same.components_, base.components_, rtol=1e-10)
    with pytest.warns(FutureWarning, match="`k` is deprecated.*n_neighbors=3"):
        _quiet(LMNN(k=3, push_weight=0.3, max_iter=30), X, y)
    with pytest.warns(FutureWarning, match="`learn_rate`.*not used.*line search"):
        _quiet(LMNN(learn_rate=1e-7, max_iter=5), X, y)
    with pytest.warns(FutureWarning, match="`min_iter`.*not used"):
        _quiet(LMNN(min_iter=50, max_iter=5), X, y)
    # convergence_tol is used as tol
    a = _quiet(LMNN(convergence_tol=1e-2, max_iter=200), X, y)
    b = _quiet(LMNN(tol=1e-2, max_iter=200), X, y)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-10)
    with pytest.raises(ValueError, match="`regularization` must lie in"):
        LMNN(regularization=2.0).fit(X, y)


def test_metric_learn_style_code_runs_unchanged(iris):
    """Code written for metric-learn's LMNN constructor must not crash."""
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LMNN(init="auto", n_neighbors=3, min_iter=50, max_iter=40, learn_rate=1e-7,
                   regularization=0.5, convergence_tol=0.001, verbose=False,
                   preprocessor=None, n_components=None, random_state=0).fit(X, y)  # fmt: skip
    assert est.transform(X).shape == X.shape


@pytest.mark.parametrize(
    "est",
    [mj.ITML(), mj.SCML(), mj.LSML(), mj.NCA(), mj.Covariance(), mj.RCA()],
    ids=["ITML", "SCML", "LSML", "NCA", "Covariance", "RCA"],
)
def test_pair_tuples_are_checked_before_the_fit_as_in_metric_learn(est):
    """metric-learn's own tests call ``_check_preprocessor()`` on an estimator not yet
    fitted, give ``pair_score`` / ``pair_distance`` triplets and expect its tuple-size
    message, word for word; valid pairs then meet the not-fitted error."""
    from sklearn.exceptions import NotFittedError

    est._check_preprocessor()
    assert est.preprocessor_ is est.preprocessor
    triplets = np.array([[[1.3, 6.3], [3.0, 6.8], [6.5, 4.4]],
                         [[1.9, 5.3], [1.0, 7.8], [3.2, 1.2]]])  # fmt: skip
    msg = (  # metric-learn's expected message (its make_context: " by <class name>")
        f"Tuples of 2 element(s) expected by {type(est).__name__}. Got tuples of 3 "
        f"element(s) instead (shape=(2, 3, 2)):\ninput={triplets}.\n"
    )
    for method in (est.pair_score, est.pair_distance):
        with pytest.raises(ValueError) as err:
            method(triplets)
        assert str(err.value) == msg
        with pytest.raises(NotFittedError):
            method(triplets[:, :2])
