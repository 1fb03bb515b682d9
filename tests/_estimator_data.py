"""Shared datasets and helpers of the estimator tests (``test_estimators*.py``).

Every fit of a new (loss, shape, dtype) compiles the optimisation loop once, so the
tests reuse a few dataset shapes; refits of the same shape hit the cache.
Not collected by pytest (leading underscore).
"""

from __future__ import annotations

import contextlib
import warnings

import jax
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import KNeighborsClassifier

from metricjax.estimators import MLKR

N, D = 60, 4  # the shared dataset shape (one compilation per estimator and dtype)


def classification(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % 3
    x = rng.standard_normal((N, D))
    x[:, 0] += 2.0 * y  # one informative direction among noise
    return x.astype(dtype), y


def regression(dtype=np.float64, seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D))
    y = np.sin(x[:, 0]) + 0.1 * x[:, 1]
    return x.astype(dtype), y.astype(dtype)


def x64_context():
    """Context for float64 reference computations with the functional losses."""
    return jax.enable_x64(True)


@contextlib.contextmanager
def no_convergence_warnings():
    """For fits that stop at a deliberately small max_iter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def data_for(est, dtype=np.float64):
    return regression(dtype) if isinstance(est, MLKR) else classification(dtype)


def knn_accuracy(x_train, y_train, x_test, y_test):
    knn = KNeighborsClassifier(n_neighbors=3).fit(x_train, y_train)
    return knn.score(x_test, y_test)
