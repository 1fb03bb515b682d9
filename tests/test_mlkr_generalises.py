"""MLKR's ridge penalty (gradient vs a jnp twin), unit-free fits, and test-set quality.

Issue 11: unpenalised MLKR overfits small regression sets (rows of ``L`` with large
norms, a kernel narrower than the spacing of the points) and depends on the units of
``X``. These tests hold the regularised, rescaled estimator to: a closed-form gradient
equal to autodiff of a plain twin, predictions unchanged under ``X * c``, and a k-NN
pipeline that is not worse than the tuned k-NN alone.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _loss_oracles import data, plain_mlkr
from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsRegressor
from sklearn.preprocessing import StandardScaler

from metricjax.estimators import MLKR
from metricjax.losses import mlkr_loss, mlkr_ridge_loss


# --------------------------------------------------------------------- the loss
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block_size", ["auto", 5])
def test_ridge_gradient_matches_plain_twin(block_size):
    L, x, y, _ = data()
    w = 0.37

    def twin(L):
        return plain_mlkr(L, x, y) + w * jnp.sum(L**2)

    v, g = jax.value_and_grad(lambda L: mlkr_ridge_loss(L, x, y, w, block_size=block_size))(L)
    v_ref, g_ref = jax.value_and_grad(twin)(jnp.asarray(L))
    assert abs(v - v_ref) <= 1e-10 * abs(v_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-10 * np.abs(g_ref).max())
    # the penalty's closed form 2 w L on top of the MLKR gradient
    g_mlkr = jax.grad(lambda L: mlkr_loss(L, x, y, block_size=block_size))(L)
    np.testing.assert_allclose(g - g_mlkr, 2 * w * L, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_ridge_zero_weight_is_mlkr():
    L, x, y, _ = data()
    assert float(mlkr_ridge_loss(L, x, y, 0.0)) == float(mlkr_loss(L, x, y))


# --------------------------------------------------------------- small data sets
def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), (y - y.mean()) / y.std()


def _friedman_noisy():
    X, y = make_friedman1(300, n_features=15, noise=0.5, random_state=0)  # 10 noise features
    return StandardScaler().fit_transform(X), y


def _quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at a small max_iter
        return est.fit(X, y)


# ------------------------------------------------------------------ units of X
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlkr_predictions_do_not_depend_on_units(dtype):
    X, y = _diabetes()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    scores = {}
    for c in (1e-4, 1e-2, 1.0, 1e2, 1e4):
        est = _quiet_fit(MLKR(n_components=3, max_iter=200), (Xtr * c).astype(dtype), ytr)
        scores[c] = est.score((Xte * c).astype(dtype), yte)
    spread = max(scores.values()) - min(scores.values())
    assert spread < 0.01, scores


# --------------------------------------------------------------- generalisation
@pytest.mark.parametrize("dataset", [_diabetes, _friedman_noisy])
def test_default_mlkr_knn_not_worse_than_tuned_knn(dataset):
    """Mean test R² over 3 splits: MLKR(3) -> kNN(20) and MLKR.predict vs a tuned kNN."""
    X, y = dataset()
    knn_r2, pipe_r2, pred_r2 = [], [], []
    for seed in range(3):
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed)
        grid = {"n_neighbors": [5, 10, 20, 40]}
        knn_r2.append(GridSearchCV(KNeighborsRegressor(), grid).fit(Xtr, ytr).score(Xte, yte))
        mlkr = _quiet_fit(MLKR(n_components=3, max_iter=300), Xtr, ytr)
        pred_r2.append(mlkr.score(Xte, yte))
        knn = KNeighborsRegressor(20).fit(mlkr.transform(Xtr), ytr)
        pipe_r2.append(knn.score(mlkr.transform(Xte), yte))
        assert np.linalg.norm(mlkr.components_, axis=1).max() < 5  # no runaway rows
    assert np.mean(pipe_r2) >= np.mean(knn_r2) - 0.01, (pipe_r2, knn_r2)
    assert np.mean(pred_r2) >= np.mean(knn_r2) - 0.01, (pred_r2, knn_r2)


def test_unpenalised_mlkr_overfits_diabetes():
    """The failure the penalty fixes (metric-learn's objective, alpha=0)."""
    X, y = _diabetes()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=1)
    raw = _quiet_fit(MLKR(n_components=3, alpha=0.0, max_iter=300), Xtr, ytr)
    reg = _quiet_fit(MLKR(n_components=3, max_iter=300), Xtr, ytr)
    assert raw.score(Xte, yte) < reg.score(Xte, yte) - 0.2


# ------------------------------------------------------- NCA and LMNN: units of X
_LMNN_F32 = pytest.mark.xfail(
    reason="LMNN's margin 1 is in units of the data and its init is not rescaled: at "
    "X*1e-4 in float32 one wine test point flips (0.963 vs 0.981)",
    strict=False,
)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("NCA", np.float64),
        ("NCA", np.float32),
        ("LMNN", np.float64),
        pytest.param("LMNN", np.float32, marks=_LMNN_F32),
    ],
)
def test_nca_lmnn_knn_accuracy_does_not_depend_on_units(name, dtype):
    from sklearn.datasets import load_wine
    from sklearn.neighbors import KNeighborsClassifier

    from metricjax.estimators import LMNN, NCA

    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    cls, kw = (NCA, {"max_iter": 200}) if name == "NCA" else (LMNN, {"max_iter": 100})
    acc = {}
    for c in (1e-4, 1e-2, 1.0, 1e2, 1e4):
        xtr, xte = (Xtr * c).astype(dtype), (Xte * c).astype(dtype)
        est = _quiet_fit(cls(n_components=5, **kw), xtr, ytr)
        knn = KNeighborsClassifier(3).fit(est.transform(xtr), ytr)
        acc[c] = knn.score(est.transform(xte), yte)
    assert max(acc.values()) - min(acc.values()) <= 0.01, acc
