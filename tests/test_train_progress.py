"""Seeing training: the tqdm progress bar, the callback hook, loss histories, convergence warnings."""

from __future__ import annotations

import re
import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metricjax as mj
from metricjax.losses import mlkr_loss


def _regression(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x, (x[:, 0] + 0.1 * rng.standard_normal(n)).astype(np.float32)


def test_verbose_fit_draws_a_progress_bar_on_stderr(capfd):
    x, y = _regression()
    res = mj.fit(mlkr_loss, 0.5 * jnp.eye(3), x, y, max_iter=20, tol=0.0, gtol=0.0,
                 verbose=True, chunk_size=5)  # fmt: skip
    out, err = capfd.readouterr()
    assert res.num_iter == 20
    assert out == ""  # nothing on stdout
    assert "fit" in err and "20/20" in err and "loss=" in err


def test_quiet_fit_prints_nothing(capfd):
    x, y = _regression()
    mj.fit(mlkr_loss, 0.5 * jnp.eye(3), x, y, max_iter=5)
    out, err = capfd.readouterr()
    assert out == "" and "it/s" not in err and "fit:" not in err


def test_callback_sees_increasing_iterations_losses_and_params():
    x, y = _regression()
    seen = []
    res = mj.fit(
        mlkr_loss, 0.5 * jnp.eye(3), x, y, optimizer=optax.adam(1e-2), max_iter=23, tol=0.0,
        gtol=0.0, chunk_size=4,
        callback=lambda it, loss, params: seen.append((it, loss, np.array(params))),
    )  # fmt: skip
    its = [it for it, _, _ in seen]
    assert its == [4, 8, 12, 16, 20, 23]
    assert np.all(np.diff(its) > 0)
    # the loss reported at iteration it is the history entry it
    np.testing.assert_allclose([loss for _, loss, _ in seen], res.loss_history[its], rtol=1e-6)
    np.testing.assert_allclose(seen[-1][2], res.params, rtol=1e-6)
    assert len(res.loss_history) == res.num_iter + 1 == 24


@pytest.mark.parametrize("name", ["MLKR", "NCA"])
def test_estimator_verbose_prints_metric_learns_log(name, capfd):
    # metric-learn's format, checked with the regular expressions of its own tests
    pytest.importorskip("sklearn")
    x, y = _regression()
    y = y if name == "MLKR" else (y > np.median(y)).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = getattr(mj, name)(max_iter=10, tol=0.0, verbose=True).fit(x, y)
    out, err = capfd.readouterr()
    lines = re.split("\n+", out)
    header = "{:>10} {:>20} {:>10}".format("Iteration", "Objective Value", "Time(s)")
    assert lines[:3] == [f"[{name}]", f"[{name}] {header}", f"[{name}] {'-' * len(header)}"]
    rows = lines[3:-2]
    assert len(rows) == est.n_iter_ == 10
    for row, loss in zip(rows, est.loss_history_[1:]):
        assert re.match(rf"\[{name}\]\ *\d+\ *\d\.\d{{6}}e[+|-]\d+\ *\d+\.\d{{2}}", row)
        sign = -1 if name == "NCA" else 1  # metric-learn's NCA objective: minus the loss
        np.testing.assert_allclose(float(row.split()[2]), sign * loss, rtol=1e-6)
    assert re.match(rf"\[{name}\] Training took\ *\d+\.\d{{2}}s\.", lines[-2])
    assert lines[-1] == ""
    assert est.loss_history_.shape == (est.n_iter_ + 1,) == (11,)
    assert est.loss_history_[-1] < est.loss_history_[0]


@pytest.mark.parametrize("name", ["MLKR", "NCA", "LMNN"])
def test_estimators_warn_when_max_iter_is_hit(name):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    est = getattr(mj, name)(n_components=2, max_iter=2, tol=0.0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est.fit(X, y.astype(float) if name == "MLKR" else y)
    assert est.n_iter_ == 2 and not est.converged_


def test_no_warning_when_the_fit_converges():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = mj.NCA(n_components=2, max_iter=1000, tol=1e-4).fit(X, y)
    assert est.converged_ and est.n_iter_ < 1000


def test_lmnn_verbose_prints_metric_learns_lmnn_lines(capfd):
    pytest.importorskip("sklearn")
    x, y = _regression()
    y = (y > np.median(y)).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = mj.LMNN(max_iter=10, tol=0.0, verbose=True).fit(x, y)
    lines = capfd.readouterr().out.splitlines()
    assert lines[0] == "iter | objective | objective difference"
    assert lines[-1] == "LMNN didn't converge in 10 steps."
    rows = [line.split() for line in lines[1:-1]]
    assert [int(r[0]) for r in rows] == list(range(1, 11))
    np.testing.assert_allclose([float(r[1]) for r in rows], est.loss_history_[1:], rtol=1e-12)
    np.testing.assert_allclose(
        [float(r[2]) for r in rows[1:]], np.diff(est.loss_history_[1:]), rtol=1e-9, atol=1e-12
    )
    # metric-learn's test that no objective repeats reads these lines with its regex
    found = [re.search(r"\d* (?:(\d*.\d*))[ | -]\d*.\d*", line) for line in lines]
    objectives = [m.group(1) for m in found if m is not None]
    assert len(objectives[:-1]) == len(set(objectives[:-1])) > 5
