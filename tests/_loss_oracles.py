"""Shared data and oracles of the MLKR and NCA loss tests (``test_mlkr.py``, ``test_nca.py``).

Not collected by pytest (leading underscore).
"""

import jax
import jax.numpy as jnp
import numpy as np

import metricjax as mj


def data(n=23, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    labels = rng.integers(0, 3, n)
    L = 0.5 * rng.standard_normal((k, d))
    return L, x, y, labels


def far_and_spread_data():
    """Float32 points far from the origin and far apart (exp underflows without the max
    shift), with regression targets and the identity transform."""
    rng = np.random.default_rng(1)
    x = (1e4 + 50 * rng.standard_normal((50, 3))).astype(np.float32)
    y = rng.standard_normal(50).astype(np.float32)
    L = np.eye(3, dtype=np.float32)
    return L, x, y


# ----------------------------------------------------------------- NumPy oracles
def np_softmax_rows(L, x):
    z = x @ L.T
    d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    logits = -d - (-d).max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def np_mlkr(L, x, y):
    yhat = np_softmax_rows(L, x) @ y
    return ((yhat - y) ** 2).sum()


def np_nca(L, x, labels):
    p = np_softmax_rows(L, x)
    return -(p * (labels[:, None] == labels[None, :])).sum()


# ----------------------------------------------------------------- plain jnp twins (autodiff)
def _plain_p(L, x):
    d = mj.reference.pairwise_sq_transformed(x, L)
    d = d + jnp.diag(jnp.full(x.shape[0], jnp.inf, d.dtype))
    return jax.nn.softmax(-d, axis=1)


def plain_mlkr(L, x, y):
    return jnp.sum((_plain_p(L, x) @ y - y) ** 2)


def plain_nca(L, x, labels):
    p = _plain_p(L, x)
    return -jnp.sum(p * (labels[:, None] == labels[None, :]).astype(p.dtype))
