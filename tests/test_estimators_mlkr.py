"""The MLKR estimator: predict (kernel regression), regression quality, MLKR-only options."""

from __future__ import annotations

import numpy as np
import pytest
from _estimator_data import D, N, no_convergence_warnings, regression, x64_context
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import StandardScaler

from metricjax.estimators import MLKR
from metricjax.losses import kernel_regression


def test_mlkr_predict_is_kernel_regression():
    x, y = regression()
    model = MLKR().fit(x, y)
    xq = x[:7] + 0.1
    with x64_context():
        ref = np.asarray(kernel_regression(model.components_, x, y, xq))
    np.testing.assert_allclose(model.predict(xq), ref, rtol=1e-9, atol=1e-12)
    assert model.predict(x).shape == (N,)
    np.testing.assert_array_equal(model.X_train_, x)
    np.testing.assert_array_equal(model.y_train_, y)
    assert model.score(x, y) > 0.5  # R^2 on the training data


def test_mlkr_lowers_kernel_regression_error_on_diabetes():
    # MLKR minimises the leave-one-out kernel-regression error on the training set.
    # (On held-out diabetes data the full-rank metric overfits: 55 free parameters of
    # M for a few hundred noisy targets; the held-out check is the synthetic test below.)
    x, y = load_diabetes(return_X_y=True)
    x, y = x[:300], y[:300]  # small enough for the quick-compile path
    x = StandardScaler().fit_transform(x)
    y = (y - y.mean()) / y.std()
    with no_convergence_warnings():
        model = MLKR(max_iter=30, alpha=0.0).fit(x, y)  # the loss is exactly the LOO error
    with x64_context():
        loo_base = np.asarray(kernel_regression(np.eye(x.shape[1]), x, y))
        loo = np.asarray(kernel_regression(model.components_, x, y))
    mse_base, mse = np.mean((loo_base - y) ** 2), np.mean((loo - y) ** 2)
    assert mse < 0.75 * mse_base, (mse, mse_base)
    assert model.loss_history_[-1] == pytest.approx(len(y) * mse, rel=1e-9)


def test_mlkr_held_out_error_beats_euclidean():
    # y depends on x[:, 0] (and weakly x[:, 1]); x[:, 2:] are noise the metric must drop
    x, y = regression(seed=0)
    x_new, y_new = regression(seed=1)
    model = MLKR().fit(x, y)
    with x64_context():
        base = np.asarray(kernel_regression(np.eye(D), x, y, x_new))
    mse_base = np.mean((base - y_new) ** 2)
    mse = np.mean((model.predict(x_new) - y_new) ** 2)
    assert mse < 0.7 * mse_base, (mse, mse_base)


def test_type_errors_and_mlkr_refuses_lda():
    x, y = regression()
    with pytest.raises(ValueError, match="`init` must be 'auto', 'pca', 'identity', 'random' or"):
        MLKR(init="lda").fit(x, y)
    with pytest.raises(TypeError, match="`n_components` must be an int"):
        MLKR(n_components=1.5).fit(x, y)
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        MLKR(optimizer=object()).fit(x, y)


@pytest.mark.parametrize("c", [1e-6, 1e-2, 1e4])
def test_fit_does_not_depend_on_the_units_of_y(c):
    """The loss and its ridge weight scale with y**2, the minimiser does not: the fit of
    ``c * y`` takes the same steps to the same map, reported in the units of ``c * y``
    (it stopped at its first step for ``c = 1e-6``: the stopping tests were absolute)."""
    x, y = regression()
    a = MLKR().fit(x, y)
    b = MLKR().fit(x, c * y)
    assert b.n_iter_ == a.n_iter_ > 3
    np.testing.assert_allclose(b.components_, a.components_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(b.loss_history_, c**2 * a.loss_history_, rtol=1e-8)
    assert b.ridge_weight_ == pytest.approx(c**2 * a.ridge_weight_, rel=1e-12)
    np.testing.assert_allclose(b.predict(x), c * a.predict(x), rtol=1e-8, atol=1e-12 * c)

