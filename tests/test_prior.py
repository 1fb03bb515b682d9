"""initial_metric / components_from_metric / check_pairs against metric-learn 0.7.0."""

import traceback
import warnings

import numpy as np
import pytest
from _typecheck import unchecked
from sklearn.datasets import load_iris

from benchmarks._reference_libs import metric_learn_compat
from metricjax._checks import check_pairs
from metricjax.solvers._prior import (
    components_from_metric,
    initial_metric,
    padded_size,
)

ml = metric_learn_compat()
from metric_learn._util import (  # noqa: E402  (after the compatibility shim)
    _initialize_metric_mahalanobis as ml_init,
)
from metric_learn._util import components_from_metric as ml_components  # noqa: E402

X = load_iris().data
PAIRS = np.stack([X[:60], X[60:120]], axis=1)  # (60, 2, 4) tuples


def _spd(d, seed, rank=None):
    a = np.random.RandomState(seed).randn(d, rank or d)
    return a @ a.T


@pytest.mark.parametrize("init", ["identity", "covariance", "random"])
@pytest.mark.parametrize("inputs", ["points", "tuples"])
@pytest.mark.parametrize("return_inverse", [False, True])
def test_initial_metric_matches_metric_learn(init, inputs, return_inverse):
    x = X if inputs == "points" else PAIRS
    want = ml_init(x, init, random_state=7, return_inverse=return_inverse)
    got = initial_metric(x, init, random_state=7, return_inverse=return_inverse)
    if not return_inverse:
        want, got = (want,), (got,)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
        assert g.dtype == np.float64


def test_initial_metric_array_and_random_state_objects():
    m = _spd(4, 0)
    got, got_inv = initial_metric(X, m, return_inverse=True, strict_pd=True)
    np.testing.assert_array_equal(got, m)
    assert got is not m  # a copy
    np.testing.assert_allclose(got_inv @ m, np.eye(4), atol=1e-10)
    a = initial_metric(X, "random", random_state=np.random.RandomState(3))
    b = ml_init(X, "random", random_state=np.random.RandomState(3))
    np.testing.assert_array_equal(a, b)
    # a singular PSD matrix: pseudo-inverse with a warning, like metric-learn
    s = _spd(4, 1, rank=2)
    with pytest.warns(UserWarning, match="pseudo-inverse"):
        _, sinv = initial_metric(X, s, return_inverse=True, matrix_name="init")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(sinv, ml_init(X, s, return_inverse=True)[1], atol=1e-10)


@pytest.mark.parametrize("name", ["MMC_Supervised", "ITML_Supervised", "LSML_Supervised"])
def test_a_non_psd_init_raises_nonpsderror_as_metric_learn(name):
    # metric-learn raises its NonPSDError (a LinAlgError) for a matrix with a negative
    # eigenvalue, with a fixed message its tests compare word for word; metricjax's
    # NonPSDError is one too, with the same message, and names the matrix in a note
    import metricjax as mj
    from metricjax.exceptions import NonPSDError

    X, y = load_iris(return_X_y=True)
    m = np.diag([1.0, 1.0, 1.0, -10.0])
    arg = "init" if name == "MMC_Supervised" else "prior"
    est = getattr(mj.estimators, name)(**{arg: m}, random_state=0)
    with pytest.raises(NonPSDError) as err:
        est.fit(X, y)
    assert isinstance(err.value, np.linalg.LinAlgError) and isinstance(err.value, ValueError)
    assert str(err.value) == str(ml.exceptions.NonPSDError())
    assert str(NonPSDError()) == str(ml.exceptions.NonPSDError())
    assert err.value.detail.startswith(f"`{arg}` is not positive semi-definite")
    assert err.value.__notes__ == [err.value.detail]
    assert "smallest eigenvalue is -10" in "".join(traceback.format_exception(err.value))


def test_initial_metric_errors_name_the_argument():
    with pytest.raises(ValueError, match="`prior` must be 'identity'"):
        initial_metric(X, "pca")
    with pytest.raises(ValueError, match=r"`init` must match the dimensionality .*\(4\)"):
        initial_metric(X, np.eye(3), matrix_name="init")
    with pytest.raises(ValueError, match="`prior` is not symmetric"):
        initial_metric(X, np.triu(np.ones((4, 4))))
    with pytest.raises(ValueError, match="`prior` contains NaN"):
        initial_metric(X, np.full((4, 4), np.nan))
    with pytest.raises(np.linalg.LinAlgError, match="`prior` is not positive semi-definite"):
        initial_metric(X, -np.eye(4))
    with pytest.raises(ValueError, match="strictly positive definite matrix as `prior`"):
        initial_metric(X, _spd(4, 1, rank=2), strict_pd=True)
    # a rank-deficient covariance: refused with strict_pd, pseudo-inverse (warning) without
    flat = np.c_[X, X[:, :1]]
    with pytest.raises(ValueError, match="inverse of the covariance"):
        initial_metric(flat, "covariance", strict_pd=True)
    with pytest.warns(UserWarning, match="covariance matrix is not invertible"):
        m = initial_metric(flat, "covariance")
    assert np.all(np.isfinite(m))
    with pytest.raises(ValueError, match="`x` contains NaN"):
        initial_metric(np.array([[0.0, np.nan]]), "identity")
    with pytest.raises(ValueError, match="`random_state`"):
        initial_metric(X, "random", random_state="seed")


def test_components_from_metric_matches_metric_learn():
    for m in (_spd(5, 0), np.diag([3.0, 0.0, 2.0]), _spd(5, 2, rank=3)):
        got = components_from_metric(m)
        np.testing.assert_allclose(got, ml_components(m), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.T @ got, m, rtol=1e-10, atol=1e-10)
    # a tiny negative eigenvalue (rounding) counts as zero
    m = _spd(4, 3, rank=2)
    m -= 1e-17 * np.eye(4)
    assert np.all(np.isfinite(components_from_metric(m)))


def test_components_from_metric_refuses_bad_metrics():
    with pytest.raises(ValueError, match="`metric` should be symmetric"):
        unchecked(components_from_metric)(np.triu(np.ones((3, 3))))
    with pytest.raises(np.linalg.LinAlgError, match="`metric` is not positive semi-definite"):
        unchecked(components_from_metric)(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        unchecked(components_from_metric)(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        unchecked(components_from_metric)(np.array([[np.nan]]))


def test_check_pairs():
    pairs, y = check_pairs(PAIRS, np.r_[np.ones(30), -np.ones(30)])
    assert pairs is PAIRS
    with pytest.raises(ValueError, match=r"`pairs` must have shape \(n_pairs, 2, d\)"):
        check_pairs(np.zeros((4, 3, 2)), np.ones(4))
    with pytest.raises(ValueError, match=r"`y` must have shape \(60,\)"):
        check_pairs(PAIRS, np.ones(59))
    with pytest.raises(ValueError, match=r"`y` must hold \+1 .* or -1"):
        check_pairs(PAIRS, np.r_[np.zeros(30), np.ones(30)])
    with pytest.raises(ValueError, match="single class: all 60 pairs are similar"):
        check_pairs(PAIRS, np.ones(60))
    bad = PAIRS.copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="`pairs` contains NaN"):
        check_pairs(bad, np.r_[np.ones(30), -np.ones(30)])
    with pytest.raises(TypeError, match="`pairs`"):
        check_pairs(PAIRS.astype(complex), np.ones(60))


def test_padded_size():
    assert [padded_size(n) for n in (1, 16, 17, 100, 1000, 1024, 1025)] == [
        16,
        16,
        20,
        112,
        1024,
        1024,
        1280,
    ]
    for n in range(1, 3000, 37):
        assert n <= padded_size(n) <= max(16, 1.25 * n)
