r"""scikit-learn estimators: :class:`MLKR`, :class:`NCA` and :class:`LMNN`.

Each estimator learns a linear map :math:`L` (``components_``, shape
``(n_components, n_features)``) by minimising the corresponding loss of
:mod:`metricjax.losses` with the compiled optax loop of :func:`metricjax.fit`. The
learned (squared) Mahalanobis distance is :math:`d(x, x')^2 = \lVert Lx - Lx'\rVert^2
= (x - x')^\top L^\top L (x - x')`. The API follows metric-learn's estimators
(``components_``, ``transform``, ``get_mahalanobis_matrix``, ``get_metric``) and the
scikit-learn conventions (``fit`` returns ``self``, parameters are only stored by
``__init__``, ``clone``, ``Pipeline`` and ``GridSearchCV`` work).

Shared behaviour:

* **dtype.** ``float32`` input is fitted in ``float32`` and ``float64`` input in
  ``float64`` (inside ``jax.enable_x64(True)``, so it is really 64-bit even when
  JAX's global default is 32-bit). Any other input (integers, booleans, numeric
  objects) is converted to ``float64`` first, like ``sklearn.utils.check_array``
  does. ``components_`` has the fitted dtype, and ``transform`` returns the dtype of
  its (validated) input.
* **Stopping.** ``max_iter`` caps the optimizer updates; ``tol`` is the relative
  loss-change tolerance of :func:`metricjax.fit`, ``tol=None`` meaning
  :data:`DEFAULT_TOL` (``1e-6``). A fit that stops at ``max_iter`` warns with
  ``sklearn.exceptions.ConvergenceWarning``.
* **Compilation.** The estimators run the loop of :func:`metricjax.fit` (same
  stopping rules, same results), with the compiled program cached per loss
  configuration, optimizer, ``tol``, data shape and dtype: refitting on data of the
  same shape (cross-validation folds of equal size, repeated fits, a grid over
  ``max_iter`` or over ``init``) does not recompile. Compilation takes about a
  second, far more than the whole optimisation on small data sets, so small
  problems (``n_samples**2 * (n_features + n_components) <= 2**21``) are compiled on
  the CPU with cheaper XLA settings: 2-3x faster to compile, slower per iteration,
  equal up to rounding.
* **Failure.** A ``fit`` that raises leaves the estimator exactly as it was (a
  previously fitted model stays usable).

This module needs scikit-learn (``pip install "metricjax[sklearn]"``).
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np

try:
    from sklearn.base import (
        BaseEstimator,
        ClassNamePrefixFeaturesOutMixin,
        RegressorMixin,
        TransformerMixin,
    )
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        'metricjax.estimators needs scikit-learn; install it with pip install "metricjax[sklearn]"'
    ) from err

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - scikit-learn < 1.6

    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


# _default_optimizer: the one shared optax.lbfgs() instance of metricjax.fit
from metricjax._train import FitResult, _default_optimizer, make_loop

__all__ = ["MLKR", "NCA", "LMNN", "DEFAULT_TOL"]

#: Relative loss-change tolerance used when an estimator has ``tol=None``.
DEFAULT_TOL = 1e-6

# Gradient-norm tolerance of the loop (the default of :func:`metricjax.fit`).
_GTOL = 1e-7

_INIT_OPTIONS = ("auto", "pca", "lda", "identity", "random")
_FLOAT_DTYPES = (np.float64, np.float32)


# ----------------------------------------------------------------------------------
# compiled optimisation loop, cached per configuration
# ----------------------------------------------------------------------------------
def _make_loss(spec):
    """The loss ``f(L, *args)`` described by the hashable ``spec``."""
    kind, opts = spec[0], dict(spec[1:])
    if kind == "mlkr":
        from metricjax.losses import mlkr_loss

        return lambda L, x, y: mlkr_loss(L, x, y, block_size=opts["block_size"])
    if kind == "nca":
        from metricjax.losses import nca_loss

        return lambda L, x, codes: nca_loss(
            L, x, codes, num_classes=opts["num_classes"], block_size=opts["block_size"]
        )
    if kind == "lmnn":
        from metricjax.losses import lmnn_loss

        return lambda L, x, codes, tn: lmnn_loss(
            L,
            x,
            codes,
            target_neighbors=tn,
            push_weight=opts["push_weight"],
            margin=opts["margin"],
            block_size=opts["block_size"],
        )
    raise ValueError(f"unknown loss {kind!r}")  # pragma: no cover


# Small problems on the CPU: compiling the loop (L-BFGS with its zoom line search)
# takes about a second while the whole optimisation runs in milliseconds, so those
# are compiled with cheaper XLA settings (2-3x faster compilation, iterations about
# 2x slower; results differ from the default settings by rounding only).
# "Small": n_samples**2 * (n_features + n_components) up to this bound.
_FAST_COMPILE_MAX_WORK = 2**21
_FAST_COMPILE_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}


@functools.cache
def _fast_compile_options():
    """The options of :data:`_FAST_COMPILE_OPTIONS` this XLA accepts (probed once)."""
    accepted = {}
    for name, value in _FAST_COMPILE_OPTIONS.items():
        try:
            probe = jax.jit(lambda a: a + 1, compiler_options={name: value})
            probe.lower(np.zeros((), np.float32)).compile()
        except Exception:  # an XLA without this debug option: leave it out
            continue
        accepted[name] = value
    return tuple(sorted(accepted.items()))


def _dtype_of(a):
    """The dtype of an array or list, without converting other containers."""
    dt = getattr(a, "dtype", None)
    if dt is None and isinstance(a, (list, tuple)):
        dt = np.asarray(a).dtype
    return np.dtype(dt) if isinstance(dt, np.dtype) else None


def _refuse_complex(a, name: str) -> None:
    """scikit-learn's message for complex input does not say which argument it was."""
    dt = _dtype_of(a)
    if dt is not None and dt.kind == "c":
        raise ValueError(f"Complex data not supported: `{name}` has a complex dtype")


def _numeric_targets(y, estimator: str):
    """Regression targets as numbers, with an error naming ``y`` otherwise."""
    dt = _dtype_of(y)
    if dt is not None and dt.kind in "USO":
        arr = np.asarray(y)
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{estimator} needs numeric regression targets `y`; got values of dtype "
                f"{np.asarray(y).dtype} that are not numbers"
            ) from err
        return arr
    return y


def _history_capacity(max_iter: int) -> int:
    """Length of the loss-history buffer: ``max_iter`` rounded up (at least 1024).

    The loop stops at ``max_iter`` (a traced argument), so every ``max_iter`` up to
    the capacity shares one compiled program.
    """
    return max(1024, 1 << (max_iter - 1).bit_length())


def _build_loop(spec, optimizer, capacity: int, tol: float, options):
    init, run = make_loop(_make_loss(spec), optimizer, max_iter=capacity, tol=tol, gtol=_GTOL)

    def oneshot(params, stop_at, *args):
        return run(init(params, *args), stop_at, *args)

    def chunk(carry, stop_at, *args):
        return run(carry, stop_at, *args)

    opts = dict(options) if options else None
    return tuple(jax.jit(f, compiler_options=opts) for f in (init, chunk, oneshot))


_cached_loop = functools.lru_cache(maxsize=32)(_build_loop)


def _compile_options(params, x):
    """XLA options for this problem: the quick-compile set for small CPU problems."""
    n, d = x.shape
    if n * n * (d + params.shape[0]) > _FAST_COMPILE_MAX_WORK or jax.default_backend() != "cpu":
        return ()
    return _fast_compile_options()


def _minimize(spec, params, args, *, optimizer, max_iter: int, tol: float, verbose: bool):
    """:func:`metricjax.fit` with the compiled loop reused across fits.

    Same loop (:func:`metricjax._train.make_loop`), same stopping rules and same
    result as ``metricjax.fit(loss, params, *args, optimizer=..., max_iter=...,
    tol=...)``; the differences are that the jitted program is cached (refitting on
    same-shaped data skips compilation, for any ``max_iter`` up to the history
    capacity) and that small problems are compiled with cheaper XLA settings.
    """
    opt = _default_optimizer() if optimizer is None else optimizer
    capacity = _history_capacity(max_iter)
    options = _compile_options(params, args[0])
    try:
        hash(opt)
    except TypeError:  # an unhashable optimizer: build (and compile) afresh
        build = _build_loop
    else:
        build = _cached_loop
    init, run, oneshot = build(spec, opt, capacity, tol, options)
    if verbose:
        from metricjax._train import _progress

        carry = init(params, *args)
        _check_initial_loss(carry.loss)
        bar = _progress(max_iter)
        step = max(1, max_iter // 100)
        done = 0
        try:
            while done < max_iter and not bool(carry.converged):
                carry = run(carry, jnp.int32(min(done + step, max_iter)), *args)
                it = int(carry.it)
                bar.update(it - done)
                bar.set_postfix(loss=f"{float(carry.loss):.6g}")
                done = it
        finally:
            bar.close()
    else:
        carry = oneshot(params, jnp.int32(max_iter), *args)
        _check_initial_loss(carry.history[0])
    n_iter = int(carry.it)
    hist = np.asarray(carry.history[: n_iter + 1])
    import optax

    gnorm = float(optax.tree.norm(carry.grad))
    return FitResult(carry.params, hist, n_iter, bool(carry.converged), gnorm, carry.opt_state)


# Mini-batch mode (batch_size set): the loss function per spec is cached so that
# fit_minibatch's compiled loop is reused across fits.
_loss_of_spec = functools.lru_cache(maxsize=32)(_make_loss)


def _minimize_minibatch(spec, params, args, *, optimizer, num_steps, batch_size, seed, verbose):
    """:func:`metricjax.fit_minibatch` for the estimators (default ``optax.adam(1e-2)``)."""
    from metricjax._train import fit_minibatch

    res = fit_minibatch(
        _loss_of_spec(spec),
        params,
        *args,
        batch_size=batch_size,
        key=jax.random.key(seed),
        optimizer=optimizer,
        num_steps=num_steps,
        verbose=verbose,
    )
    _check_initial_loss(res.loss_history[0])
    # no convergence test in stochastic mode: converged is False, grad_norm unknown
    return FitResult(
        res.params, res.loss_history, res.num_steps, False, float("nan"), res.opt_state
    )


def _check_initial_loss(loss) -> None:
    if not bool(jnp.isfinite(loss)):
        raise FloatingPointError(
            f"the loss at the initial transformation is not finite ({float(loss)}); "
            "scale the features (e.g. with StandardScaler) or choose another `init`"
        )


# ----------------------------------------------------------------------------------
# parameter checks
# ----------------------------------------------------------------------------------
def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"`{name}` must be >= {low}, got {value}")
    return int(value)


def _check_real(value, name: str, low: float, high: float = np.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    v = float(value)
    if not (low <= v <= high):
        raise ValueError(f"`{name}` must lie in [{low}, {high}], got {value}")
    return v


def _check_block_size(value):
    if value is None or (isinstance(value, str) and value == "auto"):
        return "auto"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`block_size` must be a positive int, 'auto' or None, got {value!r}")
    return int(value)


def _check_optimizer(value):
    if value is None:
        return None
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        raise TypeError(
            "`optimizer` must be None or an optax.GradientTransformation "
            f"(with init and update), got {type(value).__name__}"
        )
    return value


# ----------------------------------------------------------------------------------
# shared base class
# ----------------------------------------------------------------------------------
class _MetricLearner(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared machinery of the Mahalanobis metric learners (not public).

    Subclasses define ``__init__`` (storing hyperparameters only), ``_classification``
    and ``_objective``, which returns the loss spec, the extra loss arguments and the
    extra fitted attributes.
    """

    _classification = True

    # -- tags --------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def _n_features_out(self):
        # For get_feature_names_out: "<classname><i>" for i < n_components.
        return self.components_.shape[0]

    # -- fitting -------------------------------------------------------------------
    def fit(self, X, y):
        """Learn the linear map ``components_`` from ``X`` and ``y``.

        Args:
            X: training inputs, array-like of shape ``(n_samples, n_features)``,
                finite, at least 2 samples.
            y: shape ``(n_samples,)``: real targets (MLKR) or class labels of any
                type (NCA, LMNN; at least 2 classes).

        Returns:
            The fitted estimator (``self``).

        Raises:
            ValueError: invalid inputs or hyperparameters. The estimator is left
                unchanged by any exception raised here.
        """
        saved = dict(self.__dict__)  # validate_data sets n_features_in_ early
        try:
            fitted = self._fit(X, y)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        for name, value in fitted.items():
            setattr(self, name, value)
        return self

    def _fit(self, X, y):
        max_iter = _check_int(self.max_iter, "max_iter", 1)
        tol = DEFAULT_TOL if self.tol is None else _check_real(self.tol, "tol", 0.0)
        optimizer = _check_optimizer(self.optimizer)
        batch_size = getattr(self, "batch_size", None)  # MLKR and NCA only
        if batch_size is not None:
            batch_size = _check_int(batch_size, "batch_size", 2)
        _refuse_complex(X, "X")
        if not self._classification:
            y = _numeric_targets(y, type(self).__name__)
        X, y = _validate_data(
            self,
            X,
            y,
            dtype=list(_FLOAT_DTYPES),
            ensure_min_samples=2,
            y_numeric=not self._classification,
        )
        n_samples, n_features = X.shape
        dtype = X.dtype
        extra = {}
        if self._classification:
            check_classification_targets(y)
            classes, codes = np.unique(y, return_inverse=True)
            codes = codes.reshape(-1).astype(np.int32)
            if len(classes) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes; got 1 class"
                )
            extra["classes_"] = classes
            target = codes
        else:
            target = np.asarray(y, dtype=dtype)
        spec, args, more = self._objective(X, target, extra.get("classes_"))
        extra.update(more)
        params = self._initial_components(X, target, n_features, n_samples)
        x64 = jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()
        with x64:
            data = (jnp.asarray(X), *(jnp.asarray(a) for a in args))
            if batch_size is None:
                res = _minimize(
                    spec,
                    jnp.asarray(params, dtype),
                    data,
                    optimizer=optimizer,
                    max_iter=max_iter,
                    tol=tol,
                    verbose=bool(self.verbose),
                )
            else:
                res = _minimize_minibatch(
                    spec,
                    jnp.asarray(params, dtype),
                    data,
                    optimizer=optimizer,
                    num_steps=max_iter,
                    batch_size=batch_size,
                    seed=int(check_random_state(self.random_state).randint(2**31 - 1)),
                    verbose=bool(self.verbose),
                )
            components = np.array(res.params, dtype=dtype)
            history = np.array(res.loss_history)
        if not np.all(np.isfinite(components)):  # pragma: no cover - refused steps
            raise FloatingPointError("the fit produced a non-finite transformation")
        if not res.converged and batch_size is None:
            warnings.warn(
                f"{type(self).__name__} did not converge within max_iter={max_iter} "
                f"iterations (tol={tol:g}); increase max_iter, or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        return {
            "components_": components,
            "n_iter_": res.num_iter,
            "loss_history_": history,
            "converged_": res.converged,
            **extra,
        }

    def _initial_components(self, X, target, n_features: int, n_samples: int):
        init = self.init
        n_components = self.n_components
        if n_components is not None:
            if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
                raise TypeError(f"`n_components` must be an int or None, got {n_components!r}")
            if not 1 <= n_components <= n_features:
                raise ValueError(
                    f"`n_components` must lie in [1, n_features] = [1, {n_features}], "
                    f"got {n_components}"
                )
            n_components = int(n_components)

        if not isinstance(init, str):
            arr = np.asarray(init)
            want = f"({'n_components' if n_components is None else n_components}, {n_features})"
            if arr.ndim != 2 or arr.dtype.kind not in "biuf":
                raise ValueError(
                    f"`init` must be one of {_INIT_OPTIONS} or a real array of shape "
                    f"(n_components, n_features) = {want}, got "
                    f"{'shape ' + str(arr.shape) if arr.dtype.kind in 'biuf' else repr(init)}"
                )
            rows_ok = (
                1 <= arr.shape[0] <= n_features
                if n_components is None
                else arr.shape[0] == n_components
            )
            if arr.shape[1] != n_features or not rows_ok:
                raise ValueError(
                    f"`init` must have shape (n_components, n_features) = {want}"
                    + (" with n_components <= n_features" if n_components is None else "")
                    + f", got {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError("`init` contains NaN or inf")
            return np.array(arr, dtype=X.dtype)

        if init not in _INIT_OPTIONS or (init == "lda" and not self._classification):
            allowed = [o for o in _INIT_OPTIONS if self._classification or o != "lda"]
            raise ValueError(
                f"`init` must be one of {tuple(allowed)} or an array of shape "
                f"(n_components, n_features), got {init!r}"
            )
        k = n_features if n_components is None else n_components
        n_classes = int(target.max()) + 1 if self._classification else 0
        if init == "auto":
            if self._classification and k <= min(n_features, n_classes - 1):
                init = "lda"
            elif k < min(n_features, n_samples):
                init = "pca"
            else:
                init = "identity"
        if init == "identity":
            out = np.eye(k, n_features)
        elif init == "random":
            out = check_random_state(self.random_state).standard_normal((k, n_features))
        elif init == "pca":
            if k > min(n_samples, n_features):
                raise ValueError(
                    f"init='pca' needs n_components <= min(n_samples, n_features) = "
                    f"{min(n_samples, n_features)}, got n_components={k}"
                )
            pca = PCA(n_components=k, random_state=check_random_state(self.random_state))
            out = pca.fit(X).components_
        else:  # lda
            if k > min(n_features, n_classes - 1):
                raise ValueError(
                    f"init='lda' needs n_components <= min(n_features, n_classes - 1) = "
                    f"{min(n_features, n_classes - 1)}, got n_components={k}"
                )
            lda = LinearDiscriminantAnalysis(n_components=k).fit(X, target)
            out = lda.scalings_.T[:k]
            if out.shape[0] < k:  # rank-deficient within-class scatter
                out = np.vstack([out, np.eye(k, n_features)[out.shape[0] :]])
        return np.array(out, dtype=X.dtype)

    # -- using the learned metric ----------------------------------------------------
    def transform(self, X):
        """Embed ``X`` with the learned map: ``X @ components_.T``.

        Args:
            X: array-like of shape ``(n_samples, n_features)``.

        Returns:
            Array of shape ``(n_samples, n_components)``, in the dtype of ``X``
            (``float64`` for non-float input).
        """
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=list(_FLOAT_DTYPES))
        return X @ self.components_.T.astype(X.dtype, copy=False)

    def get_mahalanobis_matrix(self):
        r"""The learned Mahalanobis matrix :math:`M = L^\top L`.

        Returns:
            Array of shape ``(n_features, n_features)`` (a new copy).
        """
        check_is_fitted(self)
        return self.components_.T @ self.components_

    def get_metric(self):
        r"""A function computing the learned distance between two points.

        The function is independent of the estimator (refitting the estimator does not
        change it) and can be passed as ``metric=`` to scikit-learn's neighbours
        estimators, e.g. ``KNeighborsClassifier(metric=est.get_metric())``.

        Returns:
            ``metric_fun(u, v, squared=False)``: for 1-D arrays ``u`` and ``v`` of length
            ``n_features``, :math:`\lVert L(u - v)\rVert` (its square with
            ``squared=True``) as a float.
        """
        check_is_fitted(self)
        components_t = self.components_.T.copy()
        n_features = components_t.shape[0]

        def metric_fun(u, v, squared=False):
            """Learned distance between the points ``u`` and ``v`` (1-D, n_features)."""
            u = np.asarray(u, dtype=np.float64)
            v = np.asarray(v, dtype=np.float64)
            if u.ndim != 1 or v.ndim != 1 or u.shape != (n_features,) or v.shape != u.shape:
                raise ValueError(
                    f"u and v must be 1-D arrays of length {n_features}, got shapes "
                    f"{u.shape} and {v.shape}"
                )
            diff = (u - v) @ components_t
            dist = float(diff @ diff)
            return dist if squared else float(np.sqrt(dist))

        return metric_fun


_COMMON_ARGS = """
        n_components: dimension of the embedding (rows of ``components_``); ``None``
            means ``n_features`` (or the number of rows of an array ``init``). Must lie
            in ``[1, n_features]``.
        init: initial transformation. ``"auto"`` (metric-learn's rule): ``"lda"`` if
            the targets are classes and ``n_components <= min(n_features, n_classes -
            1)``, else ``"pca"`` if ``n_components < min(n_features, n_samples)``, else
            ``"identity"``. ``"pca"``: the leading principal axes of ``X``
            (``sklearn.decomposition.PCA``). ``"lda"`` (classification only): the
            leading discriminant directions
            (``sklearn.discriminant_analysis.LinearDiscriminantAnalysis``; needs
            ``n_components <= min(n_features, n_classes - 1)``). ``"identity"``: the
            first ``n_components`` rows of the identity. ``"random"``: standard normal
            entries drawn from ``random_state``. Or an array of shape
            ``(n_components, n_features)`` (copied, never modified).
        max_iter: maximum number of optimizer updates.
        tol: relative loss-change tolerance of :func:`metricjax.fit`: the fit stops
            when :math:`|f_k - f_{k+1}| \\le \\mathrm{tol} \\cdot \\max(|f_k|,
            |f_{k+1}|, 1)` (or when the gradient norm falls below ``1e-7``, as in
            :func:`metricjax.fit`); ``None`` means :data:`DEFAULT_TOL` (``1e-6``).
        optimizer: any ``optax.GradientTransformation``; ``None`` means
            ``optax.lbfgs()`` (full-batch L-BFGS with a zoom line search).
        random_state: seed or ``numpy.random.RandomState`` for ``init="random"`` and
            ``init="pca"``. The same ``random_state`` gives identical results.
        verbose: show a ``tqdm`` progress bar with the current loss.
"""

_COMMON_ATTRS = """
        components_: the learned map :math:`L`, shape ``(n_components, n_features)``,
            in the fitted dtype.
        n_iter_: number of optimizer updates performed.
        loss_history_: loss at the start of every update, then the final loss;
            shape ``(n_iter_ + 1,)``.
        converged_: whether the tolerance test stopped the fit before ``max_iter``.
        n_features_in_: number of features seen during ``fit``.
        feature_names_in_: feature names seen during ``fit`` (only for inputs with
            string column names).
"""


# ----------------------------------------------------------------------------------
# MLKR
# ----------------------------------------------------------------------------------
class MLKR(RegressorMixin, _MetricLearner):
    __doc__ = (
        r"""Metric Learning for Kernel Regression (MLKR).

    Learns :math:`L` minimising the leave-one-out Nadaraya--Watson regression error
    with the Gaussian kernel :math:`k(x, x') = \exp(-\lVert Lx - Lx'\rVert^2)`
    (:func:`metricjax.losses.mlkr_loss`):

    .. math::
        \ell(L) = \sum_i (\hat y_i - y_i)^2, \qquad
        \hat y_i = \frac{\sum_{j \ne i} k(x_i, x_j)\, y_j}{\sum_{j \ne i} k(x_i, x_j)}.

    Besides ``transform`` (a supervised dimensionality reduction), the estimator is
    a regressor: :meth:`predict` is kernel regression against the training data with
    the learned metric, and ``score`` its :math:`R^2`. Since the kernel has unit
    bandwidth, the scale of ``X`` matters for the initial transformation: standardise
    the features (e.g. ``Pipeline([StandardScaler(), MLKR()])``).

    Args:"""
        + _COMMON_ARGS
        + r"""        block_size: rows of the pairwise matrix processed at a time by the loss
            (``"auto"``: dense up to a 32 MiB working set, else row blocks of 128 to 1024;
            see :func:`metricjax.losses.mlkr_loss`).
        batch_size: ``None`` (default): full-batch optimisation. An int ``>= 2``:
            mini-batch mode (:func:`metricjax.fit_minibatch`): each of ``max_iter``
            steps takes the loss and gradient on ``batch_size`` random rows (fresh
            permutation per epoch, drawn from ``random_state``), with ``optimizer``
            (default ``optax.adam(1e-2)``; pass e.g. ``optax.adam(3e-3)`` to change
            the learning rate). No convergence test: exactly ``max_iter`` steps,
            ``converged_`` is ``False`` and no ``ConvergenceWarning``;
            ``loss_history_`` holds the ``max_iter`` batch losses. For data too large
            for ``O(n^2)`` work per step (``docs/scaling.md``).

    Attributes:"""
        + _COMMON_ATTRS
        + r"""        X_train_: training inputs used by :meth:`predict`.
        y_train_: training targets used by :meth:`predict`.

    References:
        K. Q. Weinberger and G. Tesauro, `Metric Learning for Kernel Regression
        <https://proceedings.mlr.press/v2/weinberger07a.html>`_, AISTATS 2007.

    Examples:
        >>> from sklearn.datasets import load_diabetes
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import StandardScaler
        >>> from metricjax.estimators import MLKR
        >>> X, y = load_diabetes(return_X_y=True)
        >>> model = make_pipeline(StandardScaler(), MLKR(n_components=2))
        >>> model = model.fit(X, y / y.std())
        >>> model.transform(X).shape
        (442, 2)
        >>> bool(model.score(X, y / y.std()) > 0.3)
        True
    """
    )

    _classification = False

    def __init__(
        self,
        n_components=None,
        *,
        init="auto",
        max_iter=1000,
        tol=None,
        optimizer=None,
        random_state=None,
        verbose=False,
        block_size="auto",
        batch_size=None,
    ):
        self.n_components = n_components
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.optimizer = optimizer
        self.random_state = random_state
        self.verbose = verbose
        self.block_size = block_size
        self.batch_size = batch_size

    def _objective(self, X, y, classes):
        spec = ("mlkr", ("block_size", _check_block_size(self.block_size)))
        # copies of the (validated) training data, for predict
        return spec, (y,), {"X_train_": np.array(X), "y_train_": np.array(y)}

    def predict(self, X):
        r"""Kernel-regression prediction with the learned metric.

        :math:`\hat y(x) = \sum_j k(x, x_j) y_j / \sum_j k(x, x_j)` over the training
        points :math:`x_j` (all of them: a training point queried again gets its own
        weight, unlike the leave-one-out estimate minimised by ``fit``), with
        :math:`k(x, x') = \exp(-\lVert Lx - Lx'\rVert^2)`. Computed in NumPy in blocks
        of queries, with the softmax max-shifted (no underflow to 0/0).

        Args:
            X: array-like of shape ``(n_queries, n_features)``.

        Returns:
            Predictions, shape ``(n_queries,)``.
        """
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=list(_FLOAT_DTYPES))
        dt = np.result_type(X.dtype, self.components_.dtype)
        L = self.components_.astype(dt, copy=False)
        z_train = self.X_train_.astype(dt, copy=False) @ L.T
        mu = z_train.mean(axis=0)
        z_train = z_train - mu  # centre: better conditioned norm expansion
        sq_train = np.einsum("ij,ij->i", z_train, z_train)
        y_train = self.y_train_.astype(dt, copy=False)
        out = np.empty(X.shape[0], dtype=dt)
        step = max(1, (2**22) // max(1, z_train.shape[0]))  # ~32 MiB per block
        for s in range(0, X.shape[0], step):
            zq = X[s : s + step].astype(dt, copy=False) @ L.T - mu
            d = np.einsum("ij,ij->i", zq, zq)[:, None] + sq_train[None, :] - 2 * (zq @ z_train.T)
            d = np.maximum(d, 0)
            w = np.exp(-(d - d.min(axis=1, keepdims=True)))
            out[s : s + step] = (w @ y_train) / w.sum(axis=1)
        return out


# ----------------------------------------------------------------------------------
# NCA
# ----------------------------------------------------------------------------------
class NCA(_MetricLearner):
    __doc__ = (
        r"""Neighbourhood Components Analysis (NCA).

    Learns :math:`L` maximising the expected number of points correctly classified
    by a stochastic nearest-neighbour rule in the embedding
    (:func:`metricjax.losses.nca_loss`):

    .. math::
        \ell(L) = -\sum_i \sum_{j:\, c_j = c_i} p_{ij}, \qquad
        p_{ij} = \frac{\exp(-\lVert Lx_i - Lx_j\rVert^2)}
                      {\sum_{l \ne i} \exp(-\lVert Lx_i - Lx_l\rVert^2)}, \quad p_{ii} = 0.

    A transformer like metric-learn's ``NCA``: use :meth:`transform` (or
    :meth:`get_metric`) with a nearest-neighbour classifier.

    Args:"""
        + _COMMON_ARGS
        + r"""        block_size: rows of the pairwise matrix processed at a time by the loss
            (see :func:`metricjax.losses.nca_loss`).
        batch_size: ``None`` (default): full-batch optimisation. An int ``>= 2``:
            mini-batch mode (:func:`metricjax.fit_minibatch`): each of ``max_iter``
            steps takes the loss and gradient on ``batch_size`` random rows (fresh
            permutation per epoch, drawn from ``random_state``), with ``optimizer``
            (default ``optax.adam(1e-2)``; pass e.g. ``optax.adam(3e-3)`` to change
            the learning rate). No convergence test: exactly ``max_iter`` steps,
            ``converged_`` is ``False`` and no ``ConvergenceWarning``;
            ``loss_history_`` holds the ``max_iter`` batch losses. For data too large
            for ``O(n^2)`` work per step (``docs/scaling.md``).

    Attributes:"""
        + _COMMON_ATTRS
        + r"""        classes_: the class labels, sorted.

    References:
        J. Goldberger, S. Roweis, G. Hinton and R. Salakhutdinov, `Neighbourhood
        Components Analysis <https://papers.nips.cc/paper/2566>`_, NIPS 2004.

    Examples:
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.neighbors import KNeighborsClassifier
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import StandardScaler
        >>> from metricjax.estimators import NCA
        >>> X, y = load_iris(return_X_y=True)
        >>> nca = make_pipeline(StandardScaler(), NCA(n_components=2, random_state=0))
        >>> nca.fit_transform(X, y).shape
        (150, 2)
        >>> knn = make_pipeline(nca, KNeighborsClassifier(n_neighbors=3)).fit(X, y)
        >>> bool(knn.score(X, y) > 0.9)
        True
    """
    )

    def __init__(
        self,
        n_components=None,
        *,
        init="auto",
        max_iter=1000,
        tol=None,
        optimizer=None,
        random_state=None,
        verbose=False,
        block_size="auto",
        batch_size=None,
    ):
        self.n_components = n_components
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.optimizer = optimizer
        self.random_state = random_state
        self.verbose = verbose
        self.block_size = block_size
        self.batch_size = batch_size

    def _objective(self, X, codes, classes):
        spec = (
            "nca",
            ("block_size", _check_block_size(self.block_size)),
            ("num_classes", int(codes.max()) + 1),
        )
        return spec, (codes,), {}


# ----------------------------------------------------------------------------------
# LMNN
# ----------------------------------------------------------------------------------
class LMNN(_MetricLearner):
    __doc__ = (
        r"""Large Margin Nearest Neighbor metric learning (LMNN).

    Learns :math:`L` pulling every point's target neighbours (its ``n_neighbors``
    nearest same-class points in the input space, fixed during the fit) close and
    pushing differently labelled points ("impostors") out by a margin
    (:func:`metricjax.losses.lmnn_loss`):

    .. math::
        \ell(L) = (1 - \mu) \sum_i \sum_{j \in N_i} D_{ij}
        + \mu \sum_i \sum_{j \in N_i} \sum_{l:\, c_l \ne c_i}
          \bigl[\, m + D_{ij} - D_{il} \,\bigr]_+ ,
        \qquad D_{ij} = \lVert Lx_i - Lx_j \rVert^2.

    A transformer like metric-learn's ``LMNN``. The loss is piecewise smooth (a
    hinge, with subgradient 0 at the kink); the default L-BFGS is used as for the
    smooth losses.

    **Small classes.** Every point needs ``n_neighbors`` other points of its class.
    If the smallest class has ``m <= n_neighbors`` members, the fit uses
    ``m - 1`` target neighbours (with a ``UserWarning``) and records the value used
    in ``n_neighbors_``. A class with a single member has no target neighbour at
    all and is refused (``ValueError``).

    Args:"""
        + _COMMON_ARGS
        + r"""        n_neighbors: number of target neighbours :math:`k` per point.
        push_weight: :math:`\mu \in [0, 1]`, weight of the impostor (push) term;
            ``1 - push_weight`` weighs the pull term (metric-learn's
            ``regularization`` is ``1 - push_weight``).
        margin: :math:`m \ge 0`, the margin of the hinge.
        block_size: rows processed at a time by the loss (see
            :func:`metricjax.losses.lmnn_loss`).

    Attributes:"""
        + _COMMON_ATTRS
        + r"""        classes_: the class labels, sorted.
        n_neighbors_: the number of target neighbours actually used.
        target_neighbors_: ``(n_samples, n_neighbors_)`` indices of the target
            neighbours of the training points.

    References:
        K. Q. Weinberger and L. K. Saul, `Distance Metric Learning for Large Margin
        Nearest Neighbor Classification <https://jmlr.org/papers/v10/weinberger09a.html>`_,
        JMLR 10, 2009.

    Examples:
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.neighbors import KNeighborsClassifier
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import StandardScaler
        >>> from metricjax.estimators import LMNN
        >>> X, y = load_iris(return_X_y=True)
        >>> lmnn = make_pipeline(StandardScaler(), LMNN(n_neighbors=3, max_iter=200))
        >>> knn = make_pipeline(lmnn, KNeighborsClassifier(n_neighbors=3)).fit(X, y)
        >>> bool(knn.score(X, y) > 0.9)
        True
    """
    )

    def __init__(
        self,
        n_components=None,
        *,
        init="auto",
        n_neighbors=3,
        push_weight=0.5,
        margin=1.0,
        max_iter=1000,
        tol=None,
        optimizer=None,
        random_state=None,
        verbose=False,
        block_size="auto",
    ):
        self.n_components = n_components
        self.init = init
        self.n_neighbors = n_neighbors
        self.push_weight = push_weight
        self.margin = margin
        self.max_iter = max_iter
        self.tol = tol
        self.optimizer = optimizer
        self.random_state = random_state
        self.verbose = verbose
        self.block_size = block_size

    def _objective(self, X, codes, classes):
        from metricjax.losses import lmnn_target_neighbors

        k = _check_int(self.n_neighbors, "n_neighbors", 1)
        push_weight = _check_real(self.push_weight, "push_weight", 0.0, 1.0)
        margin = _check_real(self.margin, "margin", 0.0)
        counts = np.bincount(codes)
        smallest = int(counts.min())
        if smallest < 2:
            label = classes[int(np.argmin(counts))]
            label = label.item() if hasattr(label, "item") else label
            raise ValueError(
                f"LMNN needs at least 2 samples in every class (each point needs a target "
                f"neighbour of its own class), but class {label!r} has 1 sample"
            )
        if k > smallest - 1:
            warnings.warn(
                f"n_neighbors={k} is too large for the smallest class ({smallest} samples); "
                f"using n_neighbors={smallest - 1}",
                UserWarning,
                stacklevel=4,
            )
            k = smallest - 1
        tn = np.asarray(lmnn_target_neighbors(X, codes, k), dtype=np.int32)
        spec = (
            "lmnn",
            ("block_size", _check_block_size(self.block_size)),
            ("margin", margin),
            ("push_weight", push_weight),
        )
        return spec, (codes, tn), {"n_neighbors_": k, "target_neighbors_": tn}
