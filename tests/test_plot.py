"""``metricjax.plot``: each function draws, returns its Axes and saves a non-trivial PNG."""

from __future__ import annotations

import subprocess
import sys
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

import metricjax as mj  # noqa: E402
from metricjax.losses import mlkr_loss  # noqa: E402
from metricjax.plot import plot_embedding, plot_loss, plot_metric  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _save(ax, path):
    ax.figure.savefig(path, dpi=60)
    assert path.read_bytes()[:8] == PNG
    assert path.stat().st_size > 3_000, f"{path.name} looks empty"
    return path


def _regression(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x, (x[:, 0] + 0.1 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def fit_result():
    x, y = _regression()
    return mj.fit(mlkr_loss, 0.5 * jnp.eye(3), x, y, max_iter=8)


@pytest.fixture(scope="module")
def nca():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris

    data = load_iris()
    X = (data.data - data.data.mean(0)) / data.data.std(0)
    with warnings.catch_warnings():  # a short fit: ConvergenceWarning is expected
        warnings.simplefilter("ignore")
        est = mj.NCA(n_components=2, max_iter=20, random_state=0).fit(X, data.target)
    return est, X, data.target


# ----------------------------------------------------------------------------------
# plot_loss
# ----------------------------------------------------------------------------------
def test_plot_loss_from_fit_result_history_and_dict(fit_result, tmp_path):
    ax = plot_loss(fit_result)
    assert isinstance(ax, Axes)
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), fit_result.loss_history)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(fit_result.num_iter + 1))
    _save(ax, tmp_path / "loss.png")

    fig, axs = plt.subplots(1, 2)
    out = plot_loss([3.0, 2.0, 1.5], ax=axs[0], label="plain", yscale="log", marker=".")
    assert out is axs[0] and out.get_yscale() == "log"
    assert out.get_legend().get_texts()[0].get_text() == "plain"
    ax2 = plot_loss({"a": fit_result, "b": np.array([5.0, 1.0])}, ax=axs[1], title=None)
    assert len(ax2.get_lines()) == 2
    assert [t.get_text() for t in ax2.get_legend().get_texts()][1] == "b"
    _save(ax2, tmp_path / "loss2.png")


def test_plot_loss_marks_unconverged_fits():
    x, y = _regression()
    res = mj.fit(mlkr_loss, 0.5 * jnp.eye(3), x, y, max_iter=2, tol=0.0, gtol=0.0)
    assert not res.converged
    ax = plot_loss(res, label="MLKR")
    assert ax.get_legend().get_texts()[0].get_text() == "MLKR (not converged)"


def test_plot_loss_from_estimator_and_errors(nca, tmp_path):
    est, _, _ = nca
    ax = plot_loss(est)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), est.loss_history_)
    _save(ax, tmp_path / "loss_est.png")
    with pytest.raises(ValueError, match="not fitted"):
        plot_loss(mj.NCA())
    with pytest.raises(ValueError, match="1-D"):
        plot_loss(np.ones((2, 2)))
    with pytest.raises(ValueError, match="1-D"):
        plot_loss([])


# ----------------------------------------------------------------------------------
# plot_embedding
# ----------------------------------------------------------------------------------
def test_plot_embedding_before_after_with_estimator(nca, tmp_path):
    est, X, y = nca
    fig, axs = plt.subplots(1, 2, figsize=(9, 4))
    before = plot_embedding(X, y, ax=axs[0], title="before")
    after = plot_embedding(X, y, est, ax=axs[1], title="after")
    assert before is axs[0] and after is axs[1]
    assert after.get_title() == "after"
    assert len(after.collections) == 3  # one scatter per class
    assert len(after.get_legend().get_texts()) == 3
    # 4-D input is shown in its top two principal axes, the 2-D embedding as it is
    assert "PC 1 of 4-D" in before.get_xlabel()
    assert after.get_xlabel() == "component 1"
    z = np.concatenate([c.get_offsets() for c in after.collections])
    expected = est.transform(X)
    np.testing.assert_allclose(np.sort(z[:, 0]), np.sort(expected[:, 0]), rtol=1e-6)
    _save(after, tmp_path / "embedding.png")


def test_plot_embedding_transforms_and_continuous_targets(tmp_path):
    x, y = _regression(d=4)
    L = np.array([[1.0, 0, 0, 0], [0, 2.0, 0, 0]])
    ax_matrix = plot_embedding(x, y, L)
    np.testing.assert_allclose(ax_matrix.collections[0].get_offsets(), x @ L.T, rtol=1e-6)
    assert len(ax_matrix.figure.axes) == 2  # continuous targets: a colour bar
    _save(ax_matrix, tmp_path / "embedding_continuous.png")

    ax_callable = plot_embedding(x, None, lambda a: a[:, :2] * 3)
    np.testing.assert_allclose(ax_callable.collections[0].get_offsets(), 3 * x[:, :2], rtol=1e-6)

    labels = np.repeat(["cat", "dog"], 20)
    ax_names = plot_embedding(x, labels, L, class_names=["Cat", "Dog"])
    assert [t.get_text() for t in ax_names.get_legend().get_texts()] == ["Cat", "Dog"]
    ax_1d = plot_embedding(x, np.repeat([0.0, 1.0], 20), L[:1])  # float labels 0/1: classes
    assert ax_1d.get_legend() is not None

    with pytest.raises(ValueError, match="transform"):
        plot_embedding(x, y, np.ones((2, 3)))
    with pytest.raises(ValueError, match="labels"):
        plot_embedding(x, y[:5])


def test_plot_embedding_with_flax_layer(tmp_path):
    pytest.importorskip("flax")
    from flax import nnx

    from metricjax.nn import MahalanobisMetric

    x, _ = _regression(d=4)
    layer = MahalanobisMetric(4, 2, init="orthogonal", rngs=nnx.Rngs(0))
    ax = plot_embedding(x, np.arange(40) % 3, layer)
    z = np.concatenate([c.get_offsets() for c in ax.collections])
    assert z.shape == (40, 2)
    np.testing.assert_allclose(
        np.sort(z[:, 1]), np.sort(np.asarray(layer.embed(x))[:, 1]), rtol=1e-5, atol=1e-6
    )
    ax_metric = plot_metric(layer)
    np.testing.assert_allclose(
        ax_metric.images[0].get_array(), np.asarray(layer.metric()), rtol=1e-6, atol=1e-7
    )


# ----------------------------------------------------------------------------------
# plot_metric
# ----------------------------------------------------------------------------------
def test_plot_metric_from_estimator_has_colour_bar_and_feature_names(nca, tmp_path):
    est, _, _ = nca
    ax = plot_metric(est)
    (image,) = ax.images
    np.testing.assert_allclose(image.get_array(), est.get_mahalanobis_matrix(), rtol=1e-6)
    assert len(ax.figure.axes) == 2  # heat map and colour bar
    lo, hi = image.get_clim()
    assert lo == -hi  # symmetric colour scale
    assert len(ax.texts) == 16  # d = 4 <= 10: values written in the cells
    _save(ax, tmp_path / "metric.png")
    names = ["sepal length", "sepal width", "petal length", "petal width"]
    named = plot_metric(est, feature_names=names)
    assert [t.get_text() for t in named.get_xticklabels()] == names
    assert [t.get_text() for t in named.get_yticklabels()] == names


def test_plot_metric_arrays_and_fit_result(fit_result, tmp_path):
    L = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])  # (k, d): read as a transform
    ax = plot_metric(L, feature_names=["a", "b", "c"], annotate=False)
    np.testing.assert_allclose(ax.images[0].get_array(), L.T @ L)
    assert len(ax.texts) == 0
    M = np.diag([1.0, 2.0, 3.0])  # square: read as the metric itself
    np.testing.assert_allclose(plot_metric(M).images[0].get_array(), M)
    S = np.array([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(plot_metric(S, kind="transform").images[0].get_array(), S.T @ S)
    P = np.asarray(fit_result.params)  # a FitResult holds a transform, square or not
    ax_fit = plot_metric(fit_result, colorbar=False)
    np.testing.assert_allclose(ax_fit.images[0].get_array(), P.T @ P, rtol=1e-6)
    assert len(ax_fit.figure.axes) == 1
    big = plot_metric(np.eye(30))
    assert len(big.texts) == 0  # d > 10: no annotations
    _save(big, tmp_path / "metric_big.png")
    with pytest.raises(ValueError, match="feature_names"):
        plot_metric(M, feature_names=["a"])
    with pytest.raises(ValueError, match="square"):
        plot_metric(L, kind="metric")
    with pytest.raises(ValueError, match="kind"):
        plot_metric(M, kind="matrix")


def test_missing_matplotlib_names_the_extra():
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.modules['matplotlib.pyplot'] = None\n"
        "from metricjax.plot import plot_loss\n"
        "plot_loss([1.0, 0.5])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'pip install "metricjax[plot]"' in proc.stderr
