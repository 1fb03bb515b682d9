"""Persistence: pickled estimators, and saving/restoring parameters + optimizer state."""

from __future__ import annotations

import json
import pickle
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metricjax as mj
from metricjax.losses import mlkr_loss


def _regression(n=50, d=4, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    return x, (x[:, 0] + 0.1 * rng.standard_normal(n)).astype(dtype)


# ----------------------------------------------------------------------------------
# estimators survive pickle with identical outputs
# ----------------------------------------------------------------------------------
def _fitted_attributes(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


def _assert_same_attributes(a, b):
    fa, fb = _fitted_attributes(a), _fitted_attributes(b)
    assert fa.keys() == fb.keys() and fa
    for name, value in fa.items():
        other = fb[name]
        if isinstance(value, np.ndarray):
            assert isinstance(other, np.ndarray) and other.dtype == value.dtype, name
            np.testing.assert_array_equal(other, value, err_msg=name)
        else:
            assert type(other) is type(value) and other == value, name


@pytest.fixture(scope="module")
def datasets():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_diabetes, load_iris

    xi, yi = load_iris(return_X_y=True)
    xi = (xi - xi.mean(0)) / xi.std(0)
    xd, yd = load_diabetes(return_X_y=True)
    xd = (xd - xd.mean(0)) / xd.std(0)
    return {"iris": (xi, yi), "diabetes": (xd[:150], yd[:150] / yd.std())}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["MLKR", "NCA", "LMNN"])
def test_fitted_estimator_pickle_round_trip(name, dtype, datasets):
    X, y = datasets["diabetes" if name == "MLKR" else "iris"]
    X = X.astype(dtype)
    kwargs = {"n_neighbors": 3} if name == "LMNN" else {}
    est = getattr(mj, name)(n_components=2, max_iter=15, random_state=0, **kwargs)
    with warnings.catch_warnings():  # a short fit
        warnings.simplefilter("ignore")
        est.fit(X, y)
    restored = pickle.loads(pickle.dumps(est))
    assert type(restored) is type(est)
    assert restored.get_params() == est.get_params()
    _assert_same_attributes(est, restored)
    out, out2 = est.transform(X), restored.transform(X)
    assert out2.dtype == out.dtype == dtype
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(restored.get_mahalanobis_matrix(), est.get_mahalanobis_matrix())
    u, v = X[0], X[1]
    assert restored.get_metric()(u, v) == est.get_metric()(u, v)
    if name == "MLKR":
        np.testing.assert_array_equal(restored.predict(X), est.predict(X))
        assert restored.score(X, y) == est.score(X, y)
    # the restored estimator stays a working estimator: it refits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restored.fit(X, y)
    np.testing.assert_allclose(restored.components_, est.components_, rtol=1e-5, atol=1e-6)


def test_unfitted_estimator_and_pipeline_pickle(datasets):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert pickle.loads(pickle.dumps(mj.NCA(n_components=2))).get_params()["n_components"] == 2
    X, y = datasets["iris"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = make_pipeline(StandardScaler(), mj.NCA(n_components=2, max_iter=10)).fit(X, y)
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.transform(X), pipe.transform(X))


# ----------------------------------------------------------------------------------
# save_state / load_state: resume a fit
# ----------------------------------------------------------------------------------
def test_resume_adam_equals_straight_fit(tmp_path):
    x, y = _regression()
    L0 = 0.3 * jnp.eye(4)
    optimizer = optax.adam(1e-2)
    full = mj.fit(mlkr_loss, L0, x, y, optimizer=optimizer, max_iter=10, tol=0.0, gtol=0.0)
    half = mj.fit(mlkr_loss, L0, x, y, optimizer=optimizer, max_iter=5, tol=0.0, gtol=0.0)
    path = mj.save_state(tmp_path / "adam.npz", half.params, half.opt_state, num_iter=5)
    state = mj.load_state(path, like=optimizer.init(L0))
    assert state.meta == {"num_iter": 5}
    assert int(state.opt_state[0].count) == 5
    rest = mj.fit(mlkr_loss, state.params, x, y, optimizer=optimizer, max_iter=5, tol=0.0,
                  gtol=0.0, opt_state=state.opt_state)  # fmt: skip
    np.testing.assert_allclose(rest.params, full.params, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rest.loss_history, full.loss_history[5:], rtol=1e-6)


def test_resume_default_lbfgs(tmp_path):
    x, y = _regression()
    L0 = 0.3 * jnp.eye(4)
    full = mj.fit(mlkr_loss, L0, x, y, max_iter=10, tol=0.0, gtol=0.0)
    half = mj.fit(mlkr_loss, L0, x, y, max_iter=5, tol=0.0, gtol=0.0)
    path = mj.save_state(tmp_path / "lbfgs.npz", half.params, half.opt_state)
    # any L-BFGS instance with the same settings gives the template
    state = mj.load_state(path, like=optax.lbfgs().init(L0))
    rest = mj.fit(mlkr_loss, state.params, x, y, max_iter=5, tol=0.0, gtol=0.0,
                  opt_state=state.opt_state)  # fmt: skip
    np.testing.assert_allclose(rest.params, full.params, rtol=1e-5, atol=1e-6)
    assert rest.loss_history[-1] <= half.loss_history[-1]


def test_round_trip_preserves_values_dtypes_and_structure(tmp_path):
    params = {
        "L": np.arange(6.0).reshape(2, 3),  # float64
        "scale": np.float32(0.5),
        "steps": [np.arange(3, dtype=np.int32), np.array([True, False])],
        "nested": ({"b": np.ones(2, np.float16), "a": np.zeros((0, 2))}, None),
        "half": jnp.ones(3, jnp.bfloat16),
        "key": jax.random.key(3),
    }
    path = mj.save_state(tmp_path / "p.npz", params, note="hello", lr=1e-3, hist=np.ones(2))
    state = mj.load_state(path)
    assert state.opt_state is None
    assert state.meta == {"note": "hello", "lr": 1e-3, "hist": [1.0, 1.0]}
    p = state.params
    assert list(p) == list(params)  # key order kept
    assert list(p["nested"][0]) == ["b", "a"]
    assert isinstance(p["steps"], list) and isinstance(p["nested"], tuple)
    assert p["nested"][1] is None
    for a, b in [
        (p["L"], params["L"]),
        (p["scale"], params["scale"]),
        (p["steps"][0], params["steps"][0]),
        (p["steps"][1], params["steps"][1]),
        (p["nested"][0]["b"], params["nested"][0]["b"]),
        (p["nested"][0]["a"], params["nested"][0]["a"]),
    ]:
        assert a.dtype == np.asarray(b).dtype and a.shape == np.shape(b)
        np.testing.assert_array_equal(a, b)
    assert p["half"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(p["half"], np.float32), 1.0)
    assert jax.dtypes.issubdtype(p["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.normal(p["key"], (3,)), jax.random.normal(params["key"], (3,))
    )


def test_float64_fit_state_stays_float64(tmp_path, x64):
    x, y = _regression(dtype=np.float64)
    optimizer = optax.adam(1e-2)
    res = mj.fit(mlkr_loss, 0.3 * jnp.eye(4), x, y, optimizer=optimizer, max_iter=3)
    assert res.params.dtype == jnp.float64
    path = mj.save_state(tmp_path / "f64.npz", res.params, res.opt_state)
    state = mj.load_state(path, like=optimizer.init(res.params))
    assert state.params.dtype == np.float64
    assert state.opt_state[0].mu.dtype == np.float64
    assert state.opt_state[0].count.dtype == np.int32
    np.testing.assert_array_equal(state.params, res.params)
    np.testing.assert_array_equal(state.opt_state[0].nu, res.opt_state[0].nu)


def test_file_is_plain_npz_with_json_header(tmp_path):
    optimizer = optax.adam(1e-2)
    L = jnp.eye(2)
    path = mj.save_state(tmp_path / "ckpt", L, optimizer.init(L), epoch=3)
    assert path == tmp_path / "ckpt" and path.is_file()  # no suffix added
    with np.load(path, allow_pickle=False) as data:  # no pickle needed to read it
        assert set(data.files) == {"params/0", "opt_state/0", "opt_state/1", "opt_state/2",
                                   "__metricjax__"}  # fmt: skip
        header = json.loads(str(data["__metricjax__"]))
    assert header["format"] == "metricjax-state" and header["meta"] == {"epoch": 3}
    assert "ScaleByAdamState" in header["opt_state"]["treedef"]
    assert [r["dtype"] for r in header["opt_state"]["leaves"]] == ["<i4", "<f4", "<f4"]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.usefixtures("standard_promotion")
def test_nnx_model_state_round_trip(tmp_path):
    nnx = pytest.importorskip("flax.nnx")
    from metricjax.nn import MahalanobisMetric

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(4, 3, rngs=rngs)
            self.head = MahalanobisMetric(3, 2, init="orthogonal", rngs=rngs)

        def __call__(self, x):
            return self.head(self.linear(x))

    model, other = Net(nnx.Rngs(0)), Net(nnx.Rngs(1))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x = jnp.asarray(_regression(n=6)[0])
    grads = nnx.grad(lambda m: jnp.sum(m(x)))(model)
    opt.update(model, grads)
    path = mj.save_state(tmp_path / "net.npz", nnx.state(model), nnx.state(opt))
    with pytest.raises(ValueError, match="params_like"):
        mj.load_state(path)
    other_opt = nnx.Optimizer(other, optax.adam(1e-2), wrt=nnx.Param)
    state = mj.load_state(path, like=nnx.state(other_opt), params_like=nnx.state(other))
    nnx.update(other, state.params)
    nnx.update(other_opt, state.opt_state)
    np.testing.assert_array_equal(other(x), model(x))
    assert int(other_opt.step[...]) == 1


# ----------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------
def test_structure_mismatch_is_a_clear_error(tmp_path):
    L = jnp.eye(3)
    path = mj.save_state(tmp_path / "s.npz", L, optax.adam(1e-2).init(L))
    with pytest.raises(ValueError, match=r"custom tree structure.*like="):
        mj.load_state(path)  # optax states need a template
    with pytest.raises(ValueError, match=r"does not match(.|\n)*ScaleByAdamState"):
        mj.load_state(path, like=optax.sgd(1e-2, momentum=0.9).init(L))
    with pytest.raises(ValueError, match=r"leaf 1 has shape \(3, 3\) in the file but \(2, 2\)"):
        mj.load_state(path, like=optax.adam(1e-2).init(jnp.eye(2)))
    with pytest.raises(ValueError, match="holds no opt_state"):
        mj.load_state(mj.save_state(tmp_path / "p.npz", L), like=optax.adam(1e-2).init(L))


def test_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="leaf"):
        mj.save_state(tmp_path / "bad.npz", {"a": "text"})
    with pytest.raises(TypeError, match="JSON"):
        mj.save_state(tmp_path / "bad.npz", jnp.eye(2), note=object())
    assert not (tmp_path / "bad.npz").exists()
    np.savez(tmp_path / "other.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="not a metricjax state file"):
        mj.load_state(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        mj.load_state(tmp_path / "missing.npz")
