"""Row-sharded MLKR / NCA: the same numbers as one device.

The multi-device checks run in a subprocess with 4 simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before JAX
starts); the rest runs in-process on the one real device.
"""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _forced_devices import run_on_cpu_devices
from _typecheck import unchecked

import metricjax as mj
from metricjax.losses import mlkr_loss, nca_loss, sharded_mlkr_loss, sharded_nca_loss

SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import metricjax as mj
    from metricjax.losses import mlkr_loss, nca_loss, sharded_mlkr_loss, sharded_nca_loss

    assert len(jax.devices()) == 4, jax.devices()
    mesh = mj.row_mesh()
    out = {}

    def rel(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))

    rng = np.random.default_rng(0)
    for n, d, k, block in ((48, 5, 3, "auto"), (50, 5, 3, 4), (23, 6, 2, 5), (33, 4, 4, 32)):
        x = rng.standard_normal((n, d)) + 3.0
        y = rng.standard_normal(n)
        y2 = rng.standard_normal((n, 2))
        labels = rng.integers(0, 3, n)
        L = 0.5 * rng.standard_normal((k, d))
        errs = []
        for target in (y, y2):
            want = jax.value_and_grad(mlkr_loss, argnums=(0, 1, 2))(L, x, target)
            got = jax.value_and_grad(sharded_mlkr_loss, argnums=(0, 1, 2))(
                L, x, target, mesh=mesh, block_size=block)
            errs += [rel(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))]
            # L alone: the other form of the gradient pass
            errs.append(rel(jax.grad(sharded_mlkr_loss)(L, x, target, block_size=block),
                            want[1][0]))
        want = jax.value_and_grad(nca_loss, argnums=(0, 1))(L, x, labels)
        got = jax.value_and_grad(sharded_nca_loss, argnums=(0, 1))(L, x, labels, block_size=block)
        errs += [rel(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))]
        errs.append(rel(jax.grad(sharded_nca_loss)(L, x, labels, block_size=block), want[1][0]))
        out[f"n={n}"] = max(errs)
        # sample weights (some zero), split with the rows: MLKR wrt (L, x, y), NCA wrt (L, x)
        w = rng.uniform(size=n) * (rng.uniform(size=n) > 0.3)
        want = jax.value_and_grad(mlkr_loss, argnums=(0, 1, 2))(L, x, y, sample_weight=w)
        got = jax.value_and_grad(sharded_mlkr_loss, argnums=(0, 1, 2))(
            L, x, y, sample_weight=w, mesh=mesh, block_size=block)
        errs = [rel(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))]
        want = jax.value_and_grad(nca_loss, argnums=(0, 1))(L, x, labels, sample_weight=w)
        got = jax.value_and_grad(sharded_nca_loss, argnums=(0, 1))(
            L, x, labels, sample_weight=w, block_size=block)
        errs += [rel(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))]
        out[f"weighted n={n}"] = max(errs)

    # LMNN: loss and gradients (L, x), padded n, and explicit padding with n_valid
    from metricjax.losses import lmnn_loss, lmnn_target_neighbors, sharded_lmnn_loss
    errs = []
    for n, block in ((23, 3),):
        x = rng.standard_normal((n, 4)) + 2.0
        labels = rng.integers(0, 3, n)
        L = 0.7 * rng.standard_normal((3, 4))
        tn = lmnn_target_neighbors(x, labels, 2)
        want = jax.value_and_grad(lmnn_loss, argnums=(0, 1))(L, x, labels, target_neighbors=tn)
        got = jax.value_and_grad(sharded_lmnn_loss, argnums=(0, 1))(
            L, x, labels, target_neighbors=tn, block_size=block, mesh=mesh)
        errs += [rel(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))]
        errs.append(rel(jax.grad(sharded_lmnn_loss)(L, x, labels, target_neighbors=tn), want[1][0]))
        xp = np.concatenate([x, np.full((1, 4), 100.0)])  # one padding row, far away
        lp, tp = np.append(labels, 0), np.concatenate([tn, [[0, 1]]])
        errs.append(rel(jax.grad(mj.sharded(lmnn_loss, mesh, n_valid=n))(
            L, xp, lp, target_neighbors=tp), want[1][0]))
        y = rng.standard_normal(n)
        errs.append(rel(jax.grad(mj.sharded(mlkr_loss, mesh, n_valid=n))(
            L, xp, np.append(y, 5.0)), jax.grad(mlkr_loss)(L, x, y)))
        # sample weights, with given target neighbours and with the on-device search
        w = rng.uniform(0.5, 2.0, n) * (np.arange(n) % 5 != 0)
        for t in (tn, None):
            want = jax.value_and_grad(lmnn_loss, argnums=(0, 1))(
                L, x, labels, target_neighbors=t, n_neighbors=2, sample_weight=w)
            got = jax.value_and_grad(sharded_lmnn_loss, argnums=(0, 1))(
                L, x, labels, target_neighbors=t, n_neighbors=2, sample_weight=w,
                block_size=block, mesh=mesh)
            errs += [rel(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))]
        # ... and a padding row past n_valid (its weight is ignored)
        errs.append(rel(jax.grad(mj.sharded(lmnn_loss, mesh, n_valid=n))(
            L, xp, lp, target_neighbors=tp, sample_weight=np.append(w, 3.0)),
            jax.grad(lmnn_loss)(L, x, labels, target_neighbors=tn, sample_weight=w)))
    out["lmnn_and_n_valid"] = max(errs)

    # inputs placed by rows, under jit, with the mj.sharded wrapper
    n, d = 48, 5
    x = rng.standard_normal((n, d))
    y = np.sin(x[:, 0])
    L = 0.5 * np.eye(d)
    xs, ys = mj.shard_rows(x, mesh), mj.shard_rows(y, mesh)
    out["x_sharding"] = list(xs.sharding.spec)
    loss = mj.sharded(mlkr_loss, mesh)
    got = jax.jit(jax.value_and_grad(loss))(L, xs, ys)
    want = jax.value_and_grad(mlkr_loss)(L, x, y)
    out["jit"] = max(rel(got[0], want[0]), rel(got[1], want[1]))
    labels = (x[:, 1] > 0).astype(int)
    nca = mj.sharded(nca_loss, mesh)
    got = jax.jit(jax.grad(lambda L, x, c: nca(L, x, c, num_classes=2)))(L, xs, labels)
    out["jit_nca"] = rel(got, jax.grad(nca_loss)(L, x, labels))

    # a short fit with the sharded loss follows the one-device fit
    a = mj.fit(loss, L, xs, ys, max_iter=5, tol=0.0, gtol=0.0)
    b = mj.fit(mlkr_loss, L, x, y, max_iter=5, tol=0.0, gtol=0.0)
    out["fit_iters"] = a.num_iter
    out["fit_loss_decreased"] = bool(a.loss_history[-1] < a.loss_history[0])
    out["fit"] = rel(a.params, b.params)
    out["fit_history"] = rel(a.loss_history, b.loss_history)
    print(json.dumps(out))
    """
)


def test_four_devices_match_one_device():
    out = run_on_cpu_devices(SCRIPT)
    for n in (48, 50, 23, 33):  # 50, 23 and 33 are padded to a multiple of 4
        assert out[f"n={n}"] < 1e-10, out
        assert out[f"weighted n={n}"] < 1e-10, out
    assert out["lmnn_and_n_valid"] < 1e-10, out
    assert out["x_sharding"] == ["rows"]
    assert out["jit"] < 1e-10 and out["jit_nca"] < 1e-10, out
    assert out["fit_iters"] == 5 and out["fit_loss_decreased"]
    assert out["fit"] < 1e-8 and out["fit_history"] < 1e-10, out


# ----------------------------------------------------------------- one device, in-process
@pytest.mark.usefixtures("x64")
def test_one_device_mesh_equals_unsharded():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((21, 4))
    y = rng.standard_normal(21)
    labels = rng.integers(0, 2, 21)
    L = 0.5 * rng.standard_normal((3, 4))
    g = jax.value_and_grad(sharded_mlkr_loss, argnums=(0, 1, 2))(L, x, y, block_size=4)
    want = jax.value_and_grad(mlkr_loss, argnums=(0, 1, 2))(L, x, y)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        sharded_nca_loss(L, x, labels, mesh=mj.row_mesh()), nca_loss(L, x, labels), rtol=1e-12
    )
    # weight 0 is a dropped point in the sharded losses too
    w = np.r_[np.zeros(5), rng.uniform(0.5, 2.0, 16)]
    got = jax.value_and_grad(sharded_mlkr_loss)(L, x, y, sample_weight=w, block_size=4)
    kept = jax.value_and_grad(mlkr_loss)(L, x[5:], y[5:], sample_weight=w[5:])
    for a, b in zip(got, kept):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="`sample_weight` must be finite"):
        sharded_nca_loss(L, x, labels, sample_weight=-np.ones(21))


def test_float32_and_errors():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 3)).astype(np.float32)
    y = rng.standard_normal(10).astype(np.float32)
    v = sharded_mlkr_loss(np.eye(3, dtype=np.float32), x, y)
    assert v.dtype == jnp.float32
    np.testing.assert_allclose(v, mlkr_loss(np.eye(3, dtype=np.float32), x, y), rtol=1e-5)
    with pytest.raises(ValueError, match="n_valid"):
        sharded_mlkr_loss(np.eye(3), x, y, n_valid=11)
    with pytest.raises(TypeError, match="target_neighbors"):
        mj.losses.sharded_lmnn_loss(np.eye(3), x, np.arange(10) % 2, n_valid=9)
    with pytest.raises(ValueError, match="supports"):
        mj.sharded(lambda L, x, y: 0.0)
    with pytest.raises(ValueError, match="axis_name"):
        sharded_mlkr_loss(np.eye(3), x, y, axis_name="cols")
    with pytest.raises(TypeError, match="Mesh"):
        sharded_mlkr_loss(np.eye(3), x, y, mesh="all")
    with pytest.raises(ValueError, match="block_size"):
        sharded_mlkr_loss(np.eye(3), x, y, block_size=0)
    with pytest.raises(ValueError, match="rows"):
        unchecked(sharded_mlkr_loss)(np.eye(3), x, y[:5])
    with pytest.raises(ValueError, match="labels"):
        unchecked(sharded_nca_loss)(np.eye(3), x, np.zeros(4))
    two_axes = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("a", "b"))
    with pytest.raises(ValueError, match="axis_name"):
        mj.sharded(mlkr_loss, two_axes)
    f = mj.sharded(mlkr_loss, two_axes, axis_name="a")
    np.testing.assert_allclose(f(np.eye(3), x, y), mlkr_loss(np.eye(3), x, y), rtol=1e-5)
