"""Covariance, LFDA, RCA and RCA_Supervised estimators against metric-learn 0.7.0."""

import warnings

import jax
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.utils.estimator_checks import parametrize_with_checks

import metricjax as mj
from benchmarks._reference_libs import metric_learn_compat
from metricjax.constraints import Constraints
from metricjax.estimators import LFDA, RCA, Covariance, RCA_Supervised
from metricjax.solvers import lfda_components

ml = metric_learn_compat()

RTOL = 1e-8


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def metric(est):
    return np.asarray(est.get_mahalanobis_matrix(), np.float64)


@pytest.fixture(scope="module")
def wine():
    x, y = load_wine(return_X_y=True)
    return (x - x.mean(0)) / x.std(0), y


# ------------------------------------------------------------------ estimator checks
@parametrize_with_checks(
    [Covariance(), LFDA(k=2), RCA_Supervised(n_chunks=4, chunk_size=3, random_state=0)]
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # LFDA: k above a small class
        try:
            check(estimator)
        except (ValueError, AssertionError) as err:
            # scikit-learn's tiny/odd data sets cannot hold the chunklets or give a
            # singular scatter: our clear errors, where metric-learn returns NaN
            cause = err if isinstance(err, ValueError) else err.__cause__
            if isinstance(cause, ValueError) and (
                "singular" in str(cause) or "chunk" in str(cause)
            ):
                pytest.skip(f"degenerate check data: {str(cause)[:80]}")
            raise


def test_lazy_top_level_names():
    assert mj.Covariance is Covariance and mj.LFDA is LFDA
    assert mj.RCA is RCA and mj.RCA_Supervised is RCA_Supervised


# ------------------------------------------------------------------------ Covariance
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_covariance_matches_metric_learn(wine, dtype):
    x, _ = wine
    x = x * np.linspace(0.5, 3, x.shape[1])
    ref = ml.Covariance().fit(x)
    got = Covariance().fit(x.astype(dtype))
    assert got.components_.dtype == dtype
    assert got.transform(x.astype(dtype)).dtype == dtype
    tol = RTOL if dtype == np.float64 else 1e-4
    assert rel(metric(got), ref.get_mahalanobis_matrix()) < tol
    if dtype == np.float64:
        assert rel(got.components_, ref.components_) < RTOL


def test_covariance_singular_is_pseudo_inverse(wine):
    x, _ = wine
    x = np.c_[x[:, :4], x[:, 0] + x[:, 1]]  # rank 4 in 5 features
    ref = ml.Covariance().fit(x).get_mahalanobis_matrix()
    got = metric(Covariance().fit(x))
    assert rel(got, ref) < 1e-6
    # the null direction of the data gets weight 0
    e = np.array([1.0, 1.0, 0, 0, -1.0])
    assert abs(e @ got @ e) < 1e-8 * np.abs(got).max()


def test_covariance_is_scale_invariant(wine):
    x, _ = wine
    base = Covariance().fit(x).transform(x)
    for c in (1e-4, 1e4):
        np.testing.assert_allclose(
            Covariance().fit(x * c).transform(x * c), base, rtol=1e-7, atol=1e-7
        )


def test_covariance_bad_input():
    with pytest.raises(ValueError, match="minimum of 2"):
        Covariance().fit(np.ones((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        Covariance().fit(np.array([[0.0, np.nan], [1.0, 2.0]]))


# ------------------------------------------------------------------------------ LFDA
@pytest.mark.parametrize("embedding_type", ["weighted", "orthonormalized", "plain"])
def test_lfda_estimator_equals_solver(wine, embedding_type):
    x, y = wine
    with jax.enable_x64(True):
        ref = np.asarray(lfda_components(x, y, n_components=3, k=5, embedding_type=embedding_type))
    got = LFDA(n_components=3, k=5, embedding_type=embedding_type).fit(x, y)
    assert got.components_.shape == (3, 13) and got.components_.dtype == np.float64
    assert rel(got.components_, ref) < 1e-12
    np.testing.assert_array_equal(got.classes_, [0, 1, 2])


def test_lfda_full_rank_metric_matches_metric_learn_up_to_its_bugs(wine):
    """metric-learn's LFDA ("plain") differs (its local-scale and scatter bugs, see
    tests/test_solvers_linalg.py); both separate wine in the embedding."""
    x, y = wine
    ours = LFDA(k=7, embedding_type="plain").fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ml.LFDA(k=7, embedding_type="plain").fit(x, y)
    assert rel(metric(ours), theirs.get_mahalanobis_matrix()) > 1e-3  # the bugs show
    from sklearn.neighbors import KNeighborsClassifier

    for est in (ours, theirs):
        z = est.transform(x)
        assert KNeighborsClassifier(3).fit(z[::2], y[::2]).score(z[1::2], y[1::2]) > 0.9


def test_lfda_string_labels_and_float32(wine):
    x, y = wine
    names = np.array(["a", "b", "c"])[y]
    got = LFDA(n_components=2, k=5).fit(x.astype(np.float32), names)
    assert got.components_.dtype == np.float32
    ref = LFDA(n_components=2, k=5).fit(x, y)
    s = np.sign(np.sum(got.components_ * ref.components_, axis=1, keepdims=True))
    assert rel(s * got.components_, ref.components_) < 1e-3


def test_lfda_degenerate_input(wine):
    x, y = wine
    with pytest.raises(ValueError, match="at least 2 classes"):
        LFDA().fit(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="`embedding_type` must be one of"):
        LFDA(embedding_type="whitened").fit(x, y)
    with pytest.raises(ValueError, match=r"Invalid n_components, must be in \[1, 13\]"):
        LFDA(n_components=14).fit(x, y)
    xs = x.copy()
    xs[:, 3] = 1.0  # rank deficiency: metric-learn returns complex/NaN components
    with pytest.raises(ValueError, match="local within-class scatter matrix of `x` is singular"):
        LFDA(k=5).fit(xs, y)
    y1 = y.copy()
    y1[0] = 7  # a class with one point: a warning, as in the solver
    with pytest.warns(UserWarning, match="single point"):
        LFDA(k=5).fit(x, y1)


def test_lfda_failed_fit_leaves_estimator_unchanged(wine):
    x, y = wine
    est = LFDA(k=5).fit(x, y)
    before = est.components_.copy()
    xs = x.copy()
    xs[:, 3] = 1.0
    with pytest.raises(ValueError):
        est.fit(xs, y)
    np.testing.assert_array_equal(est.components_, before)


# ------------------------------------------------------------------------------- RCA
@pytest.mark.parametrize("n_components", [None, 13])
def test_rca_matches_metric_learn(wine, n_components):
    x, y = wine
    chunks = Constraints(y).chunks(40, chunk_size=3, random_state=0)
    ref = ml.RCA(n_components=n_components).fit(x, chunks)
    got = RCA(n_components=n_components).fit(x, chunks)
    assert rel(metric(got), ref.get_mahalanobis_matrix()) < RTOL


def test_rca_reduced_matches_metric_learn_metric(wine):
    x, y = wine
    chunks = Constraints(y).chunks(40, chunk_size=3, random_state=0)
    ref = ml.RCA(n_components=5).fit(x, chunks)
    got = RCA(n_components=5).fit(x, chunks)
    assert got.components_.shape == (5, 13)
    assert rel(metric(got), np.real(ref.get_mahalanobis_matrix())) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rca_supervised_matches_metric_learn(wine, dtype):
    x, y = wine
    ref = ml.RCA_Supervised(n_chunks=40, chunk_size=3, random_state=1).fit(x, y)
    got = RCA_Supervised(n_chunks=40, chunk_size=3, random_state=1).fit(x.astype(dtype), y)
    assert got.components_.dtype == dtype
    tol = RTOL if dtype == np.float64 else 1e-3
    assert rel(metric(got), ref.get_mahalanobis_matrix()) < tol


def test_rca_supervised_string_labels_and_one_class(wine):
    """String labels are encoded as the other supervised learners encode them (metric-learn
    casts them to int and fails); chunklets need only one class."""
    x, y = wine
    names = np.array(["class_0", "class_1", "class_2"])[y]  # sorted as y: same draws
    want = RCA_Supervised(n_chunks=40, chunk_size=3, random_state=1).fit(x, y).components_
    got = RCA_Supervised(n_chunks=40, chunk_size=3, random_state=1).fit(x, names).components_
    np.testing.assert_array_equal(got, want)
    one = RCA_Supervised(n_chunks=20, chunk_size=4, random_state=0).fit(x, np.zeros(len(x), int))
    assert np.all(np.isfinite(one.components_))
    with pytest.raises(ValueError, match="at least 1 class in `y`"):
        RCA_Supervised(n_chunks=20, random_state=0).fit(x, -np.ones(len(x), int))


def test_rca_degenerate_input(wine):
    x, y = wine
    # fewer chunklets than the classes hold / asked for
    with pytest.raises(ValueError, match="chunk"):
        RCA_Supervised(n_chunks=100, chunk_size=3, random_state=0).fit(x, y)
    # too few chunklet points for the features: metric-learn warns and returns NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = ml.RCA_Supervised(n_chunks=5, chunk_size=2, random_state=0).fit(x, y)
    assert not np.isfinite(bad.components_).all()
    with pytest.raises(ValueError, match="degrees of freedom for 13 features"):
        RCA_Supervised(n_chunks=5, chunk_size=2, random_state=0).fit(x, y)
    chunks = Constraints(y).chunks(40, chunk_size=3, random_state=0)
    xs = x.copy()
    xs[:, 2] = 1.0  # rank deficiency
    with pytest.raises(ValueError, match="within-chunklet covariance of `x` is singular"):
        RCA().fit(xs, chunks)
    with pytest.raises(ValueError, match="no chunklet with two or more points"):
        RCA().fit(x, np.arange(len(x)))
    with pytest.raises(ValueError, match="`chunk_size` must be >= 2"):
        RCA_Supervised(chunk_size=1).fit(x, y)


def test_rca_supervised_num_chunks_is_deprecated(wine):
    x, y = wine
    with pytest.warns(FutureWarning, match="n_chunks"):
        a = RCA_Supervised(num_chunks=40, chunk_size=3, random_state=0).fit(x, y)
    b = RCA_Supervised(n_chunks=40, chunk_size=3, random_state=0).fit(x, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert clone(a).get_params()["num_chunks"] == 40


def test_float32_input_is_solved_in_float64():
    # features over 1e-2..1e2: the covariance's eigenvalues span about 1e8, beyond float32
    # (its pseudo-inverse dropped the finest feature: Covariance + 3-NN 0.58 against 0.84);
    # the estimators solve in float64, as metric-learn, and store float32 components
    from sklearn.datasets import make_classification

    X, y = make_classification(400, 8, n_informative=8, n_redundant=0, n_classes=3,
                               random_state=0)  # fmt: skip
    X = X * np.logspace(-2, 2, 8)
    for est in (Covariance(), LFDA(k=5), RCA_Supervised(n_chunks=60, random_state=0)):
        f64 = clone(est).fit(X, y).components_
        f32 = clone(est).fit(X.astype(np.float32), y).components_
        assert f32.dtype == np.float32
        # the same solve, from the data rounded to float32
        want = clone(est).fit(X.astype(np.float32).astype(np.float64), y).components_
        np.testing.assert_allclose(f32, want.astype(np.float32), rtol=1e-6, atol=0)
        assert np.abs(f32 - f64).max() <= 1e-3 * np.abs(f64).max(), type(est).__name__


def test_covariance_fits_of_similar_sizes_share_one_compiled_program(wine):
    # the rows are padded to padded_size(n): cross-validation folds of unequal sizes
    # compile once (0.3 s), not once per size
    from metricjax.solvers import _covariance

    x, _ = wine
    before = _covariance._covariance_core._cache_size()
    for n in range(100, 110):  # one bucket: 97..112
        got = Covariance().fit(x[:n]).get_mahalanobis_matrix()
        want = np.linalg.inv(np.cov(x[:n].T))
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10 * np.abs(want).max())
    assert _covariance._covariance_core._cache_size() - before <= 1

