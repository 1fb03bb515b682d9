"""SCML and SCML_Supervised: metric-learn 0.7.0's API, the same (or a better) objective."""

import warnings

import jax
import numpy as np
import pytest
from _typecheck import unchecked_calls
from sklearn.datasets import load_wine
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from benchmarks._reference_libs import metric_learn_compat
from metricjax.constraints import Constraints
from metricjax.estimators import SCML, SCML_Supervised
from metricjax.losses import scml_loss

ml = metric_learn_compat()

X, Y = load_wine(return_X_y=True)
X = StandardScaler().fit_transform(X)
IDX = Constraints(Y).generate_knntriplets(X, 3, 10)
T = X[IDX]
KW = {"random_state": 7, "max_iter": 2000, "output_iter": 200, "n_basis": 100}


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def test_scml_same_metric_as_metric_learn():
    ours = _quiet(SCML(**KW).fit, T)
    ref = _quiet(ml.SCML(**KW).fit, T)
    m_ref = ref.components_.T @ ref.components_
    np.testing.assert_allclose(ours.get_mahalanobis_matrix(), m_ref, rtol=1e-8, atol=1e-10)
    assert ours.components_.shape == ref.components_.shape
    with jax.enable_x64(True):
        obj = float(scml_loss(ours.weights_, T, ours.basis_, beta=1e-5))
    np.testing.assert_allclose(ours.objective_, obj, rtol=1e-8)
    np.testing.assert_array_equal(ours.predict(T), ref.predict(T))
    assert ours.score(T) == pytest.approx(ref.score(T))
    assert ours.score(T) > 0.9


def test_scml_supervised_same_metric_as_metric_learn():
    ours = _quiet(SCML_Supervised(**KW).fit, X, Y)
    ref = _quiet(ml.SCML_Supervised(**KW).fit, X, Y)
    np.testing.assert_allclose(
        ours.get_mahalanobis_matrix(), ref.components_.T @ ref.components_, rtol=1e-8, atol=1e-10
    )


def test_preprocessor_cv_float32_and_bad_input():
    a = _quiet(SCML(preprocessor=X, **KW).fit, IDX)
    b = _quiet(SCML(**KW).fit, T)
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-12)
    scores = _quiet(cross_val_score, SCML(**KW), T)
    assert np.all(scores > 0.8)
    assert _quiet(SCML(**KW).fit, T.astype(np.float32)).components_.dtype == np.float32
    comp = b.components_.copy()
    with pytest.raises(ValueError, match=r"Tuples of 3 element\(s\) expected by SCML"):
        b.fit(T[:, :2])
    bad = T.copy()
    bad[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match="`triplets` contains NaN or inf"):
        b.fit(bad)
    np.testing.assert_array_equal(b.components_, comp)
    with pytest.raises(ValueError, match="at least 2 classes in `y`"):
        SCML_Supervised().fit(X, np.zeros(len(X), int))
    # metric-learn's message word for word (its test matches it, missing space included)
    with pytest.raises(ValueError, match="LDA bases, n_basisshould be smaller than"):
        SCML_Supervised(n_basis=10**6).fit(X, np.arange(len(X)) % 2)


@parametrize_with_checks(
    [SCML_Supervised(k_genuine=1, k_impostor=2, n_basis=4, max_iter=50, output_iter=10)]
)
def test_sklearn_estimator_checks(estimator, check):
    """scikit-learn's conventions, as for the other ``*_Supervised`` learners (no check fails)."""
    check(estimator)


def test_lda_basis_with_one_cluster_per_class_does_not_warn():
    """metric-learn's k-means uses ``elkan``, which scikit-learn replaces (with a
    RuntimeWarning) by ``lloyd`` for one cluster; the basis is the same, without warning."""
    from metricjax.solvers import scml_lda_basis

    basis = scml_lda_basis(X, Y, n_basis=4, random_state=0)  # filterwarnings = error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.SCML_Supervised(n_basis=4, random_state=0)._generate_bases_LDA(X, Y)[0]
    np.testing.assert_allclose(basis, ref, rtol=1e-10, atol=1e-12)


def test_metric_learn_conventions_dimension_reduction_warning_and_int_checks():
    # metric-learn warns when fewer bases than features stay active (its toy example),
    # and refuses non-integer k_genuine / k_impostor with a ValueError
    triplets = np.array([[[0, 1], [2, 1], [0, 0]], [[2, 1], [0, 1], [2, 0]],
                         [[0, 0], [2, 0], [0, 1]], [[2, 0], [0, 0], [2, 1]]], dtype=float)  # fmt: skip
    ref = ml.SCML(n_basis=2, random_state=0)
    with pytest.warns(UserWarning, match="reduces the dimension to 1"):
        ref.fit(triplets)
    with pytest.warns(UserWarning, match="reduces the dimension to 1"):
        ours = SCML(n_basis=2, random_state=0).fit(triplets)
    assert ours.components_.shape == ref.components_.shape == (1, 2)
    X, y = np.array([[0.0, 0], [1, 1], [3, 3], [4, 4]]), np.array([1, 1, 0, 0])
    for arg in ("k_genuine", "k_impostor"):
        with pytest.raises(ValueError) as err, unchecked_calls():
            SCML_Supervised(n_basis=2, **{arg: 1.0}).fit(X, y)
        assert str(err.value) == f"{arg} should be an integer, instead it is of type <class 'float'>"
    for arg in ("max_iter", "output_iter", "batch_size", "n_basis"):
        with pytest.raises(ValueError) as err, unchecked_calls():
            SCML(**{arg: 1.0}).fit(triplets)
        assert str(err.value) == f"{arg} should be an integer, instead it is of type <class 'float'>"


def test_bad_basis_message_is_metric_learns():
    """An unknown named basis: metric-learn's message, built from ``_authorized_basis``
    as metric-learn's own tests build it; SCML_Supervised's lists its default 'lda'."""
    triplets = np.array([[[0, 1], [2, 1], [0, 0]], [[2, 1], [0, 1], [2, 0]],
                         [[0, 0], [2, 0], [0, 1]], [[2, 0], [0, 0], [2, 1]]], dtype=float)  # fmt: skip
    X, y = np.array([[0.0, 0], [0, 1], [2, 0], [2, 1]]), np.array([1, 0, 1, 0])
    for ours, theirs, data in [
        (SCML(basis="bad_basis", n_basis=33), ml.SCML(basis="bad_basis", n_basis=33), (triplets,)),
        (SCML_Supervised(basis="bad_basis", n_basis=33),
         ml.SCML_Supervised(basis="bad_basis", n_basis=33), (X, y)),
    ]:  # fmt: skip
        assert tuple(ours._authorized_basis) == tuple(theirs._authorized_basis)
        msg = (
            "`basis` must be one of the options '{}' or an array of shape "
            "(n_basis, n_features).".format("', '".join(ours._authorized_basis))
        )
        for model in (theirs, ours):
            with pytest.raises(ValueError) as err, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(*data)
            assert str(err.value) == msg
        assert not hasattr(ours, "components_")
    assert "'lda'" in msg


@pytest.mark.usefixtures("x64")
def test_verbose_log_is_metric_learns(capsys):
    # the same checkpoints, objectives and active-triplet counts, printed alike
    x = StandardScaler().fit_transform(load_wine().data)
    y = load_wine().target
    kw = {"n_basis": 40, "max_iter": 300, "output_iter": 100, "random_state": 0, "verbose": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml.SCML_Supervised(**kw).fit(x, y)
        want = capsys.readouterr().out
        SCML_Supervised(**kw).fit(x, y)
        got = capsys.readouterr().out
    assert got == want and want.count("[SCML_Supervised] iter ") == 3
    assert want.endswith("max iteration reached.\n")


def test_zero_metric_is_named_and_lda_basis_survives_conflicting_duplicates():
    """Every basis weight 0 is a map to 0 dimensions (metric-learn returns one too): the
    warning says that the metric is zero and what to change. Points under both labels
    leave local LDAs without a direction: those basis rows stay 0 (scikit-learn's
    normalize crashed on them, in metric-learn too)."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    from metricjax.solvers import scml_lda_basis

    rng = np.random.RandomState(0)
    x = rng.randn(30, 3)
    y = np.arange(30) % 2
    X, Y = np.vstack([x, x]), np.concatenate([y, 1 - y])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_basis default
        basis = scml_lda_basis(X, Y, random_state=0)
    assert np.all(np.isfinite(basis)) and not np.any(basis)  # no direction anywhere
    # fewer points than features: no basis weight survives the l1 penalty
    X, Y = make_classification(n_samples=60, n_features=100, n_informative=5, random_state=2)
    X, _, Y, _ = train_test_split(X, Y, test_size=0.3, random_state=0, stratify=Y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = SCML_Supervised(random_state=0).fit(X, Y)
    assert model.components_.shape == (0, 100)
    assert any("reduces the dimension to 0. Every basis weight is 0: the learned metric is "
               "zero" in str(w.message) for w in caught)  # fmt: skip
