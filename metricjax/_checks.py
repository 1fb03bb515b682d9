"""Trace-time input guards shared by the public functions.

Shape and dtype checks run on static information only (shapes, dtypes), so they
work unchanged under ``jax.jit`` and cost nothing in the compiled program.
Value checks (NaN/inf) need the data and therefore live in :func:`check_finite`,
which functional users may call explicitly (the estimators refuse non-finite input
through scikit-learn's validation). The full policy is in ``docs/input_policy.md``.

Dtype policy: booleans and integers are promoted to JAX's default float; ``float16``,
``bfloat16``, ``float32`` and ``float64`` are kept by the distances; the losses compute
half-precision input in ``float32`` (:func:`compute_dtype`); complex, string, object
and date/time arrays are refused with ``TypeError``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from metricjax.exceptions import InvalidParameterError


def _dtype_problem(dt) -> str | None:
    """Why ``dt`` is refused (``None`` if it is a supported real dtype)."""
    dt = np.dtype(dt)
    if jnp.issubdtype(dt, jnp.complexfloating):
        return f"is complex (dtype {dt}), which is not supported; pass real arrays"
    if dt == np.bool_ or dt.kind in "iu" or jnp.issubdtype(dt, jnp.floating):
        return None
    return f"must be numeric (real, integer or boolean), got dtype {dt}"


def float_dtype(*arrays) -> jnp.dtype:
    """Common floating dtype of ``arrays``.

    Integer and boolean inputs are promoted to JAX's default float (float32, or
    float64 under ``jax_enable_x64``), like ``jnp.mean`` does. Complex inputs are
    refused: a squared distance of complex points is not what these formulas mean.
    """
    dts = [jnp.result_type(a) for a in arrays if a is not None]
    for dt in dts:
        problem = _dtype_problem(dt)
        if problem is not None:
            raise TypeError(f"an input {problem}")
    # This function *is* the promotion policy (the inputs are then cast explicitly), so
    # it applies JAX's standard lattice even when a user turned on strict promotion.
    with jax.numpy_dtype_promotion("standard"):
        dt = jnp.result_type(*dts) if dts else jnp.result_type(float)
        if not jnp.issubdtype(dt, jnp.floating):
            dt = jnp.result_type(dt, float)
            dt = jax.dtypes.canonicalize_dtype(jnp.float64) if dt == jnp.float64 else dt
    return jnp.dtype(dt)


def compute_dtype(*arrays) -> jnp.dtype:
    """Dtype the losses compute in: :func:`float_dtype`, with float16/bfloat16 raised to float32.

    The losses reduce over all ``n`` points (softmax denominators, sums of hinges and
    the loss itself); with 8 (bfloat16) or 11 (float16) significant bits those sums
    lose accuracy as ``n`` grows (gradient errors of 10% at n = 500 in bfloat16), and
    float16 overflows above 65504. So half-precision input is computed in float32 and
    the loss is returned in float32; ``jax.grad`` still returns each cotangent in the
    dtype of its argument.
    """
    dt = float_dtype(*arrays)
    return jnp.dtype(jnp.float32) if jnp.finfo(dt).bits < 32 else dt


def _asarray(a, name: str):
    """``a`` itself if it is an array, else ``np.asarray(a)``; refuses non-real dtypes.

    Only the dtype is inspected (static information), so this also runs under ``jax.jit``.
    """
    if not (isinstance(a, (jax.Array, np.ndarray)) or hasattr(a, "__jax_array__")):
        try:
            a = np.asarray(a)
        except Exception as err:  # ragged lists and the like
            raise TypeError(f"`{name}` must be array-like, got {type(a).__name__}") from err
    dt = getattr(a, "dtype", None)
    if dt is None:  # an object that only implements __jax_array__
        dt = jnp.asarray(a).dtype
    problem = _dtype_problem(dt)
    if problem is not None:
        raise TypeError(f"`{name}` {problem}")
    return a


def points(x, name: str = "x"):
    """``x`` as an ``(n, d)`` array-like with n >= 1 and d >= 1 (not yet cast)."""
    x = _asarray(x, name)
    if np.ndim(x) != 2:
        raise ValueError(f"`{name}` must be 2-D with shape (n, d), got shape {np.shape(x)}")
    n, d = np.shape(x)
    if n < 1 or d < 1:
        raise ValueError(f"`{name}` must have at least one row and one column, got shape {(n, d)}")
    return x


def square_metric(metric, d: int, name: str = "metric"):
    """``metric`` as a ``(d, d)`` array-like."""
    metric = _asarray(metric, name)
    if np.ndim(metric) != 2 or np.shape(metric)[0] != np.shape(metric)[1]:
        raise ValueError(f"`{name}` must be a square (d, d) matrix, got shape {np.shape(metric)}")
    if np.shape(metric)[0] != d:
        raise ValueError(f"`{name}` has shape {np.shape(metric)} but the points have d={d} features")
    return metric


def transform_matrix(transform, d: int, name: str = "transform"):
    """``transform`` as a ``(k, d)`` array-like with k >= 1."""
    transform = _asarray(transform, name)
    if np.ndim(transform) != 2:
        raise ValueError(f"`{name}` must be 2-D with shape (k, d), got shape {np.shape(transform)}")
    k, dd = np.shape(transform)
    if dd != d:
        raise ValueError(f"`{name}` has shape {(k, dd)}: its width must equal the points' d={d}")
    if k < 1:
        raise ValueError(f"`{name}` must have at least one row, got shape {(k, dd)}")
    return transform


def same_width(x, y, xname: str = "x", yname: str = "y") -> None:
    """Raise if ``x`` and ``y`` disagree on the number of features."""
    if np.shape(x)[1] != np.shape(y)[1]:
        raise ValueError(
            f"`{xname}` has d={np.shape(x)[1]} features but `{yname}` has d={np.shape(y)[1]}"
        )


def check_finite(name: str, *arrays) -> None:
    """Raise ``ValueError`` if any of ``arrays`` holds NaN or inf (host-side check).

    The functional API does not look at values (that needs a device-to-host transfer
    and cannot run under ``jax.jit``): NaN or inf input gives NaN or inf output. Call
    this once on your data, outside hot loops, to get an error instead. The
    estimators refuse non-finite input themselves.

    Args:
        name: the name used in the error message, e.g. ``"x"``.
        *arrays: arrays or array-likes to check; ``None`` entries are skipped.

    Raises:
        ValueError: an array contains NaN or inf.
        TypeError: ``name`` is not a string, an array is not real-or-integer numeric,
            or an array is a tracer (called inside ``jax.jit``).

    Examples:
        >>> import numpy as np, metricjax as mj
        >>> mj.check_finite("x", np.array([[0.0, 1.0]]))
        >>> mj.check_finite("x", np.array([[0.0, np.nan]]))
        Traceback (most recent call last):
        ...
        ValueError: `x` contains NaN or inf (1 of 2 entries)
    """
    if not isinstance(name, str):
        raise TypeError(
            "check_finite(name, *arrays): `name` (the first argument, used in the error "
            f"message) must be a str, got {type(name).__name__}"
        )
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, jax.core.Tracer):
            raise TypeError(
                f"check_finite needs concrete arrays but `{name}` is traced; call it outside jax.jit"
            )
        arr = np.asarray(_asarray(a, name))
        if arr.dtype == np.bool_ or arr.dtype.kind in "iu":
            continue  # integers are always finite
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(
                f"`{name}` contains NaN or inf ({int(bad.sum())} of {arr.size} entries)"
            )


def label_codes(labels, n: int):
    """``(classes, codes)`` of host labels of any sortable type, via ``np.unique``.

    Raises:
        ValueError: ``labels`` is not of shape ``(n,)`` or holds NaN / inf.
        TypeError: the values cannot be sorted into classes.
    """
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"`labels` must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise ValueError("`labels` contains NaN or inf")
    if arr.dtype.kind == "O" and any(isinstance(v, float) and math.isnan(v) for v in arr):
        raise ValueError("`labels` contains NaN")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as err:
        raise TypeError(f"`labels` values cannot be sorted into classes: {err}") from err
    return classes, codes.reshape(-1)


def nonnegative_float(value, name: str) -> float:
    """A static hyperparameter ``value`` as a non-negative finite Python float.

    Raises:
        TypeError: ``value`` is traced, a bool, or not a number.
        ValueError: ``value`` is negative, NaN or infinite.
    """
    if isinstance(value, bool) or _is_traced(value):
        raise InvalidParameterError(f"`{name}` must be a non-negative Python number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(f"`{name}` must be a non-negative number, got {value!r}") from err
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"`{name}` must be a non-negative finite number, got {value!r}")
    return v


def _concrete_scalar_kind(value) -> str:
    """The dtype kind of a concrete 0-d NumPy or JAX array (``""`` for anything else)."""
    if isinstance(value, (np.ndarray, jax.Array)) and not _is_traced(value) and value.ndim == 0:
        return np.dtype(value.dtype).kind
    return ""


def is_int(value) -> bool:
    """Whether ``value`` is an int (NumPy integers and concrete 0-d integer arrays
    included, booleans not)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return True
    return _concrete_scalar_kind(value) in ("i", "u")


def is_real(value) -> bool:
    """Whether ``value`` is a real number (NumPy numbers and concrete 0-d real arrays
    included, booleans not)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return True
    return _concrete_scalar_kind(value) in ("i", "u", "f")


def wrong_type_or_value(type_ok: bool) -> type[Exception]:
    """The error class for a hyperparameter that failed its check:
    :class:`~metricjax.exceptions.InvalidParameterError` (a ``ValueError`` and a
    ``TypeError``) for the wrong type, ``ValueError`` for a value out of range."""
    return ValueError if type_ok else InvalidParameterError


def count(value, name: str, minimum: int = 1) -> int:
    """An iteration count ``value`` as a Python int ``>= minimum``.

    Raises:
        InvalidParameterError: ``value`` is not an int (booleans included).
        ValueError: ``value`` is below ``minimum``.
    """
    if not (is_int(value) and value >= minimum):
        raise wrong_type_or_value(is_int(value))(
            f"`{name}` must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def tolerance(value, name: str = "tol") -> float:
    """A tolerance ``value`` as a Python float ``>= 0``.

    Raises:
        InvalidParameterError: ``value`` is not a real number (booleans included).
        ValueError: ``value`` is negative or NaN.
    """
    if not (is_real(value) and value >= 0):
        raise wrong_type_or_value(is_real(value))(
            f"`{name}` must be a number >= 0, got {value!r}"
        )
    return float(value)


def integer(value, name: str, minimum: int = 1) -> int:
    """A count hyperparameter ``value`` as a Python int ``>= minimum``.

    Raises:
        ValueError: ``value`` is not an int (booleans included: metric-learn's message,
            word for word, which its SCML checks) or is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(
            f"{name} should be an integer, instead it is of type {type(value)}"
        )
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}")
    return int(value)


def _is_traced(a) -> bool:
    return isinstance(a, jax.core.Tracer)


def check_pairs(pairs, y, *, require_both: bool = True):
    r"""Validate pair constraints ``pairs`` ``(n_pairs, 2, d)`` and labels ``y`` in {-1, +1}.

    Shapes and dtypes are always checked (static information, also under ``jax.jit``);
    values (NaN/inf in ``pairs``, labels outside {-1, +1}, a single class) only when the
    arrays are concrete.

    Args:
        pairs: pair constraints, shape ``(n_pairs, 2, d)``: ``pairs[p, 0]`` and ``pairs[p, 1]``
            are the two points of pair ``p``.
        y: labels, shape ``(n_pairs,)``: +1 for a similar pair, -1 for a dissimilar one.
        require_both: refuse constraints with only one class of pairs.

    Returns:
        ``(pairs, y)``, the validated array-likes (not copied, not cast).

    Raises:
        ValueError: wrong shapes, NaN/inf in ``pairs``, labels outside {-1, +1}, or a single
            class while ``require_both``.
        TypeError: a non-numeric dtype.
    """
    pairs = _asarray(pairs, "pairs")
    shape = np.shape(pairs)
    if len(shape) != 3 or shape[1] != 2:
        raise ValueError(
            f"`pairs` must have shape (n_pairs, 2, d) (two points per pair), got shape {shape}"
        )
    n, _, d = shape
    if n < 1 or d < 1:
        raise ValueError(f"`pairs` must hold at least one pair of d >= 1 features, got {shape}")
    y = _asarray(y, "y")
    if np.shape(y) != (n,):
        raise ValueError(f"`y` must have shape ({n},), one label per pair, got {np.shape(y)}")
    if not _is_traced(pairs):
        p = np.asarray(pairs)
        if p.dtype.kind == "f" and not np.all(np.isfinite(p)):
            raise ValueError("`pairs` contains NaN or inf")
    if not _is_traced(y):
        yy = np.asarray(y)
        if yy.dtype == np.bool_ or not np.all((yy == 1) | (yy == -1)):
            bad = np.unique(yy[~((yy == 1) | (yy == -1))]) if yy.dtype != np.bool_ else yy[:3]
            # metric-learn's message word for word (its tests compare it), then ours
            raise error_with_note(
                ValueError,
                "When training on pairs, the labels (y) should contain only values in "
                "[-1, 1]. Found an incorrect value.",
                f"`y` must hold +1 (similar pair) or -1 (dissimilar pair) only, got {bad[:5]}",
            )
        if require_both and (np.all(yy == 1) or np.all(yy == -1)):
            which = "similar (+1)" if yy[0] == 1 else "dissimilar (-1)"
            raise ValueError(
                f"`y` holds a single class: all {n} pairs are {which}; both similar and "
                "dissimilar pairs are needed"
            )
    return pairs, y


def error_with_note(exc_type, message: str, detail: str) -> BaseException:
    """``exc_type(message)`` with ``detail`` as a note (shown in tracebacks, seen by
    pytest's ``match=``); before Python 3.11, which has no notes, appended to the message."""
    if not hasattr(BaseException, "add_note"):  # pragma: no cover - Python 3.10
        return exc_type(f"{message} {detail}")
    err = exc_type(message)
    err.add_note(detail)
    return err


def sample_weight(
    weight, n: int, dtype, name: str = "sample_weight", *, per: str = "point", min_positive: int = 2
):
    """``weight`` as an ``(n,)`` array of ``dtype`` (all ones for ``None``), gradient stopped.

    Values (finite, ``>= 0``, at least ``min_positive`` positive) are checked when
    concrete; under ``jax.jit`` / ``jax.vmap`` only the shape. ``per`` names what is
    weighted in the shape error (``"point"``, ``"constraint"``).
    """
    if weight is None:
        return jnp.ones((n,), dtype)
    weight = _asarray(weight, name)
    if np.shape(weight) != (n,):
        raise ValueError(f"`{name}` must have shape ({n},), one weight per {per}, got {np.shape(weight)}")
    if not _is_traced(weight):
        w = np.asarray(weight, np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"`{name}` must be finite and >= 0")
        if np.count_nonzero(w) < min_positive:
            raise ValueError(
                f"`{name}` must have at least {min_positive} positive weight"
                f"{'s' if min_positive > 1 else ''}, got {np.count_nonzero(w)}"
            )
    return jax.lax.stop_gradient(jnp.asarray(weight, dtype))
