"""scikit-learn's NCA API on MLKR, NCA and LMNN: ``warm_start``, ``callback``, constant losses.

scikit-learn's ``NeighborhoodComponentsAnalysis`` is the oracle: its own test suite
checks the same behaviours (``test_warm_start_*``, ``test_callback``,
``test_singleton_class``, ``test_one_class``, ``test_params_validation``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from _estimator_data import classification, regression
from sklearn.datasets import load_iris
from sklearn.neighbors import NeighborhoodComponentsAnalysis

from metricjax.estimators import LMNN, MLKR, NCA

pytestmark = [
    pytest.mark.usefixtures("x64"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


def _data(cls):
    return regression() if cls is MLKR else classification()


@pytest.mark.parametrize("cls", [NCA, MLKR, LMNN])
def test_warm_start_continues_from_the_previous_map(cls):
    x, y = _data(cls)
    est = cls(warm_start=True, max_iter=3, tol=0.0).fit(x, y)
    first = est.components_.copy()
    est.fit(x, y)
    # the second fit is the fit that starts from the first one's map, used as given
    ref = cls(init=first, max_iter=3, tol=0.0).fit(x, y)
    np.testing.assert_array_equal(est.components_, ref.components_)
    np.testing.assert_array_equal(est.loss_history_, ref.loss_history_)
    assert est.loss_history_[0] == pytest.approx(cls(init=first, max_iter=1).fit(x, y).loss_history_[0])
    # without warm_start every fit starts from init: the same result twice
    cold = cls(max_iter=3, tol=0.0)
    a = cold.fit(x, y).components_.copy()
    np.testing.assert_array_equal(cold.fit(x, y).components_, a)
    np.testing.assert_array_equal(a, first)


def test_warm_start_needs_the_same_features_and_leaves_the_fit_unchanged():
    x, y = classification()
    est = NCA(warm_start=True, max_iter=5).fit(x, y)
    before = est.components_.copy()
    msg = (  # scikit-learn's message, word for word
        f"The new inputs dimensionality ({x.shape[1] - 1}) does not match the input "
        f"dimensionality of the previously learned transformation ({x.shape[1]})."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        est.fit(x[:, :-1], y)
    np.testing.assert_array_equal(est.components_, before)
    assert est.n_features_in_ == x.shape[1]


def test_warm_start_after_one_more_iteration_moves_little_as_scikit_learn():
    # scikit-learn's test_warm_start_effectiveness, with its own NCA beside ours
    x, y = load_iris(return_X_y=True)
    for cls in (NCA, NeighborhoodComponentsAnalysis):
        warm = cls(warm_start=True, random_state=0).fit(x, y)
        start = warm.components_.copy()
        warm.max_iter = 1
        diff_warm = np.abs(warm.fit(x, y).components_ - start).sum()
        cold = cls(warm_start=False, random_state=0).fit(x, y)
        start = cold.components_.copy()
        cold.max_iter = 1
        diff_cold = np.abs(cold.fit(x, y).components_ - start).sum()
        assert diff_warm < 3.0 and diff_cold > diff_warm, (cls.__name__, diff_warm, diff_cold)


@pytest.mark.parametrize("cls", [NCA, MLKR, LMNN])
def test_callback_sees_every_update_and_changes_nothing(cls):
    x, y = _data(cls)
    seen = []
    est = cls(max_iter=6, callback=lambda t, n: seen.append((n, t.copy()))).fit(x, y)
    plain = cls(max_iter=6).fit(x, y)
    # same iterates with and without the per-update host callback
    np.testing.assert_allclose(est.components_, plain.components_, rtol=1e-12, atol=1e-14)
    assert est.n_iter_ == plain.n_iter_
    assert [n for n, _ in seen] == list(range(1, est.n_iter_ + 1))
    k, d = est.components_.shape
    assert all(t.shape == (k * d,) for _, t in seen)
    np.testing.assert_allclose(seen[-1][1], est.components_.ravel(), rtol=1e-12)


def test_callback_with_verbose_and_in_mini_batches(capsys):
    x, y = classification()
    calls = []
    NCA(max_iter=4, tol=0.0, verbose=True, callback=lambda t, n: calls.append(n)).fit(x, y)
    out = capsys.readouterr().out
    assert calls == [1, 2, 3, 4] and out.count("[NCA]") == 3 + 4 + 1  # header, rows, time
    calls.clear()
    NCA(batch_size=16, max_iter=5, callback=lambda t, n: calls.append(n)).fit(x, y)
    assert calls == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"callback": 3}, "`callback` must be None or a callable"),
     ({"warm_start": "yes"}, "`warm_start` must be True or False")],
)  # fmt: skip
def test_bad_callback_and_warm_start_are_refused_by_name(kwargs, match):
    x, y = classification()
    with pytest.raises(TypeError, match=match):
        NCA(**kwargs).fit(x, y)


@pytest.mark.parametrize(
    "labels",
    [lambda y: np.zeros_like(y), lambda y: np.arange(len(y))],
    ids=["one class", "only singleton classes"],
)
def test_a_constant_loss_returns_the_named_init_unscaled(labels):
    # scikit-learn's test_one_class / test_singleton_class: init="identity" returns X;
    # the unit-free rescaling of a named init is for fits that learn something
    x, y = load_iris(return_X_y=True)
    x = x[:12] if labels(y).max() > 0 else x[y == 0]
    y = labels(np.zeros(len(x), int))
    ours = NCA(init="identity", max_iter=30).fit(x, y)
    ref = NeighborhoodComponentsAnalysis(init="identity", max_iter=30).fit(x, y)
    np.testing.assert_array_equal(ours.transform(x), x)
    np.testing.assert_array_equal(ref.transform(x), x)
    assert ours.n_iter_ == 0 and ours.converged_


def test_too_many_components_names_both_references_messages():
    x, y = classification()
    d = x.shape[1]
    with pytest.raises(ValueError) as err:
        NCA(n_components=d + 2).fit(x, y)
    assert str(err.value) == f"Invalid n_components, must be in [1, {d}]"  # metric-learn's
    assert err.value.__notes__ == [  # scikit-learn's
        f"The preferred dimensionality of the projected space `n_components` ({d + 2}) "
        f"cannot be greater than the given data dimensionality ({d})!"
    ]
