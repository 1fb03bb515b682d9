r"""Closed-form forward values, tangents (JVPs) and cotangents (VJPs).

Row convention throughout: ``x`` is ``(n, d)``, ``y`` is ``(m, d)``, one observation
per row. ``G`` is the ``(n, m)`` cotangent of ``D``; ``r = G 1`` and ``c = G^T 1`` are
its row and column sums. All functions here are pure ``jnp`` on *already centred*
points (see :func:`centre`): every quantity below depends on ``x_i - y_j`` only, so a
common shift of ``x`` and ``y`` changes nothing mathematically while it removes the
catastrophic cancellation of the ``||x||^2 + ||y||^2 - 2 x.y`` expansion far from the
origin. No function here materialises an ``(n, m, d)`` array: memory is
``O(nm + (n+m)d + d^2)``. Derivations: ``docs/derivations.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST


def mm(a, b):
    """Matrix product at full precision (no TF32/bf16 passes on GPUs/TPUs)."""
    return jnp.matmul(a, b, precision=HIGHEST)


def top_k_rows(a, k: int):
    """``lax.top_k(a, k)`` of each row of ``(b, n)`` ``a``: values and ``int32`` indices.

    The same result (ties to the smaller index; where a row has fewer than ``k`` entries
    above ``-inf`` the indices of the ``-inf`` slots may differ), but in float64 as ``k``
    passes of ``argmax``, each masking the column it took: XLA's CPU ``top_k`` in float64
    took 289 ms for a ``(256, 4000)`` block against 3.3 ms in float32 and 6.9 ms this
    way (k = 3), which made LMNN's traceable target search 28-31x its loss.
    """
    if a.dtype != jnp.float64:
        vals, idx = jax.lax.top_k(a, k)
        return vals, idx.astype(jnp.int32)
    cols = jnp.arange(a.shape[1], dtype=jnp.int32)[None, :]
    vals, idx = [], []
    for _ in range(k):
        j = jnp.argmax(a, axis=1).astype(jnp.int32)  # the first of the largest
        vals.append(jnp.take_along_axis(a, j[:, None], axis=1)[:, 0])
        idx.append(j)
        a = jnp.where(cols == j[:, None], -jnp.inf, a)
    return jnp.stack(vals, axis=1), jnp.stack(idx, axis=1)


def centre(x, y=None):
    """Common translation that makes the distance expansion well conditioned.

    The mean of all points (``x`` and ``y`` together). ``stop_gradient`` is exact:
    the distances are translation invariant, so their derivative with respect to
    the shift is identically zero.
    """
    if y is None:
        c = jnp.mean(x, axis=0, keepdims=True)
    else:
        total = jnp.sum(x, axis=0, keepdims=True) + jnp.sum(y, axis=0, keepdims=True)
        c = total / (x.shape[0] + y.shape[0])
    return jax.lax.stop_gradient(c)


def rowdot(a, b):
    """``sum_l a_il b_il`` for each row ``i``."""
    return jnp.sum(a * b, axis=-1)


def zero_diagonal(d):
    """Set the diagonal of a square matrix to exactly 0 (a scatter, linear in ``d``)."""
    i = jnp.arange(d.shape[-1])
    return d.at[..., i, i].set(0, unique_indices=True, indices_are_sorted=True)


# ----------------------------------------------------------------------------------
# forward values
# ----------------------------------------------------------------------------------
# Rows (and columns) per tile of the self-case expansion :func:`_sym_expansion`.
SYM_BLOCK_ROWS = 256


def _sym_expansion(q, u, x):
    r""":math:`D_{ij} = q_i + q_j - 2 u_i \cdot x_j`, exactly symmetric, in ``(b, b)`` tiles.

    For ``u = x S`` with a symmetric ``S`` (``S = I``: ``u = x``) this is the self
    expansion of :math:`(x_i - x_j)^\top S (x_i - x_j)`. Only the tiles on and above the
    diagonal are computed, each off-diagonal tile ``T`` written at ``(I, J)`` and ``T^T``
    at ``(J, I)``: bitwise symmetric by construction, and half the products of the
    dense ``2 n^2 d``. The diagonal tiles are :math:`A + A^\top`,
    :math:`A = q_I 1^\top - U_I X_I^\top`, a transpose that stays in cache. No ``n^2``
    transpose (XLA on CPU runs one several times slower than a streaming pass) and one
    ``n^2`` buffer, the output. ``b = SYM_BLOCK_ROWS``; the last tile starts at
    ``n - b`` and overlaps its neighbour: where an off-diagonal tile writes the overlap
    of two row blocks inconsistently, the diagonal tiles, written last, overwrite it.
    """
    n = x.shape[0]
    b = min(SYM_BLOCK_ROWS, n)
    nb = -(-n // b)

    def tile(i):
        start = jnp.minimum(i * b, n - b)
        cut = lambda a: jax.lax.dynamic_slice_in_dim(a, start, b)
        return start, cut(q), cut(u), cut(x)

    def off_diagonal(p, out):
        si, qi, ui, _ = tile(rows[p])
        sj, qj, _, xj = tile(cols[p])
        t = (qi[:, None] + qj[None, :]) - 2 * mm(ui, xj.T)
        out = jax.lax.dynamic_update_slice(out, t, (si, sj))
        return jax.lax.dynamic_update_slice(out, t.T, (sj, si))

    def diagonal(i, out):
        si, qi, ui, xi = tile(i)
        a = qi[:, None] - mm(ui, xi.T)
        return jax.lax.dynamic_update_slice(out, a + a.T, (si, si))

    if nb == 1:  # one tile: no loop, no buffer to initialise
        a = q[:, None] - mm(u, x.T)
        return a + a.T
    out = jnp.zeros((n, n), jnp.result_type(q, u, x))
    rows, cols = (jnp.asarray(v, jnp.int32) for v in np.triu_indices(nb, 1))
    out = jax.lax.fori_loop(0, rows.shape[0], off_diagonal, out)
    return jax.lax.fori_loop(0, nb, diagonal, out)


def sq_euclidean(x, y=None):
    """``D_ij = ||x_i - y_j||^2`` by the expansion (centred input), self case if ``y`` is None.

    Self case: :func:`_sym_expansion` (``u = x``): exactly symmetric, half the
    products, no ``n^2`` transpose.
    """
    qx = rowdot(x, x)
    if y is None:
        return _sym_expansion(qx, x, x)
    return qx[:, None] + rowdot(y, y)[None, :] - 2 * mm(x, y.T)


def sq_mahalanobis(x, sym, y=None):
    """``D_ij = (x_i - y_j)^T S (x_i - y_j)`` for the symmetric part ``S`` of ``M``.

    The quadratic form only sees ``S = (M + M^T)/2``, so this equals the formula with
    ``M`` itself for any square ``M``. Linear in ``sym``. Self case:
    :math:`q_i + q_j - (U X^\top + X U^\top)_{ij}` with ``U = X S``: entry ``(j, i)``
    of ``X U^T`` is computed from the same products as entry ``(i, j)`` of ``U X^T``,
    so the result is exactly symmetric without an ``n^2`` transpose.
    """
    u = mm(x, sym)
    qx = rowdot(u, x)
    if y is None:
        return _sym_expansion(qx, u, x)
    return qx[:, None] + rowdot(mm(y, sym), y)[None, :] - 2 * mm(u, y.T)


# ----------------------------------------------------------------------------------
# tangents (JVPs): linear in the dotted arguments, so JAX transposes them into VJPs
# ----------------------------------------------------------------------------------
def jvp_sq_euclidean_self(x, xdot):
    r"""Tangent of ``D(X)``: :math:`\dot D = b 1^T + 1 b^T - 2 \dot X X^T - 2 X \dot X^T`.

    ``b_i = 2 x_i . xdot_i``. The factors ``-2`` sit on the ``(n, d)`` tangents, and no
    ``n^2`` transpose appears, so the transpose (the VJP) is
    :math:`\bar X = 2(\mathrm{diag}(G 1 + G^T 1) X - G X - G^T X)` with no ``n^2``
    pass besides the two products and the row and column sums of ``G``.
    """
    b = 2 * rowdot(x, xdot)
    w = -2 * xdot  # the factor on the tangent: its transpose scales an (n, d) cotangent
    return zero_diagonal((b[:, None] + b[None, :]) + (mm(w, x.T) + mm(x, w.T)))


def jvp_sq_euclidean(x, y, xdot=None, ydot=None):
    r"""Tangent of ``D(X, Y)``: :math:`2(a 1^T - \dot X Y^T) + 2(1 b^T - X \dot Y^T)`."""
    out = 0
    if xdot is not None:
        out = out + 2 * (rowdot(x, xdot)[:, None] - mm(xdot, y.T))
    if ydot is not None:
        out = out + 2 * (rowdot(y, ydot)[None, :] - mm(x, ydot.T))
    return out


def jvp_sq_mahalanobis_self(x, sym, xdot=None, metricdot=None):
    r"""Tangent of ``D(M)`` (self): :math:`\dot D = \dot q 1^T + 1 \dot q^T - 2 \dot U X^T - 2 U \dot X^T`.

    ``U = X S``, :math:`\dot U = \dot X S + X \dot S` (:math:`\dot S` the symmetric part
    of :math:`\dot M`), :math:`\dot q_i = 2 u_i \cdot \dot x_i + x_i^T \dot S x_i`: the
    tangent of :math:`q_i + q_j - 2 u_i \cdot x_j`, which equals ``D`` for a symmetric
    ``S``. Its transpose needs :math:`G X` (for :math:`\bar U`, hence :math:`\bar M = X^T \bar U`)
    and, only when ``xdot`` is given, :math:`G^T U`: two ``(n, n) x (n, d)`` products, no
    ``n^2`` transpose or elementwise pass (the factors ``-2`` sit on ``(n, d)`` tangents).
    """
    udot, qdot, out = None, 0, 0
    if xdot is not None:
        u = mm(x, sym)
        udot = mm(xdot, sym)
        qdot = 2 * rowdot(u, xdot)
        out = mm(u, -2 * xdot.T)
    if metricdot is not None:
        t = mm(x, 0.5 * (metricdot + metricdot.T))
        udot = t if udot is None else udot + t
        qdot = qdot + rowdot(t, x)
    out = (qdot[:, None] + qdot[None, :]) + (mm(-2 * udot, x.T) + out)
    return zero_diagonal(out)


def jvp_sq_mahalanobis(x, y, sym, xdot=None, ydot=None, metricdot=None):
    r"""Tangent of ``D(M)`` between ``x`` and ``y``.

    :math:`\dot D_{ij} = (x_i-y_j)^T \dot M (x_i-y_j) + 2(\dot x_i - \dot y_j)^T S (x_i - y_j)`.
    """
    out = 0
    if xdot is not None or ydot is not None:
        u, v = mm(x, sym), mm(y, sym)
        if xdot is not None:
            out = out + 2 * (rowdot(u, xdot)[:, None] - mm(xdot, v.T))
        if ydot is not None:
            out = out + 2 * (rowdot(v, ydot)[None, :] - mm(u, ydot.T))
    if metricdot is not None:
        out = out + sq_mahalanobis(x, 0.5 * (metricdot + metricdot.T), y)
    return out


def tangent_of_embedding(x, transform, xdot, transformdot):
    r"""Tangent of ``Z = X L^T``: :math:`\dot Z = \dot X L^T + X \dot L^T` (``None`` if both zero)."""
    zdot = None
    if xdot is not None:
        zdot = mm(xdot, transform.T)
    if transformdot is not None:
        t = mm(x, transformdot.T)
        zdot = t if zdot is None else zdot + t
    return zdot


# ----------------------------------------------------------------------------------
# The graph-Laplacian form of every cotangent. One place for the formula: the dense
# VJPs below and the blocked losses (metricjax.losses._engine, _lmnn) call these.
# ----------------------------------------------------------------------------------
def laplacian_combine(rowsum, colsum, gz, gtz, z):
    r"""Assemble :math:`L_H Z = (\mathrm{diag}(G 1 + G^\top 1) - G - G^\top) Z` from its parts.

    :math:`H = G + G^\top`; for any ``G`` (``(n, n)``) the pair sum
    :math:`\sum_{ij} G_{ij} (z_i - z_j)(z_i - z_j)^\top = 2 Z^\top L_H Z` and
    :math:`\partial/\partial Z \sum_{ij} G_{ij} \lVert z_i - z_j\rVert^2 = 2 L_H Z`
    (``docs/derivations.md``). The parts ``rowsum = G 1``, ``colsum = G^T 1``,
    ``gz = G Z`` and ``gtz = G^T Z`` may be accumulated block by block (the losses
    never hold ``G``); pass ``0`` for a part known to vanish.
    """
    return (rowsum + colsum)[:, None] * z - gz - gtz


def laplacian_apply(h, x):
    r""":math:`(\mathrm{diag}(H 1) - H) X`, the graph Laplacian of a symmetric ``H`` applied to ``X``."""
    return laplacian_combine(jnp.sum(h, axis=1), 0, mm(h, x), 0, x)


def laplacian_transform_block(g, zi, xi, x, z):
    r"""One row block's share of :math:`\bar L / 2 = Z^\top L_H X` (without the column-sum term).

    For the rows ``B`` of ``G`` (``g``: ``(b, n)``), their embedded and centred points
    ``zi`` (``(b, k)``), ``xi`` (``(b, d)``) and all points ``x`` (``(n, d)``), ``z`` (``(n, k)``):
    :math:`Z_B^\top \mathrm{diag}(G_B 1) X_B - (G_B Z)^\top X_B - Z_B^\top (G_B X)`, from the one
    wide product :math:`G_B [X\ Z]`. Summed over the blocks and completed by
    :math:`Z^\top \mathrm{diag}(G^\top 1) X` (:func:`laplacian_transform_finish`) it is
    :math:`Z^\top L_H X`, i.e. :math:`\bar L = 2 Z^\top L_H X` with :math:`Z = X L^\top`.

    Returns:
        ``(part, rowsum, gz)``: the ``(k, d)`` share, ``G_B 1`` (``(b,)``) and
        ``G_B Z`` (``(b, k)``).
    """
    d = x.shape[1]
    gxz = mm(g, jnp.concatenate([x, z], axis=1))
    rowsum = jnp.sum(g, axis=1)
    part = mm(zi.T, rowsum[:, None] * xi) - mm(gxz[:, d:].T, xi) - mm(zi.T, gxz[:, :d])
    return part, rowsum, gxz[:, d:]


def laplacian_transform_finish(part, colsum, x, z):
    r""":math:`\bar L = 2 (\text{blocks' parts} + Z^\top \mathrm{diag}(G^\top 1) X)` (see above)."""
    return 2 * (part + mm(z.T, colsum[:, None] * x))


def laplacian_metric_finish(xgx, colsum, x):
    r""":math:`X^\top L_H X`, the ``(d, d)`` pair sum :math:`\sum_{ij} G_{ij} (x_i - x_j)(x_i - x_j)^\top`.

    From ``xgx`` :math:`= X^\top G X - \tfrac12 X^\top \mathrm{diag}(G 1) X` and
    ``colsum`` :math:`= G^\top 1`:
    :math:`X^\top L_H X = X^\top \mathrm{diag}(G 1 + G^\top 1) X - X^\top G X - X^\top G^\top X
    = X^\top \mathrm{diag}(G^\top 1) X - \mathrm{xgx} - \mathrm{xgx}^\top`.
    With :math:`Z = X L^\top` the transform's cotangent is
    :math:`\bar L = 2 Z^\top L_H X = 2 L\, (X^\top L_H X)`: the blocked losses accumulate
    ``xgx`` from one ``(b, n) x (n, d + 1)`` product :math:`G_B [X\ 1]` per block (instead of
    :func:`laplacian_transform_block`'s ``(b, n) x (n, d + k)``) and ``colsum`` block by
    block. (A softmax's ``G`` has zero row sums; keeping the computed ones makes the
    result the pair sum of the computed ``G``, which matters in float32.)
    """
    return mm(x.T, colsum[:, None] * x) - xgx - xgx.T


# ----------------------------------------------------------------------------------
# cotangents (VJPs), written out with the Laplacian helpers; tested against jax.vjp
# of the public functions (whose reverse mode is the transpose of the tangents above)
# ----------------------------------------------------------------------------------
def vjp_sq_euclidean_self(x, g):
    r""":math:`\bar X = 2 (\mathrm{diag}(H 1) - H) X`, :math:`H = G + G^T`."""
    return 2 * laplacian_combine(jnp.sum(g, 1), jnp.sum(g, 0), mm(g, x), mm(g.T, x), x)


def vjp_sq_euclidean(x, y, g):
    r""":math:`\bar X = 2(\mathrm{diag}(r) X - G Y)`, :math:`\bar Y = 2(\mathrm{diag}(c) Y - G^T X)`."""
    xbar = 2 * laplacian_combine(jnp.sum(g, 1), 0, mm(g, y), 0, x)
    ybar = 2 * laplacian_combine(jnp.sum(g, 0), 0, mm(g.T, x), 0, y)
    return xbar, ybar


def vjp_sq_mahalanobis_self(x, sym, g):
    r""":math:`\bar X = 2 L_H X S`, :math:`\bar M = X^T L_H X` with :math:`H = G + G^T`.

    :math:`\bar M = \sum_{ij} G_{ij} (x_i - x_j)(x_i - x_j)^T` (symmetric).
    """
    lx = laplacian_apply(g + g.T, x)
    return 2 * mm(lx, sym), mm(x.T, lx)


def vjp_sq_mahalanobis(x, y, sym, g):
    r"""Cotangents of ``D(M)`` between ``x`` and ``y``.

    :math:`\bar X = 2(\mathrm{diag}(r) X - G Y) S`, :math:`\bar Y = 2(\mathrm{diag}(c) Y - G^T X) S`,
    :math:`\bar M = X^T \mathrm{diag}(r) X + Y^T \mathrm{diag}(c) Y - X^T G Y - Y^T G^T X`.
    """
    ax = laplacian_combine(jnp.sum(g, 1), 0, mm(g, y), 0, x)
    ay = laplacian_combine(jnp.sum(g, 0), 0, mm(g.T, x), 0, y)
    mbar = mm(x.T, ax) + mm(y.T, ay)
    return 2 * mm(ax, sym), 2 * mm(ay, sym), mbar


def vjp_sq_transformed_self(x, transform, g):
    r""":math:`\bar Z = 2 L_H Z`, :math:`\bar X = \bar Z L`, :math:`\bar L = \bar Z^T X` (``Z = X L^T``)."""
    zbar = vjp_sq_euclidean_self(mm(x, transform.T), g)
    return mm(zbar, transform), mm(zbar.T, x)


def vjp_sq_transformed(x, y, transform, g):
    r""":math:`\bar X = \bar Z L`, :math:`\bar Y = \bar W L`, :math:`\bar L = \bar Z^T X + \bar W^T Y`."""
    zbar, wbar = vjp_sq_euclidean(mm(x, transform.T), mm(y, transform.T), g)
    return mm(zbar, transform), mm(wbar, transform), mm(zbar.T, x) + mm(wbar.T, y)


# ----------------------------------------------------------------------------------
# The same Laplacian form for a sparse G given as a list of pairs (LMNN's active set)
# ----------------------------------------------------------------------------------
def laplacian_pairs(g, rows, cols, z):
    r""":math:`L_H Z` for a sparse ``G`` given as pairs: :math:`G_{r_p c_p} \mathrel{+}= g_p`.

    The parts of :func:`laplacian_combine` as segment sums over the ``p`` pairs
    (``rows``, ``cols``: ``(p,)`` indices into the ``n`` rows of ``z``; repeated pairs
    add up): :math:`G 1`, :math:`G^\top 1`, :math:`G Z`, :math:`G^\top Z`. Memory
    ``O(p k + n k)``; a padding pair has ``g_p = 0``.
    """
    n = z.shape[0]
    seg = lambda v, idx: jax.ops.segment_sum(v, idx, n)
    take = lambda idx: z.at[idx].get(mode="clip")  # XLA's CPU gather is fastest so
    return laplacian_combine(
        seg(g, rows), seg(g, cols), seg(g[:, None] * take(cols), rows),
        seg(g[:, None] * take(rows), cols), z,
    )  # fmt: skip


def laplacian_pairs_transform(g, dz, dx):
    r""":math:`Z^\top L_H X` for a sparse ``G`` given as pairs, from the pair differences.

    With :math:`dz_p = z_{r_p} - z_{c_p}` (``(p, k)``) and :math:`dx_p = x_{r_p} - x_{c_p}`
    (``(p, d)``), expanding the products gives
    :math:`\sum_p g_p\, dz_p\, dx_p^\top = Z^\top (\mathrm{diag}(G 1 + G^\top 1) - G - G^\top) X
    = Z^\top L_H X`, the matrix whose rows :func:`laplacian_pairs` assembles (with ``X``
    for ``Z``), as one ``(k, p) @ (p, d)`` product: no ``(p, k, d)`` outer products and
    no scatter. The gradient of :math:`\sum_p g_p \lVert L(x_{r_p} - x_{c_p})\rVert^2`
    with respect to ``L`` is ``2 *`` this.
    """
    return mm((g[:, None] * dz).T, dx)
