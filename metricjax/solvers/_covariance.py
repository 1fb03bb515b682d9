r"""Covariance baseline: :math:`M = \Sigma^{+}`, and dense linear-algebra helpers.

A port of metric-learn 0.7.0's ``Covariance.fit`` in jit-compiled ``jnp``. The helpers
below (pseudo-inverse, inverse square root, generalised symmetric eigenproblem,
``L`` from ``M``, numerical rank, input guards) are shared with :mod:`._lfda` and
:mod:`._rca`. Each computes in the dtype of its input (float32, or float64 under
``jax.enable_x64``).
"""


import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from metricjax import _checks
from metricjax._rules import mm
from metricjax.exceptions import InvalidParameterError
from metricjax.solvers._prior import padded_size


# ----------------------------------------------------------------------------------
# input guards (host side)
# ----------------------------------------------------------------------------------
def prepare_points(x, name: str = "x", *, min_rows: int = 2):
    """``x`` as a jnp float array ``(n, d)`` with ``n >= min_rows``; finite unless traced.

    float16/bfloat16 are raised to float32 (the eigensolvers need at least single
    precision); integers become JAX's default float. A traced ``x`` (under ``jax.jit``
    or ``jax.grad``) is accepted; its values cannot be checked.
    """
    x = _checks.points(x, name)
    n = np.shape(x)[0]
    if n < min_rows:
        raise ValueError(f"`{name}` needs at least {min_rows} points (rows), got {n}")
    dtype = _checks.compute_dtype(x)
    if not _checks._is_traced(x):
        _checks.check_finite(name, x)
    return jnp.asarray(x, dtype)


def check_n_components(n_components, d: int) -> int:
    """metric-learn's ``_check_n_components``: ``None`` means ``d``, else an int in ``[1, d]``."""
    if n_components is None:
        return d
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
        raise InvalidParameterError(f"`n_components` must be None or an int, got {n_components!r}")
    if not 0 < n_components <= d:
        raise ValueError(
            f"Invalid n_components, must be in [1, {d}]"  # metric-learn's message
        )
    return int(n_components)


# ----------------------------------------------------------------------------------
# jnp helpers (traceable; used inside the jitted cores)
# ----------------------------------------------------------------------------------
def symmetrize(a):
    """:math:`(A + A^T)/2`."""
    return 0.5 * (a + a.T)


def eig_cutoff(w):
    r"""Eigenvalues ``|w| <=`` :math:`\max|w| \cdot d \cdot \varepsilon` count as zero.

    The threshold of ``numpy.linalg.matrix_rank`` and ``scipy.linalg.pinvh``.
    """
    return jnp.max(jnp.abs(w)) * w.shape[-1] * jnp.finfo(w.dtype).eps


def numerical_rank(a):
    """Rank of a symmetric matrix, as ``numpy.linalg.matrix_rank`` counts it."""
    w = jnp.linalg.eigvalsh(a)
    return jnp.sum(jnp.abs(w) > eig_cutoff(w))


def scaled_numerical_rank(a):
    r""":func:`numerical_rank` of :math:`D^{-1/2} A D^{-1/2}`, :math:`D = \mathrm{diag}(A)`
    (a zero diagonal entry: its row and column count as zero).

    Invariant to rescaling the features: the rank a Cholesky factorisation can rely on
    (its accuracy depends on the condition number after this scaling), where the plain
    numerical rank of a scatter whose features span 1e-4..1e4 counts the small ones as
    zero.
    """
    diag = jnp.diagonal(a)
    inv = jnp.where(diag > 0, 1 / jnp.sqrt(jnp.where(diag > 0, diag, 1)), 0)
    return numerical_rank(a * inv[:, None] * inv[None, :])


def pinvh(a):
    r"""Pseudo-inverse :math:`V \mathrm{diag}(w^{+}) V^T` of a symmetric matrix (``scipy.linalg.pinvh``)."""
    w, v = jnp.linalg.eigh(a)
    keep = jnp.abs(w) > eig_cutoff(w)
    winv = jnp.where(keep, 1 / jnp.where(keep, w, 1), 0)
    return symmetrize(mm(v * winv[None, :], v.T))


def inv_sqrtm(a):
    r""":math:`A^{-1/2} = V \mathrm{diag}(w^{-1/2}) V^T` (metric-learn's ``_inv_sqrtm``; NaN/inf if singular)."""
    w, v = jnp.linalg.eigh(a)
    return symmetrize(mm(v / jnp.sqrt(w)[None, :], v.T))


def generalized_eigh(a, b):
    r"""Solve :math:`A v = \lambda B v` for symmetric ``a`` and positive definite ``b``.

    With the Cholesky factor :math:`B = C C^T`: :math:`C^{-1} A C^{-T} u = \lambda u`,
    :math:`v = C^{-T} u` (LAPACK ``sygv``, as ``scipy.linalg.eigh(a, b)``). Eigenvalues
    ascending; eigenvectors :math:`B`-orthonormal (:math:`V^T B V = I`). NaN if ``b``
    is not numerically positive definite.
    """
    c = jnp.linalg.cholesky(b)
    z = jsl.solve_triangular(c, a, lower=True)  # C^-1 A
    w, u = jnp.linalg.eigh(symmetrize(jsl.solve_triangular(c, z.T, lower=True)))
    return w, jsl.solve_triangular(c.T, u, lower=False)


def components_from_psd(metric):
    r"""``L`` with :math:`L^T L = M`, chosen as metric-learn's ``components_from_metric``.

    Diagonal :math:`M`: :math:`\mathrm{diag}(\sqrt{\max(0, M_{ii})})`; else the transposed
    Cholesky factor when it exists (upper triangular); else (singular :math:`M`)
    :math:`\mathrm{diag}(\sqrt{\max(0, w)}) V^T` from :math:`M = V \mathrm{diag}(w) V^T`.
    """
    diag = jnp.diagonal(metric)
    is_diag = jnp.all(metric == jnp.diag(diag))
    chol = jnp.linalg.cholesky(metric)  # NaN where M is not positive definite
    w, v = jnp.linalg.eigh(metric)
    from_eig = v.T * jnp.sqrt(jnp.maximum(w, 0))[:, None]
    from_chol = jnp.where(jnp.all(jnp.isfinite(chol)), chol.T, from_eig)
    return jnp.where(is_diag, jnp.diag(jnp.sqrt(jnp.maximum(diag, 0))), from_chol)


# ----------------------------------------------------------------------------------
# Covariance
# ----------------------------------------------------------------------------------
@jax.jit
def _covariance_core(x, n):
    """``x``: ``(P, d)``, its first ``n`` rows the points and the rest zero padding
    (:func:`pad_rows`): one compiled program per bucket of sizes, not per ``n``."""
    xc, _, n = centre_padded(x, n)
    cov = symmetrize(mm(xc.T, xc)) / (n - 1)
    metric = pinvh(cov)
    return components_from_psd(metric), metric


def centre_padded(x, n_points):
    """``x`` ``(P, d)`` of :func:`pad_rows` centred on the mean of its first ``n_points``
    rows, its padding rows kept at zero.

    Returns:
        ``(centred x, row mask (P, 1), n_points in the dtype of x)``.
    """
    valid = (jnp.arange(x.shape[0], dtype=jnp.int32) < n_points)[:, None]
    n = n_points.astype(x.dtype)
    return jnp.where(valid, x - jnp.sum(x, axis=0, keepdims=True) / n, 0), valid, n


def pad_rows(x, size=None):
    """``(x padded with zero rows to size, n)``, ``size`` by default ``padded_size(n)``,
    ``n`` an int32 scalar: fits of similar sizes (the folds of a cross-validation, a
    learning curve) share one compiled program instead of compiling one per number of
    rows (0.3 s each for Covariance, 0.7 s for LFDA)."""
    n, d = x.shape
    size = padded_size(n) if size is None else size
    if size > n:  # NumPy for concrete input: jnp's eager concatenate compiles per shape
        xp = jnp if _checks._is_traced(x) else np
        x = xp.concatenate([xp.asarray(x), xp.zeros((size - n, d), x.dtype)])
    return x, np.int32(n)


def covariance_components(
    x: Float[ArrayLike, "n d"],
) -> tuple[Float[Array, "d d"], Float[Array, "d d"]]:
    r"""The Mahalanobis baseline: the (pseudo-)inverse of the data covariance.

    .. math::
        \Sigma = \frac{1}{n-1} \sum_i (x_i - \bar x)(x_i - \bar x)^T, \qquad
        M = \Sigma^{+}, \qquad L^T L = M

    :math:`\Sigma^{+}` is the Moore-Penrose pseudo-inverse, equal to :math:`\Sigma^{-1}`
    when :math:`\Sigma` is invertible; eigenvalues below
    :math:`\max|w| \cdot d \cdot \varepsilon` count as zero (``scipy.linalg.pinvh``).
    A constant direction of the data thus gets weight 0. ``L`` is chosen as metric-learn's
    ``components_from_metric`` does (upper-triangular Cholesky factor when :math:`M` is
    positive definite). Same result as metric-learn 0.7.0's ``Covariance().fit(x)``
    (``components_``), except for ``d = 1`` with constant data, where metric-learn
    returns ``inf`` (``1 / 0``) and this returns ``0`` (the pseudo-inverse).

    Jit-compiled; also runs under ``jax.jit`` (the NaN check is skipped for traced input).

    Args:
        x: points, shape ``(n, d)``, ``n >= 2``.

    Returns:
        ``(components, metric)``: ``L`` of shape ``(d, d)`` and ``M = L^T L`` of shape
        ``(d, d)``, in the floating dtype of ``x`` (float16 gives float32).

    Raises:
        ValueError: ``x`` is not 2-D, has fewer than two rows, or holds NaN/inf.
        TypeError: ``x`` is not real numeric.

    References:
        P. C. Mahalanobis, `On the generalised distance in statistics
        <https://insa.nic.in/writereaddata/UpLoadedFiles/PINSA/Vol02_1936_1_Art05.pdf>`_,
        Proceedings of the National Institute of Sciences of India, 1936.
    """
    x = prepare_points(x, "x", min_rows=2)
    return _covariance_core(*pad_rows(x))
