r"""Plots of fits and learned metrics (matplotlib; ``pip install "metricjax[plot]"``).

* :func:`plot_loss`: loss curves of :class:`metricjax.FitResult`\ s, fitted
  estimators or plain loss histories;
* :func:`plot_embedding`: points in a 2-D view of an embedding (before / after a
  fit), coloured by class or by a continuous target;
* :func:`plot_metric`: the learned Mahalanobis matrix :math:`M = L^\top L` as a heat
  map with a colour bar.

Every function draws on ``ax`` (a new figure when ``ax=None``) and returns the
``matplotlib.axes.Axes``; nothing is shown or saved, and the backend is left alone
(call ``fig.savefig`` or rely on the notebook's inline display). matplotlib is
imported when a function is first called, so ``import metricjax.plot`` is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["plot_loss", "plot_embedding", "plot_metric"]

_INSTALL = 'metricjax.plot needs matplotlib; install it with pip install "metricjax[plot]"'

# at most this many distinct labels are drawn as classes (with a legend)
_MAX_CLASSES = 20


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(_INSTALL) from err
    return plt


def _axes(ax, figsize=(5.0, 4.0)):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize)
    return ax


# ----------------------------------------------------------------------------------
# loss curves
# ----------------------------------------------------------------------------------
def _history(obj):
    """``(loss history, converged or None)`` of a FitResult, an estimator or an array."""
    if hasattr(obj, "loss_history_"):  # fitted estimator
        return np.asarray(obj.loss_history_, float), getattr(obj, "converged_", None)
    if hasattr(obj, "loss_history") and hasattr(obj, "num_iter"):  # FitResult
        return np.asarray(obj.loss_history, float), getattr(obj, "converged", None)
    if hasattr(obj, "steps") and hasattr(obj, "named_steps"):  # sklearn Pipeline
        return _history(obj.steps[-1][1])
    if hasattr(obj, "fit") and hasattr(obj, "get_params"):
        raise ValueError(f"{type(obj).__name__} is not fitted (it has no loss_history_)")
    arr = np.asarray(obj, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"a loss history must be a non-empty 1-D array, got shape {arr.shape}")
    return arr, None


def plot_loss(history, ax=None, *, label=None, yscale="linear", title="Training loss", **kwargs):
    """Plot loss against iteration.

    Args:
        history: a :class:`metricjax.FitResult`, a fitted estimator (its
            ``loss_history_``; a ``Pipeline`` ending in one works too), a 1-D array of
            losses, or a ``dict`` mapping curve labels to any of these (one curve
            each).
        ax: matplotlib ``Axes`` to draw on; ``None`` makes a new figure.
        label: legend label of a single curve. A fit that did not converge gets
            ``"(not converged)"`` appended.
        yscale: ``"linear"``, ``"log"`` or ``"symlog"`` (losses like NCA's are
            negative: use ``"symlog"`` or keep linear).
        title: axes title (``None`` for none).
        **kwargs: passed to ``ax.plot`` (e.g. ``marker="."``, ``color``).

    Returns:
        The ``Axes``.

    The x axis counts optimizer iterations: point ``i`` is the loss before update
    ``i``, the last point the final loss.
    """
    curves = history.items() if isinstance(history, Mapping) else [(label, history)]
    ax = _axes(ax)
    any_label = False
    for name, obj in curves:
        hist, converged = _history(obj)
        if converged is False:
            name = f"{name} (not converged)" if name else "not converged"
        any_label |= bool(name)
        ax.plot(np.arange(hist.size), hist, label=name, **kwargs)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale(yscale)
    if title:
        ax.set_title(title)
    if any_label:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax


# ----------------------------------------------------------------------------------
# embeddings
# ----------------------------------------------------------------------------------
def _embed(x, transform):
    """Apply ``transform`` (None, an array L, an estimator, a layer or a callable)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"`x` must have shape (n, d), got {x.shape}")
    if transform is None:
        return x
    embed = getattr(transform, "embed", None)  # metricjax.nn.MahalanobisMetric
    if callable(embed):
        return np.asarray(embed(x))
    method = getattr(transform, "transform", None)  # fitted estimators, pipelines
    if callable(method) and not hasattr(transform, "shape"):
        return np.asarray(method(x))
    if callable(transform) and not hasattr(transform, "shape"):
        return np.asarray(transform(x))
    L = np.asarray(transform)
    if L.ndim != 2 or L.shape[1] != x.shape[1]:
        raise ValueError(
            f"`transform` must be a (k, {x.shape[1]}) matrix L, an object with a "
            f"`transform`/`embed` method or a callable; got shape {L.shape}"
        )
    return x @ L.T


def _two_d(z):
    """``(points in 2-D, axis names)``: the top two principal axes when k > 2."""
    z = np.asarray(z, float)
    k = z.shape[1]
    if k == 2:
        return z, ("component 1", "component 2")
    if k == 1:
        return np.column_stack([z[:, 0], np.zeros(len(z))]), ("component 1", "")
    zc = z - z.mean(axis=0)
    _, s, vt = np.linalg.svd(zc, full_matrices=False)
    share = s[:2] ** 2 / max(float(np.sum(s**2)), np.finfo(float).tiny)
    names = tuple(f"PC {i + 1} of {k}-D ({100 * share[i]:.0f} % of variance)" for i in range(2))
    return zc @ vt[:2].T, names


def _is_discrete(labels) -> bool:
    arr = np.asarray(labels)
    if arr.dtype.kind in "biuUSO":
        return True
    if arr.dtype.kind == "f":
        return bool(
            np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
            and np.unique(arr).size <= _MAX_CLASSES
        )
    return False


def plot_embedding(
    x,
    labels=None,
    transform=None,
    ax=None,
    *,
    title=None,
    discrete: bool | None = None,
    class_names=None,
    s: float = 16,
    alpha: float = 0.8,
    cmap=None,
    **kwargs,
):
    r"""Scatter plot of the points ``x`` in a 2-D view of the embedding ``z = transform(x)``.

    Embeddings with more than two dimensions are shown in their top two principal
    axes (the axis labels give each axis' share of the variance); a 1-D embedding
    is drawn along the x axis. Use it twice for a before/after comparison, e.g.
    ``plot_embedding(X, y, ax=axs[0])`` and ``plot_embedding(X, y, nca, ax=axs[1])``.

    Args:
        x: points, shape ``(n, d)``.
        labels: class labels (coloured by class, with a legend) or continuous
            targets (coloured by value, with a colour bar), shape ``(n,)``; ``None``
            for one colour.
        transform: ``None`` (plot ``x`` itself), a matrix :math:`L` of shape
            ``(k, d)`` (plots :math:`x L^\top`), a fitted estimator or pipeline (its
            ``transform``), a :class:`metricjax.nn.MahalanobisMetric` (its ``embed``)
            or any callable ``z = f(x)``.
        ax: ``Axes`` to draw on; ``None`` makes a new figure.
        title: axes title.
        discrete: whether ``labels`` are classes; ``None`` decides: integers, strings
            and booleans are classes, and so are floats with integral values and at
            most 20 distinct ones; other floats are continuous.
        class_names: legend names of the classes, indexed like the sorted unique
            labels (e.g. ``load_iris().target_names``).
        s, alpha, cmap: marker size, opacity and colour map (``"tab10"``/``"tab20"``
            for classes, ``"viridis"`` for values by default).
        **kwargs: passed to ``ax.scatter``.

    Returns:
        The ``Axes``.
    """
    plt = _pyplot()
    z, (xlabel, ylabel) = _two_d(_embed(x, transform))
    ax = _axes(ax, figsize=(5.0, 4.5))
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=s, alpha=alpha, **kwargs)
    else:
        labels = np.asarray(labels)
        if labels.shape != (z.shape[0],):
            raise ValueError(f"`labels` must have shape ({z.shape[0]},), got {labels.shape}")
        if _is_discrete(labels) if discrete is None else discrete:
            classes, codes = np.unique(labels, return_inverse=True)
            codes = codes.reshape(-1)
            colours = plt.get_cmap(cmap or ("tab10" if len(classes) <= 10 else "tab20"))
            for c, value in enumerate(classes):
                name = class_names[c] if class_names is not None else value
                ax.scatter(*z[codes == c].T, s=s, alpha=alpha, color=colours(c % colours.N),
                           label=str(name), **kwargs)  # fmt: skip
            if len(classes) <= _MAX_CLASSES:
                ax.legend(fontsize=8, markerscale=1.5, loc="best", framealpha=0.7)
        else:
            sc = ax.scatter(z[:, 0], z[:, 1], c=labels.astype(float), s=s, alpha=alpha,
                            cmap=cmap or "viridis", **kwargs)  # fmt: skip
            ax.figure.colorbar(sc, ax=ax, label="target")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


# ----------------------------------------------------------------------------------
# the metric matrix
# ----------------------------------------------------------------------------------
def _metric_matrix(obj, kind: str):
    """``(M, feature names or None)`` from an estimator, a layer, a FitResult or an array."""
    names = None
    if hasattr(obj, "steps") and hasattr(obj, "named_steps"):  # Pipeline: its last step
        obj = obj.steps[-1][1]
    if hasattr(obj, "get_mahalanobis_matrix"):  # fitted estimator
        names = getattr(obj, "feature_names_in_", None)
        return np.asarray(obj.get_mahalanobis_matrix(), float), names
    metric = getattr(obj, "metric", None)  # metricjax.nn.MahalanobisMetric
    if callable(metric) and not hasattr(obj, "shape"):
        return np.asarray(metric(), float), None
    if hasattr(obj, "num_iter") and hasattr(obj, "params"):  # FitResult of a map L
        obj, kind = obj.params, "transform"
    a = np.asarray(obj, float)
    if a.ndim != 2:
        raise ValueError(f"expected a (d, d) metric or a (k, d) transform, got shape {a.shape}")
    if kind not in ("auto", "metric", "transform"):
        raise ValueError(f"`kind` must be 'auto', 'metric' or 'transform', got {kind!r}")
    if kind == "metric" and a.shape[0] != a.shape[1]:
        raise ValueError(f"a metric must be square, got shape {a.shape}")
    if kind == "transform" or (kind == "auto" and a.shape[0] != a.shape[1]):
        return a.T @ a, names
    return a, names


def plot_metric(
    metric,
    feature_names=None,
    ax=None,
    *,
    kind: str = "auto",
    title=r"Learned metric $M = L^\top L$",
    annotate: bool | None = None,
    cmap="RdBu_r",
    colorbar: bool = True,
):
    r"""Heat map of a Mahalanobis matrix :math:`M` with a colour bar.

    The colour scale is symmetric about 0 (diverging map: positive entries red,
    negative blue), so the sign of the off-diagonal couplings reads at a glance.

    Args:
        metric: a fitted estimator (``get_mahalanobis_matrix()``; a ``Pipeline``
            ending in one works too), a :class:`metricjax.nn.MahalanobisMetric`
            (``metric()``), a :class:`metricjax.FitResult` of a map :math:`L`, or an
            array: a non-square ``(k, d)`` array is a map :math:`L` and is shown as
            :math:`L^\top L`; a square array is taken as :math:`M` itself unless
            ``kind="transform"``.
        feature_names: tick labels, length ``d`` (default: the estimator's
            ``feature_names_in_`` when it has them, else indices).
        ax: ``Axes`` to draw on; ``None`` makes a new figure.
        kind: ``"auto"``, ``"metric"`` or ``"transform"``: how to read an array.
        title: axes title (``None`` for none).
        annotate: write the values in the cells; ``None`` means when ``d <= 10``.
        cmap: colour map (diverging).
        colorbar: add a colour bar.

    Returns:
        The ``Axes`` of the heat map.
    """
    _pyplot()
    m, names = _metric_matrix(metric, kind)
    d = m.shape[0]
    names = feature_names if feature_names is not None else names
    if names is not None and len(names) != d:
        raise ValueError(f"`feature_names` must have length {d}, got {len(names)}")
    ax = _axes(ax, figsize=(5.5, 4.5))
    vmax = float(np.max(np.abs(m))) or 1.0
    im = ax.imshow(m, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if names is not None:
        ax.set_xticks(range(d), [str(n) for n in names], rotation=90, fontsize=8)
        ax.set_yticks(range(d), [str(n) for n in names], fontsize=8)
    if annotate if annotate is not None else d <= 10:
        for i in range(d):
            for j in range(d):
                ax.text(j, i, f"{m[i, j]:.2g}", ha="center", va="center", fontsize=7,
                        color="white" if abs(m[i, j]) > 0.6 * vmax else "black")  # fmt: skip
    if title:
        ax.set_title(title)
    return ax
