"""Mini-batch training: fit_minibatch and the estimators' batch_size."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metricjax as mj
from metricjax._train import make_minibatch_loop
from metricjax.losses import mlkr_loss, nca_loss


def _regression(n=400, d=4, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    y = (np.sin(1.5 * x[:, 0]) + 0.1 * rng.standard_normal(n)).astype(dtype)
    return x, y


OPT = optax.adam(2e-2)  # one instance: fits share compiled loops


def test_full_data_loss_decreases():
    x, y = _regression()
    L0 = jnp.eye(4, dtype=jnp.float32)
    res = mj.fit_minibatch(
        mlkr_loss, L0, x, y, batch_size=64, key=jax.random.key(0), optimizer=OPT,
        num_steps=300, eval_every=100,
    )
    assert res.num_steps == 300 and res.loss_history.shape == (300,)
    np.testing.assert_array_equal(res.eval_steps, [0, 100, 200, 300])
    assert res.eval_history[0] == pytest.approx(float(mlkr_loss(L0, x, y)), rel=1e-5)
    assert res.eval_history[-1] == pytest.approx(float(mlkr_loss(res.params, x, y)), rel=1e-5)
    assert res.eval_history[-1] < 0.5 * res.eval_history[0]
    assert np.mean(res.loss_history[-30:]) < np.mean(res.loss_history[:30])


def test_same_key_same_result_other_key_differs():
    x, y = _regression()
    L0 = jnp.eye(4, dtype=jnp.float32)
    run = functools.partial(
        mj.fit_minibatch, mlkr_loss, L0, x, y, batch_size=50, optimizer=OPT, num_steps=40
    )
    a, b = run(key=jax.random.key(1)), run(key=jax.random.key(1))
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    c = run(key=jax.random.key(2))
    assert not np.array_equal(a.loss_history, c.loss_history)
    d = run(key=1)  # an int seed is accepted
    np.testing.assert_array_equal(d.params, a.params)


@pytest.mark.usefixtures("x64")
def test_batch_at_least_n_is_full_batch_fit():
    x, y = _regression(n=60, dtype=np.float64)
    L0 = 0.5 * jnp.eye(4)
    opt = optax.adam(1e-2)
    mb = mj.fit_minibatch(mlkr_loss, L0, x, y, batch_size=60, key=jax.random.key(0),
                          optimizer=opt, num_steps=25)
    mb2 = mj.fit_minibatch(mlkr_loss, L0, x, y, batch_size=1000, key=jax.random.key(5),
                           optimizer=opt, num_steps=25)
    full = mj.fit(mlkr_loss, L0, x, y, optimizer=opt, max_iter=25, tol=0.0, gtol=0.0)
    np.testing.assert_allclose(mb.params, full.params, rtol=1e-12)
    np.testing.assert_allclose(mb2.params, full.params, rtol=1e-12)
    np.testing.assert_allclose(mb.loss_history, full.loss_history[:-1], rtol=1e-12)


def test_rows_are_sampled_without_replacement_per_epoch():
    n, batch = 60, 12  # 5 batches per epoch
    rows = jnp.arange(n, dtype=jnp.float32)

    def sum_of_rows(w, r):
        return jnp.sum(r) + 0.0 * jnp.sum(w)

    def sum_of_squares(w, r):
        return jnp.sum(r**2) + 0.0 * jnp.sum(w)

    for f, want in ((sum_of_rows, rows.sum()), (sum_of_squares, (rows**2).sum())):
        res = mj.fit_minibatch(f, jnp.zeros(1), rows, batch_size=batch, key=jax.random.key(0),
                               optimizer=optax.sgd(0.0), num_steps=15)
        per_epoch = res.loss_history.reshape(3, 5).sum(axis=1)
        np.testing.assert_allclose(per_epoch, float(want))
        assert len(set(res.loss_history.reshape(3, 5)[0].tolist())) > 1  # random subsets


def test_several_data_arrays_share_rows():
    n = 50
    a = jnp.arange(n, dtype=jnp.float32)
    b = 2 * jnp.arange(n, dtype=jnp.float32)[:, None] * jnp.ones((1, 3))

    def f(w, a, b):  # zero for every batch iff the rows of a and b match
        return jnp.sum((b[:, 0] - 2 * a) ** 2) + 0.0 * jnp.sum(w)

    res = mj.fit_minibatch(f, jnp.zeros(1), a, b, batch_size=7, key=jax.random.key(3),
                           optimizer=optax.sgd(0.0), num_steps=20)
    np.testing.assert_array_equal(res.loss_history, 0.0)


def test_compiled_once_and_chunks_equal_one_shot():
    x, y = _regression()
    L0 = jnp.eye(4, dtype=jnp.float32)
    traced = []

    def loss(L, x, y):
        traced.append(1)
        return mlkr_loss(L, x, y, block_size=16)

    init, run = make_minibatch_loop(loss, OPT, batch_size=32, num_steps=30, eval_every=10)
    carry = init(L0, jax.random.key(0), x, y)
    n_init = len(traced)
    for stop in (7, 19, 30):
        carry = run(carry, jnp.int32(stop), x, y)
    assert run._cache_size() == 1
    assert int(carry.it) == 30
    one = mj.fit_minibatch(loss, L0, x, y, batch_size=32, key=jax.random.key(0), optimizer=OPT,
                           num_steps=30, eval_every=10)
    np.testing.assert_array_equal(one.params, carry.params)
    np.testing.assert_array_equal(one.eval_history, np.asarray(carry.evals))
    seen = []
    chunked = mj.fit_minibatch(loss, L0, x, y, batch_size=32, key=jax.random.key(0),
                               optimizer=OPT, num_steps=30, eval_every=10, chunk_size=4,
                               callback=lambda it, loss, p: seen.append(it))
    np.testing.assert_array_equal(chunked.params, one.params)
    assert seen == [4, 8, 12, 16, 20, 24, 28, 30]
    # one trace for init's shape evaluation and value_and_grad, one for the loop body
    assert len(traced) - n_init <= 8


def test_callback_stops_and_non_finite_loss_stops():
    x, y = _regression(n=100)
    L0 = jnp.eye(4, dtype=jnp.float32)
    res = mj.fit_minibatch(mlkr_loss, L0, x, y, batch_size=20, key=jax.random.key(0),
                           optimizer=OPT, num_steps=50, chunk_size=5,
                           callback=lambda it, loss, p: it >= 10)
    assert res.num_steps == 10 and res.loss_history.shape == (10,)

    def blows_up(w, r):
        return jnp.where(jnp.sum(w) > 0.25, jnp.nan, jnp.sum((w[0] - r) ** 2))

    res = mj.fit_minibatch(blows_up, jnp.zeros(1), jnp.ones(10), batch_size=5,
                           key=jax.random.key(0), optimizer=optax.sgd(0.05), num_steps=100)
    assert res.num_steps < 100
    assert np.isnan(res.loss_history[-1])
    assert np.all(np.isfinite(np.asarray(res.params)))


def test_argument_errors():
    x, y = _regression(n=20)
    L0 = jnp.eye(4)
    with pytest.raises(ValueError, match="batch_size"):
        mj.fit_minibatch(mlkr_loss, L0, x, y, batch_size=0, key=0)
    with pytest.raises(TypeError, match="num_steps"):
        mj.fit_minibatch(mlkr_loss, L0, x, y, batch_size=4, key=0, num_steps=2.5)
    with pytest.raises(ValueError, match="rows"):
        mj.fit_minibatch(mlkr_loss, L0, x, y[:10], batch_size=4, key=0)
    with pytest.raises(TypeError, match="floating point"):
        mj.fit_minibatch(mlkr_loss, np.eye(4, dtype=int), x, y, batch_size=4, key=0)
    with pytest.raises(ValueError, match="at least one data array"):
        mj.fit_minibatch(lambda w: jnp.sum(w**2), jnp.ones(2), batch_size=4, key=0)


# ----------------------------------------------------------------- estimators
@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_mlkr_estimator_batch_size_is_deterministic_and_learns():
    pytest.importorskip("sklearn")
    x, y = _regression(n=300, seed=1)
    kw = dict(init="identity", batch_size=64, max_iter=150, random_state=0)
    a = mj.MLKR(**kw).fit(x, y)
    b = mj.MLKR(**kw).fit(x, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert a.n_iter_ == 150 and a.loss_history_.shape == (150,) and not a.converged_
    assert float(mlkr_loss(a.components_, x, y)) < 0.7 * float(mlkr_loss(np.eye(4), x, y))
    c = mj.MLKR(**{**kw, "random_state": 1}).fit(x, y)
    assert not np.array_equal(a.components_, c.components_)
    assert a.get_params()["batch_size"] == 64


def test_nca_estimator_batch_size_and_errors():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    labels = np.arange(240) % 3
    x = rng.standard_normal((240, 5))
    x[:, 0] += 2.0 * labels  # one informative direction
    est = mj.NCA(n_components=2, batch_size=48, max_iter=100, random_state=0,
                 optimizer=optax.adam(5e-2)).fit(x, labels)
    init = mj.NCA(n_components=2, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init.fit(x, labels)
    assert est.components_.shape == (2, 5)
    assert float(nca_loss(est.components_, x, labels)) <= float(nca_loss(init.components_, x, labels)) + 1.0
    for bad, err in ((1, ValueError), (0, ValueError), (2.5, TypeError), ("64", TypeError)):
        with pytest.raises(err, match="batch_size"):
            mj.NCA(batch_size=bad, max_iter=2).fit(x, labels)
    assert "batch_size" not in mj.LMNN().get_params()
