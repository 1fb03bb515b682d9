"""A grid (hyperparameters x cross-validation folds) as one compiled program (issue 14)."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metricjax as mj
from metricjax.losses import mlkr_loss


def _loss(L, x, y, w, a):
    return mlkr_loss(L, x, y, sample_weight=w) + a * jnp.sum(L**2)


def test_nested_vmap_grid_equals_the_sequential_fits(x64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(36, 3)))
    y = jnp.asarray(np.sin(x[:, 0]) + 0.1 * rng.normal(size=36))
    folds = np.arange(36) % 3
    W = jnp.asarray(np.stack([(folds != f).astype(float) for f in range(3)]))
    alphas = jnp.asarray([0.3, 2.0])
    L0 = 0.5 * jnp.eye(3)

    def one(a, w):
        r = mj.fit(_loss, L0, x, y, w, a, max_iter=80)
        return r.params, r.num_iter

    params, iters = jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))(alphas, W)
    assert params.shape == (2, 3, 3, 3) and iters.shape == (2, 3)
    for i, a in enumerate(alphas):
        for j, w in enumerate(W):
            ref = mj.fit(_loss, L0, x, y, w, a, max_iter=80)
            assert int(iters[i, j]) == ref.num_iter
            np.testing.assert_allclose(params[i, j], ref.params, rtol=1e-8, atol=1e-12)


@pytest.mark.slow
def test_example_07_mlkrcv_selects_the_same_strength_as_grid_search_cv():
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "07_sweep.py"
    spec = importlib.util.spec_from_file_location("example07", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(quick=True)  # asserts MLKRCV's and GridSearchCV's scores and choice agree
