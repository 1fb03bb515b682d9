"""Covariance, LFDA and RCA solvers against metric-learn 0.7.0, NumPy oracles and jnp twins."""

import contextlib
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from _typecheck import unchecked
from sklearn.datasets import load_iris, load_wine

from benchmarks._reference_libs import metric_learn_compat
from metricjax.constraints import Constraints
from metricjax.solvers._covariance import components_from_psd, covariance_components
from metricjax.solvers._lfda import lfda_components
from metricjax.solvers._rca import rca_components

ml = metric_learn_compat()
import metric_learn._util as ml_util  # noqa: E402  (after the compatibility shim)
import metric_learn.lfda as ml_lfda  # noqa: E402

RTOL = 1e-8


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def rel_rows_up_to_sign(a, b):
    """Max relative difference of two component matrices after matching each row's sign."""
    a, b = np.asarray(a), np.asarray(b)
    s = np.where(np.sum(a * b, axis=1, keepdims=True) < 0, -1.0, 1.0)
    return np.abs(s * a - b).max() / np.abs(b).max()


def gram(comps):
    comps = np.asarray(comps)
    return comps.T @ comps


@pytest.fixture(scope="module")
def wine():
    x, y = load_wine(return_X_y=True)
    return (x - x.mean(0)) / x.std(0), y


@pytest.fixture(scope="module")
def multimodal():
    """Three classes, each two Gaussian clusters, in 5-D (LFDA's use case)."""
    rng = np.random.RandomState(0)
    centres = rng.randn(6, 5) * 3
    x = np.concatenate([c + rng.randn(12, 5) for c in centres])
    y = np.repeat([0, 1, 2, 0, 1, 2], 12)
    return x, y


# ==================================================================================
# Covariance
# ==================================================================================
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("data", ["iris", "wine"])
def test_covariance_matches_metric_learn(data, wine):
    x = load_iris().data if data == "iris" else load_wine().data  # wine: scales differ 10^4
    comps, metric = covariance_components(x)
    ref = ml.Covariance().fit(x)
    assert comps.dtype == jnp.float64 and comps.shape == (x.shape[1],) * 2
    assert rel(metric, ref.get_mahalanobis_matrix()) < RTOL
    assert rel(comps, ref.components_) < RTOL
    assert rel(metric, np.linalg.inv(np.cov(x, rowvar=False))) < RTOL


@pytest.mark.usefixtures("x64")
def test_covariance_singular_is_pseudo_inverse():
    x = load_iris().data
    x = np.c_[x, x[:, 0] - 2 * x[:, 2]]  # a linearly dependent feature: rank 4 of 5
    comps, metric = covariance_components(x)
    ref = ml.Covariance().fit(x).get_mahalanobis_matrix()
    assert rel(metric, ref) < RTOL
    assert rel(metric, np.linalg.pinv(np.cov(x, rowvar=False), rcond=1e-12)) < RTOL
    assert rel(gram(comps), metric) < 1e-12
    # the dependent direction gets zero weight
    e = np.array([1.0, 0, -2, 0, -1])
    assert abs(e @ np.asarray(metric) @ e) < 1e-10 * np.abs(metric).max()


@pytest.mark.usefixtures("x64")
def test_covariance_one_constant_feature_metric_learn_gives_inf():
    """d = 1 and zero variance: metric-learn computes 1/0; the pseudo-inverse is 0."""
    x = np.full((5, 1), 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = ml.Covariance().fit(x).components_
    assert np.isinf(ref).all()
    comps, metric = covariance_components(x)
    assert np.asarray(comps).tolist() == [[0.0]] and np.asarray(metric).tolist() == [[0.0]]
    # d >= 2 constant data: both give the zero metric (pinvh of the zero matrix)
    x2 = np.full((5, 2), 3.0)
    assert np.all(ml.Covariance().fit(x2).components_ == 0)
    assert np.all(np.asarray(covariance_components(x2)[1]) == 0)
    # d = 1, non-constant: 1 / variance
    x1 = np.arange(6.0)[:, None]
    assert rel(covariance_components(x1)[1], [[1 / np.var(x1, ddof=1)]]) < 1e-14


@pytest.mark.usefixtures("x64")
def test_components_from_psd_matches_metric_learn():
    rng = np.random.RandomState(3)
    a = rng.randn(4, 4)
    pd_ = a @ a.T + 0.1 * np.eye(4)
    diag = np.diag([2.0, 0.0, 3.0, 0.5])
    b = rng.randn(4, 2)
    singular = b @ b.T
    for m in (pd_, diag):
        assert rel(components_from_psd(jnp.asarray(m)), ml_util.components_from_metric(m)) < 1e-12
    got = components_from_psd(jnp.asarray(singular))
    assert np.isfinite(np.asarray(got)).all()
    assert rel(gram(got), singular) < 1e-12


def test_covariance_float32_and_jit():
    x = load_iris().data.astype(np.float32)
    comps, metric = covariance_components(x)
    assert comps.dtype == jnp.float32 and metric.dtype == jnp.float32
    assert np.isfinite(np.asarray(comps)).all()
    ref = ml.Covariance().fit(x.astype(np.float64)).get_mahalanobis_matrix()
    assert rel(metric, ref) < 1e-3
    jitted = jax.jit(covariance_components)(jnp.asarray(x))[1]
    assert rel(jitted, metric) < 1e-5


@pytest.mark.usefixtures("x64")
def test_covariance_gradient_matches_inverse_twin():
    x = np.random.RandomState(4).randn(12, 3)
    w = np.random.RandomState(5).randn(3, 3)

    def ours(x):
        return jnp.sum(covariance_components(x)[1] * w)

    def twin(x):
        return jnp.sum(jnp.linalg.inv(jnp.cov(x.T)) * w)

    xj = jnp.asarray(x)
    (v, g), (v_ref, g_ref) = [jax.jit(jax.value_and_grad(f))(xj) for f in (ours, twin)]
    assert abs(v - v_ref) < 1e-10 * abs(v_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-10 * np.abs(g_ref).max())


@pytest.mark.parametrize(
    ("x", "err", "match"),
    [
        (np.ones((1, 3)), ValueError, "`x` needs at least 2 points"),
        (np.ones(3), ValueError, "`x` must be 2-D"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), ValueError, "`x` contains NaN"),
        (np.ones((3, 2), complex), TypeError, "`x` is complex"),
    ],
)
def test_covariance_bad_input(x, err, match):
    with pytest.raises(err, match=match):
        unchecked(covariance_components)(x)


def test_covariance_one_point_metric_learn_also_refuses():
    with pytest.raises(ValueError):
        ml.Covariance().fit(np.ones((1, 3)))


# ==================================================================================
# LFDA
# ==================================================================================
@contextlib.contextmanager
def metric_learn_lfda_fixed(partition=True, sign=True):
    """metric-learn's own LFDA code with its local-scale and/or S_lb sign bug fixed.

    ``partition``: ``np.partition(dist, k, axis=0)[:, k]`` reads column k of the
    column-partitioned matrix; partitioning rows instead makes ``[:, k]`` each point's
    k-th neighbour distance (``dist`` is symmetric). ``sign``: its ``tSb`` is
    S_lb + 2 S_lw, so ``_eigh`` gets ``tSb - 2 tSw``.
    """
    orig_np, orig_eigh = ml_lfda.np, ml_lfda._eigh
    if partition:
        shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if k[:2] != "__"})
        shim.partition = lambda a, kth, axis=0: np.partition(a, kth, axis=1)
        ml_lfda.np = shim
    if sign:
        ml_lfda._eigh = lambda a, b, dim: orig_eigh(a - 2 * b, b, dim)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # scipy: "k >= N ... use eigh"
            yield
    finally:
        ml_lfda.np, ml_lfda._eigh = orig_np, orig_eigh


def ml_lfda_components(x, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ml.LFDA(**kw).fit(x, y).components_


def lfda_scatters_oracle(x, y, k):
    """S_lb, S_lw from the paper's pairwise definitions (dense NumPy, per-class k)."""
    n = len(y)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    same = y[:, None] == y[None, :]
    nc = np.array([np.sum(y == c) for c in y])
    a = np.zeros((n, n))
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        dc = d2[np.ix_(idx, idx)]
        sigma = np.sqrt(np.sort(dc, axis=0)[min(k, len(idx) - 1)])
        scale = np.outer(sigma, sigma)
        with np.errstate(divide="ignore", invalid="ignore"):
            a[np.ix_(idx, idx)] = np.where(scale > 0, np.exp(-dc / scale), 0)
    w_lw = np.where(same, a / nc[:, None], 0)
    w_lb = np.where(same, a * (1 / n - 1 / nc[:, None]), 1 / n)

    def scatter(w):  # (1/2) sum_ij w_ij (x_i - x_j)(x_i - x_j)^T
        return x.T @ (np.diag(w.sum(1)) - w) @ x

    return scatter(w_lb), scatter(w_lw)


# (embedding_type, n_components) pairs: each is one compilation, reused by later tests
LFDA_CASES = [("weighted", None), ("weighted", 3), ("plain", None), ("orthonormalized", 3)]


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("embedding_type", "n_components"), LFDA_CASES)
def test_lfda_matches_metric_learn_with_its_bugs_fixed(multimodal, embedding_type, n_components):
    x, y = multimodal
    with metric_learn_lfda_fixed():
        ref = ml.LFDA(k=4, n_components=n_components, embedding_type=embedding_type).fit(x, y)
    got = lfda_components(x, y, k=4, n_components=n_components, embedding_type=embedding_type)
    assert got.dtype == jnp.float64 and got.shape == ref.components_.shape
    assert rel_rows_up_to_sign(got, ref.components_) < RTOL
    assert rel(gram(got), gram(ref.components_)) < RTOL


@pytest.mark.usefixtures("x64")
def test_lfda_sizes_of_one_bucket_share_one_compiled_program(multimodal):
    # rows and class tables padded to their buckets (padded_size): the folds of a
    # cross-validation compile once (0.7 s), not once per size; every fit is exact
    from metricjax.solvers import _lfda

    x, y = multimodal
    before = _lfda._lfda_core._cache_size()
    for n in (57, 60, 63):  # one bucket: 57..64 rows
        with metric_learn_lfda_fixed():
            ref = ml.LFDA(k=4, n_components=3).fit(x[:n], y[:n])
        got = lfda_components(x[:n], y[:n], k=4, n_components=3)
        assert rel_rows_up_to_sign(got, ref.components_) < RTOL
    assert _lfda._lfda_core._cache_size() - before <= 1


@pytest.mark.usefixtures("x64")
def test_lfda_features_of_very_different_scales(multimodal):
    # features over 1e-4..1e4: the local within-class scatter is full rank, only badly
    # scaled; its rank is judged after diagonal scaling (the plain eigenvalue rank called
    # it singular), and the result equals metric-learn's (bugs fixed) on the same data
    x, y = multimodal
    xs = x * np.logspace(-4, 4, 5)
    with metric_learn_lfda_fixed():
        ref = ml.LFDA(k=4, n_components=3).fit(xs, y)
    got = lfda_components(xs, y, k=4, n_components=3)
    assert np.isfinite(np.asarray(got)).all()
    assert rel_rows_up_to_sign(got, ref.components_) < 1e-6
    # a truly singular scatter is still refused: a duplicated feature
    with pytest.raises(ValueError, match="singular"):
        lfda_components(np.column_stack([xs, xs[:, 0]]), y, k=4)


@pytest.mark.usefixtures("x64")
def test_lfda_matches_paper_oracle(multimodal):
    x, y = multimodal
    slb, slw = lfda_scatters_oracle(x, y, k=7)
    vals, vecs = scipy.linalg.eigh(slb, slw)
    vals, vecs = vals[::-1][:3], vecs[:, ::-1][:, :3]
    weighted = lfda_components(x, y, n_components=3)  # k=None is 7
    assert rel_rows_up_to_sign(weighted, (vecs * np.sqrt(vals)).T) < RTOL
    # full dimension: plain M = Phi Phi^T = S_lw^-1; weighted M = S_lw^-1 S_lb S_lw^-1
    inv = np.linalg.inv(slw)
    assert rel(gram(lfda_components(x, y, embedding_type="plain")), inv) < RTOL
    assert rel(gram(lfda_components(x, y)), inv @ slb @ inv) < RTOL
    # all eigenvalues >= 0: S_lb >= the classical between-class scatter (docstring)
    assert scipy.linalg.eigh(slb, slw, eigvals_only=True).min() > -1e-12


@pytest.mark.usefixtures("x64")
def test_metric_learn_lfda_local_scale_is_wrong(multimodal):
    """Bug 1: ``np.partition(dist, k, axis=0)[:, k]`` is not the k-th neighbour distance."""
    x, y = multimodal
    xc = x[y == 0]
    dist = ((xc[:, None] - xc[None]) ** 2).sum(-1)
    k = 4
    kth = np.sort(dist, axis=0)[k]
    assert not np.allclose(np.partition(dist, k, axis=0)[:, k], kth)
    assert np.allclose(np.partition(dist, k, axis=1)[:, k], kth)  # the fix used above
    # the unpatched metric-learn metric is far from the correct one; the patched one is it
    got = gram(lfda_components(x, y, k=k, embedding_type="plain"))
    assert rel(gram(ml_lfda_components(x, y, k=k, embedding_type="plain")), got) > 1e-2
    with metric_learn_lfda_fixed(partition=True, sign=False):
        # plain eigenvectors do not see the sign bug
        fixed = ml.LFDA(k=k, embedding_type="plain").fit(x, y).components_
    assert rel(gram(fixed), got) < RTOL


@pytest.mark.usefixtures("x64")
def test_metric_learn_lfda_between_scatter_sign_shifts_eigenvalues_by_two(multimodal):
    """Bug 2: metric-learn's tSb is S_lb + 2 S_lw, so its weights are sqrt(lambda + 2)."""
    x, y = multimodal
    plain = np.asarray(lfda_components(x, y, k=4, embedding_type="plain"))
    weighted = np.asarray(lfda_components(x, y, k=4))
    with metric_learn_lfda_fixed(partition=True, sign=False):
        ml_weighted = ml.LFDA(k=4).fit(x, y).components_
    lam = np.sum(weighted**2, 1) / np.sum(plain**2, 1)
    lam_ml = np.sum(ml_weighted**2, 1) / np.sum(plain**2, 1)
    np.testing.assert_allclose(lam_ml, lam + 2, rtol=1e-10)
    slb, slw = lfda_scatters_oracle(x, y, k=4)
    np.testing.assert_allclose(
        lam, scipy.linalg.eigh(slb, slw, eigvals_only=True)[::-1], rtol=1e-10
    )


@pytest.mark.usefixtures("x64")
def test_lfda_k_is_per_class_metric_learn_carries_it_over(multimodal):
    """Bug 3: a small first class lowers k for every later class in metric-learn."""
    x, y = multimodal
    y = y.copy()
    y[np.flatnonzero(y == 0)[3:]] = 3  # class 0 keeps 3 points: k <= 2 there
    with metric_learn_lfda_fixed():
        ref = ml.LFDA(k=4, embedding_type="plain").fit(x, y).components_
    with pytest.warns(UserWarning, match=r"k=4 is larger than class\(es\) \[0\]"):
        got = lfda_components(x, y, k=4, embedding_type="plain")
    assert rel(gram(ref), gram(lfda_components(x, y, k=2, embedding_type="plain"))) < RTOL
    slb, slw = lfda_scatters_oracle(x, y, k=4)
    assert rel(gram(got), np.linalg.inv(slw)) < RTOL  # plain, full dim: M = S_lw^-1
    assert rel(gram(got), gram(ref)) > 1e-3


@pytest.mark.usefixtures("x64")
def test_lfda_one_point_class(multimodal):
    """metric-learn: a one-point class first sets k = 0: its local within scatter is 0."""
    x, y = multimodal
    y = y.copy()
    y[0] = -1  # sorts first
    seen = {}
    orig = ml_lfda._eigh

    def spy(a, b, dim):
        seen["tSw"] = b
        return orig(a, b, dim)

    ml_lfda._eigh = spy
    try:
        with metric_learn_lfda_fixed(sign=False):
            ml.LFDA(k=4, embedding_type="plain").fit(x, y)
    finally:
        ml_lfda._eigh = orig
    assert np.all(seen["tSw"] == 0)
    with pytest.warns(UserWarning, match=r"class\(es\) \[-1\] of `labels` have a single point"):
        got = lfda_components(x, y, k=4, embedding_type="plain")
    slb, slw = lfda_scatters_oracle(x, y, k=4)
    assert rel(gram(got), np.linalg.inv(slw)) < RTOL


@pytest.mark.usefixtures("x64")
def test_lfda_k_not_capped_by_dimension(multimodal):
    """Bug 4: metric-learn replaces k >= d by d - 1 (k counts neighbours, not features)."""
    x, y = multimodal
    with pytest.warns(UserWarning, match=r"Chosen k \(7\) too large, using 4 instead"):
        ml_lfda_components(x, y, k=7)
    got = lfda_components(x, y, k=7, embedding_type="plain")
    slb, slw = lfda_scatters_oracle(x, y, k=7)
    assert rel(gram(got), np.linalg.inv(slw)) < RTOL
    assert rel(gram(got), gram(lfda_components(x, y, k=4, embedding_type="plain"))) > 1e-3


@pytest.mark.usefixtures("x64")
def test_lfda_singular_within_scatter(multimodal):
    """Bug 5: a constant feature makes metric-learn return complex components."""
    x, y = multimodal
    xc = x.copy()
    xc[:, 4] = 1.0
    ref = ml_lfda_components(xc, y, k=4)
    assert np.iscomplexobj(ref) or not np.isfinite(ref).all()
    with pytest.raises(ValueError, match="local within-class scatter matrix of `x` is singular"):
        lfda_components(xc, y, k=4)
    xc[:, 4] = x[:, 0] + x[:, 1]
    with pytest.raises(ValueError, match="singular"):
        lfda_components(xc, y, k=4)


def test_lfda_bad_arguments(multimodal):
    x, y = multimodal
    with pytest.raises(ValueError, match="`embedding_type` must be one of"):
        unchecked(lfda_components)(x, y, embedding_type="whitened")
    with pytest.raises(ValueError, match="Invalid embedding_type"):
        ml.LFDA(embedding_type="whitened")
    for bad in (0, 6):
        with pytest.raises(ValueError, match=r"Invalid n_components, must be in \[1, 5\]"):
            unchecked(lfda_components)(x, y, n_components=bad)
        with pytest.raises(ValueError, match="Invalid n_components"):
            ml_lfda_components(x, y, n_components=bad)
    with pytest.raises(ValueError, match="`k` must be at least 1"):
        unchecked(lfda_components)(x, y, k=0)
    with pytest.raises(ValueError, match="at least two classes"):
        unchecked(lfda_components)(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match=r"`labels` must have shape \(72,\)"):
        unchecked(lfda_components)(x, y[:-1])
    with pytest.raises(ValueError, match="`labels` contains NaN"):
        unchecked(lfda_components)(x, np.where(y == 0, np.nan, y))
    with pytest.raises(ValueError, match="`x` contains NaN"):
        unchecked(lfda_components)(np.where(x > 3, np.nan, x), y)


def test_lfda_float32_and_string_labels(multimodal):
    x, y = multimodal
    names = np.array(["a", "b", "c"])[y]
    got = lfda_components(x.astype(np.float32), names, k=4, n_components=3)
    assert got.dtype == jnp.float32 and got.shape == (3, 5)
    assert np.isfinite(np.asarray(got)).all()
    with jax.enable_x64(True):
        ref = lfda_components(x, y, k=4, n_components=3)
    assert rel_rows_up_to_sign(got, ref) < 1e-3


@pytest.mark.usefixtures("x64")
def test_lfda_gradient_matches_dense_twin(multimodal):
    """jax.grad through lfda_components (weighted, full dim) vs a dense jnp twin."""
    x, y = multimodal
    x = x[::3]
    y = y[::3]
    w = np.random.RandomState(6).randn(5, 5)
    same = jnp.asarray(y[:, None] == y[None, :])
    nc = jnp.asarray(np.bincount(y)[y], jnp.float64)
    n, k = len(y), 3

    def twin(x):
        d2 = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, -1)
        sigma = jnp.sqrt(jnp.sort(jnp.where(same, d2, jnp.inf), axis=0)[k])
        a = jnp.where(same, jnp.exp(-d2 / (sigma[:, None] * sigma[None, :])), 0)
        w_lw = a / nc[:, None]
        w_lb = jnp.where(same, a * (1 / n - 1 / nc[:, None]), 1 / n)
        slw = x.T @ (jnp.diag(w_lw.sum(1)) - w_lw) @ x
        slb = x.T @ (jnp.diag(w_lb.sum(1)) - w_lb) @ x
        inv = jnp.linalg.inv(slw)
        return jnp.sum(inv @ slb @ inv * w)

    def ours(x):
        comps = lfda_components(x, y, k=k)
        return jnp.sum(comps.T @ comps * w)

    xj = jnp.asarray(x)
    (v, g), (v_ref, g_ref) = [jax.jit(jax.value_and_grad(f))(xj) for f in (ours, twin)]
    assert abs(v - v_ref) < 1e-10 * abs(v_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-10 * np.abs(g_ref).max())


# ==================================================================================
# RCA
# ==================================================================================
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("n_components", [None, 5])
def test_rca_matches_metric_learn(wine, n_components):
    x, y = wine
    chunks = Constraints(y).chunks(40, chunk_size=3, random_state=0)
    ref = ml.RCA(n_components=n_components).fit(x, chunks).components_
    got = rca_components(x, chunks, n_components=n_components)
    assert got.dtype == jnp.float64 and got.shape == ref.shape
    assert rel_rows_up_to_sign(got, ref) < RTOL
    assert rel(gram(got), gram(ref)) < RTOL
    if n_components is None:  # M = C^-1, C the within-chunklet covariance
        z = np.concatenate([x[chunks == j] - x[chunks == j].mean(0) for j in range(40)])
        assert rel(gram(got), np.linalg.inv(z.T @ z / len(z))) < RTOL


@pytest.mark.usefixtures("x64")
def test_rca_sizes_of_one_bucket_share_one_compiled_program(wine):
    # the chunklets' points padded to padded_size(m): fits whose chunklets hold 118..120
    # points compile once, and each equals metric-learn's
    from metricjax.solvers import _rca

    x, y = wine
    chunks = Constraints(y).chunks(40, chunk_size=3, random_state=0)
    before = _rca._rca_core._cache_size()
    for drop in (0, 1, 2):
        ids = chunks.copy()
        ids[np.flatnonzero(ids >= 0)[:drop]] = -1  # chunklets of 2 points remain valid
        ref = ml.RCA().fit(x, ids).components_
        assert rel(gram(rca_components(x, ids)), gram(ref)) < RTOL
    assert _rca._rca_core._cache_size() - before <= 1


@pytest.mark.usefixtures("x64")
def test_rca_supervised_pipeline_matches_metric_learn(wine):
    x, y = wine
    ref = ml.RCA_Supervised(n_chunks=40, chunk_size=3, random_state=3).fit(x, y).components_
    got = rca_components(x, Constraints(y).chunks(40, chunk_size=3, random_state=3))
    assert rel(got, ref) < RTOL


@pytest.mark.usefixtures("x64")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # metric-learn: empty chunk means
def test_rca_chunk_ids_need_not_be_contiguous(wine):
    x, y = wine
    chunks = Constraints(y).chunks(40, chunk_size=3, random_state=1)
    sparse_ids = np.where(chunks >= 0, 3 * chunks + 7, -1)
    a = rca_components(x, chunks, n_components=5)
    b = rca_components(x, sparse_ids, n_components=5)
    assert rel(gram(a), gram(b)) < 1e-12
    assert rel(gram(b), gram(ml.RCA(n_components=5).fit(x, sparse_ids).components_)) < RTOL


@pytest.mark.usefixtures("x64")
def test_rca_too_few_chunks_is_an_error_metric_learn_gives_nan(wine):
    x, y = wine
    chunks = Constraints(y).chunks(5, chunk_size=2, random_state=0)  # 5 dof < d = 13
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = ml.RCA().fit(x, chunks).components_
    assert not np.isfinite(ref).all()
    assert any("not invertible" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match=r"numerical rank 5 < d=13 .* give 5 degrees of freedom"):
        rca_components(x, chunks)


@pytest.mark.usefixtures("x64")
def test_rca_dependent_feature_is_an_error_metric_learn_gives_garbage(wine):
    x, y = wine
    xd = x.copy()
    xd[:, 12] = x[:, 0] + x[:, 1]
    chunks = Constraints(y).chunks(40, chunk_size=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.RCA().fit(xd, chunks).components_
    assert not np.isfinite(ref).all() or np.abs(ref).max() > 1e6  # NaN or ~1/sqrt(eps)
    with pytest.raises(ValueError, match="within-chunklet covariance of `x` is singular"):
        rca_components(xd, chunks)


@pytest.mark.usefixtures("x64")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # metric-learn: empty chunk means
def test_rca_chunk_id_below_minus_one_is_refused(wine):
    """metric-learn keeps id -2 points, uncentred, in its covariance (only -1 is 'none')."""
    x, y = wine
    chunks = Constraints(y).chunks(40, chunk_size=3, random_state=0)
    minus2 = chunks.copy()
    minus2[chunks == 0] = -2
    minus1 = chunks.copy()
    minus1[chunks == 0] = -1
    a, b = ml.RCA().fit(x, minus2).components_, ml.RCA().fit(x, minus1).components_
    assert rel(gram(a), gram(b)) > 1e-3
    with pytest.raises(ValueError, match="`chunks` ids must be >= 0, or -1"):
        rca_components(x, minus2)


def test_rca_bad_input(wine):
    x, y = wine
    with pytest.raises(ValueError, match="no chunklet with two or more points"):
        unchecked(rca_components)(x, -np.ones(len(x), int))
    with pytest.raises(ValueError, match="no chunklet with two or more points"):
        unchecked(rca_components)(x, np.arange(len(x)))
    with pytest.raises(ValueError, match=r"`chunks` must have shape \(178,\)"):
        unchecked(rca_components)(x, np.zeros(10, int))
    with pytest.raises(ValueError, match="integer chunklet ids"):
        unchecked(rca_components)(x, np.full(len(x), 0.5))
    with pytest.raises(ValueError, match=r"Invalid n_components, must be in \[1, 13\]"):
        unchecked(rca_components)(x, np.zeros(len(x), int), n_components=14)
    with pytest.raises(ValueError, match="Invalid n_components"):
        ml.RCA(n_components=14).fit(x, Constraints(y).chunks(40, chunk_size=3, random_state=0))
    with pytest.raises(ValueError, match="`x` contains NaN"):
        unchecked(rca_components)(np.where(x > 2, np.nan, x), np.zeros(len(x), int))


def test_rca_float32(wine):
    x, y = wine
    chunks = Constraints(y).chunks(40, chunk_size=3, random_state=0)
    got = rca_components(x.astype(np.float32), chunks, n_components=5)
    assert got.dtype == jnp.float32 and np.isfinite(np.asarray(got)).all()
    with jax.enable_x64(True):
        ref = rca_components(x, chunks, n_components=5)
    assert rel(gram(got), gram(ref)) < 1e-3


@pytest.mark.usefixtures("x64")
def test_rca_gradient_matches_inverse_twin(wine):
    x, y = wine
    x = x[:, :4]
    chunks = Constraints(y).chunks(20, chunk_size=3, random_state=0)
    w = np.random.RandomState(7).randn(4, 4)

    def twin(x):
        parts = [x[chunks == j] - jnp.mean(x[chunks == j], 0, keepdims=True) for j in range(20)]
        z = jnp.concatenate(parts)
        return jnp.sum(jnp.linalg.inv(z.T @ z / z.shape[0]) * w)

    def ours(x):
        comps = rca_components(x, chunks)
        return jnp.sum(comps.T @ comps * w)

    xj = jnp.asarray(x)
    (v, g), (v_ref, g_ref) = [jax.jit(jax.value_and_grad(f))(xj) for f in (ours, twin)]
    assert abs(v - v_ref) < 1e-10 * abs(v_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-10 * np.abs(g_ref).max())
