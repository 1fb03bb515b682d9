"""Estimators with ``mesh=``: the rows sharded over 4 forced CPU devices, same fit.

Runs in a subprocess (``--xla_force_host_platform_device_count=4`` must be set before
JAX starts). n = 30 is not a multiple of 4: the sharded losses pad and mask.
"""

import textwrap
import warnings

import numpy as np
import pytest
from _forced_devices import run_on_cpu_devices

SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import jax, numpy as np
    import metricjax as mj
    from metricjax import LMNN, MLKR, NCA
    assert len(jax.devices()) == 4
    warnings.simplefilter("ignore")        # ConvergenceWarning at the short budgets
    mesh = mj.row_mesh()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4)) + 1.0  # float64: fitted in float64
    y = X[:, 0] - 0.5 * X[:, 1] ** 2
    c = (X[:, 0] + 0.3 * X[:, 2] > 1.0).astype(int)
    out = {}

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    cases = {
        "mlkr": (MLKR, dict(max_iter=20), y),
        "nca": (NCA, dict(max_iter=20), c),
        "lmnn": (LMNN, dict(max_iter=10, n_neighbors=2), c),
        "mlkr_minibatch": (MLKR, dict(max_iter=15, batch_size=12, random_state=0), y),
        "nca_minibatch": (NCA, dict(max_iter=15, batch_size=12, random_state=0), c),
    }
    for name, (cls, kw, t) in cases.items():
        a = cls(mesh=mesh, **kw).fit(X, t)
        b = cls(**kw).fit(X, t)
        out[name] = rel(a.get_mahalanobis_matrix(), b.get_mahalanobis_matrix())
        out[name + "_iters"] = [int(a.n_iter_), int(b.n_iter_)]
        out[name + "_dtype"] = str(a.components_.dtype)
    # integer weights (zeros dropped): LMNN's copy-model targets, sharded with padding
    w = rng.integers(0, 4, size=30).astype(float)
    kw = dict(max_iter=10, n_neighbors=2)
    a = LMNN(mesh=mesh, **kw).fit(X, c, sample_weight=w)
    b = LMNN(**kw).fit(X, c, sample_weight=w)
    out["lmnn_weighted"] = rel(a.get_mahalanobis_matrix(), b.get_mahalanobis_matrix())
    out["lmnn_weighted_iters"] = [int(a.n_iter_), int(b.n_iter_)]
    out["lmnn_weighted_dtype"] = str(a.components_.dtype)
    print(json.dumps(out))
    """
)


def test_sharded_fits_equal_unsharded_on_four_devices():
    out = run_on_cpu_devices(SCRIPT)
    for name in ("mlkr", "nca", "lmnn", "mlkr_minibatch", "nca_minibatch", "lmnn_weighted"):
        assert out[name] < 1e-8, out
        assert out[name + "_iters"][0] == out[name + "_iters"][1], out
        assert out[name + "_dtype"] == "float64"


def test_mesh_is_checked_and_a_parameter():
    pytest.importorskip("sklearn")
    import metricjax as mj
    from metricjax import MLKR

    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(TypeError, match="mesh"):
        MLKR(mesh="all", max_iter=2).fit(X, X[:, 0])
    assert MLKR(mesh=None).get_params()["mesh"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=3
        a = MLKR(mesh=mj.row_mesh(), max_iter=3).fit(X, X[:, 0])  # one device: a 1-device mesh
        b = MLKR(max_iter=3).fit(X, X[:, 0])
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-5, atol=1e-6)
