"""SDML and the JAX graphical lasso, against scikit-learn and metric-learn 0.7."""

import functools
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from _typecheck import unchecked

from metricjax.solvers._sdml import SDMLWarning, graphical_lasso, sdml_solve

_reference_libs = pytest.importorskip("benchmarks._reference_libs")
ml = _reference_libs.metric_learn_compat()
import metric_learn.sdml as ml_sdml  # noqa: E402  (after the compatibility shim)
from sklearn.covariance import graphical_lasso as sk_graphical_lasso  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_iris, load_wine  # noqa: E402

# scikit-learn's graphical lasso as metric-learn 0.7 calls it (``cov_init`` was removed
# from the public function in scikit-learn 1.5; the private one still takes it)
_with_cov_init = _reference_libs.graphical_lasso_with_cov_init


def _sk_precision(s, alpha):
    """scikit-learn's graphical-lasso precision at its tightest settings. Its duality gap
    may stop just above tol=1e-12 on some CPUs (1.9e-9 after 2000 iterations on an Intel
    Xeon, a ConvergenceWarning): far below the 1e-8 the comparisons ask for."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return sk_graphical_lasso(s, alpha, tol=1e-12, enet_tol=1e-12, max_iter=2000)[1]


@pytest.fixture
def ml_sdml_working(monkeypatch):
    """metric-learn's SDML with its graphical-lasso call repaired (default tolerances)."""
    monkeypatch.setattr(ml_sdml, "graphical_lasso", _with_cov_init)


@pytest.fixture
def ml_sdml_tight(monkeypatch):
    """... and run to a tight tolerance, for a comparison at rtol 1e-6."""
    tight = functools.partial(_with_cov_init, tol=1e-12, enet_tol=1e-12, max_iter=2000)
    monkeypatch.setattr(ml_sdml, "graphical_lasso", tight)


def _standardised(loader):
    x, y = loader(return_X_y=True)
    return (x - x.mean(0)) / x.std(0), y


def _random_pairs(x, y, n, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(x), n), rng.integers(0, len(x), n)
    return np.stack([x[a], x[b]], axis=1), np.where(y[a] == y[b], 1, -1)


def _supervised_pairs(x, y, seed):
    """The pairs metric-learn's SDML_Supervised draws (20 * n_classes^2 constraints)."""
    c = ml.constraints.Constraints(y)
    pos_neg = c.positive_negative_pairs(20 * len(np.unique(y)) ** 2, random_state=seed)
    return ml.constraints.wrap_pairs(x, pos_neg)


def _spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, 2 * d))
    return a @ a.T / (2 * d)


XI, YI = _standardised(load_iris)
PAIRS, LABELS = _random_pairs(XI, YI, 100, 0)
# balance_param at which S = I + bp * (pair scatter) has its smallest eigenvalue at -0.01:
# indefinite, yet the SDML problem has a solution (scikit-learn finds it too)
_SCATTER = (PAIRS[:, 0] - PAIRS[:, 1]).T * LABELS @ (PAIRS[:, 0] - PAIRS[:, 1])
BP_INDEFINITE = 1.01 / abs(np.linalg.eigvalsh(_SCATTER).min())


# ----------------------------------------------------------------------------------
# graphical lasso
# ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("d", "alpha"), [(5, 0.01), (13, 0.1), (13, 0.01)])
def test_graphical_lasso_matches_scikit_learn(d, alpha):
    s = _spd(d, d)
    want = _sk_precision(s, alpha)
    res = graphical_lasso(s, alpha)
    got = np.asarray(res.precision)
    assert bool(res.converged) and abs(float(res.dual_gap)) < 1e-8
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-8
    np.testing.assert_allclose(np.asarray(res.covariance) @ got, np.eye(d), atol=1e-8)
    # alpha = 0: the plain inverse
    np.testing.assert_allclose(
        np.asarray(graphical_lasso(s, 0.0).precision), np.linalg.inv(s), rtol=1e-7
    )


def _ill_conditioned(d, cond, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    s = (q * np.logspace(0, np.log10(cond), d)) @ q.T
    return (s + s.T) / 2


def _kkt_residual(theta, s, alpha):
    """Largest violation of the graphical lasso's optimality conditions at ``theta``."""
    r = np.linalg.inv(theta) - s
    off = ~np.eye(len(s), dtype=bool)
    nz, z = off & (theta != 0), off & (theta == 0)
    return max(
        np.abs(r[nz] - alpha * np.sign(theta[nz])).max(initial=0.0),
        (np.abs(r[z]) - alpha).max(initial=0.0),
        np.abs(np.diag(r)).max(),
    )


@pytest.mark.usefixtures("x64")
def test_graphical_lasso_support_solves_equal_plain_coordinate_descent():
    # the column lassos' support solves (every few coordinate sweeps) against plain cyclic
    # coordinate descent, which takes 50x longer here (condition number 1e4; scikit-learn
    # stops with "Non SPD result" on it): the same optimum, the optimality conditions met
    # at least as well
    from metricjax.solvers._sdml import _glasso_jit

    s = _ill_conditioned(24, 1e4)
    alpha, tol = 0.05, 1e-10
    out = {
        every: _glasso_jit(s, s, alpha, tol, max_iter=100, inner_max_iter=1000, polish_every=every)
        for every in (4, 10**9)
    }
    (fast, plain) = (np.asarray(out[k][0]) for k in (4, 10**9))
    assert bool(out[4][3]) and bool(out[10**9][3])
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-6 * np.abs(plain).max())
    assert _kkt_residual(fast, s, alpha) <= max(_kkt_residual(plain, s, alpha), 1e-9)
    # and scikit-learn's answer where it converges (condition number 300)
    s = _ill_conditioned(16, 300)
    want = _sk_precision(s, alpha)
    got = np.asarray(graphical_lasso(s, alpha).precision)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-8


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("d", "alpha"), [(5, 0.01), (13, 0.1), (13, 0.01)])
def test_admm_matches_scikit_learn_and_coordinate_descent(d, alpha):
    from metricjax.solvers._sdml import _glasso_admm

    s = _spd(d, d)
    want = _sk_precision(s, alpha)
    theta, w, _, converged, _, healthy = (np.asarray(a) for a in _glasso_admm(jnp.asarray(s), alpha, 1e-10))
    assert converged and healthy
    assert np.abs(theta - want).max() / np.abs(want).max() < 1e-8
    bcd = np.asarray(graphical_lasso(s, alpha).precision)
    assert np.abs(theta - bcd).max() / np.abs(bcd).max() < 1e-8
    np.testing.assert_allclose(w @ theta, np.eye(d), atol=1e-8)
    assert _kkt_residual(theta, s, alpha) < 1e-7 * np.abs(s).max()


@pytest.mark.usefixtures("x64")
def test_graphical_lasso_falls_back_to_admm_where_coordinate_descent_fails():
    # one sweep of block coordinate descent does not converge: ADMM takes over and
    # reaches the optimum of the full coordinate-descent run
    s = _ill_conditioned(24, 1e4)
    alpha = 0.05
    full = graphical_lasso(s, alpha)
    one = graphical_lasso(s, alpha, max_iter=1)
    assert bool(full.converged) and bool(one.converged)
    got, want = np.asarray(one.precision), np.asarray(full.precision)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7 * np.abs(want).max())
    assert _kkt_residual(got, s, alpha) < 1e-7 * np.abs(s).max()  # S up to 1e4


@pytest.mark.usefixtures("x64")
def test_sdml_on_raw_digits_solves_the_projected_problem():
    """Raw (unscaled) digits with metric-learn's defaults: S is indefinite (32 of 64
    eigenvalues below 0, down to -3e5), its projection has half of its eigenvalues at the
    floor and others up to 1.6e4. Block coordinate descent ran its 100 sweeps there
    (about 100 s) without a positive definite precision, and scikit-learn's
    graphical_lasso fails on it in both of its modes; ADMM solves it (the optimality
    conditions hold)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    pairs, labels = _supervised_pairs(x, y, 0)
    with pytest.warns(SDMLWarning, match="not positive definite"):
        res = sdml_solve(pairs, labels)
    m, s = np.asarray(res.metric), np.asarray(res.emp_cov)
    assert res.projected and res.converged
    assert np.linalg.eigvalsh(m).min() > 0
    for mode in ("cd", "lars"):
        with pytest.raises(FloatingPointError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk_graphical_lasso(s, 0.01, mode=mode, max_iter=200)
    assert _kkt_residual(m, s, 0.01) < 1e-6 * np.abs(s).max()
    # float32: ADMM stops at its rounding floor (not converged, said so), positive definite
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res32 = sdml_solve(pairs.astype(np.float32), labels)
    assert any("rounding level of float32" in str(w.message) for w in caught)
    m32 = np.asarray(res32.metric, np.float64)
    assert res32.projected and not res32.converged and np.linalg.eigvalsh(m32).min() > 0
    assert np.abs(m32 - m).max() < 1e-2 * np.abs(m).max()


def test_graphical_lasso_float32():
    s = _spd(13, 1).astype(np.float32)
    res = graphical_lasso(s, 0.05)
    assert res.precision.dtype == jnp.float32
    _, want = sk_graphical_lasso(s.astype(np.float64), 0.05, tol=1e-12, enet_tol=1e-12)
    np.testing.assert_allclose(np.asarray(res.precision), want, rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------------
# SDML against metric-learn
# ----------------------------------------------------------------------------------
def test_metric_learn_sdml_always_fails_on_current_scikit_learn():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="cov_init"):
            ml.SDML(balance_param=1e-4).fit(PAIRS, LABELS)


@pytest.mark.usefixtures("x64", "ml_sdml_tight")
@pytest.mark.parametrize("bp", [1e-4, 1e-3, BP_INDEFINITE])
def test_sdml_learns_metric_learns_metric(bp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ml.SDML(balance_param=bp, sparsity_param=0.01).fit(PAIRS, LABELS)
    want = want.get_mahalanobis_matrix()
    res = sdml_solve(PAIRS, LABELS, balance_param=bp, sparsity_param=0.01)
    assert not res.projected and res.converged
    got = np.asarray(res.metric)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    np.testing.assert_allclose(
        np.asarray(res.components).T @ res.components, got, rtol=1e-10, atol=1e-12
    )


@pytest.mark.usefixtures("x64", "ml_sdml_working")
def test_sdml_against_metric_learn_at_its_default_tolerance():
    """metric-learn stops scikit-learn's solver at its default tol=1e-4: about 1e-5 apart."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ml.SDML(balance_param=1e-4, prior="covariance").fit(PAIRS, LABELS)
    want = want.get_mahalanobis_matrix()
    got = np.asarray(sdml_solve(PAIRS, LABELS, balance_param=1e-4, prior="covariance").metric)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


@pytest.mark.usefixtures("x64", "ml_sdml_working")
@pytest.mark.parametrize(
    ("loader", "standardise"), [(load_iris, False), (load_wine, False), (load_breast_cancer, True)]
)
def test_sdml_sound_where_metric_learn_fails(loader, standardise):
    # raw features as metric-learn's examples; breast cancer standardised (on its raw,
    # nearly collinear features the graphical lasso needs hundreds of sweeps)
    x, y = _standardised(loader) if standardise else loader(return_X_y=True)
    pairs, labels = _supervised_pairs(x, y, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="graphical lasso"):
            ml.SDML_Supervised(random_state=0).fit(x, y)
        with pytest.raises(RuntimeError, match="graphical lasso"):
            ml.SDML().fit(pairs, labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sdml_solve(pairs, labels)
    assert [w.category for w in caught] == [SDMLWarning]
    assert "not positive definite" in str(caught[0].message)
    m = np.asarray(res.metric)
    assert res.projected and res.converged
    assert np.all(np.isfinite(m)) and np.linalg.eigvalsh(m).min() > 0
    assert np.linalg.eigvalsh(np.asarray(res.emp_cov)).min() > 0
    # SDML's intent: similar pairs closer relative to dissimilar ones than in Euclidean space
    diff = pairs[:, 0] - pairs[:, 1]
    dm = np.einsum("ni,ij,nj->n", diff, m, diff)
    de = np.sum(diff * diff, axis=1)
    ratio = lambda dd: dd[labels == 1].mean() / dd[labels == -1].mean()
    assert ratio(dm) < ratio(de)


@pytest.mark.usefixtures("x64")
def test_sdml_priors_and_one_feature():
    r1 = sdml_solve(PAIRS, LABELS, balance_param=1e-3, prior="random", random_state=2)
    r2 = sdml_solve(PAIRS, LABELS, balance_param=1e-3, prior="random", random_state=2)
    np.testing.assert_array_equal(np.asarray(r1.metric), np.asarray(r2.metric))
    p1 = PAIRS[:, :, :1]
    res = sdml_solve(p1, LABELS, balance_param=1e-3)
    s = 1 + 1e-3 * np.sum(LABELS * (p1[:, 0, 0] - p1[:, 1, 0]) ** 2)
    np.testing.assert_allclose(np.asarray(res.metric), [[1 / s]], rtol=1e-12)


def test_sdml_float32():
    pairs, labels = _supervised_pairs(*load_iris(return_X_y=True), 0)
    with pytest.warns(SDMLWarning):
        res = sdml_solve(pairs.astype(np.float32), labels)
    assert res.metric.dtype == jnp.float32
    m = np.asarray(res.metric, dtype=np.float64)
    assert np.all(np.isfinite(m)) and np.linalg.eigvalsh(m).min() > 0
    res = sdml_solve(PAIRS.astype(np.float32), LABELS, balance_param=1e-4)
    assert not res.projected and res.metric.dtype == jnp.float32


def test_sdml_bad_input():
    with pytest.raises(ValueError, match="pairs"):
        unchecked(sdml_solve)(np.zeros((5, 3, 2)), np.ones(5))
    with pytest.raises(ValueError, match="y"):
        unchecked(sdml_solve)(PAIRS, (LABELS + 1) // 2)  # labels {0, 1}
    with pytest.raises(ValueError, match="single class"):
        unchecked(sdml_solve)(PAIRS, np.ones(len(PAIRS)))
    bad = PAIRS.copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="pairs.*NaN"):
        unchecked(sdml_solve)(bad, LABELS)
    with pytest.raises(ValueError, match="y"):
        unchecked(sdml_solve)(PAIRS, LABELS[:-1])
    with pytest.raises(ValueError, match="balance_param"):
        unchecked(sdml_solve)(PAIRS, LABELS, balance_param=-1.0)
    with pytest.raises(ValueError, match="sparsity_param"):
        unchecked(sdml_solve)(PAIRS, LABELS, sparsity_param=float("nan"))
    with pytest.raises(ValueError, match="prior"):
        unchecked(sdml_solve)(PAIRS, LABELS, prior=np.diag([1.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="emp_cov"):
        unchecked(graphical_lasso)(np.ones((3, 4)), 0.1)
    with pytest.raises(ValueError, match="alpha"):
        unchecked(graphical_lasso)(np.eye(3), -0.1)
