"""The NCA estimator: the same loop as ``metricjax.fit``, string labels, k-NN quality."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from _estimator_data import D, classification, knn_accuracy, x64_context
from sklearn.datasets import load_iris, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import metricjax as mj
from metricjax.estimators import NCA
from metricjax.estimators._base import median_sq_distance
from metricjax.losses import nca_loss


def test_same_result_as_metricjax_fit():
    # the estimator runs the loop of metricjax.fit (cached, maybe with quicker XLA
    # settings): same iterations, same result up to rounding
    # settings): same iterations, same result up to rounding. A string init is scaled
    # to the data (median embedded squared distance 1), so the start is I / sqrt(median).
    x, y = classification()
    model = NCA(init="identity").fit(x, y)
    with x64_context():
        start = jnp.eye(D) / float(np.sqrt(median_sq_distance(x)))
        ref = mj.fit(lambda L, x, c: nca_loss(L, x, c, num_classes=3), start, x, y.astype(np.int32))
    assert model.n_iter_ == ref.num_iter and model.converged_ == ref.converged
    np.testing.assert_allclose(model.components_, np.asarray(ref.params), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(model.loss_history_, ref.loss_history, rtol=1e-10)


def test_string_labels_and_classes():
    x, y = classification()
    names = np.array(["setosa", "versicolor", "virginica"])
    a = NCA().fit(x, names[y])
    b = NCA().fit(x, y)
    np.testing.assert_array_equal(a.classes_, names)
    np.testing.assert_array_equal(a.components_, b.components_)


@pytest.mark.parametrize("loader", [load_iris, load_wine], ids=["iris", "wine"])
def test_nca_knn_accuracy_not_worse_than_euclidean(loader):
    x, y = loader(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    base = knn_accuracy(x_tr, y_tr, x_te, y_te)
    nca = NCA(max_iter=100, random_state=0).fit(x_tr, y_tr)
    acc = knn_accuracy(nca.transform(x_tr), y_tr, nca.transform(x_te), y_te)
    assert acc >= base - 0.05, (acc, base)


def test_private_loss_grad_lbfgs_is_scikit_learns():
    """scikit-learn's own NCA tests (test_finite_differences, the collapsing toy example)
    call its private ``_loss_grad_lbfgs(transformation, X, same_class_mask, sign)``:
    NCA's gives scikit-learn's numbers."""
    from scipy.optimize import check_grad
    from sklearn.datasets import make_classification
    from sklearn.neighbors import NeighborhoodComponentsAnalysis

    X, y = make_classification(random_state=0)
    rng = np.random.RandomState(0)
    M = rng.randn(3, X.shape[1])
    mask = y[:, None] == y[None, :]
    ref = NeighborhoodComponentsAnalysis()
    ours = NCA()
    ref.n_iter_ = ours.n_iter_ = 0
    for sign in (1.0, -1.0):
        want = ref._loss_grad_lbfgs(M.ravel(), X, mask, sign)
        got = ours._loss_grad_lbfgs(M.ravel(), X, mask, sign)
        assert got[0] == pytest.approx(want[0], rel=1e-10)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-8, atol=1e-12 * np.abs(want[1]).max())
    assert ours.n_iter_ == 2
    diff = check_grad(lambda m: ours._loss_grad_lbfgs(m, X, mask)[0],
                      lambda m: ours._loss_grad_lbfgs(m, X, mask)[1], M.ravel())  # fmt: skip
    assert diff == pytest.approx(0.0, abs=1e-4)
