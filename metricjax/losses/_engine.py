r"""The row-block engine of the losses: one block-size rule, the soft-neighbour pass.

Shared by MLKR, NCA (the soft-neighbour pass below), LMNN (the block-size rule and
the Laplacian accumulators of :mod:`metricjax._rules`) and the row-sharded losses.

A *soft-neighbour* loss of a linear map :math:`L` (``(k, d)``) is

.. math::
    \ell(L) = \sum_i f(a_i, u_i), \qquad a_i = \sum_{j \ne i} p_{ij} v_j, \qquad
    p_{ij} = \frac{\exp(-D_{ij})}{\sum_{l \ne i} \exp(-D_{il})}, \qquad
    D_{ij} = \lVert L x_i - L x_j \rVert^2,

with per-point "values" :math:`v_j` and "targets" :math:`u_i` (rows of ``(n, c)``
arrays). With sample weights :math:`s_i \ge 0` the loss is
:math:`\sum_i s_i f(a_i, u_i)` with :math:`p_{ij} \propto s_j \exp(-D_{ij})` and
:math:`p_{ii} \propto \max(s_i - 1, 0)`: a weight counts copies of the point (the
other copies are neighbours at distance 0), a point of weight 0 is neither a query nor
a neighbour, exactly as if it were dropped, and the gradient keeps its form with
:math:`w_i = s_i\,\partial f/\partial a_i` and :math:`G_{ii} = 0` (``docs/derivations.md`` §12). MLKR takes :math:`v = u = y` and :math:`f(a, u) = \lVert a - u\rVert^2`;
NCA takes one-hot labels and :math:`f(a, u) = -a \cdot u`.

Gradient. With :math:`w_i = \partial f / \partial a_i`, the chain rule through the
softmax gives :math:`\partial \ell / \partial D_{ij} = G_{ij} = -p_{ij}\,(v_j - a_i)\cdot w_i`,
and the graph-Laplacian identity turns the pair sum into matrix products
(``docs/derivations.md``):

.. math::
    \bar Z = 2\,\bigl(\mathrm{diag}(G 1 + G^\top 1)\, Z - G Z - G^\top Z\bigr), \quad
    \bar L = \bar Z^\top X, \quad \bar X = \bar Z L.

Streaming. Each row :math:`i` of :math:`p`, :math:`a`, :math:`G` depends on row
:math:`i` of :math:`D` only, so the engine walks over blocks of ``b`` *query rows*:
it computes the ``(b, n)`` block of distances, its softmax (max-shifted, exact zero
self-weight), the loss *and* the gradient contributions, then discards the block.
What survives a block is small: the rows ``(G Z)_B`` and ``(G 1)_B`` of its own
points, and three accumulators over all ``n`` columns, ``G^\top 1`` (``n``),
``G^\top Z`` (``(n, k)``) and, when the values are differentiated,
``P^\top W`` (``(n, c)``). One pass, one ``exp`` per pair, memory
``O(b n + n (k + c + d))``, never ``n^2``. When only :math:`\bar L` is wanted and
``d <= 2k``, the pass instead accumulates the ``(d, d)`` matrix
:math:`X^\top G X - \tfrac12 X^\top \mathrm{diag}(G 1) X` from the one product
``G [X 1]`` per block and finishes with :math:`\bar L = 2 L\, X^\top L_H X`
(:func:`metricjax._rules.laplacian_metric_finish`): ``2 b n (d + 1)`` flops per block
for the gradient, where ``(G Z)^\top X + Z^\top (G X)`` would cost ``2 b n (d + k)``.
Column sums are taken as products with a small left factor (``1^\top G``,
``Z_B^\top G``): XLA's CPU column reductions of a ``(b, n)`` block slow down 10-70x
for ``n`` above about 16,000.

No stored blocks, no recomputation. The gradient is complete at the end of the
forward pass, so the ``custom_vjp`` of a loss returns it as its residual (a
``(k, d)`` matrix, plus ``(n, d)`` / ``(n, c)`` arrays only when ``x`` / the values
are differentiated) and the backward rule only multiplies it by the incoming scalar
cotangent. Nothing of size ``n^2`` is saved between the two passes and no block is
recomputed: the loss and its gradient cost one sweep over the pairs together.

Sharding. The query rows need not be all the points: :func:`rows_pass` takes a
slice of query rows (with the global index of its first row) against all ``n``
points. :mod:`metricjax.losses._sharded` runs it on each device's rows and sums the
per-column accumulators across devices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metricjax import _checks
from metricjax._rules import (
    laplacian_combine,
    laplacian_metric_finish,
    mm,
    rowdot,
)

# Default working-set budget for the (b, n) temporaries of one row block.
_BLOCK_BYTES = 32 * 2**20
# Bytes per pair of a block counted by the rule (several (b, n) arrays of the pass;
# XLA fuses most of them, so this is an upper bound, see docs/scaling.md).
_ARRAYS_PER_PAIR = 8
# Block rows chosen by "auto" when the matrix does not fit in one block. Blocks of
# about 128 rows are the fastest on CPUs (measured: 32 rows 1.4x slower at n = 50k,
# 1024 rows 1.6x slower at n = 20k), so "auto" never goes below 128 rows: beyond
# n ~ 8k (float32) its working set is 128 rows, still linear in n.
_MIN_ROWS, _MAX_ROWS = 128, 1024


class SoftNeighbourGrads(NamedTuple):
    """Loss and cotangents of a soft-neighbour loss (all with respect to the loss value)."""

    loss: jax.Array
    transform: jax.Array  # (k, d)
    x: jax.Array  # (n, d)
    values: jax.Array  # (n, c)
    targets: jax.Array  # (n, c)


class RowsPass(NamedTuple):
    """What one pass over a slice of ``m`` query rows against ``n`` points leaves.

    Half the gradient, ``Zbar / 2``, is ``rows + colsum z - gtz`` summed over all
    slices (each slice adds its own ``rows``); with ``x`` given to :func:`rows_pass`
    (the ``lbar`` form) ``Lbar = 2 L (X^T diag(colsum) X - xgx - xgx^T)`` instead
    (``xgx`` summed over the slices, :func:`metricjax._rules.laplacian_metric_finish`).
    """

    loss: jax.Array  # () sum of f over the query rows
    xgx: jax.Array  # (d, d) X_q^T (G_q X - diag(G_q 1) X_q / 2) (lbar form), else zeros(())
    rows: jax.Array  # (m, k) (G 1)_i z_i - (G Z)_i (zbar form), else zeros(())
    colsum: jax.Array  # (n,) G^T 1 from these rows
    gtz: jax.Array  # (n, k) G^T Z from these rows (zbar form), else zeros(())
    values: jax.Array  # (n, c) P^T W from these rows, else zeros(())
    targets: jax.Array  # (m, c) df/du for the query rows


def block_rows(
    block_size,
    m: int,
    n: int,
    itemsize: int,
    *,
    arrays_per_pair: int = _ARRAYS_PER_PAIR,
    min_rows: int = _MIN_ROWS,
    memory: int | None = None,
) -> int:
    """Rows per block for ``m`` query rows against ``n`` columns: the one block-size rule.

    ``block_size="auto"`` (or ``None``): all ``m`` rows in one block when their
    ``(m, n)`` temporaries fit ``memory`` bytes (``arrays_per_pair * m * n * itemsize``,
    default 32 MiB); otherwise as many rows as fit, clipped to ``[min_rows, 1024]``
    (128 by default, the fastest block on CPUs) and to ``m``. An int is used as given
    (clipped to ``m``). MLKR / NCA count 8 arrays per pair, LMNN ``4 k + 6`` (its
    ``(b, k, n)`` hinge arguments), the sharded losses pass their local rows as ``m``.
    """
    if block_size is None or (isinstance(block_size, str) and block_size == "auto"):
        budget = _BLOCK_BYTES if memory is None else int(memory)
        per_row = arrays_per_pair * n * itemsize
        if per_row * m <= budget:
            return m
        b = max(min_rows, min(budget // max(1, per_row), _MAX_ROWS))
        return min(int(b), m)
    if not (_checks.is_int(block_size) and block_size >= 1):
        raise _checks.wrong_type_or_value(_checks.is_int(block_size))(
            f"`block_size` must be a positive int, None or 'auto', got {block_size!r}"
        )
    return min(int(block_size), m)


def auto_block_size(
    n: int, itemsize: int, memory: int | None = None, min_rows: int = _MIN_ROWS
) -> int:
    """Rows per block for ``block_size="auto"`` on ``n`` points (:func:`block_rows`, ``m = n``)."""
    return block_rows("auto", n, n, itemsize, min_rows=min_rows, memory=memory)


def resolve_block_size(block_size, n: int, itemsize: int) -> int:
    """:func:`block_rows` for the ``n`` rows of an ``(n, n)`` soft-neighbour pass."""
    return block_rows(block_size, n, n, itemsize)


def block_size_for(n: int, memory_bytes: int, dtype="float32") -> int:
    """Block rows for ``n`` points whose ``(b, n)`` temporaries fit ``memory_bytes``.

    The rule of ``block_size="auto"`` with another budget, kept strictly: ``n`` (the
    dense matrix in one block) when it fits, else ``memory_bytes / (8 n itemsize)``
    rows, clipped to ``[1, 1024]`` (``"auto"`` itself does not go below 128 rows).
    Pass the result as ``block_size=`` to the losses or the estimators. The total
    memory of a loss and gradient is about this working set plus
    ``n (d + 3k + 2c + 4)`` floats (``docs/scaling.md``).

    Args:
        n: number of points.
        memory_bytes: budget for the block temporaries, in bytes.
        dtype: computation dtype (``float32`` or ``float64``).

    Returns:
        An int in ``[1, n]``.

    Examples:
        >>> from metricjax.losses import block_size_for
        >>> block_size_for(1000, 2**30), block_size_for(100_000, 2**28)
        (1000, 83)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int, got {n!r}")
    if not memory_bytes > 0:
        raise ValueError(f"`memory_bytes` must be positive, got {memory_bytes!r}")
    return auto_block_size(n, jnp.dtype(dtype).itemsize, memory_bytes, min_rows=1)


# Up to this many values per point, ``w @ values.T`` is a sum of broadcast products
# that XLA fuses into the elementwise pass forming G (no (b, n) matmul output).
_OUTER_BROADCAST_MAX = 8


def _outer(w, values):
    """``w @ values.T`` for ``(b, c)`` and ``(n, c)``: broadcast products for small ``c``."""
    c = w.shape[1]
    if c <= _OUTER_BROADCAST_MAX:
        return sum(w[:, i, None] * values[None, :, i] for i in range(c))
    return mm(w, values.T)


def rows_pass(
    zq,
    uq,
    z,
    values,
    f: Callable,
    *,
    xq=None,
    x=None,
    row_offset=0,
    n_valid: int | None = None,
    qw=None,
    cw=None,
    block_size: int,
    with_grad: bool,
    need_values: bool = True,
):
    """Blocked pass of ``m`` query rows against all ``n`` points.

    Two forms of the gradient (same numbers up to rounding): the *zbar* form
    accumulates ``G Z`` by rows and ``G^T Z`` by columns (``4 b n k`` flops per
    block, and it yields ``Xbar`` too); the *lbar* form, selected by passing the
    centred inputs ``xq`` and ``x``, accumulates ``X^T G X`` from one product
    ``G [X 1]`` (``2 b n (d + 1)`` flops: faster when ``d <= 2k``, but no ``Xbar``).

    Args:
        zq: ``(m, k)`` embedded (centred) query points: rows ``row_offset ...
            row_offset + m - 1`` of ``z``.
        uq: ``(m, c)`` targets of the query rows.
        z: ``(n, k)`` embedded (centred) points, all of them.
        values: ``(n, c)`` values of all points.
        f: per-row loss ``f(a, u)`` on ``(b, c)`` arrays.
        xq, x: centred inputs of the query rows ``(m, d)`` and of all points
            ``(n, d)``, for the lbar form; ``None`` for the zbar form.
        row_offset: global index of the first query row (may be traced).
        n_valid: points with index ``>= n_valid`` are padding: they are no
            neighbour of anyone and their query rows count for nothing (static;
            ``None``: all ``n``).
        qw, cw: sample weights of the query rows ``(m,)`` (they scale ``f``, and a
            query of weight ``s > 1`` has ``s - 1`` copies of itself among its
            neighbours at distance 0) and of all points ``(n,)`` (they multiply the
            kernel); ``None``: all ones. A point of weight 0 in both is neither a query
            nor a neighbour: exactly a dropped point.
        block_size: query rows per block (static).
        with_grad: also return the gradient pieces (:class:`RowsPass`).
        need_values: accumulate ``P^T W`` (the values' cotangent).

    Returns:
        The loss over the valid query rows, or a :class:`RowsPass`.
    """
    m, k = zq.shape
    n = z.shape[0]
    n_valid = n if n_valid is None else int(n_valid)
    b = min(int(block_size), m)
    nblocks = -(-m // b)
    pad = nblocks * b - m
    dt = z.dtype
    q = rowdot(z, z)
    zqp = jnp.pad(zq, ((0, pad), (0, 0)))
    qqp = jnp.pad(rowdot(zq, zq), (0, pad))
    up = jnp.pad(uq, ((0, pad), (0, 0)))
    cols = jnp.arange(n)
    neg_inf = jnp.array(-jnp.inf, dt)
    # log of the column weights, added to the logits: w_j exp(-D_ij); log 0 = -inf drops j
    logcw = None if cw is None else jnp.log(cw)
    qwp = None if qw is None else jnp.pad(qw, (0, pad))
    # a query of weight s_i > 1 stands for s_i copies: s_i - 1 of them are its neighbours
    # at distance 0 (log of (s_i - 1)_+ as its own logit; -inf for s_i <= 1)
    logself = None if qwp is None else jnp.log(jnp.maximum(qwp - 1, 0))
    vones = jnp.concatenate([values, jnp.ones((n, 1), dt)], axis=1)

    def block(start):
        zi = jax.lax.dynamic_slice_in_dim(zqp, start, b)
        qi = jax.lax.dynamic_slice_in_dim(qqp, start, b)
        ui = jax.lax.dynamic_slice_in_dim(up, start, b)
        local = start + jnp.arange(b)
        rows = jnp.asarray(row_offset).astype(local.dtype) + local  # int32 axis_index, int64 arange
        logits = -(qi[:, None] + q[None, :] - 2 * mm(zi, z.T))
        own = cols[None, :] == rows[:, None]
        drop = own
        valid = local < m
        if n_valid < n:  # padded points: never a neighbour, never a query
            drop = drop | (cols >= n_valid)[None, :]
            valid = valid & (rows < n_valid)
        if logcw is not None:
            logits = logits + logcw[None, :]
        logits = jnp.where(drop, neg_inf, logits)
        if logself is not None:  # the copies of a weighted query (D_ii = 0 exactly)
            logits = jnp.where(own, jax.lax.dynamic_slice_in_dim(logself, start, b)[:, None], logits)
        e = jnp.exp(logits - jnp.max(logits, axis=1, keepdims=True))
        # p = e / s is never stored: its uses below scale e (or a small factor).
        # Row sums and weighted sums from one product E [V 1]: one read of the block.
        sums = mm(e, vones)
        inv = 1 / sums[:, -1]
        a = sums[:, :-1] * inv[:, None]
        # query weights: valid rows weighted by qw, padding 0
        vw = valid.astype(dt)
        if qwp is not None:
            vw = vw * jax.lax.dynamic_slice_in_dim(qwp, start, b)
        return zi, ui, e, inv, a, vw, start, own

    if not with_grad:

        def body(total, i):
            _, ui, _, _, a, vw, _, _ = block(i * b)
            return total + jnp.sum(jnp.where(vw != 0, vw * f(a, ui), 0)), None

        total, _ = jax.lax.scan(body, jnp.zeros((), dt), jnp.arange(nblocks))
        return total

    c = values.shape[1]
    lbar_form = x is not None
    if lbar_form:
        d = x.shape[1]
        xqp = jnp.pad(xq, ((0, pad), (0, 0)))
        x1 = jnp.concatenate([x, jnp.ones((n, 1), dt)], axis=1)
    none = jnp.zeros((), dt)
    ones = jnp.ones((1, b), dt)

    def body(carry, i):
        total, xgx, colsum, gtz, vbar = carry
        zi, ui, e, inv, a, vw, start, own = block(i * b)
        li, f_vjp = jax.vjp(f, a, ui)
        li = jnp.where(vw != 0, vw * li, 0)
        w, ubar = f_vjp(vw)
        # G_ij = dl/dD_ij = -p_ij (v_j . w_i - a_i . w_i)
        g = -(e * inv[:, None]) * (_outer(w, values) - rowdot(a, w)[:, None])
        if logself is not None:  # the copies' D_ii = 0 is a constant: no G_ii
            g = jnp.where(own, 0, g)
        # Column sums as products with a small left factor: XLA's CPU column
        # reduction of a (b, n) block gets ~10-70x slower once n > ~16k, a dot does not.
        if lbar_form:
            colsum = colsum + mm(ones, g)[0]
            xi = jax.lax.dynamic_slice_in_dim(xqp, start, b)
            # [G X, G 1] in one product; the computed row sums (0 up to rounding) are
            # kept so that Lbar is the pair sum of the computed G (float32 accuracy)
            gx1 = mm(g, x1)
            xgx = xgx + mm(xi.T, gx1[:, :d] - 0.5 * gx1[:, d:] * xi)
            rows = none
        else:
            # this block's rows of L_H Z without the column parts: (G 1)_B z_B - (G Z)_B
            rows = laplacian_combine(jnp.sum(g, axis=1), 0, mm(g, z), 0, zi)
            # [G^T Z, G^T 1], kept transposed, (k + 1, n): a small left factor times
            # the block, no transposed copy of the (b, n) block
            zcol = mm(jnp.concatenate([zi, ones.T], axis=1).T, g)
            gtz = gtz + zcol[:k]
            colsum = colsum + zcol[k]
        if need_values:
            vbar = vbar + mm((w * inv[:, None]).T, e)  # (c, n) = (P^T W)^T, like gtz
        return (total + jnp.sum(li), xgx, colsum, gtz, vbar), (rows, ubar)

    init = (
        jnp.zeros((), dt),
        jnp.zeros((d, d), dt) if lbar_form else none,
        jnp.zeros((n,), dt),
        none if lbar_form else jnp.zeros((k, n), dt),
        jnp.zeros((c, n), dt) if need_values else none,
    )
    (total, xgx, colsum, gtz, vbar), (rows, ubar) = jax.lax.scan(
        body, init, jnp.arange(nblocks)
    )
    return RowsPass(
        total,
        xgx,
        none if lbar_form else rows.reshape(-1, k)[:m],
        colsum,
        none if lbar_form else gtz.T,
        vbar.T if need_values else none,
        ubar.reshape(-1, c)[:m],
    )


def use_lbar_form(need_x: bool, d: int, k: int) -> bool:
    """Whether the lbar form of :func:`rows_pass` is the faster one here."""
    return not need_x and d <= 2 * k


def embed(transform, x, mean=None):
    """Centred points and their embedding: ``(x - mean, (x - mean) L^T)``.

    Distances are translation invariant and the rows of ``Zbar`` sum to zero, so
    centring changes neither the loss nor its gradient; it removes the cancellation
    of the norm expansion far from the origin.
    """
    if mean is None:
        # shifted by the first point first: an accurate mean far from the origin (the
        # X^T G X form of the gradient is sensitive to a centring error in float32)
        mean = x[:1] + jnp.mean(x - x[:1], axis=0, keepdims=True)
    xc = x - mean
    return xc, mm(xc, transform.T)


def soft_neighbour(
    transform,
    x,
    values,
    targets,
    f: Callable,
    *,
    weight=None,
    block_size: int,
    with_grad: bool,
    need_x: bool = True,
    need_values: bool = True,
):
    """Run the blocked pass (``weight``: sample weights ``(n,)`` or ``None``). Returns the loss, or :class:`SoftNeighbourGrads`.

    ``f(a, u)`` maps ``(b, c)`` arrays to per-row losses ``(b,)``; its derivatives
    with respect to ``a`` and ``u`` are taken by ``jax.vjp`` on the small ``(b, c)``
    arrays only. ``need_x`` / ``need_values`` skip the work for cotangents nobody
    asked for (those entries are then zeros).
    """
    xc, z = embed(transform, x)
    lbar_form = with_grad and use_lbar_form(need_x, x.shape[1], z.shape[1])
    r = rows_pass(
        z,
        targets,
        z,
        values,
        f,
        xq=xc if lbar_form else None,
        x=xc if lbar_form else None,
        qw=weight,
        cw=weight,
        block_size=block_size,
        with_grad=with_grad,
        need_values=with_grad and need_values,
    )
    if not with_grad:
        return r
    if lbar_form:
        lbar = 2 * mm(transform, laplacian_metric_finish(r.xgx, r.colsum, xc))
        xbar = jnp.zeros_like(x)
    else:
        zbar = 2 * laplacian_combine(0, r.colsum, -r.rows, r.gtz, z)
        lbar = mm(zbar.T, xc)
        xbar = mm(zbar, transform) if need_x else jnp.zeros_like(x)
    vbar = r.values if need_values else jnp.zeros_like(values)
    return SoftNeighbourGrads(r.loss, lbar, xbar, vbar, r.targets)


def soft_neighbour_loss(f: Callable, *, values_are_targets: bool):
    """The jitted ``custom_vjp`` loss ``loss(transform, x, values, weight, block_size)`` for ``f``.

    One wiring for every soft-neighbour loss: the forward rule runs the blocked pass
    with its gradient and keeps the finished cotangents as residuals (nothing of
    size ``n^2``), the backward rule scales them by the incoming cotangent.
    ``values_are_targets``: the values are also the targets and are differentiated
    (MLKR's ``y``: cotangent ``P^T W + df/du``); otherwise they are constants (NCA's
    one-hot labels, no cotangent). ``block_size`` is static. Eager calls run one
    compiled program; inside an outer ``jit`` it is inlined.
    """

    @functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
    def loss(transform, x, values, weight, block_size):
        return soft_neighbour(
            transform, x, values, values, f, weight=weight, block_size=block_size, with_grad=False
        )

    def fwd(transform, x, values, weight, block_size):
        # symbolic_zeros=True: arguments arrive as CustomVJPPrimal(value, perturbed), so
        # the pass skips the x / values cotangent work when nobody differentiates them.
        need_values = values_are_targets and values.perturbed
        r = soft_neighbour(
            transform.value,
            x.value,
            values.value,
            values.value,
            f,
            weight=weight.value,
            block_size=block_size,
            with_grad=True,
            need_x=x.perturbed,
            need_values=need_values,
        )
        vbar = r.values + r.targets if values_are_targets else None
        return r.loss, (r.transform, r.x, vbar)

    def bwd(block_size, res, g):
        del block_size  # only shapes the forward pass
        # the weights are data, not differentiated (the callers stop their gradient)
        return (*(None if t is None else g * t for t in res), None)

    loss.defvjp(fwd, bwd, symbolic_zeros=True)
    return jax.jit(loss, static_argnums=4)
