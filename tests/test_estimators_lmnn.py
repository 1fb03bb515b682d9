"""The LMNN estimator: k-NN quality, small classes, LMNN-only parameters."""

from __future__ import annotations

import pytest
from _estimator_data import N, classification, knn_accuracy
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from metricjax.estimators import LMNN


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
    x, y = classification()
    with pytest.raises(error):
        LMNN(**kwargs).fit(x, y)
