"""A whole experiment as one compiled program: 5-fold CV x 8 ridge strengths of MLKR.

The 40 fits (scikit-learn's diabetes data, standardised) run as
``jax.jit(jax.vmap(jax.vmap(fit)))`` over the regulariser strengths and the fold
weight vectors (``sample_weight``: 0 = held out), then the same 40 fits one after the
other with ``mj.fit``: same selected strength, same held-out scores, and the time of
each.

The loss is MLKR plus a ridge term ``alpha * ||L||_F^2`` written here (MLKR's own
regulariser is added on another branch); the held-out score of a fold is the
kernel-regression MSE of its held-out points predicted from its training points.
GridSearchCV over ``mj.MLKR`` needs that regulariser as an estimator parameter: not
on this branch.

Run: ``python examples/07_sweep.py`` (about a minute on 2 cores) or ``--quick``.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import KFold

import metricjax as mj
from metricjax.losses import mlkr_loss

ALPHAS = np.logspace(-3, 1, 8)


def ridge_mlkr(L, x, y, w, alpha):
    return mlkr_loss(L, x, y, sample_weight=w) + alpha * jnp.sum(L**2)


def held_out_mse(L, x, y, w):
    """MSE of the points of weight 0, predicted by kernel regression from the others."""
    d = mj.pairwise_sq_transformed(x, L)
    logits = jnp.where(w[None, :] > 0, -d, -jnp.inf)
    yhat = jax.nn.softmax(logits, axis=1) @ y
    test = 1 - w
    return jnp.sum(test * (yhat - y) ** 2) / jnp.sum(test)


def main(quick: bool = False):
    with jax.enable_x64(True):  # float64, without changing the global setting
        _run(quick)


def _run(quick: bool):
    X, y = load_diabetes(return_X_y=True)
    if quick:
        X, y = X[:150], y[:150]
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    n, d = X.shape
    W = np.ones((5, n))
    for f, (_, test) in enumerate(KFold(5, shuffle=True, random_state=0).split(X)):
        W[f, test] = 0.0
    x, yj, Wj, alphas = (jnp.asarray(a) for a in (X, y, W, ALPHAS))
    L0 = 0.3 * jnp.eye(d)
    max_iter = 30 if quick else 200

    def one(alpha, w):
        r = mj.fit(ridge_mlkr, L0, x, yj, w, alpha, max_iter=max_iter)
        return held_out_mse(r.params, x, yj, w), r.num_iter

    t0 = time.perf_counter()
    scores, iters = jax.block_until_ready(
        jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))(alphas, Wj)
    )
    t_vmap = time.perf_counter() - t0  # compilation included

    t0 = time.perf_counter()
    seq = np.array([[float(one(a, w)[0]) for w in Wj] for a in alphas])
    t_seq = time.perf_counter() - t0

    mean = np.asarray(scores).mean(1)
    best = int(np.argmin(mean))
    print("alpha       mean held-out MSE (vmapped)  (sequential)")
    for a, m, s in zip(ALPHAS, mean, seq.mean(1)):
        print(f"{a:9.4f}   {m:.6f}                   {s:.6f}")
    print(f"selected alpha = {ALPHAS[best]:.4f} (sequential: {ALPHAS[int(np.argmin(seq.mean(1)))]:.4f})")
    print(f"40 fits: one compiled program {t_vmap:.1f} s (compile included), sequential {t_seq:.1f} s")
    print(f"iterations per fit: {np.asarray(iters).ravel().tolist()}")
    assert int(np.argmin(seq.mean(1))) == best
    np.testing.assert_allclose(np.asarray(scores), seq, rtol=1e-6)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
