"""Pair constraints shared by the ITML and MMC solver tests (iris, standardised wine, random)."""

import warnings

import numpy as np
from sklearn.datasets import load_iris, load_wine


def make_pairs(x, labels, n, seed):
    """``n`` random pairs (distinct indices), +1 if same class else -1."""
    rng = np.random.RandomState(seed)
    i, j = rng.randint(0, len(x), n), rng.randint(0, len(x), n)
    keep = i != j
    y = np.where(labels[i] == labels[j], 1, -1)[keep]
    return np.stack([x[i], x[j]], axis=1)[keep], y


def pair_datasets(n_iris: int, n_wine: int, n_random: int) -> dict:
    """``{name: (pairs, y)}`` for iris, standardised wine and a random 6-feature set."""
    iris = load_iris()
    wine = load_wine()
    xw = (wine.data - wine.data.mean(0)) / wine.data.std(0)
    rng = np.random.RandomState(0)
    xr = rng.randn(80, 6)
    lr = (xr[:, 0] + 0.5 * rng.randn(80) > 0).astype(int)
    return {
        "iris": make_pairs(iris.data, iris.target, n_iris, 0),
        "wine": make_pairs(xw, wine.target, n_wine, 1),
        "random": make_pairs(xr, lr, n_random, 2),
    }


def quiet_fit(cls, pairs, y, **kw):
    """``cls(**kw).fit(pairs, y)`` for a metric-learn class, without its warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn deprecations inside metric-learn
        return cls(**kw).fit(pairs, y)


def relerr(a, b):
    """Largest absolute difference relative to the largest entry of ``b``."""
    return np.abs(np.asarray(a) - b).max() / np.abs(b).max()
