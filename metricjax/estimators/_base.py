r"""The shared base of the estimators: metric-learn's Mahalanobis contract on scikit-learn.

:class:`MahalanobisLearner` is what every metricjax estimator is: it holds a learned
linear map :math:`L` (``components_``, shape ``(n_components, n_features)``) and offers
metric-learn 0.7's API around it — ``transform``, ``get_mahalanobis_matrix``,
``get_metric``, ``pair_distance`` / ``pair_score`` (and the deprecated
``score_pairs``) — with metric-learn's ``preprocessor`` (points or tuples given as
indices). The learned (squared) distance is :math:`d(x, x')^2 = \lVert Lx - Lx'\rVert^2
= (x - x')^\top L^\top L (x - x')`.

:class:`SupervisedLearner` adds ``fit(X, y)`` by minimising a loss of
:mod:`metricjax.losses` with :func:`metricjax.fit` (or :func:`metricjax.fit_minibatch`),
shared by MLKR, NCA and LMNN. Shared behaviour:

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
* **Compilation.** :func:`metricjax.fit` caches the compiled loop per loss
  configuration, optimizer, ``tol``, data shape and dtype: refitting on data of the
  same shape (cross-validation folds of equal size, repeated fits, a grid over
  ``max_iter`` or over ``init``) does not recompile.
* **Failure.** A ``fit`` that raises leaves the estimator exactly as it was (a
  previously fitted model stays usable).
"""

import contextlib
import functools
import numbers
import sys
import time
import warnings

import jax
import numpy as np
import scipy.spatial.distance

try:
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
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


from metricjax import _checks
from metricjax._checks import error_with_note
from metricjax._host import member_difference
from metricjax._train import fit as _fit
from metricjax._train import fit_minibatch as _fit_minibatch
from metricjax._train import resolve_optimizer
from metricjax.exceptions import InvalidParameterError, PreprocessorError

#: Relative loss-change tolerance used when an estimator has ``tol=None``.
DEFAULT_TOL = 1e-6

_INIT_OPTIONS = ("auto", "pca", "identity", "random", "lda")  # metric-learn's order
FLOAT_DTYPES = (np.float64, np.float32)


_SCALE_ROWS = 1000  # rows used to measure the data's median pairwise distance


def median_sq_distance(z, weight=None) -> float:
    """Median squared pairwise distance of (at most 1000 evenly spaced) rows of ``z``.

    Every ``ceil(n / 1000)``-th row; the squared distances of the pairs ``i < j`` by
    ``scipy.spatial.distance.pdist`` (differences squared: accurate far from the origin,
    and 3x faster than the Gram-matrix form at 750 rows, where an MLKR fit in a
    ``GridSearchCV`` spent a quarter of its time here).

    The data's scale for the unit-bandwidth kernels of MLKR and NCA: their initial map
    is divided by its square root, so that ``fit(X * c)`` starts from ``L0 / c``. With
    ``weight`` (positive sample weights, one per row, counts of copies) it is the
    weighted median, pair :math:`(i, j)` counting :math:`s_i s_j` times and the copies
    of row :math:`i` adding :math:`s_i (s_i - 1) / 2` pairs at distance 0 (for
    :math:`s_i > 1`): the median of the data with each row repeated :math:`s_i` times.
    """
    z = np.asarray(z, np.float64)
    step = -(-len(z) // _SCALE_ROWS)  # ceil: at most _SCALE_ROWS rows
    z = z[::step]
    # the pairs i < j in row-major order, each distance as a sum of squared differences
    # (no cancellation, unlike |a|^2 + |b|^2 - 2 a.b), without an (m, m) matrix
    d = scipy.spatial.distance.pdist(z, "sqeuclidean")
    if weight is None:
        med = _median(d)
    else:
        w = np.asarray(weight, np.float64)[::step]
        pair_w = np.outer(w, w)[np.triu_indices(len(z), 1)]
        copies = float(np.sum(np.maximum(w * (w - 1), 0))) / 2
        if copies > 0:  # the pairs of copies of one row, at distance 0
            d, pair_w = np.append(d, 0.0), np.append(pair_w, copies)
        med = weighted_median(d, pair_w)
    return med if med > 0 else 1.0


def _median(values: np.ndarray) -> float:
    """``np.median`` of finite ``values`` (the same number), from one partition: ``np.median``
    partitions around both middle ranks and scans for NaN, 5x slower at 500,000 values."""
    m = values.size
    a = np.partition(values, m // 2)
    if m % 2:
        return float(a[m // 2])
    return float(np.mean([a[: m // 2].max(), a[m // 2]]))


def weighted_median(values, weights) -> float:
    """The median of ``values`` counted with (positive) ``weights``.

    The smallest value whose cumulative weight reaches half the total; the mean of it
    and the next value when the half is reached exactly (``np.median`` for equal
    weights).
    """
    order = np.argsort(values, kind="stable")
    v, c = np.asarray(values)[order], np.cumsum(np.asarray(weights)[order])
    half = 0.5 * c[-1]
    i = int(np.searchsorted(c, half))
    if i + 1 < len(v) and np.isclose(c[i], half, rtol=1e-12, atol=0):
        return float(0.5 * (v[i] + v[i + 1]))
    return float(v[i])


def check_sample_weight(sample_weight, n: int):
    """``sample_weight`` of a fit as ``float64`` ``(n,)``, or ``None``; errors name it.

    Finite, ``>= 0``, at least two positive weights (a leave-one-out loss needs two
    points).
    """
    if sample_weight is None:
        return None
    refuse_complex(sample_weight, "sample_weight")
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`sample_weight` must be an array of real numbers, got {type(sample_weight).__name__}"
        ) from err
    if w.shape != (n,):
        raise ValueError(
            f"`sample_weight` must have shape (n_samples,) = ({n},), one weight per sample, "
            f"got shape {w.shape}"
        )
    if not np.all(np.isfinite(w)):
        raise ValueError("`sample_weight` contains NaN or inf")
    if np.any(w < 0):
        raise ValueError(f"`sample_weight` must be >= 0, got a weight of {w.min():g}")
    positive = int(np.count_nonzero(w))
    if positive == 0:
        raise ValueError(
            "`sample_weight` is zero for every sample: at least 2 weights must be positive"
        )
    if positive < 2:
        raise ValueError(
            "`sample_weight` is zero for all samples but one: at least 2 weights must be positive"
        )
    return w


def drop_zero_weights(X, y, sample_weight):
    """``(X, y, weights)`` without the samples of weight 0 (they are not there at all).

    The weights are kept as given, counts of copies (scikit-learn's meaning: a weight of
    2 is the sample twice), and ``None`` when all are 1. ``sample_weight`` is checked
    (:func:`check_sample_weight`) or ``None``.
    """
    if sample_weight is None:
        return X, y, None
    keep = sample_weight > 0
    X, y, sample_weight = X[keep], y[keep], sample_weight[keep]
    return X, y, None if np.all(sample_weight == 1) else sample_weight


def weighted_pca(X, weight, k: int):
    """The leading ``k`` principal axes ``(k, d)`` of ``X`` with positive row ``weight``.

    Weighted mean and covariance; signs as ``sklearn.decomposition.PCA`` (the largest
    entry of each axis positive).
    """
    w = np.asarray(weight, np.float64)
    centred = (X - np.average(X, axis=0, weights=w)) * np.sqrt(w)[:, None]
    vt = np.linalg.svd(centred, full_matrices=False)[2][:k]
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    return vt * np.where(signs == 0, 1.0, signs)[:, None]


def weighted_lda(X, codes, weight, k: int):
    r"""The leading ``k`` discriminant directions ``(k, d)`` with positive row ``weight``.

    Generalised eigenvectors of the weighted between-class scatter :math:`S_b` against
    the weighted within-class scatter :math:`S_w` (plus :math:`10^{-8}\,\mathrm{tr}(S_w)/d`
    on the diagonal, for rank-deficient data): scikit-learn's ``"eigen"`` solver with
    weighted class means, priors and scatters.
    """
    from scipy.linalg import eigh

    w = np.asarray(weight, np.float64) / np.sum(weight)
    mean = w @ X
    d = X.shape[1]
    sw, sb = np.zeros((d, d)), np.zeros((d, d))
    for c in np.unique(codes):
        rows = codes == c
        wc = w[rows]
        mc = wc @ X[rows] / wc.sum()
        centred = X[rows] - mc
        sw += (centred * wc[:, None]).T @ centred
        sb += wc.sum() * np.outer(mc - mean, mc - mean)
    sw += (1e-8 * np.trace(sw) / d + np.finfo(np.float64).tiny) * np.eye(d)
    evals, evecs = eigh(sb, sw)
    return evecs[:, np.argsort(evals)[::-1][:k]].T


# ----------------------------------------------------------------------------------
# parameter checks
# ----------------------------------------------------------------------------------
def check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidParameterError(f"`{name}` must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"`{name}` must be >= {low}, got {value}")
    return int(value)


def check_real(value, name: str, low: float, high: float = np.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(f"`{name}` must be a real number, got {value!r}")
    v = float(value)
    if not (low <= v <= high):
        raise ValueError(f"`{name}` must lie in [{low}, {high}], got {value}")
    return v


def check_mesh(mesh):
    """``None`` or a ``jax.sharding.Mesh`` (the rows are split over its only axis)."""
    if mesh is None:
        return None
    if not isinstance(mesh, jax.sharding.Mesh):
        raise InvalidParameterError(f"`mesh` must be a jax.sharding.Mesh or None, got {type(mesh).__name__}")
    if len(mesh.axis_names) != 1:
        raise ValueError(f"`mesh` must have one axis (the rows), got axes {mesh.axis_names}")
    return mesh


def check_block_size(value):
    if value is None or (isinstance(value, str) and value == "auto"):
        return "auto"
    if not (_checks.is_int(value) and value >= 1):
        raise _checks.wrong_type_or_value(_checks.is_int(value))(
            f"`block_size` must be a positive int, 'auto' or None, got {value!r}"
        )
    return int(value)


def _dtype_of(a):
    """The dtype of an array or list, without converting other containers."""
    dt = getattr(a, "dtype", None)
    if dt is None and isinstance(a, (list, tuple)):
        dt = np.asarray(a).dtype
    return np.dtype(dt) if isinstance(dt, np.dtype) else None


def refuse_complex(a, name: str) -> None:
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


@contextlib.contextmanager
def restore_on_failure(estimator):
    """Put back every attribute of ``estimator`` if the block raises (a failed fit changes nothing)."""
    saved = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(saved)
        raise


# ----------------------------------------------------------------------------------
# preprocessor: points or tuples given as indices (metric-learn's convention)
# ----------------------------------------------------------------------------------
class ArrayIndexer:
    """metric-learn's array preprocessor: ``indices -> X[indices]``."""

    def __init__(self, X):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(
                f"an array `preprocessor` must have shape (n_samples, n_features), got {X.shape}"
            )
        self.X = X

    def __call__(self, indices):
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices into the `preprocessor` must be integers, got {indices.dtype}")
        if indices.size and (indices.min() < -len(self.X) or indices.max() >= len(self.X)):
            raise ValueError(
                f"indices out of range for the `preprocessor` of {len(self.X)} points: "
                f"found [{indices.min()}, {indices.max()}]"
            )
        return self.X[indices]


def resolve_preprocessor(preprocessor):
    """``None``, a callable, or an array wrapped in :class:`ArrayIndexer`."""
    if preprocessor is None or callable(preprocessor):
        return preprocessor
    if isinstance(preprocessor, (np.ndarray, list, tuple)) or hasattr(preprocessor, "__array__"):
        return ArrayIndexer(preprocessor)
    raise ValueError(
        f"Invalid type for the `preprocessor`: {type(preprocessor).__name__}; pass an array of "
        "points (indices select its rows) or a callable from indices to points"
    )


_EXPECTED = {
    "1": "2D array of formed points",
    "2": "3D array of formed tuples",
    "3": "1D array of indicators or 2D array of formed points",
    "4": "2D array of indicators or 3D array of formed tuples",
}
_WHEN = {"0": "", "1": " after the preprocessor has been applied", "2": " when using a preprocessor"}


def input_dimension_error(code: str, data, estimator) -> ValueError:
    """metric-learn 0.7.0's error for input of the wrong dimension, word for word.

    ``code`` is metric-learn's ``make_error_input`` code (digits: what was expected,
    preprocessor context, whether to suggest a preprocessor), e.g. ``"101"`` for 1D points
    without a preprocessor, ``"201"`` for 2D tuples without one.
    """
    data = np.asarray(data)
    return ValueError(
        f"{_EXPECTED[code[0]]} expected by {type(estimator).__name__}{_WHEN[code[1]]}. Found "
        f"{data.ndim}D array instead:\ninput={data}. Reshape your data"
        f"{' and/or use a preprocessor' if code[2] == '1' else ''}.\n"
    )


def _refuse_strings(data, name: str) -> None:
    """Refuse arrays of strings or bytes, as scikit-learn's ``check_array`` (its message).

    The dtype list the estimators validate with would otherwise convert numeric strings
    silently; scikit-learn and metric-learn refuse them. Object arrays (of numbers) and
    DataFrames are left to scikit-learn's validation.
    """
    kind = getattr(getattr(data, "dtype", None), "kind", None)
    if kind is None and isinstance(data, (list, tuple)):
        kind = np.asarray(data).dtype.kind
    if kind in ("U", "S"):
        raise ValueError(
            "dtype='numeric' is not compatible with arrays of bytes/strings.Convert your data "
            f"to numeric values explicitly instead. (`{name}` holds strings)"
        )


def _apply_preprocessor(preprocessor, indices, what: str):
    """``preprocessor(indices)`` as an array; any failure as metric-learn's ``PreprocessorError``."""
    try:
        out = preprocessor(indices)
    except Exception as err:  # noqa: BLE001 - metric-learn wraps every error alike
        raise PreprocessorError(err, f"the `preprocessor` failed on the {what}") from err
    return np.asarray(out)


def constraint_labels(y, estimator: str, *, min_classes: int = 2) -> np.ndarray:
    """Class labels for :class:`metricjax.constraints.Constraints`.

    Integer labels are kept as they are (a negative label marks an unlabelled point, as
    in metric-learn, and the draws are metric-learn's); other labels (strings, floats
    that are not integers) are encoded as ``0 .. n_classes - 1`` in sorted order, as
    scikit-learn's classifiers accept them. At least ``min_classes`` known classes are
    required (two to draw dissimilar constraints; RCA's chunklets need one).

    Negative labels are easy to mean as a class (``y`` in {-1, +1}), so they never pass
    silently: a ``UserWarning`` says how many points they leave out, and the error for
    too few classes says that they were left out.
    """
    check_classification_targets(y)
    y = np.asarray(y)
    if y.dtype.kind in "iu" or (
        y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    ):
        labels = y.astype(np.int64)
    else:
        labels = np.unique(y, return_inverse=True)[1].reshape(-1).astype(np.int64)
    unknown = labels < 0
    n_known = len(np.unique(labels[~unknown]))
    note = (
        f"{int(unknown.sum())} sample(s) with negative labels "
        f"{sorted(int(v) for v in np.unique(labels[unknown]))} are unlabelled points "
        "(metric-learn's convention for partial labels) and draw no constraints; use "
        "labels >= 0 (or strings) for classes"
    )
    if n_known < min_classes:
        raise ValueError(
            f"{estimator} needs samples of at least {min_classes} class"
            f"{'es' if min_classes > 1 else ''} in `y` to draw constraints; got {n_known}"
            + (f" ({note})" if unknown.any() else "")
        )
    if unknown.any():
        warnings.warn(f"{estimator}: {note}.", UserWarning, stacklevel=4)
    return labels


# ----------------------------------------------------------------------------------
# verbose output: metric-learn's log lines
# ----------------------------------------------------------------------------------
class _FitLog:
    """``verbose=True`` of the full-batch learners: metric-learn's NCA/MLKR log on stdout.

    A header (``[NCA]``, then ``Iteration / Objective Value / Time(s)`` and a rule), one
    line per iteration (a :func:`metricjax.fit` callback, reported every iteration)
    and ``[NCA] Training took   1.23s.`` at the end.
    """

    _HEADER = "{:>10} {:>20} {:>10}".format("Iteration", "Objective Value", "Time(s)")

    def __init__(self, name: str, sign: float = 1.0):
        self.name, self.sign, self.count, self.previous = name, sign, 0, None
        self.start = self.last = time.perf_counter()
        self.header()
        sys.stdout.flush()

    def header(self):
        name = self.name
        print(f"[{name}]\n[{name}] {self._HEADER}\n[{name}] {'-' * len(self._HEADER)}")

    def row(self, now, objective):
        print(f"[{self.name}] {self.count:>10} {objective:>20.6e} {now - self.last:>10.2f}")

    def __call__(self, iteration, loss, params):
        now, objective = time.perf_counter(), self.sign * float(loss)
        self.count += 1
        self.row(now, objective)
        sys.stdout.flush()
        self.last, self.previous = now, objective

    def close(self, converged: bool, n_iter: int, loss: float) -> None:
        print(f"[{self.name}] Training took {time.perf_counter() - self.start:8.2f}s.")
        sys.stdout.flush()


class _LMNNLog(_FitLog):
    """metric-learn's LMNN log: ``iteration objective difference`` per iteration, then
    ``LMNN converged with objective ...`` or ``LMNN didn't converge in ... steps.`` (its
    active-constraint and learning-rate columns have no L-BFGS counterpart)."""

    def header(self):
        print("iter | objective | objective difference")

    def row(self, now, objective):
        delta = 0.0 if self.previous is None else objective - self.previous
        print(self.count, objective, delta)

    def close(self, converged: bool, n_iter: int, loss: float) -> None:
        print(f"LMNN converged with objective {loss}" if converged
              else f"LMNN didn't converge in {n_iter} steps.")  # fmt: skip
        sys.stdout.flush()


def _log_arguments(log) -> dict:
    """:func:`metricjax.fit`'s reporting arguments for a :class:`_FitLog` (or none)."""
    return {} if log is None else {"callback": log, "chunk_size": 1}


class _Reporter:
    """The host callback of an estimator's fit: its verbose log and the user's ``callback``.

    ``callback(transformation, n_iter)`` is scikit-learn's NCA signature: the current
    map flattened to ``(n_components * n_features,)`` (a NumPy copy) and the number of
    updates so far (1 after the first), called after every update. Its return value is
    ignored. The count is the reporter's own, so LMNN's chunked active-set fit counts
    on across its chunks.
    """

    def __init__(self, log, callback, unit=1.0):
        self.log, self.callback, self.count, self.unit = log, callback, 0, unit

    @classmethod
    def of(cls, log, callback, unit=1.0):
        """A reporter for ``log`` and ``callback``, or ``None`` when both are ``None``;
        ``unit`` converts the optimised loss to the reported one (MLKR's ``_loss_unit``)."""
        return None if log is None and callback is None else cls(log, callback, unit)

    def __call__(self, iteration, loss, params):
        self.count += 1
        if self.log is not None:
            self.log(iteration, loss * self.unit, params)
        if self.callback is not None:
            self.callback(np.array(params).ravel(), self.count)


# ----------------------------------------------------------------------------------
# the Mahalanobis base class
# ----------------------------------------------------------------------------------
def pair_distances(pairs: np.ndarray, components: np.ndarray) -> np.ndarray:
    r""":math:`\lVert L(b_p - a_p)\rVert` of validated ``(n_pairs, 2, d)`` pairs, ``L`` = ``components``."""
    diff = member_difference(pairs, 1, 0) @ components.T.astype(pairs.dtype)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


class MahalanobisLearner(BaseEstimator):
    r"""Base of every metricjax estimator: a learned linear map and metric-learn's API.

    Subclasses set ``components_`` (``(n_components, n_features)``) in ``fit`` and store
    their hyperparameters in ``__init__``, including ``preprocessor`` (``None``, an
    array of points — tuples and points may then be given as indices into it — or a
    callable from an array of indices to the points). Every learner can ``transform``;
    those fitted on points (``fit(X, y)``) are scikit-learn transformers as well
    (:class:`PointsTransformer`: ``fit_transform``, ``set_output``,
    ``get_feature_names_out``), the weakly supervised ones fitted on tuples (ITML, MMC,
    SDML, LSML, SCML) are not, as in metric-learn.
    """

    preprocessor = None  # subclasses store their own in __init__
    _needs_y = False  # whether ``fit`` requires targets (scikit-learn's target tag)

    def _set_params(self, params: dict) -> None:
        """Store the arguments of ``__init__`` (its ``locals()``) unchanged, as scikit-learn asks.

        Subclasses keep an explicit ``__init__`` signature (``get_params`` and ``clone``
        read it) and call ``self._set_params(locals())`` as its body.
        """
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _renamed(self, name: str, old_name: str):
        """The value of hyperparameter ``name``, or of metric-learn's deprecated spelling ``old_name``.

        ``old_name`` defaults to the string ``"deprecated"`` (metric-learn's sentinel);
        any other value is used instead of ``name``, with a ``FutureWarning`` (as
        metric-learn 0.7.0 does for ``convergence_threshold``, ``num_constraints`` and
        ``num_chunks``).
        """
        old = getattr(self, old_name, "deprecated")
        if isinstance(old, str) and old == "deprecated":
            return getattr(self, name)
        warnings.warn(
            f'"{old_name}" parameter has been renamed to "{name}" (deprecated in metric-learn '
            f"0.6.3); using {name}={old!r}: pass {name} instead",
            FutureWarning,
            stacklevel=4,
        )
        return old

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self._needs_y
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- inputs ----------------------------------------------------------------------
    def _points(self, X, *args, reset: bool, **kwargs):
        """Validated points ``(n, d)`` (indices go through the preprocessor first).

        ``args`` (the targets ``y`` of a fit) and ``kwargs`` go to scikit-learn's
        ``validate_data``.
        """
        prep = resolve_preprocessor(self.preprocessor)
        # not np.ndim: it is a NumPy function, which array-likes may refuse (__array_function__)
        ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
        if ndim != 2:  # metric-learn's check_input_classic and its messages
            if prep is None:
                raise input_dimension_error("101" if ndim == 1 else "100", X, self)
            if ndim != 1:
                raise input_dimension_error("320", X, self)
            X = _apply_preprocessor(prep, X, "points")
            if X.ndim != 2:
                raise input_dimension_error("111", X, self)
        _refuse_strings(X, "X")
        return _validate_data(self, X, *args, reset=reset, dtype=list(FLOAT_DTYPES), **kwargs)

    def _tuples(self, tuples, tuple_size: int, *, name: str = "pairs", reset: bool = False):
        """Validated tuples ``(n_tuples, tuple_size, d)``, float32 or float64.

        ``(n_tuples, tuple_size)`` integer arrays are indices through the preprocessor.
        """
        refuse_complex(tuples, name)
        arr = np.asarray(tuples)
        prep = resolve_preprocessor(self.preprocessor)
        # metric-learn's check_input_tuples and its messages
        if arr.ndim == 2:
            if prep is None:
                raise input_dimension_error("201", arr, self)
            n_tuples, size = arr.shape
            arr = _apply_preprocessor(prep, arr.reshape(-1), name)
            arr = arr.reshape(n_tuples, size, -1)
        elif arr.ndim != 3:
            raise input_dimension_error("420" if prep is not None else "200", arr, self)
        # the data, not the indicators: a preprocessor may take any (file names, ids)
        _refuse_strings(arr, name)
        if arr.shape[1] != tuple_size:
            raise ValueError(
                f"Tuples of {tuple_size} element(s) expected by {type(self).__name__}. Got "
                f"tuples of {arr.shape[1]} element(s) instead (shape={arr.shape}):\n"
                f"input={arr}.\n"
            )
        if arr.shape[0] < 1:
            raise ValueError(f"`{name}` is empty")
        if arr.dtype.kind not in "biuf":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(f"`{name}` must be numeric, got dtype {arr.dtype}") from err
        if arr.dtype not in FLOAT_DTYPES:
            arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains NaN or inf")
        n_features = arr.shape[2]
        if reset:
            self.n_features_in_ = n_features
        elif hasattr(self, "n_features_in_") and n_features != self.n_features_in_:
            raise ValueError(
                f"`{name}` has {n_features} features, but {type(self).__name__} was fitted "
                f"with {self.n_features_in_} features"
            )
        return arr

    def _check_random_state(self) -> None:
        """Refuse a bad ``random_state`` before any work, whether or not the fit draws from
        it (scikit-learn and metric-learn check it up front too)."""
        seed = getattr(self, "random_state", None)
        try:
            check_random_state(seed)
        except ValueError as err:
            raise InvalidParameterError(
                "`random_state` must be None, an int or a numpy.random.RandomState, got "
                f"{seed!r}"
            ) from err

    def _fit_atomic(self, compute, *args):
        """Run ``compute(*args) -> dict of fitted attributes`` and set them.

        A ``compute`` that raises leaves ``self`` exactly as it was.
        """
        with restore_on_failure(self):  # validate_data sets n_features_in_ early
            self._check_random_state()
            fitted = compute(*args)
        for name, value in fitted.items():
            setattr(self, name, value)
        return self

    # -- using the learned metric ----------------------------------------------------
    def transform(self, X):
        """Embed ``X`` with the learned map: ``X @ components_.T``.

        Args:
            X: array-like of shape ``(n_samples, n_features)`` (or 1-D indices with a
                ``preprocessor``).

        Returns:
            Array of shape ``(n_samples, n_components)``, in the dtype of ``X``
            (``float64`` for non-float input).
        """
        check_is_fitted(self, "components_")
        X = self._points(X, reset=False)
        return X @ self.components_.T.astype(X.dtype, copy=False)

    def get_mahalanobis_matrix(self):
        r"""The learned Mahalanobis matrix :math:`M = L^\top L`.

        Returns:
            Array of shape ``(n_features, n_features)`` (a new copy).
        """
        check_is_fitted(self, "components_")
        return self.components_.T @ self.components_

    def get_metric(self):
        r"""A function computing the learned distance between two points.

        The function is independent of the estimator (refitting the estimator does not
        change it) and can be passed as ``metric=`` to scikit-learn's neighbours
        estimators, e.g. ``KNeighborsClassifier(metric=est.get_metric())``.

        Returns:
            ``metric_fun(u, v, squared=False)``: for points ``u`` and ``v`` of
            ``n_features`` values, :math:`\lVert L(u - v)\rVert` (its square with
            ``squared=True``) as a float. As in metric-learn (scipy's ``validate_vector``),
            the points are squeezed first: a ``(1, n_features)`` row or, with one feature, a
            scalar is a point too.
        """
        check_is_fitted(self, "components_")
        components_t = self.components_.T.copy()
        n_features = components_t.shape[0]

        def metric_fun(u, v, squared=False):
            """Learned distance between the points ``u`` and ``v`` (n_features values each)."""
            u = np.atleast_1d(np.asarray(u, dtype=np.float64).squeeze())
            v = np.atleast_1d(np.asarray(v, dtype=np.float64).squeeze())
            if u.ndim != 1 or v.ndim != 1 or u.shape != (n_features,) or v.shape != u.shape:
                raise ValueError(
                    f"u and v must be 1-D arrays of length {n_features}, got shapes "
                    f"{u.shape} and {v.shape}"
                )
            # np.dot: with a 1-D components_ (metric-learn allows one) diff is a scalar
            diff = np.dot(u - v, components_t)
            dist = float(np.dot(diff, diff))
            return dist if squared else float(np.sqrt(dist))

        return metric_fun

    def pair_distance(self, pairs):
        r"""The learned distance :math:`\lVert L(a - b)\rVert` of each pair ``(a, b)``.

        Not squared, as metric-learn's ``pair_distance``.

        Args:
            pairs: ``(n_pairs, 2, n_features)``, or ``(n_pairs, 2)`` indices with a
                ``preprocessor``.

        Returns:
            Array of shape ``(n_pairs,)``.
        """
        # the tuples first, as metric-learn checks them (its tests give triplets to an
        # estimator not yet fitted and expect the tuple-size message)
        pairs = self._tuples(pairs, 2, name="pairs")
        check_is_fitted(self, "components_")
        return pair_distances(pairs, self.components_)

    def pair_score(self, pairs):
        """Similarity of each pair: ``-pair_distance(pairs)`` (larger is more similar).

        Args:
            pairs: ``(n_pairs, 2, n_features)``, or ``(n_pairs, 2)`` indices with a
                ``preprocessor``.

        Returns:
            Array of shape ``(n_pairs,)``.
        """
        return -self.pair_distance(pairs)

    def _check_preprocessor(self):
        """metric-learn's ``_check_preprocessor``: sets ``preprocessor_``, the
        ``preprocessor`` as given (``None``, an array of points, or a callable). For
        code written against metric-learn's base class; metricjax reads
        ``preprocessor`` itself."""
        self.preprocessor_ = self.preprocessor

    def score_pairs(self, pairs):
        """Deprecated alias of :meth:`pair_distance` (as in metric-learn 0.7).

        .. deprecated:: 0.1
            Use :meth:`pair_distance` (distances) or :meth:`pair_score` (similarities).
        """
        warnings.warn(  # metric-learn 0.7.0's message, word for word
            "score_pairs will be deprecated in release 0.7.0. Use pair_score to compute "
            "similarity scores, or pair_distances to compute distances.",
            FutureWarning,
            stacklevel=2,
        )
        return self.pair_distance(pairs)


class PointsTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, MahalanobisLearner):
    """Base of the learners fitted on points, ``fit(X, y)``: scikit-learn transformers.

    Adds scikit-learn's ``fit_transform``, ``set_output`` and ``get_feature_names_out``
    (``"<classname><i>"`` for each learned component). The tuples learners (ITML, MMC,
    SDML, LSML, SCML, whose ``fit`` takes pairs, triplets or quadruplets) are not
    transformers, as in metric-learn 0.7.0 (its ``MahalanobisMixin`` is not scikit-learn's
    ``TransformerMixin``; its ``*_Supervised`` learners and the others are).
    """

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def transform(self, X):
        """Embed ``X`` with the learned map: ``X @ components_.T`` (``set_output`` applies).

        Defined here, not only in :class:`MahalanobisLearner`: scikit-learn's
        ``set_output`` wraps the ``transform`` a transformer class defines itself, so
        ``set_output(transform="pandas")`` configures ``transform`` as well as
        ``fit_transform``.

        Args:
            X: array-like of shape ``(n_samples, n_features)`` (or 1-D indices with a
                ``preprocessor``).

        Returns:
            Array of shape ``(n_samples, n_components)``, in the dtype of ``X``
            (``float64`` for non-float input), or the container ``set_output`` chose.
        """
        return super().transform(X)


# ----------------------------------------------------------------------------------
# supervised learners: fit(X, y) by minimising a loss of metricjax.losses
# ----------------------------------------------------------------------------------
class SupervisedLearner(PointsTransformer):
    """``fit(X, y)`` for the learners that minimise a loss of :mod:`metricjax.losses`.

    Subclasses define ``__init__`` (storing hyperparameters only), ``_classification``
    and ``_objective(X, target, classes)``, which returns the loss (a hashable
    module-level function of ``(transform, x, *args)``), the extra loss arguments and
    the extra fitted attributes. ``batch_size`` (``None`` unless a subclass has it)
    switches to mini-batch training.
    """

    _classification = True
    _min_classes = 2  # classification: NCA accepts one class (a constant loss)
    _log_sign = 1.0  # the verbose log prints _log_sign * loss (NCA: -1, metric-learn's objective)
    _log_class = _FitLog  # LMNN: _LMNNLog
    _needs_y = True
    batch_size = None  # MLKR and NCA store their own
    #: Rescale a string ``init`` so that the median squared pairwise distance of the
    #: initial embedding is 1 (MLKR, NCA: unit-bandwidth kernels, see median_sq_distance).
    _unit_free_init = False

    def fit(self, X, y, sample_weight=None):
        """Learn the linear map ``components_`` from ``X``, ``y`` and optional sample weights.

        Args:
            X: training inputs, array-like of shape ``(n_samples, n_features)``,
                finite, at least 2 samples (or 1-D indices with a ``preprocessor``).
            y: shape ``(n_samples,)``: real targets (MLKR) or class labels of any
                type (NCA, LMNN). LMNN needs at least 2 classes; with one class NCA's
                loss is constant and its initial map is returned (``n_iter_ = 0``), as
                scikit-learn's and metric-learn's NCA do.
            sample_weight: ``None`` (every sample weighs 1) or non-negative weights
                of shape ``(n_samples,)``, at least 2 of them positive
                (scikit-learn's ``sample_weight``). A weight of 0 is exactly the
                sample removed: it is dropped before anything else, so the fit equals
                the fit on the other samples. Weights are read as scikit-learn defines
                them, counts of copies: a weight of 3 is the sample three times, a copy
                being a neighbour of the others at distance 0 (the fit equals the fit
                on the repeated samples; scikit-learn's
                ``check_sample_weight_equivalence_on_dense_data`` passes), and weights
                of 1 are no weights. LMNN reads a weight ``s`` as ``ceil(s)``
                copies of weight ``s / ceil(s)``, whose own copies are among their
                target neighbours
                (``docs/derivations.md`` §15). Weights enter the loss (each point's
                term, and each point as a neighbour: see ``sample_weight`` of
                :func:`metricjax.losses.mlkr_loss`, :func:`~metricjax.losses.nca_loss`,
                :func:`~metricjax.losses.lmnn_loss`) and every data-dependent step of
                the fit: ``init="pca"`` / ``"lda"`` (weighted mean, covariance, class
                scatters), the median distance that scales MLKR's and NCA's initial
                map, MLKR's ridge weight (weighted sum of squares of ``y``), LMNN's
                target neighbours (among the copies, and its class-size rule counts
                copies); LMNN does not use its impostor active set with weights (the
                full loss).

        Returns:
            The fitted estimator (``self``).

        Raises:
            ValueError: invalid inputs, weights or hyperparameters. The estimator is
                left unchanged by any exception raised here.
            TypeError: non-numeric ``sample_weight``.
        """
        return self._fit_atomic(self._fit, X, y, sample_weight)

    def _tol(self) -> float:
        return DEFAULT_TOL if self.tol is None else check_real(self.tol, "tol", 0.0)

    def _constant_loss(self, codes, sample_weight=None) -> bool:
        """Whether the loss cannot change with the map for these class codes (one class)."""
        return int(codes.max()) == 0

    def _fit(self, X, y, sample_weight=None):
        max_iter = check_int(self.max_iter, "max_iter", 1)
        tol = self._tol()
        resolve_optimizer(self.optimizer, "lbfgs")  # validates before any work
        batch_size = self.batch_size
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", 2)
        refuse_complex(X, "X")
        if not self._classification:
            y = _numeric_targets(y, type(self).__name__)
        callback = getattr(self, "callback", None)
        if callback is not None and not callable(callback):
            raise InvalidParameterError(
                f"`callback` must be None or a callable (transformation, n_iter), got "
                f"{type(callback).__name__}"
            )
        warm = getattr(self, "warm_start", False)
        if not isinstance(warm, (bool, np.bool_)):
            raise InvalidParameterError(f"`warm_start` must be True or False, got {warm!r}")
        # warm_start (scikit-learn's NCA): start from the previous fit's map, used as given
        start = self.components_ if warm and hasattr(self, "components_") else None
        X, y = self._points(
            X, y, reset=True, ensure_min_samples=2, y_numeric=not self._classification
        )
        if start is not None and X.shape[1] != start.shape[1]:  # scikit-learn's message
            raise ValueError(
                f"The new inputs dimensionality ({X.shape[1]}) does not match the input "
                "dimensionality of the previously learned transformation "
                f"({start.shape[1]})."
            )
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        X, y, sample_weight = drop_zero_weights(X, y, sample_weight)
        n_samples, n_features = X.shape
        dtype = X.dtype
        extra = {}
        if self._classification:
            check_classification_targets(y)
            classes, codes = np.unique(y, return_inverse=True)
            codes = codes.reshape(-1).astype(np.int32)
            if len(classes) < self._min_classes:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes; got 1 class"
                )
            extra["classes_"] = classes
            target = codes
        else:
            target = np.asarray(y, dtype=dtype)
        loss, args, more = self._objective(X, target, extra.get("classes_"), sample_weight)
        # the optimised loss times unit is the loss in the data's units (MLKR: see _objective)
        unit = more.pop("_loss_unit", 1.0)
        extra.update(more)
        constant = self._classification and self._constant_loss(target, sample_weight)
        # a constant loss learns nothing: the initial map as named, not rescaled to the data
        params = self._initial_components(X, target, n_features, n_samples, sample_weight,
                                          init=start, rescale=not constant)  # fmt: skip
        if constant:
            # one class, or (NCA) no two points of one class: the loss is constant and
            # the initial map is a solution (scikit-learn's and metric-learn's NCA
            # return it too)
            components = np.array(params, dtype=dtype)
            with jax.enable_x64(dtype == np.float64):
                history = np.array([loss(components, X, *args)]) * unit
            return {"components_": components, "n_iter_": 0, "loss_history_": history,
                    "converged_": True, **extra}  # fmt: skip
        with jax.enable_x64(dtype == np.float64):
            data = (X, *args)
            params = np.asarray(params, dtype)
            try:
                if batch_size is None:
                    log = self._log_class(type(self).__name__, self._log_sign) if self.verbose else None
                    res = self._minimise(loss, params, data, max_iter=max_iter, tol=tol,
                                         log=_Reporter.of(log, callback, unit))  # fmt: skip
                    converged, n_iter = res.converged, res.num_iter
                    if log is not None:
                        log.close(converged, n_iter, float(res.loss_history[-1]) * unit)
                else:
                    seed = int(check_random_state(self.random_state).randint(2**31 - 1))
                    # rows are sampled from the per-point arrays; the trailing scalar
                    # arguments of the loss (e.g. MLKR's ridge weight) stay whole
                    rows = tuple(a for a in data if np.ndim(a) and np.shape(a)[0] == n_samples)
                    tail = data[len(rows):]
                    if tail:
                        loss = functools.partial(_with_tail, loss, tail)
                    res = _fit_minibatch(loss, params, *rows, batch_size=batch_size,
                                         key=jax.random.key(seed), optimizer=self.optimizer,
                                         num_steps=max_iter, verbose=bool(self.verbose),
                                         **_log_arguments(_Reporter.of(None, callback)))  # fmt: skip
                    # no convergence test in stochastic mode
                    converged, n_iter = False, res.num_steps
                    if not np.isfinite(res.loss_history[0]):
                        raise FloatingPointError(f"the initial loss is not finite ({res.loss_history[0]})")
            except FloatingPointError as err:
                raise FloatingPointError(
                    f"{err}: the loss at the initial transformation is not finite; scale the "
                    "features (e.g. with StandardScaler) or choose another `init`"
                ) from err
            components = np.array(res.params, dtype=dtype)
            history = np.array(res.loss_history) * unit
        if not np.all(np.isfinite(components)):  # pragma: no cover - refused steps
            raise FloatingPointError("the fit produced a non-finite transformation")
        if not converged and batch_size is None:
            name = type(self).__name__
            warnings.warn(  # metric-learn's "[NCA] NCA did not converge" opening
                f"[{name}] {name} did not converge within max_iter={max_iter} "
                f"iterations (tol={tol:g}); increase max_iter, or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        return {
            "components_": components,
            "n_iter_": n_iter,
            "loss_history_": history,
            "converged_": converged,
            **extra,
        }

    def _minimise(self, loss, params, data, *, max_iter: int, tol: float, log=None):
        """Full-batch fit of ``loss(params, *data)``: :func:`metricjax.fit` (LMNN overrides it)."""
        return _fit(loss, params, *data, optimizer=self.optimizer, max_iter=max_iter, tol=tol,
                    **_log_arguments(log))  # fmt: skip

    def _initial_components(
        self, X, target, n_features: int, n_samples: int, sample_weight=None, *, init=None,
        rescale: bool = True,
    ):  # fmt: skip
        """The initial map ``(k, n_features)`` from ``init`` (weighted PCA / LDA with weights).

        ``init`` overrides ``self.init`` (a warm start's previous map); ``rescale=False``
        leaves a named init unscaled where ``_unit_free_init`` would scale it.
        """
        init = self.init if init is None else init
        n_components = self.n_components
        if n_components is not None:
            if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
                raise InvalidParameterError(f"`n_components` must be an int or None, got {n_components!r}")
            if not 1 <= n_components <= n_features:  # metric-learn's message, scikit-learn's note
                raise error_with_note(
                    ValueError,
                    f"Invalid n_components, must be in [1, {n_features}]",
                    "The preferred dimensionality of the projected space `n_components` "
                    f"({n_components}) cannot be greater than the given data dimensionality "
                    f"({n_features})!" if n_components > n_features else
                    f"`n_components` must be at least 1, got {n_components}.",
                )  # fmt: skip
            n_components = int(n_components)

        allowed = [o for o in _INIT_OPTIONS if self._classification or o != "lda"]
        if (isinstance(init, str) and init not in allowed) or (
            not isinstance(init, str) and np.ndim(init) == 0
        ):
            raise ValueError(  # metric-learn's message, word for word
                "`init` must be '" + "', '".join(allowed) + "' or a numpy array of shape "
                "(n_components, n_features)."
            )
        if not isinstance(init, str):
            arr = np.asarray(init)
            want = f"({'n_components' if n_components is None else n_components}, {n_features})"
            if arr.ndim != 2 or arr.dtype.kind not in "biuf":
                raise ValueError(
                    f"`init` must be one of {_INIT_OPTIONS} or a real array of shape "
                    f"(n_components, n_features) = {want}, got "
                    f"{'shape ' + str(arr.shape) if arr.dtype.kind in 'biuf' else repr(init)}"
                )
            # metric-learn's three checks and messages, in its order
            if arr.shape[1] != n_features:
                raise ValueError(
                    f"The input dimensionality ({arr.shape[1]}) of the given linear "
                    "transformation `init` must match the dimensionality of the given inputs "
                    f"`X` ({n_features})."
                )
            if arr.shape[0] > arr.shape[1]:
                raise ValueError(
                    f"The output dimensionality ({arr.shape[0]}) of the given linear "
                    "transformation `init` cannot be greater than its input dimensionality "
                    f"({arr.shape[1]})."
                )
            if n_components is not None and n_components != arr.shape[0]:
                raise ValueError(
                    "The preferred dimensionality of the projected space `n_components` "
                    f"({n_components}) does not match the output dimensionality of the given "
                    f"linear transformation `init` ({arr.shape[0]})!"
                )
            if arr.shape[0] < 1:
                raise ValueError(
                    f"`init` must have shape (n_components, n_features) = {want} with "
                    f"n_components >= 1, got {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError("`init` contains NaN or inf")
            return np.array(arr, dtype=X.dtype)

        k = n_features if n_components is None else n_components
        n_classes = int(target.max()) + 1 if self._classification else 0
        if init == "auto":
            if self._classification and k <= min(n_features, n_classes - 1):
                init = "lda"
            elif k < min(n_features, n_samples):
                init = "pca"
            else:
                init = "identity"
        log_init = init in ("pca", "lda") and bool(getattr(self, "verbose", False))
        if log_init:  # metric-learn's _initialize_components log, word for word
            print(
                "Finding principal components... "
                if init == "pca"
                else "Finding most discriminative components... "
            )
            sys.stdout.flush()
            init_time = time.time()
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
            if sample_weight is None:
                pca = PCA(n_components=k, random_state=check_random_state(self.random_state))
                out = pca.fit(X).components_
            else:
                out = weighted_pca(X, sample_weight, k)
        else:  # lda
            if k > min(n_features, n_classes - 1):
                raise ValueError(
                    f"init='lda' needs n_components <= min(n_features, n_classes - 1) = "
                    f"{min(n_features, n_classes - 1)}, got n_components={k}"
                )
            if sample_weight is None:
                lda = LinearDiscriminantAnalysis(n_components=k).fit(X, target)
                out = lda.scalings_.T[:k]
            else:
                out = weighted_lda(X, target, sample_weight, k)
            if out.shape[0] < k:  # rank-deficient within-class scatter
                out = np.vstack([out, np.eye(k, n_features)[out.shape[0] :]])
        if log_init:
            print(f"done in {time.time() - init_time:5.2f}s")
        if self._unit_free_init and rescale:  # median embedded squared distance 1, whatever the units
            out = out / np.sqrt(median_sq_distance(X @ np.asarray(out).T, sample_weight))
        return np.array(out, dtype=X.dtype)


def _with_tail(loss, tail, params, *rows):
    """``loss(params, *rows, *tail)``: the loss with its non-row arguments appended."""
    return loss(params, *rows, *tail)


# ----------------------------------------------------------------------------------
# shared docstrings (one place for the hyperparameters every learner has)
# ----------------------------------------------------------------------------------
def class_doc(summary: str, *, args: str, attrs: str, references: str, examples: str = "") -> str:
    """An estimator's Google docstring: summary, ``Args:``, ``Attributes:``, ``References:``, ``Examples:``.

    Each section body is its entries indented by 8 spaces (a leading newline is
    optional); the summary is the first line and its paragraphs indented by 4.
    """
    sections = [("Args", args), ("Attributes", attrs), ("References", references)]
    if examples:
        sections.append(("Examples", examples))
    body = "".join(f"\n\n    {head}:\n" + text.strip("\n") for head, text in sections)
    return summary.rstrip() + body + "\n    "


def knn_example(name: str, ctor: str, transformed_shape: str = "") -> str:
    """The ``Examples:`` section of a classification learner: a k-NN pipeline on iris.

    ``ctor`` builds the estimator; with ``transformed_shape`` the example also shows
    the shape of ``fit_transform``.
    """
    var = name.lower()
    shape = f"""
        >>> {var}.fit_transform(X, y).shape
        {transformed_shape}""" if transformed_shape else ""
    return f"""
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.neighbors import KNeighborsClassifier
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import StandardScaler
        >>> from metricjax.estimators import {name}
        >>> X, y = load_iris(return_X_y=True)
        >>> {var} = make_pipeline(StandardScaler(), {ctor}){shape}
        >>> knn = make_pipeline({var}, KNeighborsClassifier(n_neighbors=3)).fit(X, y)
        >>> bool(knn.score(X, y) > 0.9)
        True"""


COMMON_ARGS = """
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
        optimizer: any ``optax.GradientTransformation`` or the name of one (``"lbfgs"``,
            ``"adam"``, ...); ``None`` means ``optax.lbfgs()`` (full-batch L-BFGS with a
            zoom line search).
        random_state: seed or ``numpy.random.RandomState`` for ``init="random"`` and
            ``init="pca"``. The same ``random_state`` gives identical results.
        verbose: print metric-learn's log to standard output: a header, one line per
            iteration (``[NCA]  Iteration  Objective Value  Time(s)``; NCA's objective
            is the expected number of correctly classified points, the negative of
            its loss, as metric-learn prints it) and the training time; LMNN prints
            metric-learn's ``iteration objective difference`` lines and its
            converged / didn't converge line. Mini-batch fits show a ``tqdm`` progress
            bar instead.
        preprocessor: ``None``, an array of points (``X`` may then be given as 1-D
            indices into it, tuples as 2-D indices), or a callable from an array of
            indices to the points (metric-learn's ``preprocessor``).
"""

CONTINUE_ARGS = """
        warm_start: ``True``: a fit after a previous one starts from its
            ``components_`` (used as given, ``init`` ignored; the inputs must have the
            same number of features), as scikit-learn's NCA does; the first fit
            starts from ``init``. ``False`` (default): every fit starts from ``init``.
        callback: ``None`` or ``callback(transformation, n_iter)``, called on the
            host after every update with the current map flattened to
            ``(n_components * n_features,)`` and the number of updates so far
            (scikit-learn's NCA signature; the return value is ignored). Each
            update is then its own compiled chunk, reported one at a time.
"""

BATCH_ARGS = """        block_size: rows of the pairwise matrix processed at a time by the loss
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
        mesh: ``None`` (default): one device. A 1-D ``jax.sharding.Mesh``
            (e.g. :func:`metricjax.row_mesh`): the loss is row-sharded over its devices
            (:func:`metricjax.sharded`); same fit up to rounding. Composes with
            ``batch_size`` (each batch is sharded).
"""

COMMON_ATTRS = """
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


class SoftNeighbourLearner(SupervisedLearner):
    """Shared constructor of MLKR and NCA (same hyperparameters)."""

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
        preprocessor=None,
        mesh=None,
        warm_start=False,
        callback=None,
    ):
        self._set_params(locals())

