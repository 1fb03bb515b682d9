"""``mj.fit`` / ``mj.fit_minibatch`` inside ``jax.jit`` and ``jax.vmap`` (issue 14).

A vmapped fit must equal the sequential fits member by member: same iteration
counts, parameters at rtol 1e-8 (float64). Each member stops when *it* converges.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metricjax as mj
from metricjax.losses import lmnn_loss, lmnn_target_neighbors, mlkr_loss


def _regression(n=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x[:, 0] + 0.3 * x[:, 1] ** 2 + 0.1 * rng.normal(size=n)
    return jnp.asarray(x), jnp.asarray(y)


def _ridge_mlkr(L, x, y, a):
    """MLKR plus a traced ridge strength ``a`` (a hyperparameter to vmap over)."""
    return mlkr_loss(L, x, y) + a * jnp.sum(L**2)


def _assert_same(batched, sequential):
    """Member i of ``batched`` (a FitResult of arrays) equals ``sequential[i]``.

    The problems are well conditioned (a ridge term): the eager fits compile with
    other XLA settings than the traced ones, and rounding differences must not grow
    along the L-BFGS path (on unregularised MLKR, where ``L`` grows without bound,
    even ``jax.jit(fit)`` and the eager fit part ways after ~100 iterations).
    """
    for i, res in enumerate(sequential):
        assert int(batched.num_iter[i]) == res.num_iter, (i, batched.num_iter, res.num_iter)
        assert bool(batched.converged[i]) == res.converged
        np.testing.assert_allclose(np.asarray(batched.params[i]), np.asarray(res.params), rtol=1e-8,
                                   atol=1e-12)
        hist = np.asarray(batched.loss_history[i])
        np.testing.assert_allclose(hist[: res.num_iter + 1], res.loss_history, rtol=1e-8)
        assert np.all(np.isnan(hist[res.num_iter + 1:]))


def test_jit_of_fit_compiles_and_matches_eager(x64):
    x, y = _regression()
    L0 = 0.5 * jnp.eye(4)
    run = jax.jit(lambda L: mj.fit(mlkr_loss, L, x, y, max_iter=20))
    out = run(L0)
    ref = mj.fit(mlkr_loss, L0, x, y, max_iter=20)
    assert isinstance(out.num_iter, jax.Array) and out.loss_history.shape == (21,)
    _assert_same(jax.tree.map(lambda a: a[None], out), [ref])
    assert float(out.grad_norm) == pytest.approx(ref.grad_norm, rel=1e-8)


@pytest.mark.parametrize("method", ["sequential", "batched"])
def test_vmap_over_initial_parameters(x64, method):
    x, y = _regression()
    L0s = jnp.stack([jnp.eye(4) * s for s in (0.1, 0.3, 1.0, 3.0)])
    fit = lambda L: mj.fit(_ridge_mlkr, L, x, y, 0.3, max_iter=300, vmap_method=method)
    batched = jax.jit(jax.vmap(fit))(L0s)
    sequential = [fit(L) for L in L0s]
    # the members really stop at different iterations: the freezing is exercised
    assert len({r.num_iter for r in sequential}) > 1
    _assert_same(batched, sequential)


def test_vmap_over_a_hyperparameter(x64):
    x, y = _regression()
    L0 = 0.5 * jnp.eye(4)
    alphas = jnp.asarray([0.3, 1.0, 3.0])
    fit = lambda a: mj.fit(_ridge_mlkr, L0, x, y, a, max_iter=60)
    batched = jax.vmap(fit)(alphas)
    sequential = [mj.fit(_ridge_mlkr, L0, x, y, a, max_iter=60) for a in alphas]
    assert len({r.num_iter for r in sequential}) > 1
    _assert_same(batched, sequential)


def test_vmap_over_data_weights(x64):
    """Three cross-validation folds as a vmap over sample-weight vectors."""
    x, y = _regression(n=45)
    folds = np.arange(45) % 3
    weights = jnp.asarray(np.stack([(folds != f).astype(float) for f in range(3)]))
    loss = lambda L, x, y, w: mlkr_loss(L, x, y, sample_weight=w) + 0.3 * jnp.sum(L**2)
    L0 = 0.5 * jnp.eye(4)
    fit = lambda w: mj.fit(loss, L0, x, y, w, max_iter=40)
    batched = jax.vmap(fit)(weights)
    sequential = [mj.fit(loss, L0, x, y, w, max_iter=40) for w in weights]
    _assert_same(batched, sequential)
    # and a weight-0 fold equals the fit on the kept rows only
    keep = folds != 0
    dropped = mj.fit(_ridge_mlkr, L0, x[keep], y[keep], 0.3, max_iter=40)
    assert dropped.num_iter == sequential[0].num_iter
    np.testing.assert_allclose(np.asarray(dropped.params), np.asarray(sequential[0].params),
                               rtol=1e-7, atol=1e-10)


def test_vmap_over_the_data_itself(x64):
    xs, ys = zip(*(_regression(seed=s) for s in range(3)))
    xs, ys = jnp.stack(xs), jnp.stack(ys)
    fit = lambda x, y: mj.fit(_ridge_mlkr, 0.5 * jnp.eye(4), x, y, 0.3, max_iter=60)
    batched = jax.vmap(fit)(xs, ys)
    _assert_same(batched, [fit(x, y) for x, y in zip(xs, ys)])


def test_first_order_optimizer_under_vmap(x64):
    x, y = _regression()
    fit = lambda L: mj.fit(_ridge_mlkr, L, x, y, 0.3, optimizer="adam", max_iter=25)
    L0s = jnp.stack([jnp.eye(4) * s for s in (0.5, 1.0)])
    _assert_same(jax.vmap(fit)(L0s), [fit(L) for L in L0s])


@pytest.mark.parametrize("method", ["sequential", "batched"])
def test_fit_minibatch_under_vmap_and_jit(x64, method):
    x, y = _regression()
    fit = lambda L: mj.fit_minibatch(mlkr_loss, L, x, y, batch_size=10, key=jax.random.key(3),
                                     num_steps=15, eval_every=5, vmap_method=method)
    L0s = jnp.stack([jnp.eye(4) * s for s in (0.5, 1.0)])
    batched = jax.jit(jax.vmap(fit))(L0s)
    for i, L in enumerate(L0s):
        ref = fit(L)
        assert int(batched.num_steps[i]) == ref.num_steps
        np.testing.assert_allclose(np.asarray(batched.params[i]), np.asarray(ref.params), rtol=1e-8)
        np.testing.assert_allclose(np.asarray(batched.loss_history[i]), ref.loss_history, rtol=1e-8)
        np.testing.assert_allclose(np.asarray(batched.eval_history[i]), ref.eval_history, rtol=1e-8)


def _counting(loss, counter):
    """``loss`` that counts its evaluations in ``counter`` (one per member under vmap)."""

    def counted(L, *args):
        value = loss(L, *args)
        jax.debug.callback(lambda v: counter.append(np.size(v)), value)
        return value

    return counted


def test_sequential_vmap_does_each_members_own_work_only(x64):
    """``vmap_method="sequential"`` (the CPU default) evaluates the loss exactly as often
    as the fits one by one; the batched loop evaluates every member until the slowest
    has converged."""
    x, y = _regression()
    L0 = 0.5 * jnp.eye(4)
    alphas = jnp.asarray([0.03, 0.3, 3.0])
    one_by_one, seq, bat = [], [], []
    runs = [mj.fit(_counting(_ridge_mlkr, one_by_one), L0, x, y, a, max_iter=60) for a in alphas]
    assert len({r.num_iter for r in runs}) == 3
    for method, counter in (("auto", seq), ("batched", bat)):
        loss = _counting(_ridge_mlkr, counter)
        fit = lambda a, loss=loss, method=method: mj.fit(loss, L0, x, y, a, max_iter=60,
                                                         vmap_method=method)
        out = jax.vmap(fit)(alphas)
        jax.block_until_ready(out.params)
        _assert_same(out, runs)
    assert sum(seq) == sum(one_by_one)
    assert sum(bat) > sum(one_by_one)  # finished members evaluated until the last is done
    # the program: a map over the members (scan) around one unbatched fit
    names = lambda m: {e.primitive.name for e in jax.make_jaxpr(
        jax.vmap(lambda a: mj.fit(_ridge_mlkr, L0, x, y, a, max_iter=60, vmap_method=m).params)
    )(alphas).eqns}  # fmt: skip
    assert "scan" in names("sequential") and "scan" not in names("batched")


def test_vmap_over_a_hyperparameter_the_loss_closes_over(x64):
    """A loss closing over the vmapped value (not an argument of ``fit``) runs member by
    member too, float and int values alike."""
    x, y = _regression()
    L0 = 0.5 * jnp.eye(4)
    alphas, powers = jnp.asarray([0.3, 3.0]), jnp.asarray([1, 2])

    def fit(a, p):
        loss = lambda L, x, y: mlkr_loss(L, x, y) + a * jnp.asarray(p, L.dtype) * jnp.sum(L**2)
        return mj.fit(loss, L0, x, y, max_iter=60)

    batched = jax.vmap(fit)(alphas, powers)
    assert "scan" in {e.primitive.name for e in jax.make_jaxpr(jax.vmap(fit))(alphas, powers).eqns}
    _assert_same(batched, [fit(float(a), int(p)) for a, p in zip(alphas, powers)])


def test_bad_vmap_method_is_refused_by_name():
    x, y = _regression()
    with pytest.raises(ValueError, match="`vmap_method` must be one of"):
        mj.fit(mlkr_loss, jnp.eye(4), x, y, vmap_method="parallel")
    with pytest.raises(ValueError, match="`vmap_method` must be one of"):
        mj.fit_minibatch(mlkr_loss, jnp.eye(4), x, y, batch_size=8, key=0, vmap_method="Sequential")


@pytest.mark.parametrize("kw", [{"verbose": True}, {"callback": lambda *a: None}])
def test_host_features_under_a_trace_are_refused_clearly(kw):
    x, y = _regression()
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    with pytest.raises(ValueError, match="traced .*verbose=False and callback=None"):
        jax.jit(lambda L: mj.fit(mlkr_loss, L, x, y, max_iter=5, **kw).params)(jnp.eye(4))
    with pytest.raises(ValueError, match="traced .*verbose=False and callback=None"):
        jax.jit(
            lambda L: mj.fit_minibatch(mlkr_loss, L, x, y, batch_size=8, key=0, num_steps=5,
                                       **kw).params
        )(jnp.eye(4))


def test_issue_snippet_float32():
    x, y = _regression(n=30, d=8)
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    Ls = jnp.stack([jnp.eye(8, dtype=jnp.float32) * s for s in (0.1, 0.3, 1.0, 3.0)])
    out = jax.vmap(lambda L0: mj.fit(mlkr_loss, L0, x, y, max_iter=20).params)(Ls)
    assert out.shape == (4, 8, 8) and out.dtype == jnp.float32
    one = jax.jit(lambda L0: mj.fit(mlkr_loss, L0, x, y, max_iter=20).params)(Ls[0])
    assert one.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(one)))


# ----------------------------------------------------------------- LMNN: traced push weight, folds
def _classes(n=36, d=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    x = rng.normal(size=(n, d)) + 1.5 * np.eye(d)[labels]
    return jnp.asarray(x), jnp.asarray(labels)


def _ridge_lmnn(L, x, labels, tn, mu):
    """LMNN with a traced push weight ``mu`` (and a small ridge: well conditioned)."""
    return lmnn_loss(L, x, labels, target_neighbors=tn, push_weight=mu) + 0.1 * jnp.sum(L**2)


def test_vmap_over_lmnn_push_weight(x64):
    x, labels = _classes()
    tn = lmnn_target_neighbors(x, labels, 3)
    L0 = 0.5 * jnp.eye(3)
    mus = jnp.asarray([0.2, 0.5, 0.8])
    fit = lambda mu: mj.fit(_ridge_lmnn, L0, x, labels, tn, mu, max_iter=60)
    batched = jax.vmap(fit)(mus)
    sequential = [fit(mu) for mu in mus]
    assert len({round(float(r.loss_history[-1]), 6) for r in sequential}) == 3
    _assert_same(batched, sequential)
    # a traced push weight gives the fit of the static Python float
    static = mj.fit(lambda L, x, lab, tn: _ridge_lmnn(L, x, lab, tn, 0.5), L0, x, labels, tn,
                    max_iter=60)
    assert static.num_iter == sequential[1].num_iter
    np.testing.assert_allclose(np.asarray(static.params), np.asarray(sequential[1].params),
                               rtol=1e-8, atol=1e-12)


def test_vmap_over_lmnn_fold_weights(x64):
    """Three folds of LMNN as a vmap over sample-weight vectors (target neighbours searched
    among each fold's points, inside the compiled fit)."""
    x, labels = _classes(n=45)
    folds = np.arange(45) // 3 % 3  # every fold holds all classes (labels are i % 3)
    weights = jnp.asarray(np.stack([(folds != f).astype(float) for f in range(3)]))
    loss = lambda L, x, lab, w: lmnn_loss(L, x, lab, sample_weight=w) + 0.1 * jnp.sum(L**2)
    L0 = 0.5 * jnp.eye(3)
    fit = lambda w: mj.fit(loss, L0, x, labels, w, max_iter=60)
    batched = jax.vmap(fit)(weights)
    sequential = [fit(w) for w in weights]
    _assert_same(batched, sequential)
    # and a weight-0 fold equals the fit on the kept rows only
    keep = folds != 0
    tn = lmnn_target_neighbors(x[keep], labels[keep], 3)
    dropped = mj.fit(_ridge_lmnn, L0, x[keep], labels[keep], tn, 0.5, max_iter=60)
    assert dropped.num_iter == sequential[0].num_iter
    np.testing.assert_allclose(np.asarray(dropped.params), np.asarray(sequential[0].params),
                               rtol=1e-7, atol=1e-10)
