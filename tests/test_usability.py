"""Friction a new user hit, each fixed and kept fixed (architecture issue, point 6)."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _typecheck import unchecked

import metricjax as mj
from metricjax.losses import lmnn_loss, mlkr_loss, nca_loss


def _regression(n=30, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x, (x[:, 0] + 0.1 * rng.standard_normal(n)).astype(np.float32)


def test_numpy_float64_params_give_no_truncation_warning():
    x, y = _regression()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # optax's "Explicitly requested dtype float64" would fail
        res = mj.fit(mlkr_loss, np.eye(4), x, y, max_iter=5)
    assert res.params.dtype == jnp.float32


@pytest.mark.parametrize("name", ["adam", "sgd", "lbfgs"])
def test_optimizer_given_by_name(name):
    x, y = _regression()
    res = mj.fit(mlkr_loss, 0.5 * jnp.eye(4), x, y, optimizer=name, max_iter=20)
    assert res.loss_history[-1] < res.loss_history[0]
    # the same name is the same optax object: the compiled loop is reused
    assert mj._train.resolve_optimizer(name, "lbfgs") is mj._train.resolve_optimizer(name, "adam")


def test_named_adam_equals_explicit_adam():
    x, y = _regression()
    a = mj.fit(mlkr_loss, 0.5 * jnp.eye(4), x, y, optimizer="adam", max_iter=15, tol=0, gtol=0)
    b = mj.fit(mlkr_loss, 0.5 * jnp.eye(4), x, y, optimizer=optax.adam(1e-2), max_iter=15,
               tol=0, gtol=0)  # fmt: skip
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6)


def test_bad_optimizer_gives_a_type_error_that_says_what_is_expected():
    x, y = _regression()
    # the user's view: without the test-time type checker (unchecked), our own message
    fit, fit_minibatch = unchecked(mj.fit), unchecked(mj.fit_minibatch)
    with pytest.raises(TypeError, match="optax.GradientTransformation.*or the name of one"):
        fit(mlkr_loss, jnp.eye(4), x, y, optimizer=42)
    with pytest.raises(ValueError, match="unknown optimizer name 'adamm'"):
        fit(mlkr_loss, jnp.eye(4), x, y, optimizer="adamm")
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        fit_minibatch(mlkr_loss, jnp.eye(4), x, y, batch_size=8, key=0, optimizer=object())
    # and the annotation itself refuses it while the tests run
    with pytest.raises(TypeError):
        mj.fit(mlkr_loss, jnp.eye(4), x, y, optimizer=42)


def test_save_state_into_a_missing_folder_names_that_folder(tmp_path):
    target = tmp_path / "no" / "such" / "folder" / "fit.npz"
    with pytest.raises(FileNotFoundError) as info:
        mj.save_state(target, jnp.eye(2))
    msg = str(info.value)
    assert str(target.parent) in msg and ".tmp" not in msg
    assert not (tmp_path / "no").exists()


def test_progress_bar_closes_at_convergence_marked_converged(capfd):
    res = mj.fit(lambda w, t: jnp.sum((w - t) ** 2), jnp.zeros(3), jnp.ones(3), max_iter=1000,
                 verbose=True, chunk_size=1)  # fmt: skip
    _, err = capfd.readouterr()
    assert res.converged and res.num_iter < 1000
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "converged" in last
    done = f"{res.num_iter}/{res.num_iter}"
    assert done in last and "/1000" not in last, last


def test_progress_bar_at_max_iter_has_no_converged_mark(capfd):
    x, y = _regression()
    mj.fit(mlkr_loss, 0.5 * jnp.eye(4), x, y, max_iter=6, tol=0, gtol=0, verbose=True,
           chunk_size=2)  # fmt: skip
    _, err = capfd.readouterr()
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "6/6" in last and "converged" not in last


@pytest.mark.parametrize("loss", [mlkr_loss, nca_loss, lmnn_loss], ids=lambda f: f.__name__)
def test_loss_docstrings_say_how_to_differentiate(loss):
    doc = " ".join(loss.__doc__.split())
    assert "jax.jacfwd" in doc and "not supported" in doc and "jax.hessian" in doc


def test_forward_mode_fails_as_documented_and_the_hessian_works():
    with jax.enable_x64(True):
        x, y = _regression(12, 3)
        x, y = x.astype(np.float64), y.astype(np.float64)
        L = 0.5 * jnp.eye(3)
        with pytest.raises(TypeError, match="forward-mode"):
            jax.jacfwd(mlkr_loss)(L, x, y)
        h = jax.hessian(mlkr_loss)(L, x, y)
        h2 = jax.jacrev(jax.jacrev(mlkr_loss))(L, x, y)

        def plain(L):  # the loss in plain jnp, for autodiff
            d = mj.reference.pairwise_sq_transformed(x, L) + jnp.diag(jnp.full(12, jnp.inf))
            return jnp.sum((jax.nn.softmax(-d, axis=1) @ y - y) ** 2)

        want = jax.hessian(plain)(L)
    np.testing.assert_allclose(h, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h2, want, rtol=1e-10, atol=1e-12)


def test_public_docstrings_cite_the_derivations_and_papers_not_seed_documents():
    import metricjax.estimators as est
    import metricjax.nn as nn

    modules = [mj, mj.losses, mj.jacobians, mj.reference, est, nn]
    names = [getattr(m, n) for m in modules for n in getattr(m, "__all__", [])]
    texts = [m.__doc__ or "" for m in modules] + [getattr(f, "__doc__", "") or "" for f in names]
    assert not [t for t in texts if re.search(r"seed doc", t, re.I)]


def test_dir_lists_the_lazy_names_for_tab_completion():
    listed = dir(mj)
    for name in ("MLKR", "NCA", "LMNN", "save_state", "nn", "plot", "fit", "losses"):
        assert name in listed


def test_every_estimator_is_public_in_all_and_dir():
    import metricjax.estimators as est

    # ``from metricjax import *`` and tab completion see every learner, the weakly
    # supervised ones included
    base = {"MahalanobisLearner", "PointsTransformer", "PairsLearner", "TripletsLearner",
            "QuadrupletsLearner", "DEFAULT_TOL"}  # fmt: skip
    assert base <= set(est.__all__)
    for name in set(est.__all__) - base:
        assert name in mj.__all__, name
        assert name in dir(mj), name
        assert getattr(mj, name) is getattr(est, name)
    assert len(mj.__all__) == len(set(mj.__all__))
    # metric-learn's top-level names, so that code ports by changing the import
    ml = pytest.importorskip("metric_learn")
    learners = [n for n in dir(ml) if not n.startswith("_") and n[0].isupper()]
    assert learners and not [n for n in learners if n not in mj.__all__]
    assert mj.Constraints is mj.constraints.Constraints
    namespace = {}
    exec("from metricjax import *", namespace)
    assert namespace["ITML_Supervised"] is est.ITML_Supervised


def test_positional_arguments_follow_metric_learns_order():
    # code that passes metric-learn's hyperparameters by position ports unchanged:
    # every learner takes metric-learn's parameters in its order, positionally, except
    # NCA and LMNN, whose one positional parameter is n_components (scikit-learn's NCA
    # order; metric-learn puts init first)
    import inspect

    ml = pytest.importorskip("metric_learn")
    for name in [n for n in dir(ml) if not n.startswith("_") and n[0].isupper()]:
        if name in ("Constraints", "NCA", "LMNN"):
            continue
        want = [p for p in inspect.signature(getattr(ml, name).__init__).parameters][1:]
        params = inspect.signature(getattr(mj, name).__init__).parameters.values()
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD][1:]
        assert positional[: len(want)] == want, name
    est = mj.ITML(0.5, 20, 1e-4)
    assert (est.gamma, est.max_iter, est.tol) == (0.5, 20, 1e-4)
    est = mj.MLKR(2, "pca", 1e-5, 50)
    assert (est.n_components, est.init, est.tol, est.max_iter) == (2, "pca", 1e-5, 50)


def _hessian_cases():
    """``(name, loss of the parameters, parameters)`` for every public loss, float64."""
    L = mj.losses
    rng = np.random.default_rng(0)
    x = rng.normal(size=(14, 3))
    labels = np.arange(14) % 3
    pairs = rng.normal(size=(10, 2, 3))
    py = np.where(np.arange(10) % 2 == 0, 1, -1)
    trip = rng.normal(size=(10, 3, 3))
    quad = rng.normal(size=(10, 4, 3))
    m0 = np.eye(3) + 0.1 * np.ones((3, 3))
    t0 = 0.5 * np.eye(3) + 0.05 * rng.normal(size=(3, 3))
    return [
        ("mlkr_loss", lambda T: L.mlkr_loss(T, x, x[:, 0]), t0),
        ("mlkr_ridge_loss", lambda T: L.mlkr_ridge_loss(T, x, x[:, 0], 0.1), t0),
        ("nca_loss", lambda T: L.nca_loss(T, x, labels), t0),
        ("lmnn_loss", lambda T: L.lmnn_loss(T, x, labels, n_neighbors=2), t0),
        ("itml_loss", lambda M: L.itml_loss(M, pairs, py, bounds=np.array([1.0, 4.0])), m0),
        ("itml_loss_transform",
         lambda T: L.itml_loss_transform(T, pairs, py, bounds=np.array([1.0, 4.0])), t0),
        ("mmc_loss", lambda M: L.mmc_loss(M, pairs, py), m0),
        ("mmc_loss_transform", lambda T: L.mmc_loss_transform(T, pairs, py), t0),
        ("lsml_loss", lambda M: L.lsml_loss(M, quad), m0),
        ("lsml_transform_loss", lambda T: L.lsml_transform_loss(T, quad), t0),
        ("scml_loss", lambda w: L.scml_loss(w, trip, np.eye(3)), np.array([0.5, 1.0, 2.0])),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(11))
def test_hessian_of_every_loss_is_forward_over_its_closed_form_gradient(case, x64):
    """``jax.hessian`` (jacfwd of the closed-form reverse rule) equals reverse-over-reverse."""
    name, f, p = _hessian_cases()[case]
    p = jnp.asarray(p, jnp.float64)
    h = jax.hessian(f)(p)
    want = jax.jacrev(jax.jacrev(f))(p)
    assert np.all(np.isfinite(h)), name
    np.testing.assert_allclose(h, want, rtol=1e-9, atol=1e-12, err_msg=name)


def test_fit_of_nca_loss_says_how_to_bind_num_classes():
    """mj.fit traces the loss: nca_loss then needs num_classes, and the error says how
    to give it (fit's own keywords are its options, not the loss's)."""
    import functools

    x = np.random.default_rng(0).normal(size=(20, 3))
    labels = np.arange(20) % 2
    with pytest.raises(ValueError, match=r"functools.partial\(nca_loss, num_classes=C\)"):
        mj.fit(mj.losses.nca_loss, np.eye(3)[:2], x, labels, max_iter=3)
    res = mj.fit(functools.partial(mj.losses.nca_loss, num_classes=2), np.eye(3)[:2], x,
                 labels, max_iter=3)  # fmt: skip
    assert np.isfinite(res.loss_history[-1])
