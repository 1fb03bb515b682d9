"""MLKRCV: MLKR with its ridge strength chosen by cross-validation, in one compiled program."""

import functools
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import check_cv

from metricjax._train import _check_vmap_method, _compile_options, resolve_optimizer
from metricjax._train import fit as _fit
from metricjax.estimators._base import (
    COMMON_ARGS,
    COMMON_ATTRS,
    _numeric_targets,
    check_block_size,
    check_int,
    check_sample_weight,
    class_doc,
    drop_zero_weights,
    refuse_complex,
)
from metricjax.estimators._mlkr import (
    DEFAULT_ALPHA,
    MLKR,
    _weighted_mlkr_objective,
    ridge_weight,
    target_scale,
)
from metricjax.exceptions import InvalidParameterError
from metricjax.losses import kernel_regression

#: Default grid of :class:`MLKRCV`: 8 strengths, about half a decade apart, from 0.003
#: to 10 (MLKR's default ``alpha = 0.01`` among them). Smaller strengths are the nearly
#: unregularised regime where MLKR overfits small data; there the fits need up to ten
#: times the iterations (which a batched loop on an accelerator waits for).
DEFAULT_ALPHAS = (0.003, DEFAULT_ALPHA, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def _held_out_r2(L, x_train, y_train, train_weight, x_test, y_test, test):
    """:math:`R^2` of the held-out rows (weights ``test``), predicted from the training rows.

    As ``MLKR.score`` (``r2_score`` with ``sample_weight=test``) of the model fitted on
    the training rows: kernel regression with every training point (its kernel weighted
    by its sample weight ``train_weight``). Rows of weight 0 (padding) count for nothing.
    """
    yhat = kernel_regression(L, x_train, y_train, x_test, sample_weight=train_weight)
    mean = jnp.sum(test * y_test) / jnp.sum(test)
    num = jnp.sum(test * (y_test - yhat) ** 2)
    den = jnp.sum(test * (y_test - mean) ** 2)
    # constant held-out targets: 1 for a perfect prediction, else 0 (r2_score's force_finite)
    safe = jnp.where(den > 0, den, 1)
    return jnp.where(den > 0, 1 - num / safe, jnp.where(num == 0, 1.0, 0.0).astype(y_test.dtype))


@functools.cache
def _cv_program(loss, optimizer, max_iter: int, tol: float, options: tuple, vmap_method="auto"):
    """The compiled grid: ``jit(vmap over alphas (vmap over folds (fit + score)))``.

    One per (loss, optimizer, max_iter, tol, XLA options: those :func:`metricjax.fit`
    uses for one member, ``vmap_method`` of the fits); ``jax.jit`` adds one per data
    shape and dtype.
    """

    def one(L0, ridge, x, y, train_weight, x_test, y_test, test):
        res = _fit(loss, L0, x, y, train_weight, ridge, optimizer=optimizer, max_iter=max_iter,
                   tol=tol, vmap_method=vmap_method)  # fmt: skip
        score = _held_out_r2(res.params, x, y, train_weight, x_test, y_test, test)
        return res.params, score, res.num_iter, res.converged, res.loss_history[0]

    folds = jax.vmap(one)  # every argument batched over the folds
    grid = jax.vmap(folds, in_axes=(None, 0, None, None, None, None, None, None))
    return jax.jit(grid, compiler_options=dict(options) if options else None)


class MLKRCV(MLKR):
    __doc__ = class_doc(
        r"""MLKR with the ridge strength ``alpha`` chosen by cross-validation.

    For every ``alpha`` in ``alphas`` and every split of ``cv``, :class:`MLKR` is fitted
    on the split's training part and scored (:math:`R^2` of :meth:`MLKR.predict`, as
    ``MLKR.score``) on its held-out part; the ``alpha`` of the best mean score is then
    refitted on all the data. The result is the one of
    ``GridSearchCV(MLKR(...), {"alpha": alphas}, cv=cv)`` (same selection and per-fold
    scores up to rounding), but all ``len(alphas) * n_splits`` fits run as **one
    compiled program**: ``jax.jit`` of ``jax.vmap`` (alphas) of ``jax.vmap`` (folds) of
    :func:`metricjax.fit`. Each fold's training rows (and held-out rows) are gathered
    into arrays of one size, the largest fold's: a shorter fold is padded with rows of
    sample weight 0, which the weighted loss and the prediction leave out exactly
    (a point of weight 0 is a dropped point), so every fold has the same shape and
    the program compiles once. What MLKR computes from the data before the fit (the
    scaled initial map, the median distance and the sum of squares of the ridge
    weight) is computed on the host from each fold's training part and passed in as
    batched arrays.

    **Cost.** One compilation instead of one per fold shape, and no per-fit dispatch.
    Each of the ``len(alphas) * n_splits`` members does the work of one MLKR fit on
    its fold's ``n_train`` rows per iteration (plus at most one padding row). On a
    CPU the members run one after another inside the program (:func:`metricjax.fit`'s
    ``vmap_method="auto"``), each for its own iterations: the work is
    ``sum(n_iter) * cost(n_train)``. On an accelerator they run side by side in one
    batched loop, which runs until the *slowest* member has converged (finished
    members are carried unchanged, but still computed):
    ``n_members * max(n_iter) * cost(n_train)``,
    at the memory of ``n_members`` fits at once; ``batch="folds"`` then batches only
    the folds of one ``alpha`` at a time, which converge in similar numbers of
    iterations (``benchmarks/results/sweep.md``, ``examples/07_sweep.py``).""",
        args=r"""
        alphas: the candidate ridge strengths (see :class:`MLKR`'s ``alpha``), a
            non-empty sequence of reals ``>= 0``; the default :data:`DEFAULT_ALPHAS`
            has 8 values from ``0.003`` to ``10``, about half a decade apart (it
            includes MLKR's default ``0.01``).
        cv: number of folds (``KFold(cv)``, as ``GridSearchCV``; at least 2) or a
            scikit-learn splitter or iterable of ``(train, test)`` index arrays.
            Default 5.
        batch: ``"grid"``: one call of the compiled program runs all
            ``len(alphas) * n_splits`` fits. ``"folds"``: the program (one
            compilation) is called once per ``alpha``, batching that strength's
            folds, so that a batched loop waits only for them (see **Cost**).
            ``"auto"`` (default): ``"grid"`` on a CPU, where the fits run one after
            another anyway, ``"folds"`` on an accelerator. Same results either way."""
        + COMMON_ARGS.replace(
            "        verbose: show a ``tqdm`` progress bar with the current loss.\n",
            "        verbose: a ``tqdm`` progress bar for the final refit (the grid is one\n"
            "            compiled program without one).\n",
        )
        + """        block_size: rows of the pairwise matrix processed at a time by the loss
            (see :class:`MLKR`).""",
        attrs=r"""
        alpha_: the selected ridge strength.
        alphas_: the grid, as a float array ``(n_alphas,)``.
        scores_: held-out :math:`R^2`, shape ``(n_alphas, n_splits)``.
        best_score_: the mean held-out score of ``alpha_``.
        cv_n_iter_: iterations of every fit of the grid, ``(n_alphas, n_splits)``.
        best_estimator_: the :class:`MLKR` refitted on all the data with ``alpha_``;
            its fitted attributes are also this estimator's:"""
        + COMMON_ATTRS
        + """        X_train_, y_train_, sample_weight_train_, ridge_weight_: as in
            :class:`MLKR`.""",
        references="""
        K. Q. Weinberger and G. Tesauro, `Metric Learning for Kernel Regression
        <https://proceedings.mlr.press/v2/weinberger07a.html>`_, AISTATS 2007.""",
        examples="""
        >>> from sklearn.datasets import load_diabetes
        >>> from sklearn.preprocessing import StandardScaler
        >>> from metricjax.estimators import MLKRCV
        >>> X, y = load_diabetes(return_X_y=True)
        >>> X = StandardScaler().fit_transform(X)
        >>> model = MLKRCV(alphas=[0.01, 1.0], cv=3).fit(X, y / y.std())
        >>> model.scores_.shape
        (2, 3)
        >>> float(model.alpha_) in (0.01, 1.0)
        True""",
    )

    mesh = None  # the grid runs on one device
    batch_size = None  # full-batch fits only

    def __init__(
        self,
        n_components=None,
        *,
        alphas=DEFAULT_ALPHAS,
        cv=5,
        batch="auto",
        init="auto",
        max_iter=1000,
        tol=None,
        optimizer=None,
        random_state=None,
        verbose=False,
        block_size="auto",
        preprocessor=None,
    ):
        self._set_params(locals())

    def _check_alphas(self):
        try:
            alphas = np.asarray(self.alphas, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InvalidParameterError(
                f"`alphas` must be a sequence of real numbers, got {self.alphas!r}"
            ) from err
        if alphas.ndim != 1 or alphas.size == 0:
            raise ValueError(f"`alphas` must be a non-empty 1-D sequence, got shape {alphas.shape}")
        if not np.all(np.isfinite(alphas)) or np.any(alphas < 0):
            raise ValueError(f"`alphas` must be finite and >= 0, got {alphas.tolist()}")
        return alphas

    def _mlkr(self, alpha) -> MLKR:
        """The MLKR of this configuration with ridge strength ``alpha`` (no preprocessor)."""
        params = {
            name: getattr(self, name)
            for name in ("n_components", "init", "max_iter", "tol", "optimizer", "random_state",
                         "verbose", "block_size")
        }  # fmt: skip
        return MLKR(alpha=float(alpha), **params)

    def fit(self, X, y, sample_weight=None):
        """Fit every (alpha, fold) in one compiled program, select ``alpha_``, refit on all data.

        Args:
            X: training inputs, ``(n_samples, n_features)``.
            y: real targets, ``(n_samples,)``.
            sample_weight: ``None`` or non-negative weights ``(n_samples,)``, as in
                :meth:`MLKR.fit`: they weight every fit, and the held-out :math:`R^2`
                (as ``GridSearchCV.fit(X, y, sample_weight=...)`` does, which passes
                them to the fits and the scorer).

        Returns:
            The fitted estimator (``self``).
        """
        return self._fit_atomic(self._fit_cv, X, y, sample_weight)

    def _fit_cv(self, X, y, sample_weight):
        if not (isinstance(self.batch, str) and self.batch in ("auto", "grid", "folds")):
            raise ValueError(f"`batch` must be 'auto', 'grid' or 'folds', got {self.batch!r}")
        batch = self.batch
        if batch == "auto":  # one call where the fits run member by member anyway
            batch = "grid" if _check_vmap_method("auto") == "sequential" else "folds"
        refuse_complex(X, "X")
        y = _numeric_targets(y, type(self).__name__)
        X, y = self._points(X, y, reset=True, ensure_min_samples=2, y_numeric=True)
        sw = check_sample_weight(sample_weight, X.shape[0])
        grid = self._grid(X, y, sw)
        alphas, max_iter, tol = grid["alphas"], grid["max_iter"], grid["tol"]
        program, (L0, ridge, *rest) = grid["program"], grid["args"]
        with jax.enable_x64(X.dtype == np.float64):
            if batch == "grid":
                out = [np.asarray(a) for a in program(L0, ridge, *rest)]
            else:  # one alpha per call: the batch waits only for that alpha's folds
                parts = [program(L0, ridge[a : a + 1], *rest) for a in range(len(alphas))]
                out = [np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(5)]
            _, scores, n_iter, converged, first = out
        if not np.all(np.isfinite(first)):
            raise FloatingPointError(
                "the loss at the initial transformation is not finite in some fold; scale the "
                "features (e.g. with StandardScaler) or choose another `init`"
            )
        if not np.all(converged):
            warnings.warn(
                f"{int(np.size(converged) - np.sum(converged))} of the {np.size(converged)} "
                f"fits of the grid did not converge within max_iter={max_iter} iterations "
                f"(tol={tol:g}); increase max_iter, or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        mean = scores.astype(np.float64).mean(axis=1)
        if not np.any(np.isfinite(mean)):
            raise FloatingPointError("no held-out score of the grid is finite")
        best = int(np.nanargmax(mean))  # the first of the best, as GridSearchCV
        model = self._mlkr(alphas[best]).fit(X, y, sample_weight)
        fitted = {
            name: value
            for name, value in vars(model).items()
            if name.endswith("_") and not name.startswith("_")
            and name not in ("n_features_in_", "feature_names_in_")
        }  # fmt: skip
        return {
            **fitted,
            "alpha_": float(alphas[best]),
            "alphas_": alphas,
            "scores_": scores.astype(np.float64),
            "best_score_": float(mean[best]),
            "cv_n_iter_": n_iter,
            "best_estimator_": model,
        }

    def _grid(self, X, y, sw):
        """The compiled grid and its batched inputs for validated ``X``, ``y``, weights ``sw``.

        A dict: ``program`` (``_cv_program``), ``args`` (initial maps ``(F, k, d)``,
        ridge weights ``(A, F)``, each fold's training rows ``(F, m, d)``, their
        targets ``(F, m)`` and weights ``(F, m)``, its held-out rows ``(F, t, d)``,
        targets and weights ``(F, t)``; ``m`` and ``t`` the largest fold's sizes,
        shorter folds padded with rows of weight 0), and the ``loss``, XLA ``options``, ``optimizer``,
        ``max_iter``, ``tol`` and ``alphas`` it was built with (``benchmarks/bench_sweep.py`` times
        the same fits one by one from them).
        """
        alphas = self._check_alphas()
        max_iter = check_int(self.max_iter, "max_iter", 1)
        tol = self._tol()
        optimizer = resolve_optimizer(self.optimizer, "lbfgs")
        block_size = check_block_size(self.block_size)
        if isinstance(self.cv, numbers.Integral) and not isinstance(self.cv, bool):
            check_int(self.cv, "cv", 2)
        d = X.shape[1]
        dtype = X.dtype
        splits = list(check_cv(self.cv, y, classifier=False).split(X, y))
        base = self._mlkr(alphas[0])
        k = d if self.n_components is None else int(self.n_components)
        starts, ridges, trains, tests = [], [], [], []
        for train, test in splits:
            if len(train) < 2 or len(test) < 1:
                raise ValueError(
                    f"every split of `cv` needs >= 2 training and >= 1 test rows, got "
                    f"{len(train)} and {len(test)}"
                )
            # what MLKR.fit computes from the training part, on the host
            xf, yf, swf = drop_zero_weights(X[train], y[train], None if sw is None else sw[train])
            starts.append(base._initial_components(xf, yf, d, len(xf), swf))
            # the fold's targets in the units MLKR.fit optimises (y / target_scale: same
            # minimiser, scale-free stopping); held-out R^2 does not depend on them
            scale = target_scale(yf, swf)
            yf = np.asarray(yf / scale, dtype)
            ridges.append(ridge_weight(xf, yf, 1.0, k, swf))
            trains.append((xf, yf, np.ones(len(xf)) if swf is None else swf))
            y_test = np.asarray(y[test] / scale, dtype)
            tests.append((X[test], y_test, np.ones(len(test)) if sw is None else sw[test]))
        x_train, y_train, w_train = _padded(trains)
        x_test, y_test, w_test = _padded(tests)
        options = _compile_options(starts[0], (x_train[0],))
        loss = _weighted_mlkr_objective(block_size)
        with jax.enable_x64(dtype == np.float64):
            args = (
                jnp.asarray(np.stack(starts), dtype),
                jnp.asarray(alphas[:, None] * np.asarray(ridges)[None, :], dtype),
                jnp.asarray(x_train),
                jnp.asarray(y_train, dtype),
                jnp.asarray(w_train, dtype),
                jnp.asarray(x_test),
                jnp.asarray(y_test, dtype),
                jnp.asarray(w_test, dtype),
            )
        return {
            "program": _cv_program(loss, optimizer, max_iter, tol, options),
            "args": args,
            "loss": loss,
            "options": options,
            "optimizer": optimizer,
            "max_iter": max_iter,
            "tol": tol,
            "alphas": alphas,
        }


def _padded(parts):
    """The rows ``x``, targets ``y`` and weights ``w`` of the ``(x, y, w)`` parts, stacked.

    Each part is padded to the longest with copies of its first row of weight 0 (a
    point of weight 0 counts for nothing in the weighted loss and the prediction):
    ``(F, m, d)``, ``(F, m, ...)``, ``(F, m)``.
    """
    m = max(len(w) for _, _, w in parts)

    def pad(a, fill):
        return np.concatenate([a, np.repeat(fill, m - len(a), axis=0)])

    xs, ys, ws = zip(*[(pad(x, x[:1]), pad(y, y[:1]), pad(w, np.zeros(1))) for x, y, w in parts])
    return np.stack(xs), np.stack(ys), np.stack(ws)
