"""The compiled optax training loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metricjax as mj
from metricjax._train import make_loop
from metricjax.losses import mlkr_loss


def quad(w, t):
    return jnp.sum((w - t) ** 2) + 0.1 * jnp.sum(w**4)


def _regression(n=60, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (x[:, 0] + 0.1 * rng.standard_normal(n)).astype(np.float32)
    return x, y


def test_lbfgs_converges_on_smooth_problem():
    res = mj.fit(quad, jnp.zeros(3), jnp.arange(3.0), max_iter=100)
    assert res.converged
    assert res.num_iter < 100
    assert len(res.loss_history) == res.num_iter + 1
    assert np.all(np.diff(res.loss_history) <= 1e-6)  # L-BFGS with line search is monotone
    assert res.grad_norm < 1e-3


def test_mlkr_loss_decreases_with_lbfgs_and_adam():
    x, y = _regression()
    L0 = 0.3 * jnp.eye(4)
    for opt in (None, optax.adam(1e-2)):
        res = mj.fit(mlkr_loss, L0, x, y, optimizer=opt, max_iter=50)
        assert res.loss_history[-1] < res.loss_history[0]
        assert res.params.shape == (4, 4)


def test_max_iter_respected_and_not_converged():
    x, y = _regression()
    res = mj.fit(mlkr_loss, 0.3 * jnp.eye(4), x, y, max_iter=3, tol=0.0, gtol=0.0)
    assert res.num_iter == 3
    assert not res.converged
    assert len(res.loss_history) == 4


def test_whole_loop_compiles_once_and_chunks_reuse_it():
    x, y = _regression()
    init, run = make_loop(mlkr_loss, optax.lbfgs(), max_iter=20, tol=0.0, gtol=0.0)
    carry = init(0.3 * jnp.eye(4), x, y)
    for stop in (5, 10, 20):
        carry = run(carry, jnp.int32(stop), x, y)
    assert int(carry.it) == 20
    assert run._cache_size() == 1


def test_chunked_progress_equals_one_shot_and_callback_sees_progress():
    x, y = _regression()
    seen = []
    one = mj.fit(mlkr_loss, 0.3 * jnp.eye(4), x, y, max_iter=12, tol=0.0, gtol=0.0)
    chunked = mj.fit(
        mlkr_loss, 0.3 * jnp.eye(4), x, y, max_iter=12, tol=0.0, gtol=0.0, chunk_size=5,
        callback=lambda it, loss, params: seen.append((it, loss)),
    )
    np.testing.assert_allclose(one.params, chunked.params, rtol=1e-6)
    assert [it for it, _ in seen] == [5, 10, 12]


def test_callback_can_stop_the_fit():
    res = mj.fit(quad, jnp.zeros(3), jnp.arange(3.0), optimizer=optax.sgd(1e-3),
                 max_iter=100, chunk_size=4, callback=lambda it, loss, p: it >= 8)
    assert res.num_iter == 8


def test_verbose_progress_bar_runs(capsys):
    res = mj.fit(quad, jnp.zeros(3), jnp.arange(3.0), max_iter=10, verbose=True)
    assert res.num_iter >= 1


def test_resume_from_opt_state():
    x, y = _regression()
    L0 = 0.3 * jnp.eye(4)
    full = mj.fit(mlkr_loss, L0, x, y, optimizer=optax.adam(1e-2), max_iter=10, tol=0.0)
    half = mj.fit(mlkr_loss, L0, x, y, optimizer=optax.adam(1e-2), max_iter=5, tol=0.0)
    rest = mj.fit(mlkr_loss, half.params, x, y, optimizer=optax.adam(1e-2), max_iter=5,
                  tol=0.0, opt_state=half.opt_state)
    np.testing.assert_allclose(rest.params, full.params, rtol=1e-5, atol=1e-6)


def test_non_finite_initial_loss_and_bad_arguments_raise():
    with pytest.raises(FloatingPointError):
        mj.fit(lambda w: jnp.sum(w) * jnp.nan, jnp.zeros(2))
    with pytest.raises(ValueError, match="max_iter"):
        mj.fit(quad, jnp.zeros(3), jnp.arange(3.0), max_iter=0)


def test_float64_fit_stays_float64():
    x, y = _regression()
    with jax.enable_x64(True):
        res = mj.fit(mlkr_loss, np.eye(4), x.astype(np.float64), y.astype(np.float64),
                     max_iter=5)
        assert res.params.dtype == np.float64


@pytest.mark.slow  # a fresh Python process
def test_a_first_fit_lowers_its_loop_and_nothing_else():
    """A fit compiles its loop and nothing else: no eager JAX operation before or after it
    (each would compile a small program of its own on a first fit, 10-50 ms apiece); a
    small problem adds the one probe of the quick-compile XLA options. Counted in a fresh
    process, where nothing has been compiled yet; lowerings are counted, not
    compilations, as the test run's persistent cache may skip those."""
    from tests._forced_devices import run_on_cpu_devices

    script = """
import json
import jax
import numpy as np
import metricjax as mj
from metricjax.losses import mlkr_loss
names = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, seconds, **kw: names.append(name))
lowered = lambda: names.count("/jax/core/compile/jaxpr_to_mlir_module_duration")
rng = np.random.default_rng(0)
out = {}
for n in (600, 40):  # n**2 * (d + k) above and below the quick-compile bound
    x, y = rng.standard_normal((n, 3)), rng.standard_normal(n)
    before = lowered()
    res = mj.fit(mlkr_loss, np.eye(3), x, y, max_iter=5)
    out[n] = [lowered() - before, int(res.num_iter), res.grad_norm]
print(json.dumps(out))
"""
    out = run_on_cpu_devices(script, count=1)
    assert out["600"][0] == 1 and out["40"][0] == 2, out
    assert all(v[1] >= 1 and np.isfinite(v[2]) for v in out.values())
