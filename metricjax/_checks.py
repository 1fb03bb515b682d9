"""Trace-time input guards shared by the public functions.

Shape and dtype checks run on static information only (shapes, dtypes), so they
work unchanged under ``jax.jit`` and cost nothing in the compiled program.
Value checks (NaN/inf) need the data and therefore live in :func:`check_finite`,
which the estimators call and functional users may call explicitly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def float_dtype(*arrays) -> jnp.dtype:
    """Common floating dtype of ``arrays``.

    Integer and boolean inputs are promoted to JAX's default float (float32, or
    float64 under ``jax_enable_x64``), like ``jnp.mean`` does. Complex inputs are
    refused: a squared distance of complex points is not what these formulas mean.
    """
    dts = [jnp.result_type(a) for a in arrays if a is not None]
    for dt in dts:
        if jnp.issubdtype(dt, jnp.complexfloating):
            raise TypeError(f"complex input (dtype {dt}) is not supported; pass real arrays")
        if not (jnp.issubdtype(dt, jnp.number) or dt == jnp.bool_):
            raise TypeError(f"non-numeric input (dtype {dt}) is not supported")
    dt = jnp.result_type(*dts) if dts else jnp.result_type(float)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(dt, float)
        dt = jax.dtypes.canonicalize_dtype(jnp.float64) if dt == jnp.float64 else dt
    return jnp.dtype(dt)


def _asarray(a, name: str):
    if isinstance(a, (jax.Array, np.ndarray)) or hasattr(a, "__jax_array__"):
        return a
    try:
        arr = np.asarray(a)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"`{name}` must be array-like, got {type(a).__name__}") from err
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise TypeError(f"`{name}` must be numeric, got dtype {arr.dtype}")
    return arr


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

    Not for use inside ``jax.jit``: it needs concrete values. The estimators call it
    before fitting; functional users call it once on their data, outside hot loops.
    """
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, jax.core.Tracer):
            raise TypeError("check_finite needs concrete arrays; call it outside jax.jit")
        if not bool(np.all(np.isfinite(np.asarray(a)))):
            raise ValueError(f"`{name}` contains NaN or inf")
