r"""RCA: Relevant Components Analysis (Bar-Hillel et al., 2005) as jit-compiled linear algebra.

A port of metric-learn 0.7.0's ``RCA.fit``: whiten by the within-chunklet covariance,
optionally after a constrained Fisher projection to ``n_components`` dimensions.
Chunk means come from one ``jax.ops.segment_sum`` (no loop over chunklets). Where
metric-learn warns that the within-chunklet covariance is singular and returns NaN or
huge components, this raises a ``ValueError``.
"""


import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from metricjax import _checks
from metricjax._rules import mm
from metricjax.solvers._covariance import (
    centre_padded,
    check_n_components,
    generalized_eigh,
    inv_sqrtm,
    numerical_rank,
    pad_rows,
    prepare_points,
    symmetrize,
)


def _chunk_ids(chunks, n: int):
    """Chunk ids as int64 ``(n,)``: ``-1`` for no chunklet, else ``>= 0``."""
    arr = np.asarray(chunks)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"`chunks` must have shape ({n},) (one id per row of x), got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError("`chunks` must hold integer chunklet ids (-1 for no chunklet)")
    elif arr.dtype.kind not in "iu" and arr.dtype != np.bool_:
        raise TypeError(f"`chunks` must hold integer chunklet ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if np.any(arr < -1):
        raise ValueError(
            f"`chunks` ids must be >= 0, or -1 for a point in no chunklet; got {arr.min()}"
        )
    return arr


@functools.partial(jax.jit, static_argnames=("n_chunks", "dim"))
def _rca_core(xs, n_points, seg, *, n_chunks, dim):
    """``xs``: ``(P, d)``, its first ``n_points`` rows the chunklets' points, the rest zero
    padding (:func:`pad_rows`) with chunk id ``n_chunks`` (dropped by the segment sums):
    fits of similar sizes share one compiled program."""
    d = xs.shape[1]
    xs, valid, m = centre_padded(xs, n_points)  # the covariances are shift invariant
    sums = jax.ops.segment_sum(xs, seg, num_segments=n_chunks)
    sizes = jax.ops.segment_sum(valid[:, 0].astype(xs.dtype), seg, num_segments=n_chunks)
    z = jnp.where(valid, xs - (sums / sizes[:, None])[jnp.minimum(seg, n_chunks - 1)], 0)
    inner = symmetrize(mm(z.T, z)) / m  # within-chunklet covariance C
    rank = numerical_rank(inner)
    if dim == d:
        return inv_sqrtm(inner), rank
    # constrained Fisher projection: the dim generalised eigenvectors of (C, S_t) with
    # the smallest eigenvalues (least within-chunklet variance per unit of total)
    total = symmetrize(mm(xs.T, xs)) / (m - 1)
    a = generalized_eigh(inner, total)[1][:, :dim]
    reduced = symmetrize(mm(a.T, mm(inner, a)))
    return mm(inv_sqrtm(reduced), a.T), rank


def rca_components(
    x: Float[ArrayLike, "n d"],
    chunks: Int[ArrayLike, " n"],
    *,
    n_components: int | None = None,
) -> Float[Array, "k d"]:
    r"""The RCA transform: whitening by the within-chunklet covariance.

    A chunklet is a set of points known to share a class (``chunks[i] = j``: point ``i``
    is in chunklet ``j``; ``-1``: in none). With :math:`m_j` the mean of chunklet
    :math:`j` and :math:`p` the number of points in chunklets,

    .. math::
        C = \frac{1}{p} \sum_j \sum_{i \in j} (x_i - m_j)(x_i - m_j)^T, \qquad
        L = C^{-1/2}, \qquad M = L^T L = C^{-1}.

    With ``n_components < d`` the data are first projected (constrained Fisher linear
    discriminant) on the ``n_components`` generalised eigenvectors ``A`` of
    :math:`C a = \lambda S_t a` with the smallest :math:`\lambda` (:math:`S_t` the
    covariance of the chunked points), then whitened there:
    :math:`L = (A^T C A)^{-1/2} A^T`. Same result as metric-learn 0.7.0's
    ``RCA(n_components).fit(x, chunks)`` (up to the sign of each row when
    ``n_components < d``).

    ``chunks`` must be concrete; ``x`` may be traced (``jax.grad`` or ``jax.jit`` over
    ``x``), and then the singularity check is skipped.

    Args:
        x: points, shape ``(n, d)``, ``n >= 2``.
        chunks: chunklet ids, shape ``(n,)``: ``-1`` or a non-negative int (ids need not
            be contiguous). See :meth:`metricjax.constraints.Constraints.chunks`.
        n_components: output dimension in ``[1, d]``; ``None`` means ``d``.

    Returns:
        Components ``L``, shape ``(n_components, d)``, in the floating dtype of ``x``
        (float16 gives float32).

    Raises:
        ValueError: bad shapes or ids, NaN/inf, ``n_components`` out of range, no
            chunklet with two or more points, or a singular within-chunklet covariance
            (metric-learn warns and returns NaN there): too few chunklet points for
            ``d`` features (``p`` minus the number of chunklets must be ``>= d``), or
            features that are constant or linearly dependent within chunklets.
        TypeError: non-numeric input.

    References:
        A. Bar-Hillel, T. Hertz, N. Shental, D. Weinshall, `Learning a Mahalanobis
        Metric from Equivalence Constraints <https://jmlr.org/papers/v6/bar-hillel05a.html>`_,
        JMLR 6, 2005. N. Shental, T. Hertz, D. Weinshall, M. Pavel, *Adjustment Learning
        and Relevant Component Analysis*, ECCV 2002.
    """
    x = prepare_points(x, "x", min_rows=2)
    n, d = x.shape
    ids = _chunk_ids(chunks, n)
    dim = check_n_components(n_components, d)
    member = ids >= 0
    uniq, seg, sizes = np.unique(ids[member], return_inverse=True, return_counts=True)
    if not np.any(sizes >= 2):
        raise ValueError(
            "`chunks` has no chunklet with two or more points: RCA needs points known to "
            "share a class"
        )
    rows = np.flatnonzero(member)
    # NumPy's gather for concrete x: jnp's eager one compiles per shape
    xs, m = pad_rows(x[rows] if _checks._is_traced(x) else np.asarray(x)[rows])
    seg = np.concatenate([seg.reshape(-1), np.full(xs.shape[0] - m, len(uniq))])
    comps, rank = _rca_core(
        xs,
        m,
        jnp.asarray(seg, jnp.int32),
        n_chunks=len(uniq),
        dim=dim,
    )
    if _checks._is_traced(comps):  # under jax.jit / jax.grad: no value checks
        return comps
    rank = int(rank)
    if rank < d or not bool(jnp.all(jnp.isfinite(comps))):
        dof = int(member.sum()) - len(uniq)
        raise ValueError(
            f"the within-chunklet covariance of `x` is singular (numerical rank {rank} < d={d} "
            f"in {x.dtype}), so RCA's whitening is undefined (metric-learn returns NaN here). "
            f"The chunklets give {dof} degrees of freedom (points in chunklets minus "
            "chunklets), an upper bound on the rank. Add more or larger chunklets, remove "
            "constant or linearly dependent features (e.g. sklearn.decomposition.PCA), or, "
            "if the features' scales differ by many orders of magnitude, standardise them or "
            "use float64."
        )
    return comps
