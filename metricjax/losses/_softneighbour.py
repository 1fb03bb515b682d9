r"""Shared engine for soft-neighbour losses (MLKR, NCA, and any loss of that form).

A *soft-neighbour* loss of a linear map :math:`L` (``(k, d)``) is

.. math::
    \ell(L) = \sum_i f(a_i, u_i), \qquad a_i = \sum_{j \ne i} p_{ij} v_j, \qquad
    p_{ij} = \frac{\exp(-D_{ij})}{\sum_{l \ne i} \exp(-D_{il})}, \qquad
    D_{ij} = \lVert L x_i - L x_j \rVert^2,

with per-point "values" :math:`v_j` and "targets" :math:`u_i` (rows of ``(n, c)``
arrays). MLKR takes :math:`v = u = y` and :math:`f(a, u) = \lVert a - u\rVert^2`;
NCA takes one-hot labels and :math:`f(a, u) = -a \cdot u`.

Gradient. With :math:`w_i = \partial f / \partial a_i`, the chain rule through the
softmax gives :math:`\partial \ell / \partial D_{ij} = G_{ij} = -p_{ij}\,(v_j - a_i)\cdot w_i`,
and the graph-Laplacian identity turns the pair sum into matrix products
(``docs/derivations.md``):

.. math::
    \bar Z = 2\,(\mathrm{diag}(H 1) - H)\, Z, \quad H = G + G^\top, \quad
    \bar L = \bar Z^\top X, \quad \bar X = \bar Z L.

Each row :math:`i` of :math:`p`, :math:`a`, :math:`G` depends on row :math:`i` of
:math:`D` only, so the engine walks over blocks of ``b`` rows: it computes the block
of distances, its softmax (max-shifted, exact zero self-weight), the loss *and* the
gradient contributions, then discards the block. One pass, one ``exp`` per pair,
memory ``O(b n + n (k + c))``. The gradient is produced in the same pass as the loss,
which is what the ``custom_vjp`` of the losses returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metricjax._rules import mm, rowdot

# Default working-set budget for one row block (all b x n temporaries together).
_BLOCK_BYTES = 32 * 2**20


class SoftNeighbourGrads(NamedTuple):
    """Loss and cotangents of a soft-neighbour loss (all with respect to the loss value)."""

    loss: jax.Array
    transform: jax.Array  # (k, d)
    x: jax.Array  # (n, d)
    values: jax.Array  # (n, c)
    targets: jax.Array  # (n, c)


def auto_block_size(n: int, itemsize: int) -> int:
    """Rows per block so that roughly 8 ``(b, n)`` temporaries fit ``_BLOCK_BYTES``."""
    b = _BLOCK_BYTES // max(1, 8 * n * itemsize)
    b = max(16, min(int(b), 1024))
    return n if b >= n else b


def resolve_block_size(block_size, n: int, itemsize: int) -> int:
    if block_size is None or block_size == "auto":
        return auto_block_size(n, itemsize)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"`block_size` must be a positive int, None or 'auto', got {block_size!r}")
    return min(int(block_size), n)


def _outer(w, values):
    """``w @ values.T`` for ``(b, c)`` and ``(n, c)``; a broadcast product when ``c == 1``."""
    if w.shape[1] == 1:
        return w * values[:, 0][None, :]
    return mm(w, values.T)


def soft_neighbour(
    transform,
    x,
    values,
    targets,
    f: Callable,
    *,
    block_size: int,
    with_grad: bool,
    need_x: bool = True,
    need_values: bool = True,
):
    """Run the blocked pass. Returns the loss, or :class:`SoftNeighbourGrads`.

    ``f(a, u)`` maps ``(b, c)`` arrays to per-row losses ``(b,)``; its derivatives
    with respect to ``a`` and ``u`` are taken by ``jax.vjp`` on the small ``(b, c)``
    arrays only. ``need_x`` / ``need_values`` skip the work for cotangents nobody
    asked for (those entries are then zeros).
    """
    n, d = x.shape
    b = block_size
    nblocks = -(-n // b)
    pad = nblocks * b - n
    # Centre before the norm expansion: distances are translation invariant, and
    # sum_i zbar_i = 0, so the gradient with respect to L is unchanged too.
    xc = x - jnp.mean(x, axis=0, keepdims=True)
    z = mm(xc, transform.T)
    k = z.shape[1]
    q = rowdot(z, z)
    xz = jnp.concatenate([xc, z], axis=1)
    xzp = jnp.pad(xz, ((0, pad), (0, 0)))
    qp = jnp.pad(q, (0, pad))
    up = jnp.pad(targets, ((0, pad), (0, 0)))
    cols = jnp.arange(n)
    dt = z.dtype
    neg_inf = jnp.array(-jnp.inf, dt)

    def block(start):
        xzi = jax.lax.dynamic_slice_in_dim(xzp, start, b)
        qi = jax.lax.dynamic_slice_in_dim(qp, start, b)
        ui = jax.lax.dynamic_slice_in_dim(up, start, b)
        rows = start + jnp.arange(b)
        logits = -(qi[:, None] + q[None, :] - 2 * mm(xzi[:, d:], z.T))
        logits = jnp.where(cols[None, :] == rows[:, None], neg_inf, logits)
        e = jnp.exp(logits - jnp.max(logits, axis=1, keepdims=True))
        p = e / jnp.sum(e, axis=1, keepdims=True)
        a = mm(p, values)
        valid = rows < n
        return xzi, ui, p, a, valid

    if not with_grad:

        def body(total, i):
            _, ui, _, a, valid = block(i * b)
            return total + jnp.sum(jnp.where(valid, f(a, ui), 0)), None

        total, _ = jax.lax.scan(body, jnp.zeros((), dt), jnp.arange(nblocks))
        return total

    c = values.shape[1]

    def body(carry, i):
        total, lbar, colsum, gtz, vbar = carry
        xzi, ui, p, a, valid = block(i * b)
        xi, zi = xzi[:, :d], xzi[:, d:]
        li, f_vjp = jax.vjp(f, a, ui)
        li = jnp.where(valid, li, 0)
        w, ubar = f_vjp(valid.astype(dt))
        # G_ij = dl/dD_ij = -p_ij (v_j . w_i - a_i . w_i)
        g = -p * (_outer(w, values) - rowdot(a, w)[:, None])
        gxz = mm(g, xz)  # [G X, G Z] for this block: no transposed product needed
        rowsum = jnp.sum(g, axis=1)
        # Lbar/2 = Z^T diag(h) X - (G Z)^T X - Z^T (G X), h = G 1 + G^T 1
        lbar = lbar + mm(zi.T, rowsum[:, None] * xi) - mm(gxz[:, d:].T, xi) - mm(zi.T, gxz[:, :d])
        if need_x:
            gtz = gtz + mm(g.T, zi)
        if need_values:
            vbar = vbar + mm(p.T, w)
        carry = (total + jnp.sum(li), lbar, colsum + jnp.sum(g, axis=0), gtz, vbar)
        return carry, (gxz[:, d:], rowsum, ubar)

    init = (
        jnp.zeros((), dt),
        jnp.zeros((k, d), dt),
        jnp.zeros((n,), dt),
        jnp.zeros((n, k) if need_x else (), dt),
        jnp.zeros((n, c) if need_values else (), dt),
    )
    (total, lbar, colsum, gtz, vbar), (gz, rowsum, ubar) = jax.lax.scan(
        body, init, jnp.arange(nblocks)
    )
    lbar = 2 * (lbar + mm(z.T, colsum[:, None] * xc))
    xbar = jnp.zeros_like(x)
    if need_x:
        gz = gz.reshape(-1, k)[:n]
        rowsum = rowsum.reshape(-1)[:n]
        zbar = 2 * ((rowsum + colsum)[:, None] * z - gz - gtz)
        xbar = mm(zbar, transform)
    if not need_values:
        vbar = jnp.zeros_like(values)
    return SoftNeighbourGrads(total, lbar, xbar, vbar, ubar.reshape(-1, c)[:n])
