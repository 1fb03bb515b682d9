"""Pairs learners ITML and MMC and their supervised versions against metric-learn 0.7.0.

Same metric, bounds and threshold as metric-learn's estimators on the same pairs and
hyperparameters; metric-learn's threshold calibration strategies; scikit-learn's
estimator checks on the supervised versions; cloning, pipelines and cross-validation on
pairs; bad input; a failed fit leaves the estimator unchanged.
"""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, load_wine
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import metricjax as mj
from benchmarks._reference_libs import metric_learn_compat
from metricjax.constraints import Constraints, wrap_pairs
from metricjax.estimators import ITML, MMC, ITML_Supervised, MMC_Supervised

ml = metric_learn_compat()

RTOL = 1e-6


def _iris_pairs(n=60, seed=0):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    pos_neg = Constraints(y).positive_negative_pairs(n, random_state=seed)
    pairs, yp = wrap_pairs(X, pos_neg)
    return X, y, pairs, yp


def _idx_pairs(n=60, seed=0):
    """The same pairs as indices into X (for the preprocessor)."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    a, b, c, d = Constraints(y).positive_negative_pairs(n, random_state=seed)
    idx = np.vstack((np.column_stack((a, b)), np.column_stack((c, d))))
    return X, idx, np.r_[np.ones(len(a)), -np.ones(len(c))].astype(int)


PAIRS_LEARNERS = [
    (ITML, "ITML", {}),
    (ITML, "ITML", {"prior": "covariance", "gamma": 0.5}),
    (MMC, "MMC", {}),
    (MMC, "MMC", {"diagonal": True}),
]
PAIRS_IDS = ["itml", "itml-cov", "mmc", "mmc-diag"]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # metric-learn's own deprecation noise
        return fn(*args, **kwargs)


# ------------------------------------------------------------------ same as metric-learn
@pytest.mark.parametrize(("cls", "name", "kw"), PAIRS_LEARNERS, ids=PAIRS_IDS)
def test_pairs_learner_matches_metric_learn(cls, name, kw):
    _, _, pairs, y = _iris_pairs()
    ours = cls(random_state=0, **kw).fit(pairs, y)
    ref = _quiet(getattr(ml, name)(random_state=0, **kw).fit, pairs, y)
    np.testing.assert_allclose(
        ours.get_mahalanobis_matrix(), ref.get_mahalanobis_matrix(), rtol=RTOL, atol=1e-9
    )
    np.testing.assert_allclose(ours.threshold_, ref.threshold_, rtol=RTOL)
    np.testing.assert_array_equal(ours.predict(pairs), ref.predict(pairs))
    np.testing.assert_allclose(
        ours.decision_function(pairs), ref.decision_function(pairs), rtol=RTOL
    )
    # ROC AUC: ours is scikit-learn's on our scores; it may differ from metric-learn's
    # only by the (positive, negative) pairs whose scores are within the rounding of
    # the two fits (rank swaps of near-ties), each worth 1 / (n_pos n_neg).
    score, auc = ours.decision_function(pairs), ours.score(pairs, y)
    assert auc == roc_auc_score(y, score)
    gap = np.abs(score[y == 1][:, None] - score[y == -1][None, :])
    near_ties = int(np.sum(gap <= 10 * RTOL * np.abs(score).max()))
    n_pn = int(np.sum(y == 1) * np.sum(y == -1))
    assert abs(auc - ref.score(pairs, y)) <= near_ties / n_pn + 1e-12
    if name == "ITML":
        np.testing.assert_allclose(ours.bounds_, ref.bounds_, rtol=1e-12)


SUPERVISED = [
    (ITML_Supervised, "ITML_Supervised", {}),
    (MMC_Supervised, "MMC_Supervised", {}),
    (MMC_Supervised, "MMC_Supervised", {"diagonal": True}),
]
SUP_IDS = ["itml", "mmc", "mmc-diag"]


@pytest.mark.parametrize(("cls", "name", "kw"), SUPERVISED, ids=SUP_IDS)
@pytest.mark.parametrize("data", ["iris", "wine"])
def test_supervised_matches_metric_learn(cls, name, kw, data):
    X, y = (load_iris if data == "iris" else load_wine)(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    ours = cls(n_constraints=100, random_state=1, **kw).fit(X, y)
    ref = _quiet(getattr(ml, name)(n_constraints=100, random_state=1, **kw).fit, X, y)
    np.testing.assert_allclose(
        ours.get_mahalanobis_matrix(), ref.get_mahalanobis_matrix(), rtol=RTOL, atol=1e-9
    )
    np.testing.assert_allclose(ours.transform(X[:5]) @ ours.transform(X[:5]).T,
                               ref.transform(X[:5]) @ ref.transform(X[:5]).T, rtol=RTOL, atol=1e-9)  # fmt: skip


def test_supervised_random_state_object_is_consumed_like_metric_learn():
    """A RandomState object serves the constraints then the random prior, in that order."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    ours = ITML_Supervised(n_constraints=50, prior="random",
                           random_state=np.random.RandomState(3)).fit(X, y)  # fmt: skip
    ref = _quiet(ml.ITML_Supervised(n_constraints=50, prior="random",
                                    random_state=np.random.RandomState(3)).fit, X, y)  # fmt: skip
    np.testing.assert_allclose(
        ours.get_mahalanobis_matrix(), ref.get_mahalanobis_matrix(), rtol=RTOL, atol=1e-9
    )


# --------------------------------------------------------------------- threshold logic
@pytest.mark.parametrize(
    "params",
    [
        {"strategy": "accuracy"},
        {"strategy": "f_beta", "beta": 1.0},
        {"strategy": "f_beta", "beta": 0.3},
        {"strategy": "max_tpr", "min_rate": 0.8},
        {"strategy": "max_tnr", "min_rate": 0.8},
        {"strategy": "max_tpr", "min_rate": 0.0},
        {"strategy": "max_tnr", "min_rate": 1.0},
    ],
)
def test_calibrate_threshold_matches_metric_learn(params):
    _, _, pairs, y = _iris_pairs()
    _, _, valid, yv = _iris_pairs(n=40, seed=7)
    ours = ITML(random_state=0).fit(pairs, y)
    ref = _quiet(ml.ITML(random_state=0).fit, pairs, y)
    ours.calibrate_threshold(valid, yv, **params)
    _quiet(ref.calibrate_threshold, valid, yv, **params)
    np.testing.assert_allclose(ours.threshold_, ref.threshold_, rtol=RTOL)
    np.testing.assert_array_equal(ours.predict(valid), ref.predict(valid))
    # fit(calibration_params=...) calibrates on the training pairs the same way
    fitted = ITML(random_state=0).fit(pairs, y, calibration_params=params)
    ref_fit = _quiet(ml.ITML(random_state=0).fit, pairs, y, calibration_params=params)
    np.testing.assert_allclose(fitted.threshold_, ref_fit.threshold_, rtol=RTOL)


@pytest.mark.parametrize("learner", [ITML, MMC, mj.estimators.SDML])
def test_fit_calibrates_like_calibrate_threshold_on_the_training_pairs(learner):
    # fit scores its own validated pairs directly; an explicit calibrate_threshold on the
    # same pairs (here indices through a preprocessor) must give the same threshold
    X, _, pairs, y = _iris_pairs()
    idx = np.arange(2 * len(pairs)).reshape(-1, 2)
    points = pairs.reshape(-1, X.shape[1])
    kw = {"balance_param": 1e-3} if learner is mj.estimators.SDML else {}
    for params in ({}, {"strategy": "f_beta", "beta": 0.5},
                   {"strategy": "max_tpr", "min_rate": 0.7}, {"strategy": "max_tnr", "min_rate": 0.7}):  # fmt: skip
        est = learner(preprocessor=points, **kw).fit(idx, y, calibration_params=params)
        fitted = est.threshold_
        assert est.calibrate_threshold(idx, y, **params).threshold_ == fitted


def test_accuracy_threshold_is_optimal_and_can_reject_everything():
    _, _, pairs, y = _iris_pairs()
    est = ITML(random_state=0).fit(pairs, y)
    acc = np.mean(est.predict(pairs) == y)
    dist = -est.decision_function(pairs)
    best = max(np.mean(np.where(dist <= t, 1, -1) == y) for t in np.r_[dist, -1.0])
    assert acc == best
    # validation pairs that are all dissimilar: the best is to reject every pair
    est.calibrate_threshold(pairs[y == -1], y[y == -1])
    assert np.all(est.predict(pairs) == -1)


def _metric_learn_accuracy_threshold(scores, y):
    """metric-learn 0.7.0's ``calibrate_threshold(strategy="accuracy")`` after its scores."""
    n_samples = len(scores)
    order = np.argsort(scores)[::-1]
    scores_sorted, y_ordered = scores[order], y[order]
    scores_sorted = np.concatenate([[scores_sorted[0] + 1], scores_sorted])
    cum_tp = np.concatenate([[0.0], np.cumsum(y_ordered == 1)])
    cum_tn_inv = np.cumsum(y_ordered[::-1] == -1)
    cum_tn = np.concatenate([[0.0], cum_tn_inv])[::-1]
    return -scores_sorted[np.argmax((cum_tp + cum_tn) / n_samples)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accuracy_rule_equals_metric_learns_bitwise(dtype):
    # one cumulative sum of the labels in place of metric-learn's two counts: the same
    # split, hence the same threshold, also with ties, one class only and one pair
    rng = np.random.default_rng(0)
    est = ITML()
    for trial in range(300):
        n = int(rng.integers(1, 60))
        scores = -rng.integers(0, 6 if trial % 2 else 10**6, size=n).astype(dtype) / 7
        q = rng.uniform()
        y = rng.choice([-1, 1], size=n, p=[q, 1 - q])
        if trial % 10 == 0:
            y = np.full(n, 1 if trial % 20 else -1)
        y = y.astype(np.int64)
        est._threshold_from_scores(scores, y)
        assert est.threshold_ == float(_metric_learn_accuracy_threshold(scores, y)), trial


def test_score_takes_zero_one_labels_as_metric_learn():
    """metric-learn's score is roc_auc_score(y, decision_function), which takes {0, 1}
    labels (1 = similar) as well: ported code scoring with them gets the same AUC."""
    _, _, pairs, y = _iris_pairs()
    est = ITML(random_state=0).fit(pairs, y)
    auc = est.score(pairs, y)
    for zero_one in ((y > 0).astype(int), (y > 0), list((y > 0).astype(float))):
        assert est.score(pairs, zero_one) == auc
    ref = _quiet(ml.ITML(random_state=0).fit, pairs, y)
    assert ref.score(pairs, (y > 0).astype(int)) == pytest.approx(auc, abs=1e-12)
    with pytest.raises(ValueError, match="labels"):
        est.score(pairs, np.where(y > 0, 2, 0))  # neither {-1, 1} nor {0, 1}


def test_set_threshold_and_predict():
    _, _, pairs, y = _iris_pairs()
    est = MMC().fit(pairs, y)
    assert est.set_threshold(-1.0) is est
    assert np.all(est.predict(pairs) == -1)
    t = float(np.median(-est.decision_function(pairs)))
    expect = np.where(-est.decision_function(pairs) <= t, 1, -1)
    np.testing.assert_array_equal(est.set_threshold(np.float32(t)).predict(pairs), expect)
    est.set_threshold(np.inf)
    assert np.all(est.predict(pairs) == 1)
    with pytest.raises(ValueError, match="threshold must be a real number"):
        est.set_threshold("high")
    assert est.set_threshold(True).threshold_ == 1.0  # metric-learn takes a bool as 0 / 1
    del est.threshold_
    with pytest.raises(AttributeError, match="threshold for this estimator has not been set"):
        est.predict(pairs)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"strategy": "best"}, 'Strategy can either be "accuracy"'),
        ({"strategy": "max_tpr"}, "min_rate must be a number"),
        ({"strategy": "max_tnr", "min_rate": 1.5}, "min_rate must be a number"),
        ({"strategy": "f_beta", "beta": None}, "beta must be a real number"),
    ],
)
def test_calibration_parameter_errors(params, match):
    _, _, pairs, y = _iris_pairs()
    est = ITML()
    with pytest.raises(ValueError, match=match):
        est.fit(pairs, y, calibration_params=params)
    assert not hasattr(est, "components_")


# ------------------------------------------------------------- scikit-learn conventions
def _ignore_few_pairs(fn):
    """check_estimator's tiny data sets have fewer distinct pairs than requested."""

    def wrapped(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Only generated", category=UserWarning)
            return fn(*args, **kwargs)

    return wrapped


@parametrize_with_checks([ITML_Supervised(), MMC_Supervised(max_iter=20)])
def test_sklearn_estimator_checks(estimator, check):
    _ignore_few_pairs(check)(estimator)


@pytest.mark.parametrize("cls", [ITML, MMC])
def test_clone_get_params_pickle(cls):
    _, _, pairs, y = _iris_pairs()
    est = cls(random_state=0)
    assert clone(est).get_params() == est.get_params()
    est.fit(pairs, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(pairs), est.predict(pairs))
    fresh = clone(est)
    assert not hasattr(fresh, "components_")


@pytest.mark.parametrize("cls", [ITML, MMC])
def test_cross_validation_on_pairs(cls):
    _, _, pairs, y = _iris_pairs()
    scores = cross_val_score(cls(random_state=0), pairs, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.7)  # ROC AUC of held-out pairs
    acc = cross_val_score(cls(random_state=0), pairs, y, cv=3, scoring="accuracy")
    assert np.all(acc > 0.6)


@pytest.mark.parametrize("cls", [ITML, MMC])
def test_preprocessor_indices_give_the_same_fit(cls):
    X, idx, y = _idx_pairs()
    formed = cls(random_state=0).fit(X[idx], y)
    indexed = cls(random_state=0, preprocessor=X).fit(idx, y)
    np.testing.assert_allclose(indexed.components_, formed.components_, rtol=1e-12)
    np.testing.assert_array_equal(indexed.predict(idx), formed.predict(X[idx]))
    np.testing.assert_allclose(indexed.transform(np.arange(5)), formed.transform(X[:5]))


def test_a_callable_preprocessor_takes_string_indicators():
    """Pairs of ids or file names, as metric-learn takes them: the preprocessor turns
    them into points; only string *data* is refused."""
    X = np.array([[1.0, 2, 3], [0, 1, 5], [2, 7, 1], [4, 1, 0.5]])
    load = lambda ids: X[[int(s[2:]) for s in ids]]
    pairs = np.array([["id0", "id1"], ["id2", "id1"], ["id0", "id3"], ["id2", "id3"]])
    y = np.array([1, -1, 1, -1])
    est = ITML(preprocessor=load).fit(pairs, y)
    ref = ITML().fit(X[[[0, 1], [2, 1], [0, 3], [2, 3]]], y)
    np.testing.assert_allclose(est.components_, ref.components_, rtol=1e-12)
    np.testing.assert_array_equal(est.predict(pairs), ref.predict(X[[[0, 1], [2, 1], [0, 3], [2, 3]]]))
    np.testing.assert_allclose(est.pair_distance(pairs), ref.pair_distance(X[[[0, 1], [2, 1], [0, 3], [2, 3]]]))
    with pytest.raises(ValueError, match=r"\(`pairs` holds strings\)"):
        ITML(preprocessor=lambda ids: np.asarray(ids).astype(str).reshape(-1, 1)).fit(pairs, y)


@pytest.mark.parametrize("cls", [ITML_Supervised, MMC_Supervised])
def test_supervised_in_pipeline_with_knn(cls):
    X, y = load_wine(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    pipe = make_pipeline(StandardScaler(), cls(random_state=0), KNeighborsClassifier(3))
    assert pipe.fit(X_tr, y_tr).score(X_te, y_te) > 0.85


def test_negative_labels_are_unlabelled_points_and_say_so():
    """metric-learn's convention: a negative label marks an unlabelled point. y in {-1, +1}
    is easy to mean as two classes, so the points left out are never left out silently."""
    X, y = load_iris(return_X_y=True)
    with pytest.warns(UserWarning, match=r"50 sample\(s\) with negative labels \[-1\] are unlabelled"):
        shifted = ITML_Supervised(n_constraints=50, random_state=0).fit(X, y - 1)
    moved = X + 1000.0 * (y == 0)[:, None]  # the unlabelled points elsewhere: unused
    with pytest.warns(UserWarning, match="unlabelled"):
        ref = ITML_Supervised(n_constraints=50, random_state=0).fit(moved, y - 1)
    np.testing.assert_array_equal(shifted.components_, ref.components_)
    with pytest.raises(ValueError, match=r"got 1 \(50 sample\(s\) with negative labels \[-1\]"):
        ITML_Supervised().fit(X[:100], np.where(y[:100] > 0, 1, -1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # labels >= 0: no warning
        ITML_Supervised(n_constraints=50, random_state=0).fit(X, y)


def test_supervised_accepts_string_labels():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    a = ITML_Supervised(n_constraints=50, random_state=0).fit(X, names)
    b = ITML_Supervised(n_constraints=50, random_state=0).fit(X, y)
    np.testing.assert_allclose(a.components_, b.components_)


@pytest.mark.parametrize("cls", [ITML, MMC])
def test_float32_in_float32_out(cls):
    _, _, pairs, y = _iris_pairs()
    est32 = cls(random_state=0).fit(pairs.astype(np.float32), y)
    est64 = cls(random_state=0).fit(pairs, y)
    assert est32.components_.dtype == np.float32 and est64.components_.dtype == np.float64
    assert est32.transform(pairs[:, 0].astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(
        est32.get_mahalanobis_matrix(), est64.get_mahalanobis_matrix(), rtol=2e-3, atol=2e-3
    )


def test_lazy_top_level_access():
    assert mj.ITML is ITML and mj.MMC_Supervised is MMC_Supervised


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", [ITML, MMC])
def test_bad_input_names_the_argument(cls):
    X, idx, y = _idx_pairs()
    pairs = X[idx]
    est = cls()
    with pytest.raises(ValueError, match=r"Tuples of 2 element\(s\) expected by \w+\. Got tuples of 3"):
        est.fit(pairs[:, [0, 1, 1]], y)
    with pytest.raises(ValueError, match=r"3D array of formed tuples expected by \w+\. Found 2D"):
        est.fit(pairs[:, 0], y)
    with pytest.raises(ValueError, match=r"`y` must hold \+1"):
        est.fit(pairs, np.where(y > 0, 1, 0))
    with pytest.raises(ValueError, match="`y` holds a single class"):
        est.fit(pairs, np.ones_like(y))
    with pytest.raises(ValueError, match=r"`y` must have shape"):
        est.fit(pairs, y[:-1])
    bad = pairs.copy()
    bad[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="`pairs` contains NaN"):
        est.fit(bad, y)
    with pytest.raises(ValueError, match=r"arrays of bytes/strings.* \(`pairs` holds strings\)"):
        est.fit(pairs.astype(str), y)  # refused as scikit-learn and metric-learn do
    with pytest.raises(ValueError, match="indices out of range for the `preprocessor`"):
        cls(preprocessor=X).fit(idx + 1000, y)
    est = cls(preprocessor=X).fit(idx, y)
    with pytest.raises(ValueError, match="`pairs` has 3 features, but .* fitted with 4"):
        est.predict(pairs[:, :, :3])
    with pytest.raises(ValueError, match="`pairs` has 4 features, but .* fitted with 3"):
        cls(preprocessor=X[:, :3]).fit(idx, y).predict(pairs)


@pytest.mark.parametrize("cls", [ITML, MMC])
def test_failed_fit_leaves_fitted_estimator_unchanged(cls):
    _, _, pairs, y = _iris_pairs()
    est = cls(random_state=0).fit(pairs, y)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(est).items()}
    with pytest.raises(ValueError):
        est.fit(pairs[:, :, :3], np.ones_like(y))  # fewer features, then a single class
    with pytest.raises(ValueError):
        est.fit(pairs, y, calibration_params={"strategy": "nope"})
    assert vars(est).keys() == before.keys()
    for k, v in before.items():
        np.testing.assert_array_equal(vars(est)[k], v)


def test_supervised_bad_labels():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="at least 2 classes in `y`"):
        ITML_Supervised().fit(X, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="`n_constraints` must be a positive int"):
        MMC_Supervised(n_constraints=0).fit(X, y)
    est = MMC_Supervised(n_constraints=20, random_state=0).fit(X, y)
    comp = est.components_.copy()
    with pytest.raises(ValueError, match="at least 2 classes"):
        est.fit(X[:, :2], np.zeros(len(X), int))
    np.testing.assert_array_equal(est.components_, comp)
    assert est.n_features_in_ == 4


@pytest.mark.parametrize("name", ["ITML", "MMC", "SDML"])
def test_wrong_pair_labels_raise_metric_learns_message(name):
    # metric-learn's own tests compare the message with ==; the detail is in a note
    pairs = np.random.default_rng(0).normal(size=(6, 2, 3))
    for y in ([0, 1, 0, 1, 0, 1], [1.5, -1, 1, -1, 1, -1]):
        with pytest.raises(ValueError, match=r"`y` must hold \+1") as err:
            getattr(mj, name)().fit(pairs, y)
        assert str(err.value) == (
            "When training on pairs, the labels (y) should contain only values in [-1, 1]. "
            "Found an incorrect value."
        )
