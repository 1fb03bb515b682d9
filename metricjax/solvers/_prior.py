r"""Priors and initialisations of a Mahalanobis matrix, and ``L`` from ``M = L^T L``.

Host-side helpers (float64 NumPy/SciPy), run once per fit before the compiled solver
starts. They port metric-learn 0.7.0's ``_initialize_metric_mahalanobis`` and
``components_from_metric`` (``metric_learn/_util.py``) to the same numbers, with error
messages that name the offending argument. A matrix that is not positive semi-definite
raises :class:`metricjax.exceptions.NonPSDError`, one that is not strictly definite where
that is needed ``numpy.linalg.LinAlgError``, as metric-learn does; both are subclasses of
``numpy.linalg.LinAlgError``, itself a ``ValueError``.
"""


import contextlib
import numbers
import warnings

import jax
import numpy as np
import scipy.linalg
from jaxtyping import ArrayLike, Float

from metricjax.exceptions import NonPSDError

_INITS = ("identity", "covariance", "random")


def _random_state(seed) -> np.random.RandomState:
    """scikit-learn's ``check_random_state``: ``None``, an int or a ``RandomState``."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(
        f"`random_state` must be None, an int or a numpy.random.RandomState, got {seed!r}"
    )


def _spd_matrix(d: int, rng: np.random.RandomState) -> np.ndarray:
    """scikit-learn's ``make_spd_matrix(d, random_state=rng)``: same draws, same numbers."""
    a = rng.uniform(size=(d, d))
    u, _, vt = scipy.linalg.svd(np.dot(a.T, a), check_finite=False)
    return np.dot(np.dot(u, 1.0 + np.diag(rng.uniform(size=d))), vt)


def _eig_tol(w: np.ndarray, tol=None) -> float:
    """Eigenvalues with ``|w| < tol`` count as zero (``np.linalg.matrix_rank``'s default)."""
    if tol is None:
        tol = np.abs(w).max() * len(w) * np.finfo(w.dtype).eps
    tol = float(tol)
    if not tol >= 0:
        raise ValueError(f"`tol` must be a non-negative number, got {tol}")
    return tol


def _is_definite(w: np.ndarray, name: str, tol=None) -> bool:
    """metric-learn's ``_check_sdp_from_eigen``: raise if not PSD, return whether PD."""
    tol = _eig_tol(w, tol)
    if np.any(w < -tol):
        raise NonPSDError(
            f"`{name}` is not positive semi-definite: its smallest eigenvalue is "
            f"{w.min():.6g} < -{tol:.3g}"
        )
    return not np.any(np.abs(w) < tol)


def _symmetric(m: np.ndarray) -> bool:
    """``np.allclose(m, m.T)`` for a finite ``m`` (rtol 1e-5, atol 1e-8), without its
    overhead (about 40 of the 70 us of :func:`components_from_metric` on a 10 x 10 matrix)."""
    return bool(np.all(np.abs(m - m.T) <= 1e-8 + 1e-5 * np.abs(m.T)))


def _pinv_from_eig(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Moore-Penrose pseudo-inverse ``V diag(1/w) V^T`` of a symmetric matrix from its EVD."""
    tol = np.amax(w) * np.max(w.shape) * np.finfo(w.dtype).eps
    large = np.abs(w) > tol
    winv = np.zeros_like(w)
    np.divide(1.0, w, where=large, out=winv)
    return np.dot(v * winv, v.T)


def _host_real(a, name: str) -> np.ndarray:
    """``a`` as a NumPy array of real numbers (integers or floats, not booleans)."""
    try:
        arr = np.asarray(a)
    except Exception as err:
        raise TypeError(f"`{name}` must be array-like, got {type(a).__name__}") from err
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(f"`{name}` must be real numeric, got dtype {arr.dtype}")
    return arr


def _host_inputs(x) -> np.ndarray:
    """``x`` as a NumPy array of points ``(n, d)`` or tuples ``(n, t, d)``, finite (not copied)."""
    arr = _host_real(x, "x")
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ValueError(
            f"`x` must be points (n, d) or tuples (n_tuples, tuple_size, d), got shape {arr.shape}"
        )
    # a finite sum proves every entry finite (one pass, no temporary); otherwise look closer
    if arr.dtype.kind == "f" and not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
        raise ValueError("`x` contains NaN or inf")
    return arr


def initial_metric(
    x: Float[ArrayLike, "..."],
    init: str | Float[ArrayLike, "d d"] = "identity",
    *,
    random_state=None,
    strict_pd: bool = False,
    return_inverse: bool = False,
    matrix_name: str = "prior",
):
    r"""A positive semi-definite Mahalanobis matrix to start from, or to use as a prior.

    Same numbers as metric-learn 0.7.0's ``_initialize_metric_mahalanobis``:

    - ``"identity"``: :math:`M = I_d`.
    - ``"covariance"``: :math:`M = \Sigma^{+}`, the (pseudo-)inverse of the sample
      covariance :math:`\Sigma` of the points. For tuples ``(n_tuples, t, d)`` the points
      are the distinct rows among all tuple members (``np.unique``, as metric-learn).
    - ``"random"``: a random SPD matrix, scikit-learn's ``make_spd_matrix(d, random_state)``
      (:math:`U (I + \mathrm{diag}(u)) V^T` from the SVD of :math:`A^T A`, :math:`A, u`
      uniform), same draws as scikit-learn.
    - an array ``(d, d)``: used as is (a float64 copy); it must be symmetric and PSD.

    Args:
        x: the data, points ``(n, d)`` or tuples ``(n_tuples, t, d)``; only ``d`` is used,
            except for ``init="covariance"``.
        init: ``"identity"``, ``"covariance"``, ``"random"`` or a ``(d, d)`` array.
        random_state: ``None``, an int seed or a ``numpy.random.RandomState`` (used by
            ``"random"`` only).
        strict_pd: require a positive *definite* matrix (raise otherwise).
        return_inverse: also return :math:`M^{-1}` (the pseudo-inverse, with a warning,
            when :math:`M` is singular and ``strict_pd`` is False).
        matrix_name: name of the argument in error messages, e.g. ``"prior"`` or ``"init"``.

    Returns:
        ``M`` as a float64 NumPy array ``(d, d)``, or ``(M, M_inv)`` if ``return_inverse``.

    Raises:
        ValueError: ``init`` is an unknown string, a matrix of the wrong shape, not
            symmetric, or not finite; ``x`` has the wrong rank or holds NaN/inf.
        numpy.linalg.LinAlgError: (a ``ValueError``) the matrix is not PSD, or not PD
            while ``strict_pd`` is set.

    References:
        W. de Vazelhes et al., *metric-learn: Metric Learning Algorithms in Python*,
        JMLR 21(138), 2020 (``metric_learn._util._initialize_metric_mahalanobis``).
    """
    arr = _host_inputs(x)
    d = arr.shape[-1]
    if (isinstance(init, str) and init not in _INITS) or (
        not isinstance(init, str) and np.ndim(init) == 0
    ):
        raise ValueError(  # metric-learn's message, word for word
            f"`{matrix_name}` must be 'identity', 'covariance', 'random' or a numpy array of "
            "shape (n_features, n_features)."
        )
    if not isinstance(init, str):
        try:
            m = np.array(init, dtype=np.float64)  # a copy: updating M never touches init
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"`{matrix_name}` must be 'identity', 'covariance', 'random' or a real "
                f"array of shape ({d}, {d}), got {type(init).__name__}"
            ) from err
        if m.shape != (d, d):
            raise ValueError(
                f"The input dimensionality {m.shape} of the given mahalanobis matrix "
                f"`{matrix_name}` must match the dimensionality of the given inputs ({d})."
            )
        if not np.all(np.isfinite(m)):
            raise ValueError(f"`{matrix_name}` contains NaN or inf")
        if not _symmetric(m):
            raise ValueError(f"`{matrix_name}` is not symmetric.")
        w, v = scipy.linalg.eigh(m, check_finite=False)
        definite = _is_definite(w, matrix_name)
        if strict_pd and not definite:
            raise np.linalg.LinAlgError(
                f"You should provide a strictly positive definite matrix as `{matrix_name}`. "
                f"This one is not definite. Try another {matrix_name}, or an algorithm that "
                f"does not require the {matrix_name} to be strictly positive definite."
            )
        if return_inverse:
            if not definite:
                warnings.warn(
                    f"`{matrix_name}` is not invertible: using the pseudo-inverse instead.",
                    stacklevel=2,
                )
            return m, _pinv_from_eig(w, v)
        return m

    if init == "identity":
        m = np.eye(d)
        return (m, m.copy()) if return_inverse else m

    if init == "covariance":
        arr = arr.astype(np.float64, copy=False)
        pts = np.unique(arr.reshape(-1, d), axis=0) if arr.ndim == 3 else arr
        if pts.shape[0] < 2:
            raise ValueError(
                f"`{matrix_name}='covariance'` needs at least two distinct points, got "
                f"{pts.shape[0]}"
            )
        cov = np.atleast_2d(np.cov(pts, rowvar=False))
        w, v = scipy.linalg.eigh(cov, check_finite=False)
        definite = _is_definite(w, "covariance matrix")
        if strict_pd and not definite:
            raise np.linalg.LinAlgError(
                "Unable to get a true inverse of the covariance matrix since it is not "
                f"definite. Try another `{matrix_name}`, or an algorithm that does not "
                f"require the `{matrix_name}` to be strictly positive definite."
            )
        if not definite:
            warnings.warn(
                # metric-learn's text, word for word (its missing space included)
                "The covariance matrix is not invertible: using the pseudo-inverse instead."
                "To make the covariance matrix invertible you can remove any linearly "
                "dependent features and/or reduce the dimensionality of your input, for "
                "instance using `sklearn.decomposition.PCA` as a preprocessing step.",
                stacklevel=2,
            )
        m = _pinv_from_eig(w, v)
        return (m, cov) if return_inverse else m

    # "random"
    m = _spd_matrix(d, _random_state(random_state))
    if return_inverse:
        return m, scipy.linalg.pinvh(m)
    return m


def components_from_metric(metric: Float[ArrayLike, "d d"], tol=None) -> np.ndarray:
    r"""A transform ``L`` with :math:`M = L^T L` (metric-learn's ``components_from_metric``).

    - diagonal :math:`M`: :math:`L = \mathrm{diag}(\sqrt{\max(0, M_{ii})})`;
    - otherwise, if the Cholesky factorisation :math:`M = C C^T` exists, :math:`L = C^T`
      (upper triangular);
    - otherwise (singular PSD :math:`M`), from :math:`M = V \mathrm{diag}(w) V^T`:
      :math:`L = \mathrm{diag}(\sqrt{\max(0, w)}) V^T`.

    Eigenvalues in :math:`[-\mathrm{tol}, 0)` count as zero; more negative ones are refused.

    Args:
        metric: symmetric positive semi-definite matrix :math:`M`, shape ``(d, d)``.
        tol: non-negative tolerance on negative eigenvalues; ``None`` means
            :math:`\max|w| \cdot d \cdot \varepsilon` (machine epsilon of the dtype).

    Returns:
        ``L`` as a NumPy array ``(d, d)`` (float64, or float32 for float32 input).

    Raises:
        ValueError: ``metric`` is not a finite square matrix, or not symmetric.
        numpy.linalg.LinAlgError: (a ``ValueError``) ``metric`` is not PSD.
    """
    m = _host_real(metric, "metric")
    if m.dtype.kind != "f" or m.dtype.itemsize < 4:
        m = m.astype(np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise ValueError(f"`metric` must be a square (d, d) matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("`metric` contains NaN or inf")
    if not _symmetric(m):
        raise ValueError("The input `metric` should be symmetric.")
    if np.array_equal(m, np.diag(np.diag(m))):
        _is_definite(np.diag(m), "metric", tol)
        return np.diag(np.sqrt(np.maximum(0, np.diag(m))))
    try:
        return np.linalg.cholesky(m).T
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(m)
        _is_definite(w, "metric", tol)
        return v.T * np.sqrt(np.maximum(0, w[:, None]))


def padded_size(n: int) -> int:
    """``n`` rounded up to 4 sizes per octave (at most 25% more), at least 16.

    The solvers pad their constraint arrays with no-op rows to this size, so fits of
    similar sizes share one compiled loop.
    """
    if n <= 16:
        return 16
    step = 1 << (n.bit_length() - 3)
    return -(-n // step) * step


def on_device(device):
    """Context placing the solver's arrays and compiled loop on ``device``.

    ``None`` keeps JAX's default device; a string (``"cpu"``, ``"gpu"``) means the first
    device of that platform; a ``jax.Device`` is used as is.
    """
    if device is None:
        return contextlib.nullcontext()
    if isinstance(device, str):
        try:
            device = jax.devices(device)[0]
        except RuntimeError as err:
            raise ValueError(f"`device`: no {device!r} device is available ({err})") from err
    if not isinstance(device, jax.Device):
        raise TypeError(f"`device` must be None, a platform name or a jax.Device, got {device!r}")
    return jax.default_device(device)

