r"""LMNN on an impostor active set: the streaming search and the pair-list loss.

Weinberger & Saul (2009, section 6.1 and appendix, "ball trees" and "active sets")
observe that at any time only a small fraction of the triplets :math:`(i, j, l)` is
active (:math:`m + D_{ij} - D_{il} > 0`): they recompute the set of possible
impostors every few iterations and evaluate the loss on that set in between. This
module holds the two device kernels behind :func:`metricjax.losses.lmnn_impostors`
and ``lmnn_loss(..., impostors=...)`` (the public functions and their argument
checks are in :mod:`metricjax.losses._lmnn`):

* the **search**: row blocks of the ``(b, n)`` distance matrix (the engine's
  block-size rule, memory ``O(b n)``), keeping the pairs :math:`(i, l)`,
  :math:`c_l \ne c_i`, with
  :math:`D_{il} \le \max_{j \in N_i} D_{ij} + m + s` (slack :math:`s \ge 0`);
  each block's mask goes to the host, which keeps the indices only;
* the **pair-list loss**: the exact LMNN loss restricted to the impostors of a
  fixed-shape, padded list of pairs, with its closed-form gradient in the
  Laplacian form of :mod:`metricjax._rules` (:func:`laplacian_pairs_transform`,
  :func:`laplacian_pairs`): ``O(p k + n k d)`` work for ``p`` listed pairs instead
  of ``O(n^2 k)``.

Every active triplet :math:`(i, j, l)` has
:math:`D_{il} < m + D_{ij} \le m + \max_j D_{ij}`, so a list searched at the current
``L`` holds all of them and the two losses are *equal*; a list searched at an older
``L`` misses only impostors that came in since, and the pair-list loss is then a
lower bound of the full one (it drops non-negative hinge terms).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from metricjax._rules import laplacian_pairs, laplacian_pairs_transform, mm, rowdot
from metricjax.losses import _engine

#: Arrays of ``n`` entries per row of one search block (distances, mask, temporaries).
_SEARCH_ARRAYS_PER_PAIR = 6
#: Rounding allowance of the search, in units of the dtype's epsilon times the
#: squared norms involved: the search uses the norm expansion, the loss exact
#: differences, so a pair within a few ulps of the radius is kept.
_SEARCH_ULPS = 64


def push_is_on(push_weight) -> bool:
    """Whether the impostor terms are computed: a Python number decides statically (0:
    no impostor search), a traced push weight always has them."""
    return not isinstance(push_weight, (int, float)) or push_weight > 0


def primal_value(a):
    """The values of a pytree of ``CustomVJPPrimal`` (``symbolic_zeros=True``); ``None`` kept."""
    return jax.tree.map(lambda p: p.value, a)


def search_block_rows(block_size, n: int, itemsize: int) -> int:
    """Rows per block of the impostor search (the engine's one block-size rule)."""
    return _engine.block_rows(
        block_size, n, n, itemsize, arrays_per_pair=_SEARCH_ARRAYS_PER_PAIR, min_rows=16
    )


def _search_eps(dtype, kz: int):
    """Relative rounding allowance of the search in ``dtype`` for ``kz`` embedded dims:
    :data:`_SEARCH_ULPS` ulps, and in float32 (the search of a float64 loss) enough to
    cover the worst case of the cast and of a ``kz``-term dot product as well."""
    ulps = _SEARCH_ULPS if dtype == jnp.float64 else _SEARCH_ULPS + 4 * kz
    return ulps * float(jnp.finfo(dtype).eps)


@functools.partial(jax.jit, static_argnums=(6, 7))
def _search_block(zp, qcol, codes_p, tn_p, start, radius_extra, b, eps):
    r"""Candidate mask ``(b, n_p)`` of the padded rows ``start ... start + b - 1``.

    :math:`D_{il} = q_i + q_l - 2 z_i \cdot z_l \le r_i` with a rounding allowance of
    ``eps (q_i + q_l + r_i)``, rearranged so that the ``(b, n)`` block costs one product,
    one subtraction and two comparisons: :math:`(1 - \epsilon) q_l - 2 z_i \cdot z_l
    \le (1 + \epsilon) r_i - (1 - \epsilon) q_i` (``qcol`` is :math:`(1 - \epsilon) q`).
    """
    zi = jax.lax.dynamic_slice_in_dim(zp, start, b)
    ci = jax.lax.dynamic_slice_in_dim(codes_p, start, b)
    ti = jax.lax.dynamic_slice_in_dim(tn_p, start, b)
    dz = zi[:, None, :] - zp[ti]
    radius = jnp.max(jnp.sum(dz * dz, axis=-1), axis=1) + radius_extra  # (b,)
    thr = (1 + eps) * radius - (1 - eps) * rowdot(zi, zi)
    lhs = qcol[None, :] - 2 * mm(zi, zp.T)
    return (lhs <= thr[:, None]) & (ci[:, None] != codes_p[None, :])


def _search_dtype(z):
    """float32 for the search of a float64 embedding whose squared norms float32 holds
    with room (the allowance of :func:`_search_eps` then covers the cast: the set stays
    complete), else ``z``'s own dtype."""
    if z.dtype != jnp.float64:
        return z.dtype
    top = float(jnp.max(rowdot(z, z)))
    return jnp.float32 if (top == 0 or 1e-20 <= top <= 1e30) else z.dtype


def find_impostors(z, codes, tn, radius_extra: float, block_size: int, max_pairs):
    """Host loop over the row blocks: ``(anchors, impostors)`` NumPy int32 arrays, or ``None``.

    ``z`` (``(n, k)``, centred embedding), ``codes`` (``(n,)``), ``tn`` (``(n, k_t)``) are
    device arrays. ``None`` when more than ``max_pairs`` pairs are found (the search
    stops at the first block past it). Pairs come sorted by anchor, then impostor.
    """
    n = z.shape[0]
    b = block_size
    dt = _search_dtype(z)
    eps = _search_eps(dt, z.shape[1])
    pad = -n % b
    zp = jnp.pad(z.astype(dt), ((0, pad), (0, 0)))
    codes_p = jnp.pad(codes, (0, pad))
    tn_p = jnp.pad(tn, ((0, pad), (0, 0)))
    qcol = (1 - eps) * rowdot(zp, zp)
    extra = jnp.asarray(radius_extra, dt)
    rows_out, cols_out, total = [], [], 0
    for start in range(0, n, b):
        mask = np.asarray(_search_block(zp, qcol, codes_p, tn_p, np.int32(start), extra, b, eps))
        flat = np.flatnonzero(mask[: n - start, :n])  # padded rows and columns dropped
        total += flat.size
        if max_pairs is not None and total > max_pairs:
            return None
        r, c = np.divmod(flat, n)
        rows_out.append((r + start).astype(np.int32))
        cols_out.append(c.astype(np.int32))
    return np.concatenate(rows_out), np.concatenate(cols_out)


def _take(a, idx, sorted_=False):
    """Rows ``a[idx]`` of in-range indices. XLA's CPU gather is up to 10x faster with
    ``mode="clip"`` than with the default out-of-bounds handling of ``a[idx]``."""
    return a.at[idx].get(mode="clip", indices_are_sorted=sorted_)


def active_pass(
    transform, x, tn, anchors, impostors, mask, weights, push_weight, margin, *, with_grad,
    need_x=True,
):
    r"""LMNN loss on a pair list (and ``(loss, lbar, xbar)`` with ``with_grad``).

    Triplets :math:`(i, j, l)` with :math:`(i, l)` a listed pair (``mask`` true) and
    :math:`j \in N_i`. Distances are exact differences of the embedded points. The
    slopes :math:`G` are those of :func:`metricjax.losses.lmnn_loss` restricted to the
    list: :math:`(1 - \mu) + \mu a_{ij}` on the ``n k`` target pairs and
    :math:`-\mu b_{il}` on the listed pairs; both go through one pair list to the
    Laplacian helpers. ``weights``: ``None`` or ``(a, s)`` as in
    :func:`metricjax.losses._lmnn.lmnn_rows` (pull scaled by :math:`a_{ij}`, hinge by
    :math:`a_{ij} s_l`); ``push_weight`` a Python float or a traced scalar.
    """
    n, k = tn.shape
    dt = x.dtype
    mu = push_weight
    weighted = weights is not None
    xc, z = _engine.embed(transform, x)
    dzt = z[:, None, :] - _take(z, tn)  # (n, k, kz)
    d_ij = jnp.sum(dzt * dzt, axis=-1)  # (n, k)
    loss = (1.0 - mu) * jnp.sum(weights[0] * d_ij if weighted else d_ij)
    use_push = push_is_on(mu)  # static
    if use_push:
        # one gather per index array, of the rows [z, x] (z only without the gradient)
        kz = z.shape[1]
        table = jnp.concatenate([z, xc], axis=1) if with_grad else z
        diff = _take(table, anchors, True) - _take(table, impostors)  # (p, kz [+ d])
        dzi = diff[:, :kz]
        d_il = jnp.sum(dzi * dzi, axis=-1)
        h = margin + _take(d_ij, anchors, True) - d_il[:, None]  # (p, k)
        active = (h > 0) & mask[:, None]  # strict: subgradient 0 at the kink
        # weighted: each hinge (i, j, l) times a_ij s_l
        pw = _take(weights[0], anchors, True) * _take(weights[1], impostors)[:, None] if weighted else 1
        loss = loss + mu * jnp.sum(jnp.where(active, pw * h, 0))
    if not with_grad:
        return loss
    # slopes of the target pairs (i, j) and of the listed impostor pairs (i, l)
    wt = jnp.full((n, k), 1.0 - mu, dt)
    if use_push:
        af = active.astype(dt)
        if weighted:
            # a_ij ((1 - mu) + mu sum_l s_l [active]) and -mu s_l sum_j a_ij [active]
            afs = af * _take(weights[1], impostors)[:, None]
            wt = weights[0] * (wt + mu * jax.ops.segment_sum(afs, anchors, n))
            gi = -mu * jnp.sum(pw * af, axis=1)
        else:
            wt = wt + mu * jax.ops.segment_sum(af, anchors, n)
            gi = -mu * jnp.sum(af, axis=1)
    elif weighted:
        wt = weights[0] * wt
    dxt = xc[:, None, :] - _take(xc, tn)
    lbar = laplacian_pairs_transform(wt.reshape(-1), dzt.reshape(n * k, -1), dxt.reshape(n * k, -1))
    if use_push:
        lbar = lbar + laplacian_pairs_transform(gi, dzi, diff[:, kz:])
    lbar = 2 * lbar
    xbar = jnp.zeros_like(x)
    if need_x:
        rows = jnp.repeat(jnp.arange(n, dtype=tn.dtype), k)
        g, r, c = wt.reshape(-1), rows, tn.reshape(-1)
        if use_push:
            g = jnp.concatenate([g, gi])
            r = jnp.concatenate([r, anchors.astype(r.dtype)])
            c = jnp.concatenate([c, impostors.astype(c.dtype)])
        xbar = mm(2 * laplacian_pairs(g, r, c, z), transform)
    return loss, lbar, xbar


# Static: the push weight when it is a Python float (``mu`` is then None) and the margin.
@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _active(transform, x, tn, anchors, impostors, mask, push_weight, margin, weights, mu):
    return active_pass(
        transform, x, tn, anchors, impostors, mask, weights,
        push_weight if mu is None else mu, margin, with_grad=False,
    )


def _active_fwd(transform, x, tn, anchors, impostors, mask, push_weight, margin, weights, mu):
    # symbolic_zeros=True: skip the x cotangent when nobody differentiates x
    loss, lbar, xbar = active_pass(
        transform.value, x.value, tn.value, anchors.value, impostors.value, mask.value,
        primal_value(weights), push_weight if mu is None else mu.value, margin,
        with_grad=True, need_x=x.perturbed,
    )
    return loss, (lbar, xbar)


def _active_bwd(push_weight, margin, res, g):
    del push_weight, margin  # only shape the forward pass
    lbar, xbar = res
    # weights and a traced push weight are data, not differentiated
    return g * lbar, g * xbar, None, None, None, None, None, None


_active.defvjp(_active_fwd, _active_bwd, symbolic_zeros=True)
_active_jit = jax.jit(_active, static_argnums=(6, 7))


def active_loss(transform, x, tn, anchors, impostors, mask, push_weight, margin, weights=None, mu=None):
    """The pair-list loss with its closed-form gradient: ``push_weight`` (a Python float,
    or ``None`` with a traced ``mu``) and ``margin`` are static; ``weights`` ``None`` or
    ``(a, s)``. Eager calls run one compiled program; inside an outer jit it is inlined."""
    return _active_jit(transform, x, tn, anchors, impostors, mask, push_weight, margin, weights, mu)


#: Default memory budget for the per-pair arrays of the pair-list loss (bytes).
PAIR_MEMORY = 256 * 2**20


def max_pairs_for(memory: int, d: int, kz: int, k: int, itemsize: int) -> int:
    """Pairs whose working arrays in :func:`active_pass` fit ``memory`` bytes.

    Per pair: the gathered points and their differences in the input and the embedded
    space (``3 (d + kz)`` floats), the hinge arguments and their mask (``2 k``), and
    the indices, mask and slopes (a few more).
    """
    return int(memory) // (itemsize * (3 * (d + kz) + 2 * k + 4) + 9)
