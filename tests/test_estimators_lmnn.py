"""The LMNN estimator: k-NN quality, small classes, LMNN-only parameters."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
from _estimator_data import N, classification, knn_accuracy
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import metricjax.estimators._lmnn as lmnn_module
from metricjax.estimators import LMNN
from metricjax.losses import lmnn_impostors, lmnn_loss, lmnn_target_neighbors


def test_lmnn_knn_accuracy_not_worse_than_euclidean():
    x, y = load_iris(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    base = knn_accuracy(x_tr, y_tr, x_te, y_te)
    lmnn = LMNN(max_iter=100).fit(x_tr, y_tr)
    assert lmnn.n_neighbors_ == 3
    acc = knn_accuracy(lmnn.transform(x_tr), y_tr, lmnn.transform(x_te), y_te)
    assert acc >= base - 0.05, (acc, base)


def test_lmnn_small_classes():
    x, y = classification()
    y = y.copy()
    y[y == 2] = 1
    y[:3] = 2  # a class of 3 members: with n_neighbors=3, each is its own last target
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = LMNN(n_neighbors=3).fit(x, y)
    assert model.n_neighbors_ == 3 and model.target_neighbors_.shape == (N, 3)
    np.testing.assert_array_equal(model.target_neighbors_[:3, 2], [0, 1, 2])
    assert set(model.target_neighbors_[0, :2]) == {1, 2}
    with pytest.warns(UserWarning, match="n_neighbors=4 is too large.*using n_neighbors=3"):
        model = LMNN(n_neighbors=4).fit(x, y)
    assert model.n_neighbors_ == 3
    y[0] = 7  # a class with a single member: its own target (metric-learn's rule)
    with pytest.warns(UserWarning, match="using n_neighbors=1"):
        model = LMNN().fit(x, y)
    assert model.target_neighbors_[0, 0] == 0 and np.all(np.isfinite(model.components_))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n_neighbors": 0}, ValueError),
        ({"push_weight": 1.5}, ValueError),
        ({"margin": -1.0}, ValueError),
        ({"n_neighbors": 2.5}, TypeError),
        ({"impostor_refresh": -1}, ValueError),
        ({"impostor_refresh": 2.5}, TypeError),
        ({"impostor_slack": -0.5}, ValueError),
        ({"max_impostors": -1}, ValueError),
        ({"max_impostors": "all"}, TypeError),
    ],
)
def test_lmnn_parameter_errors(kwargs, error):
    x, y = classification()
    with pytest.raises(error):
        LMNN(**kwargs).fit(x, y)


# ----------------------------------------------------------------- the impostor active set
@pytest.fixture
def active_small(monkeypatch):
    """The active set also for these small test problems (by default from 1000 samples)."""
    monkeypatch.setattr(lmnn_module, "_ACTIVE_MIN_SAMPLES", 0)


def _separable(n=240, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.standard_normal((n, d))
    x[:, 0] += 1.5 * y
    return x, y


def test_active_set_fit_reaches_the_full_fit_and_ends_fresh(monkeypatch, active_small):
    x, y = _separable()
    calls = []
    search = lmnn_module.lmnn_impostors
    counted = lambda *a, **k: calls.append(1) or search(*a, **k)
    monkeypatch.setattr(lmnn_module, "lmnn_impostors", counted)
    active = LMNN(init="identity", max_iter=300, impostor_refresh=5).fit(x, y)
    assert len(calls) >= 2  # searched at the start and again at least once
    searches = len(calls)
    full = LMNN(init="identity", max_iter=300, impostor_refresh=None).fit(x, y)
    assert len(calls) == searches  # the full fit never searches
    assert active.converged_ and full.converged_
    tn = active.target_neighbors_
    with jax.enable_x64(True):
        loss = lambda m: float(lmnn_loss(m.components_, x, y, target_neighbors=tn))
        # the last history entry is the full loss: the final set was fresh
        np.testing.assert_allclose(active.loss_history_[-1], loss(active), rtol=1e-10)
        np.testing.assert_allclose(full.loss_history_[-1], loss(full), rtol=1e-10)
        # a set searched at the result holds no impostor the fit did not see
        s = lmnn_impostors(active.components_, x, y, target_neighbors=tn)
        np.testing.assert_allclose(
            float(lmnn_loss(active.components_, x, y, target_neighbors=tn, impostors=s)),
            loss(active), rtol=1e-10,
        )
    assert loss(active) <= loss(full) * (1 + 1e-3), (loss(active), loss(full))


def test_active_set_over_budget_falls_back_to_the_full_loss(active_small):
    x, y = _separable(n=90)
    fallback = LMNN(init="identity", max_iter=50, impostor_refresh=5, max_impostors=0).fit(x, y)
    full = LMNN(init="identity", max_iter=50, impostor_refresh=None).fit(x, y)
    # the same iterations, run in chunks of 5 by other compiled programs: equal to rounding
    np.testing.assert_allclose(fallback.components_, full.components_, rtol=1e-9, atol=1e-12)
    assert fallback.n_iter_ == full.n_iter_


def test_small_fits_use_the_full_loss(monkeypatch):
    calls = []
    search = lmnn_module.lmnn_impostors
    monkeypatch.setattr(lmnn_module, "lmnn_impostors", lambda *a, **k: calls.append(1) or search(*a, **k))
    x, y = _separable(n=90)
    LMNN(init="identity", max_iter=20, impostor_refresh=5).fit(x, y)
    assert not calls  # under 1000 samples: no active set


def test_missed_impostors_detects_a_stale_set():
    x, y = _separable(n=60)
    tn = lmnn_target_neighbors(x, y, 3)
    L = np.eye(x.shape[1])
    with jax.enable_x64(True):
        old = lmnn_impostors(L, x, y, target_neighbors=tn)
        same = lmnn_impostors(L, x, y, target_neighbors=tn, slack=0.5)
        shrunk = lmnn_impostors(0.3 * L, x, y, target_neighbors=tn)
    assert not lmnn_module._missed_impostors(old, same, L, x, tn, 1.0)
    assert lmnn_module._missed_impostors(old, shrunk, 0.3 * L, x, tn, 1.0)
