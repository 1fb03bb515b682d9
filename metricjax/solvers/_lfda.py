r"""LFDA: Local Fisher Discriminant Analysis (Sugiyama, 2007) as a jit-compiled eigensolver.

The host part sorts the points into classes (a padded ``(classes, max_size)`` index
table); the numeric core, one ``jax.jit`` program, builds the local affinities and the
two local scatter matrices class by class in a ``lax.scan`` (memory
:math:`O(m^2 + d^2)` for the largest class size ``m``), then solves the generalised
symmetric eigenproblem through a Cholesky factor and ``jnp.linalg.eigh``.

Differences from metric-learn 0.7.0's ``LFDA.fit``, each a bug there (shown in
``tests/test_solvers_linalg.py``):

1. **Local scaling.** metric-learn takes ``np.partition(dist, k, axis=0)[:, k]``: column
   ``k`` of the column-partitioned distance matrix (distances from the ``k``-th point,
   in partition order), not the ``k``-th row (each point's distance to its ``k``-th
   nearest neighbour). Here :math:`\sigma_i` is the distance from :math:`x_i` to its
   ``k``-th nearest neighbour in its class, as in the paper and Sugiyama's code.
2. **Between-class scatter.** metric-learn's ``tSb -= _sum_outer(X) / n - tSw`` adds
   :math:`S^{(lw)}` where the paper (and Sugiyama's MATLAB and Tang's R code) subtracts
   it, so its matrix is :math:`S^{(lb)} + 2 S^{(lw)}`: the same eigenvectors, but every
   eigenvalue shifted by ``+2``, which changes the ``"weighted"`` embedding.
3. **k across classes.** metric-learn overwrites ``k`` with ``min(k, n_c - 1)`` inside
   its class loop, so one small class lowers ``k`` for every later class (a one-point
   class sets ``k = 0``: all later affinities vanish). Here each class uses
   ``min(k, n_c - 1)`` for itself.
4. **k and the dimension.** metric-learn replaces any ``k >= d`` by ``d - 1`` (with a
   warning) and defaults to ``min(7, d - 1)``, which is ``0`` (all affinities zero)
   for ``d = 1``. ``k`` counts neighbours, not features: here ``k=None`` means 7 (the
   paper's value) and an explicit ``k`` is used as given (per class at most
   ``n_c - 1``).
5. **Singular local within-class scatter.** metric-learn falls back to
   ``scipy.linalg.eig`` and returns complex or NaN components; here a ``ValueError``
   says why.
"""


import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Shaped

from metricjax import _checks, _rules
from metricjax._rules import mm
from metricjax.exceptions import InvalidParameterError
from metricjax.solvers._covariance import (
    centre_padded,
    check_n_components,
    generalized_eigh,
    pad_rows,
    prepare_points,
    scaled_numerical_rank,
    symmetrize,
)
from metricjax.solvers._prior import padded_size

_EMBEDDINGS = ("weighted", "orthonormalized", "plain")
_DEFAULT_K = 7  # Sugiyama (2007), after Zelnik-Manor & Perona (2005)


# ----------------------------------------------------------------------------------
# host-side bookkeeping
# ----------------------------------------------------------------------------------
def _check_k(k) -> int:
    if k is None:
        return _DEFAULT_K
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidParameterError(f"`k` must be None or a positive int, got {k!r}")
    if k < 1:
        raise ValueError(f"`k` must be at least 1 (a number of nearest neighbours), got {k}")
    return int(k)


def _class_table(codes: np.ndarray, n_classes: int, pad: int):
    """Row indices grouped by class, padded with ``pad`` to ``(n_classes, width)``, the
    width the largest class's size rounded up to its bucket (``padded_size``)."""
    n = len(codes)
    counts = np.bincount(codes, minlength=n_classes)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    slot = np.arange(n) - starts[codes[order]]
    table = np.full((n_classes, padded_size(int(counts.max()))), pad, dtype=np.int32)
    table[codes[order], slot] = order
    return table, counts


# ----------------------------------------------------------------------------------
# numeric core
# ----------------------------------------------------------------------------------
def _class_scatters(z, valid, k):
    r"""Local scatter pieces of one class (``z``: its points centred, padded rows zero).

    :math:`\sigma_i` = distance to the ``k``-th nearest class member (index ``k`` of the
    sorted distances, index 0 being the point itself), :math:`A_{ij} =
    \exp(-\lVert x_i - x_j \rVert^2 / (\sigma_i \sigma_j))` (0 where
    :math:`\sigma_i \sigma_j = 0`). Returns :math:`G = \tfrac12 \sum_{ij} A_{ij}
    (x_i - x_j)(x_i - x_j)^T = Z^T (\mathrm{diag}(A 1) - A) Z` and
    :math:`T = \tfrac12 \sum_{ij} (x_i - x_j)(x_i - x_j)^T = n_c Z^T Z`.
    """
    pair = valid[:, None] & valid[None, :]
    dist = _rules.zero_diagonal(jnp.maximum(_rules.sq_euclidean(z), 0))
    kth = jnp.sort(jnp.where(pair, dist, jnp.inf), axis=0)[k]
    # padding rows: a finite placeholder (their pairs are masked below), so that no
    # 0 * inf enters the gradient through sigma_i * sigma_j
    sigma = jnp.sqrt(jnp.where(valid, kth, 1))
    scale = sigma[:, None] * sigma[None, :]
    ok = pair & (scale > 0)
    a = jnp.where(ok, jnp.exp(-dist / jnp.where(ok, scale, 1)), 0)
    g = mm(z.T, _rules.laplacian_apply(a, z))
    t = jnp.sum(valid, dtype=z.dtype) * mm(z.T, z)
    return g, t


@functools.partial(jax.jit, static_argnames=("dim", "embedding_type"))
def _lfda_core(x, n_points, table, ks, counts, *, dim, embedding_type):
    """``x``: ``(P, d)``, its first ``n_points`` rows the points, the rest zero padding;
    ``table``: each class's row indices, padded with ``P`` (:func:`_class_table`). Sizes
    are rounded up to buckets (:func:`metricjax.solvers._prior.padded_size`), so the fits
    of similar sizes (cross-validation folds) share one compiled program."""
    d = x.shape[1]
    xc, _, n = centre_padded(x, n_points)
    mixture = mm(xc.T, xc)  # S^(m) = (1/2) sum_ij (1/n) (x_i - x_j)(x_i - x_j)^T
    xpad = jnp.concatenate([xc, jnp.zeros((1, d), x.dtype)])

    def one_class(carry, inputs):
        rows, k, nc = inputs
        valid = rows < n_points
        xk = xpad[rows]
        mean = jnp.sum(xk, axis=0, keepdims=True) / nc
        z = jnp.where(valid[:, None], xk - mean, 0)
        g, t = _class_scatters(z, valid, k)
        within, correction = carry
        # S^(lw) = sum_c G_c / n_c;  S^(m) - S^(lb) = sum_c (T_c - G_c) / n + G_c / n_c
        return (within + g / nc, correction + (t - g) / n + g / nc), None

    zero = jnp.zeros((d, d), x.dtype)
    counts_f = counts.astype(x.dtype)
    (within, correction), _ = jax.lax.scan(one_class, (zero, zero), (table, ks, counts_f))
    within = symmetrize(within)
    between = symmetrize(mixture - correction)

    vals, vecs = generalized_eigh(between, within)
    vals, vecs = vals[::-1][:dim], vecs[:, ::-1][:, :dim]  # largest first
    if embedding_type == "weighted":
        vecs = vecs * jnp.sqrt(jnp.maximum(vals, 0))[None, :]
    elif embedding_type == "orthonormalized":
        vecs = jnp.linalg.qr(vecs)[0]
    # the rank after diagonal scaling: features of very different scales are no reason
    # to refuse, the Cholesky factorisation of generalized_eigh is accurate on them
    return vecs.T, vals, scaled_numerical_rank(within)


# ----------------------------------------------------------------------------------
# public
# ----------------------------------------------------------------------------------
def lfda_components(
    x: Float[ArrayLike, "n d"],
    labels: Shaped[ArrayLike, " n"],
    *,
    n_components: int | None = None,
    k: int | None = None,
    embedding_type: str = "weighted",
) -> Float[Array, "k d"]:
    r"""The LFDA transform: generalised eigenvectors of the local Fisher scatter matrices.

    With the local affinity :math:`A_{ij} = \exp(-\lVert x_i - x_j\rVert^2 /
    (\sigma_i \sigma_j))` between members of one class (:math:`\sigma_i` the distance
    from :math:`x_i` to its ``k``-th nearest neighbour in its class, at most
    :math:`n_c - 1`) and the weights

    .. math::
        W^{(lw)}_{ij} = \begin{cases} A_{ij}/n_c & y_i = y_j = c \\ 0 & y_i \ne y_j
        \end{cases}, \qquad
        W^{(lb)}_{ij} = \begin{cases} A_{ij}(1/n - 1/n_c) & y_i = y_j = c \\ 1/n &
        y_i \ne y_j \end{cases},

    the local within- and between-class scatters are :math:`S^{(l\cdot)} = \tfrac12
    \sum_{ij} W^{(l\cdot)}_{ij} (x_i - x_j)(x_i - x_j)^T`, and LFDA solves

    .. math::
        S^{(lb)} \varphi = \lambda S^{(lw)} \varphi, \qquad \varphi^T S^{(lw)} \varphi = 1,

    keeping the ``n_components`` eigenvectors of largest :math:`\lambda`. The rows of the
    result are :math:`\sqrt{\lambda_i}\, \varphi_i^T` (``"weighted"``),
    :math:`\varphi_i^T` (``"plain"``) or an orthonormal basis of their span from a QR
    factorisation (``"orthonormalized"``). All :math:`\lambda_i \ge 0`: as
    :math:`A_{ij} \le 1`, :math:`e^T S^{(lb)} e \ge \tfrac{1}{2n}\sum_{ij} \delta_{ij}^2
    - \sum_c \tfrac{1}{2 n_c} \sum_{i,j \in c} \delta_{ij}^2 = e^T S_b e \ge 0`
    (:math:`\delta_{ij} = e^T(x_i - x_j)`, :math:`S_b` the classical between-class
    scatter), so the weights only clip rounding below 0.

    metric-learn 0.7.0's ``LFDA`` has three bugs in this computation (wrong local
    scale, :math:`S^{(lb)} + 2 S^{(lw)}` for :math:`S^{(lb)}`, ``k`` carried across
    classes; see the module docstring); with them fixed it gives these components,
    up to the sign of each row.

    The labels are host bookkeeping and must be concrete; ``x`` may be traced
    (``jax.grad`` or ``jax.jit`` over ``x``), and then the value checks below (singular
    scatter, warnings) are skipped. Gradients exist where the eigenvalues are distinct.

    Args:
        x: points, shape ``(n, d)``, ``n >= 2``.
        labels: class labels, shape ``(n,)``, any sortable type; at least two classes.
        n_components: number of components, in ``[1, d]``; ``None`` means ``d``.
        k: nearest neighbour used for the local scale, ``>= 1`` (per class at most
            ``n_c - 1``); ``None`` means 7.
        embedding_type: ``"weighted"``, ``"orthonormalized"`` or ``"plain"``.

    Returns:
        Components ``L``, shape ``(n_components, d)``, in the floating dtype of ``x``
        (float16 gives float32); the embedding is ``x @ L.T``.

    Raises:
        ValueError: bad shapes, NaN/inf, fewer than two classes, ``n_components`` or
            ``k`` out of range, an unknown ``embedding_type``, or a singular local
            within-class scatter (constant or linearly dependent features, more
            features than the classes can span, or duplicated points).
        TypeError: non-numeric ``x`` or unsortable ``labels``.

    Warns:
        UserWarning: a class has a single point (it has no within-class pair); an
            explicit ``k`` exceeds a class (``n_c - 1`` is used there).

    References:
        M. Sugiyama, `Dimensionality Reduction of Multimodal Labeled Data by Local Fisher
        Discriminant Analysis <https://www.jmlr.org/papers/v8/sugiyama07b.html>`_,
        JMLR 8, 2007. L. Zelnik-Manor, P. Perona, *Self-Tuning Spectral Clustering*,
        NIPS 2004 (the local scaling).
    """
    if embedding_type not in _EMBEDDINGS:
        raise ValueError(f"`embedding_type` must be one of {_EMBEDDINGS}, got {embedding_type!r}")
    x = prepare_points(x, "x", min_rows=2)
    n, d = x.shape
    classes, codes = _checks.label_codes(labels, n)
    if len(classes) < 2:
        raise ValueError(f"LFDA needs at least two classes in `labels`, got one ({classes[0]!r})")
    dim = check_n_components(n_components, d)
    k_req = _check_k(k)
    size = padded_size(x.shape[0])
    table, counts = _class_table(codes, len(classes), size)
    ks = np.minimum(k_req, counts - 1)
    if np.any(counts == 1):
        warnings.warn(
            f"class(es) {classes[counts == 1].tolist()} of `labels` have a single point: they "
            "have no within-class pair and only enter the between-class scatter",
            stacklevel=2,
        )
    if k is not None and np.any((ks < k_req) & (counts > 1)):
        small = classes[(ks < k_req) & (counts > 1)].tolist()
        warnings.warn(
            f"k={k_req} is larger than class(es) {small} of `labels` allow: each of them uses "
            "its size minus one as k",
            stacklevel=2,
        )
    comps, vals, rank = _lfda_core(
        *pad_rows(x, size),
        jnp.asarray(table),
        jnp.asarray(ks, jnp.int32),
        jnp.asarray(counts, jnp.int32),
        dim=dim,
        embedding_type=embedding_type,
    )
    if _checks._is_traced(comps):  # under jax.jit / jax.grad: no value checks
        return comps
    rank = int(rank)
    if rank < d or not bool(jnp.all(jnp.isfinite(comps))):
        raise ValueError(
            f"the local within-class scatter matrix of `x` is singular (numerical rank {rank} < "
            f"d={d} in {x.dtype}), so LFDA's generalised eigenproblem has no solution. Causes: "
            "constant or linearly dependent features, more features than the classes' points "
            "span, points whose k-th neighbour is a duplicate (local scale 0), or (float32) "
            "feature scales that differ by many orders of magnitude. Reduce the dimension "
            "first (e.g. sklearn.decomposition.PCA), remove duplicated points, standardise "
            "the features or use float64."
        )
    return comps
