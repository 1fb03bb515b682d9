r"""LMNN: Large Margin Nearest Neighbor metric learning (Weinberger & Saul, 2009)."""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metricjax import _checks
from metricjax._rules import (
    laplacian_combine,
    laplacian_transform_block,
    laplacian_transform_finish,
    mm,
    rowdot,
    top_k_rows,
)
from metricjax._typing import (
    Array,
    ArrayLike,
    Int,
    Labels,
    Points,
    SampleWeight,
    Scalar,
    Shaped,
    TargetNeighbors,
    Transform,
)
from metricjax.exceptions import InvalidParameterError
from metricjax.losses import _engine, _lmnn_active
from metricjax.losses._lmnn_active import primal_value, push_is_on

# Rows of the host-side target-neighbour search processed at a time (per class).
_HOST_CHUNK = 1024


# ----------------------------------------------------------------------------------
# host-side helpers: labels, target neighbours, argument checks
# ----------------------------------------------------------------------------------
def _check_n_neighbors(n_neighbors) -> int:
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)):
        raise InvalidParameterError(f"`n_neighbors` must be a positive int, got {n_neighbors!r}")
    if n_neighbors < 1:
        raise ValueError(f"`n_neighbors` must be at least 1, got {n_neighbors}")
    return int(n_neighbors)


def _static_float(value, name: str) -> float:
    if _checks._is_traced(value):
        raise TypeError(
            f"`{name}` must be a concrete Python float (it is static), not a traced value"
        )
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(f"`{name}` must be a real number, got {value!r}") from err
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {v}")
    return v


def _check_class_sizes(classes, codes, k: int) -> None:
    """Every class needs ``k`` members (host codes from ``_checks.label_codes``): ``k - 1``
    others and, where there are no more, the point itself (metric-learn's rule)."""
    counts = np.bincount(codes, minlength=len(classes))
    small = np.flatnonzero(counts < k)
    if small.size:
        c = small[np.argmin(counts[small])]
        more = f" ({small.size} classes are too small)" if small.size > 1 else ""
        raise ValueError(
            f"class {classes[c].item()!r} has {counts[c]} member(s), but n_neighbors={k} needs at "
            f"least {k} per class (a point's target neighbours are the {k} nearest members "
            f"of its class, itself last where the class has exactly {k}){more}"
        )


def lmnn_target_neighbors(
    x: Points, labels: Labels, n_neighbors: int = 3
) -> Int[np.ndarray, "n k"]:
    r"""Target neighbours of LMNN: the ``n_neighbors`` nearest same-class points.

    For every point :math:`i`, the indices of the ``n_neighbors`` points :math:`j \ne i`
    with :math:`c_j = c_i` that are closest to :math:`x_i` in the *original* Euclidean
    space. They stay fixed while :math:`L` is learned (Weinberger & Saul, 2009; same
    choice as metric-learn's ``LMNN``). Rows are sorted by distance; ties go to the
    smaller index. In a class of exactly ``n_neighbors`` members each point lists its
    ``n_neighbors - 1`` classmates and then itself, as metric-learn does (a class of
    one, with ``n_neighbors=1``, is its own target): such a target adds nothing to the
    pull term, and its hinge terms :math:`[m - d_{il}]_+` keep other classes at the
    margin. Runs on the host in float64 NumPy, class by class, with memory
    ``O(m_c \min(m_c, 1024))`` for a class of ``m_c`` points.

    Args:
        x: inputs, shape ``(n, d)``. Concrete values (not under ``jax.jit``).
        labels: class labels, shape ``(n,)``, any values ``np.unique`` can sort.
        n_neighbors: number of target neighbours :math:`k` per point.

    Returns:
        Integer array of shape ``(n, n_neighbors)``.

    Raises:
        ValueError: a class has fewer than ``n_neighbors`` members, NaN labels or
            non-finite ``x``, or mismatched shapes.
        TypeError: traced (``jit``) inputs, or labels that cannot be sorted.
    """
    k = _check_n_neighbors(n_neighbors)
    if _checks._is_traced(x) or _checks._is_traced(labels):
        raise TypeError(
            "lmnn_target_neighbors needs concrete `x` and `labels`; call it outside "
            "jax.jit / jax.grad and pass the result as `target_neighbors`"
        )
    x = _checks.points(x, "x")
    xa = np.asarray(x, dtype=np.float64)
    n = xa.shape[0]
    if not np.all(np.isfinite(xa)):
        raise ValueError("`x` contains NaN or inf")
    classes, codes = _checks.label_codes(labels, n)
    _check_class_sizes(classes, codes, k)
    return _nearest_classmates(xa, codes, len(classes), k)


def _nearest_classmates(xa, codes, n_classes: int, k: int):
    """``(n, k)`` host indices: each point's nearest same-class points, nearest first (ties
    to the smaller index), itself last where its class has ``k`` members, and itself
    again in the slots its class cannot fill (fewer than ``k`` members)."""
    n = xa.shape[0]
    out = np.empty((n, k), dtype=np.intp)
    for c in range(n_classes):
        idx = np.flatnonzero(codes == c)
        xc = xa[idx] - xa[idx].mean(axis=0)
        sq = np.einsum("ij,ij->i", xc, xc)
        for s in range(0, idx.size, _HOST_CHUNK):
            e = min(s + _HOST_CHUNK, idx.size)
            d2 = np.maximum(sq[s:e, None] + sq[None, :] - 2 * (xc[s:e] @ xc.T), 0)
            d2[np.arange(e - s), np.arange(s, e)] = np.inf
            near = idx[np.argsort(d2, axis=1, kind="stable")[:, :k]]
            if near.shape[1] < k:  # a class of fewer than k members: itself in the rest
                own = np.repeat(idx[s:e, None], k - near.shape[1], axis=1)
                near = np.concatenate([near, own], axis=1)
            out[idx[s:e]] = near
    return out


def copies_of(weight):
    r"""The copy model of LMNN's sample weights: :math:`q_i = \lceil s_i \rceil` copies of
    weight :math:`\omega_i = s_i / q_i` each (``(q, omega)``, float64, positive weights).
    A weight within a relative ``1e-9`` above an integer counts as that integer (a weight
    computed as ``2 + 1e-15`` is 2 copies, not 3)."""
    s = np.asarray(weight, np.float64)
    q = np.maximum(np.ceil(s * (1 - 1e-9)), 1.0)
    return q, s / q


def copy_target_neighbors(x, codes, weight, k: int):
    r"""Target neighbours and pair weights of LMNN when weight :math:`s_i` is :math:`q_i =
    \lceil s_i \rceil` copies of the point, each of weight :math:`s_i / q_i`.

    This is scikit-learn's meaning of an integer weight (the sample repeated: weights of
    1 are no weights), and for weights in :math:`(0, 1]` it is the weighting of
    :func:`lmnn_loss` (pair :math:`s_i s_j`, hinge :math:`s_i s_j s_l`). Each copy of
    point :math:`i` takes as targets the :math:`k` nearest *copies* of its class: first
    its own other :math:`q_i - 1` copies (distance 0), then the copies of its nearest
    classmates in order, the last one possibly in part, and itself where its class has
    exactly :math:`k` copies (metric-learn's rule). The :math:`q_i` copies of ``i`` share
    these targets, so they are one anchor of weight :math:`s_i`: pair :math:`(i, j)`
    weighs :math:`a_{ij} = s_i\, \omega_j\, m_{ij}` for :math:`m_{ij}` copies of ``j``
    among the targets, and the hinges :math:`(i, j, l)` :math:`a_{ij} s_l` (the copies of
    the impostor ``l``), which is exactly the loss of the repeated points.

    Args:
        x: ``(n, d)`` host inputs (the original space, as :func:`lmnn_target_neighbors`).
        codes: ``(n,)`` integer class codes in ``[0, C)``.
        weight: ``(n,)`` positive weights.
        k: target copies per point; every class needs at least ``k`` copies.

    Returns:
        ``(tn, pair_weight)``: ``(n, k + 1)`` int32 slots (slot 0 the point itself, for
        its own copies) and their float64 weights :math:`a_{ij}` (0 on empty slots).
    """
    xa = np.asarray(x, np.float64)
    codes = np.asarray(codes)
    s = np.asarray(weight, np.float64)
    n = xa.shape[0]
    q, omega = copies_of(s)
    n_classes = int(codes.max()) + 1
    copies = np.bincount(codes, weights=q, minlength=n_classes)
    if np.any(copies < k):
        raise ValueError(
            f"n_neighbors={k} needs at least {k} copies per class (weights count copies), "
            f"got {int(copies.min())}"
        )
    near = _nearest_classmates(xa, codes, n_classes, min(k, n - 1))
    members = np.bincount(codes, minlength=n_classes)[codes]
    left = np.full(n, float(k))
    own = np.minimum(q - 1, left)
    left -= own
    mult = np.zeros((n, k + 1))
    for t in range(near.shape[1]):
        j = near[:, t]
        real = t < members - 1  # slots past the class's other members repeat the point
        take = np.where(real, np.minimum(q[j], left), 0.0)
        mult[:, t + 1] = take
        left -= take
    own += left  # a class of exactly k copies: the point itself last
    mult[:, 0] = own
    tn = np.zeros((n, k + 1), np.int32)
    tn[:, 0] = np.arange(n)
    tn[:, 1 : near.shape[1] + 1] = near
    if near.shape[1] < k:
        tn[:, near.shape[1] + 1 :] = np.arange(n)[:, None]
    return tn, s[:, None] * omega[tn] * mult


def lmnn_pairs_loss(
    transform, x, codes, target_neighbors, pair_weight, sample_weight, *, push_weight,
    margin, block_size,
):  # fmt: skip
    r"""LMNN with explicit target-pair weights :math:`a_{ij}` and point weights :math:`s_l`:
    pull :math:`(1 - \mu) \sum a_{ij} d_{ij}`, push :math:`\mu \sum a_{ij} s_l [m + d_{ij} -
    d_{il}]_+`. The estimator's loss for :func:`copy_target_neighbors` (no checks: its
    inputs are built by the estimator)."""
    dt = jnp.result_type(transform, x)
    tn = jnp.asarray(target_neighbors, jnp.int32)
    b = _block_rows(block_size, x.shape[0], tn.shape[1], jnp.dtype(dt).itemsize)
    weights = (jnp.asarray(pair_weight, dt), jnp.asarray(sample_weight, dt))
    return _lmnn_jit(
        jnp.asarray(transform, dt), jnp.asarray(x, dt), jnp.asarray(codes, jnp.int32), tn,
        weights, None, float(push_weight), float(margin), b,
    )


def _label_codes(labels, n: int):
    """Integer class codes: ``np.unique`` codes on the host, integer labels as-is under jit."""
    if _checks._is_traced(labels):
        if labels.shape != (n,):
            raise ValueError(f"`labels` must have shape ({n},), got {labels.shape}")
        if not (jnp.issubdtype(labels.dtype, jnp.integer) or labels.dtype == jnp.bool_):
            raise TypeError(f"`labels` must be integers under jit, got dtype {labels.dtype}")
        return labels, None
    _, codes = _checks.label_codes(labels, n)
    return jnp.asarray(codes, jnp.int32), codes


def _check_target_neighbors(tn, n: int, host_codes):
    if _checks._is_traced(tn):
        if tn.ndim != 2 or tn.shape[0] != n or tn.shape[1] < 1:
            raise ValueError(f"`target_neighbors` must have shape ({n}, k), k >= 1, got {tn.shape}")
        if not jnp.issubdtype(tn.dtype, jnp.integer):
            raise TypeError(f"`target_neighbors` must be integers, got dtype {tn.dtype}")
        return tn.astype(jnp.int32)
    arr = np.asarray(tn)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise ValueError(f"`target_neighbors` must have shape ({n}, k), k >= 1, got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"`target_neighbors` must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"`target_neighbors` entries must lie in [0, {n})")
    # a point may be its own target (a class of exactly k members, metric-learn's rule)
    srt = np.sort(arr, axis=1)
    dup = np.flatnonzero(np.any(srt[:, 1:] == srt[:, :-1], axis=1))
    if dup.size:
        raise ValueError(f"point {dup[0]} lists the same target neighbour twice")
    if host_codes is not None:
        bad = np.argwhere(host_codes[arr] != host_codes[:, None])
        if bad.size:
            i, a = bad[0]
            raise ValueError(
                f"target neighbour {arr[i, a]} of point {i} has a different label; "
                "target neighbours must share the label of their point"
            )
    return jnp.asarray(arr, jnp.int32)


def _non_negative(value, name: str) -> float:
    v = _static_float(value, name)
    if v < 0:
        raise ValueError(f"`{name}` must be non-negative, got {v}")
    return v


def masked_target_neighbors(x, codes, weight, k: int, block_size: int):
    r"""Traceable target neighbours among the points of positive weight.

    For each row :math:`i`: the ``k`` nearest :math:`j \ne i` with :math:`c_j = c_i` and
    :math:`s_j > 0` (Euclidean, on centred ``x``; ties to the smaller index, as
    :func:`lmnn_target_neighbors`), then :math:`i` itself where there are fewer than
    ``k``, by :func:`~metricjax._rules.top_k_rows` over blocks of ``block_size`` rows (memory ``O(b n)``).
    Returns ``(tn, ok)``, both ``(n, k)``: ``ok`` is false on the slots of a row with
    fewer than ``k - 1`` such points (their index is arbitrary).
    """
    n = x.shape[0]
    b = block_size
    nblocks = -(-n // b)
    pad = nblocks * b - n
    xc = x - jnp.mean(x, axis=0, keepdims=True)
    sq = rowdot(xc, xc)
    col_ok = weight > 0
    xp = jnp.pad(xc, ((0, pad), (0, 0)))
    cp = jnp.pad(codes, (0, pad))

    def block(start):
        xi = jax.lax.dynamic_slice_in_dim(xp, start, b)
        ci = jax.lax.dynamic_slice_in_dim(cp, start, b)
        rows = start + jnp.arange(b)
        d2 = jnp.maximum(rowdot(xi, xi)[:, None] + sq[None, :] - 2 * mm(xi, xc.T), 0)
        same = ci[:, None] == codes[None, :]
        own = rows[:, None] == jnp.arange(n)[None, :]
        cand = same & col_ok[None, :] & ~own
        # the point itself ranks after every classmate and before the non-candidates
        last = jnp.asarray(-jnp.finfo(d2.dtype).max, d2.dtype)
        neg, idx = top_k_rows(jnp.where(cand, -d2, jnp.where(own, last, -jnp.inf)), k)
        return idx, neg > -jnp.inf

    tn, ok = jax.lax.map(block, jnp.arange(nblocks) * b)
    return tn.reshape(-1, k)[:n], ok.reshape(-1, k)[:n]


def _codes_and_targets(x, labels, target_neighbors, n_neighbors, weight=None):
    """Integer class codes, checked target neighbours (searched if ``None``) and the
    slots' validity (``None``: all valid).

    With sample weights and no ``target_neighbors``, the search is
    :func:`masked_target_neighbors` (traceable, zero-weight points excluded).
    """
    n = x.shape[0]
    codes, host_codes = _label_codes(labels, n)
    if target_neighbors is not None:
        return codes, _check_target_neighbors(target_neighbors, n, host_codes), None
    if weight is not None:
        k = _check_n_neighbors(n_neighbors)
        # no class-size check: a point short of k neighbours of positive weight keeps
        # fewer (masked_target_neighbors), the same with concrete and traced inputs
        if k > n:
            raise ValueError(f"n_neighbors={k} needs at least {k} points, got n={n}")
        if not _checks._is_traced(x) and not np.all(np.isfinite(np.asarray(x))):
            raise ValueError("`x` contains NaN or inf")
        xs = jax.lax.stop_gradient(jnp.asarray(x, weight.dtype))
        b = _engine.block_rows("auto", n, n, jnp.dtype(weight.dtype).itemsize, arrays_per_pair=4)
        tn, ok = masked_target_neighbors(xs, codes, weight, k, b)
        return codes, tn, ok
    if _checks._is_traced(x) or host_codes is None:
        raise TypeError(
            "with target_neighbors=None, `x` and `labels` must be concrete; under "
            "jax.jit (or jax.grad with respect to x) pass "
            "target_neighbors=lmnn_target_neighbors(x, labels, n_neighbors) computed outside, "
            "or sample_weight (e.g. jnp.ones(n)): the target neighbours are then searched "
            "inside the traced computation"
        )
    return codes, jnp.asarray(lmnn_target_neighbors(x, labels, n_neighbors), jnp.int32), None


def _pair_weights(weight, tn, ok):
    """Target-pair weights :math:`a_{ij} = s_i s_j` (0 on invalid slots), ``(n, k)``."""
    a = weight[:, None] * weight[tn]
    return a if ok is None else jnp.where(ok, a, 0)


def _block_rows(block_size, n: int, k: int, itemsize: int, m: int | None = None) -> int:
    """Rows per block of ``m`` query rows (default ``n``): the engine's rule with ``4k + 6`` arrays of ``n`` entries per row."""
    m = n if m is None else m
    return _engine.block_rows(block_size, m, n, itemsize, arrays_per_pair=4 * k + 6, min_rows=16)


# ----------------------------------------------------------------------------------
# blocked pass: loss, and optionally its closed-form gradient
# ----------------------------------------------------------------------------------
def lmnn_rows(
    xq, zq, cq, tq, xc, z, codes, push_weight, margin, block_size, *,
    with_grad, need_x=True, row_offset=0, n_valid=None, aq=None, w=None,
):
    """LMNN's blocked pass for the query rows ``xq`` against all ``n`` columns.

    ``xq``, ``zq`` (``(m, d)``, ``(m, k_L)``): centred and embedded query points, which
    are global rows ``row_offset ... row_offset + m - 1``; ``cq``, ``tq``: their codes and
    target neighbours (global indices); ``xc``, ``z``, ``codes``: all ``n`` points. Rows
    and columns at or past ``n_valid`` are padding: no loss, no impostor, no gradient.
    One device calls it with ``row_offset = 0`` on all rows; the row-sharded loss calls
    it per device (:mod:`metricjax.losses._sharded`).

    ``push_weight``: a Python float (``0``: no impostor search, decided statically) or
    a traced scalar (always searched). Sample weights: ``aq`` (``(m, k)``), the target
    pairs' weights :math:`a_{ij} = s_i s_j`, and ``w`` (``(n,)``), the points'
    :math:`s_l`; the pull term of pair :math:`(i, j)` is scaled by :math:`a_{ij}`, each
    hinge :math:`(i, j, l)` by :math:`a_{ij} s_l`. ``None``: unweighted.

    Per block: ``D_il`` for all ``l`` (``(b, n)``, norm expansion on centred data),
    ``D_ij`` for the targets (``(b, k)``, exact differences) and the hinge arguments
    ``(b, k, n)``; memory ``O(b k n + n (d + k_L))``.

    Returns:
        The loss; with ``with_grad``, ``(loss, part, colsum, gtz, zcol, zrow)``: the
        blocks' share of ``lbar / 2`` (:func:`laplacian_transform_block`), the column
        accumulators ``G^T 1`` (``(n,)``), ``G^T Z`` and the target scatter (``(n, k_L)``,
        zero unless ``need_x``) and the rows ``(G 1) Z - G Z`` of the query points
        (``(m, k_L)``).
    """
    m, d = xq.shape
    n = xc.shape[0]
    n_valid = n if n_valid is None else n_valid
    b = block_size
    nblocks = -(-m // b)
    pad = nblocks * b - m
    dt = xq.dtype
    mu = push_weight
    pull_w = 1.0 - push_weight
    use_push = push_is_on(push_weight)  # static: a concrete mu = 0 needs no impostor search
    weighted = aq is not None

    kz = z.shape[1]
    q = rowdot(z, z)
    col_ok = True if n_valid == n else (jnp.arange(n) < n_valid)[None, :]
    xzp = jnp.pad(jnp.concatenate([xq, zq], axis=1), ((0, pad), (0, 0)))
    qp = jnp.pad(rowdot(zq, zq), (0, pad))
    cp = jnp.pad(cq, (0, pad))
    tp = jnp.pad(tq, ((0, pad), (0, 0)))
    ap = jnp.pad(aq, ((0, pad), (0, 0))) if weighted else None

    def block(start):
        xzi = jax.lax.dynamic_slice_in_dim(xzp, start, b)
        qi = jax.lax.dynamic_slice_in_dim(qp, start, b)
        ci = jax.lax.dynamic_slice_in_dim(cp, start, b)
        ti = jax.lax.dynamic_slice_in_dim(tp, start, b)
        zi = xzi[:, d:]
        local = start + jnp.arange(b)
        valid = (local < m) & (jnp.asarray(row_offset).astype(local.dtype) + local < n_valid)
        dz = zi[:, None, :] - z[ti]  # (b, k, kz)
        d_ij = jnp.sum(dz * dz, axis=-1)  # (b, k)
        ai = jax.lax.dynamic_slice_in_dim(ap, start, b) if weighted else None
        pull = ai * d_ij if weighted else d_ij
        loss = pull_w * jnp.sum(jnp.where(valid[:, None], pull, 0))
        active = None
        if use_push:
            d_il = jnp.maximum(qi[:, None] + q[None, :] - 2 * mm(zi, z.T), 0)  # (b, n)
            impostor = (ci[:, None] != codes[None, :]) & valid[:, None] & col_ok
            h = margin + d_ij[:, :, None] - d_il[:, None, :]  # (b, k, n)
            # strict: a hinge exactly at 0 is inactive (subgradient 0 there)
            active = (h > 0) & impostor[:, None, :]
            hinge = jnp.where(active, h, 0)
            if weighted:  # sum_jl a_ij s_l hinge_ijl: a product with s, no (b, k, n) scaling
                loss = loss + mu * jnp.sum(ai * _dot_last(hinge, w))
            else:
                loss = loss + mu * jnp.sum(hinge)
        return loss, xzi, ti, dz, active, valid, ai

    if not with_grad:

        def body(total, i):
            return total + block(i * b)[0], None

        total, _ = jax.lax.scan(body, jnp.zeros((), dt), jnp.arange(nblocks))
        return total

    def body(carry, i):
        total, lbar, colsum, gtz, zcol = carry
        loss, xzi, ti, dz, active, valid, ai = block(i * b)
        xi, zi = xzi[:, :d], xzi[:, d:]
        # target pairs (i, j): weight (1 - mu) + mu * #{active l}, exact differences
        # (weighted: a_ij ((1 - mu) + mu * sum of s_l over the active l))
        if use_push:
            af = active.astype(dt)
            wt = pull_w + mu * (_dot_last(af, w) if weighted else jnp.sum(af, axis=2))
        else:
            wt = jnp.full(dz.shape[:2], pull_w, dt)
        if weighted:
            wt = ai * wt
        wt = jnp.where(valid[:, None], wt, 0)
        wdz = wt[..., None] * dz  # (b, k, kz)
        dx = xi[:, None, :] - xc[ti]  # (b, k, d)
        lbar = lbar + mm(wdz.reshape(-1, kz).T, dx.reshape(-1, d))
        zrow = jnp.sum(wdz, axis=1)
        if need_x:
            zcol = zcol.at[ti.reshape(-1)].add(-wdz.reshape(-1, kz))
        if use_push:
            # impostor pairs (i, l): G_il = -mu * #{active j}, a dense (b, n) block
            # (weighted: -mu s_l * sum of a_ij over the active j)
            if weighted:  # (b, 1, k) @ (b, k, n): the a-weighted sum over j, then s_l
                g = -mu * mm(ai[:, None, :], af)[:, 0, :] * w[None, :]
            else:
                g = -mu * jnp.sum(af, axis=1)
            part, rowsum, gz = laplacian_transform_block(g, zi, xi, xc, z)
            lbar = lbar + part
            colsum = colsum + mm(jnp.ones((1, g.shape[0]), dt), g)[0]
            if need_x:
                gtz = gtz + mm(g.T, zi)
            zrow = zrow + laplacian_combine(rowsum, 0, gz, 0, zi)
        return (total + loss, lbar, colsum, gtz, zcol), zrow

    shape_nk = (n, kz) if need_x else ()
    init = (
        jnp.zeros((), dt),
        jnp.zeros((kz, d), dt),
        jnp.zeros((n,), dt),
        jnp.zeros(shape_nk, dt),
        jnp.zeros(shape_nk, dt),
    )
    (total, part, colsum, gtz, zcol), zrow = jax.lax.scan(body, init, jnp.arange(nblocks))
    return total, part, colsum, gtz, zcol, zrow.reshape(-1, kz)[:m]


def _dot_last(a, w):
    """``sum_l a[..., l] w[l]`` of a ``(b, k, n)`` array, as one full-precision product."""
    b, k, n = a.shape
    return mm(a.reshape(b * k, n), w[:, None]).reshape(b, k)


def _lmnn_pass(
    transform, x, codes, tn, weights, push_weight, margin, block_size, *, with_grad, need_x=True
):
    """Loss (and ``(loss, lbar, xbar)`` with ``with_grad``) of all rows on one device.

    ``weights``: ``None`` or ``(a, s)``, the target pairs' and the points' weights.
    """
    xc, z = _engine.embed(transform, x)
    args = (xc, z, codes, tn, xc, z, codes, push_weight, margin, block_size)
    wkw = {} if weights is None else dict(aq=weights[0], w=weights[1])
    if not with_grad:
        return lmnn_rows(*args, with_grad=False, **wkw)
    total, part, colsum, gtz, zcol, zrow = lmnn_rows(*args, with_grad=True, need_x=need_x, **wkw)
    lbar = laplacian_transform_finish(part, colsum, xc, z)
    xbar = jnp.zeros_like(x)
    if need_x:
        zbar = 2 * laplacian_combine(0, colsum, -(zrow + zcol), gtz, z)
        xbar = mm(zbar, transform)
    return total, lbar, xbar


# Arguments: the data (transform, x, codes, tn), the weights (None or (a, s)), the push
# weight as a traced scalar mu (None when static), then the static push weight (a Python
# float, None when traced), margin and block size.
@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8))
def _lmnn(transform, x, codes, tn, weights, mu, push_weight, margin, block_size):
    mu = push_weight if mu is None else mu
    return _lmnn_pass(
        transform, x, codes, tn, weights, mu, margin, block_size, with_grad=False
    )


def _lmnn_fwd(transform, x, codes, tn, weights, mu, push_weight, margin, block_size):
    # symbolic_zeros=True: skip the x cotangent when nobody differentiates x.
    mu = push_weight if mu is None else mu.value
    loss, lbar, xbar = _lmnn_pass(
        transform.value,
        x.value,
        codes.value,
        tn.value,
        primal_value(weights),
        mu,
        margin,
        block_size,
        with_grad=True,
        need_x=x.perturbed,
    )
    return loss, (lbar, xbar)


def _lmnn_bwd(push_weight, margin, block_size, res, g):
    del push_weight, margin, block_size  # only shape the forward pass
    lbar, xbar = res
    # weights and the push weight are data, not differentiated
    return g * lbar, g * xbar, None, None, None, None


_lmnn.defvjp(_lmnn_fwd, _lmnn_bwd, symbolic_zeros=True)
# Eager calls run one compiled program; inside an outer jit this is inlined.
_lmnn_jit = jax.jit(_lmnn, static_argnums=(6, 7, 8))


# ----------------------------------------------------------------------------------
# public loss
# ----------------------------------------------------------------------------------
def lmnn_loss(
    transform: Transform,
    x: Points,
    labels: Labels,
    *,
    target_neighbors: TargetNeighbors | None = None,
    n_neighbors: int = 3,
    push_weight: float | Shaped[ArrayLike, ""] = 0.5,
    margin: float = 1.0,
    sample_weight: SampleWeight | None = None,
    block_size: int | str | None = "auto",
    impostors: "LMNNImpostors | None" = None,
) -> Scalar:
    r"""LMNN loss: pull target neighbours in, push impostors out by a margin.

    .. math::
        \ell(L) = (1 - \mu) \sum_i \sum_{j \in N_i} D_{ij}
        + \mu \sum_i \sum_{j \in N_i} \sum_{l:\, c_l \ne c_i}
          \bigl[\, m + D_{ij} - D_{il} \,\bigr]_+ ,
        \qquad D_{ij} = \lVert L x_i - L x_j \rVert^2,

    with :math:`\mu` = ``push_weight``, :math:`m` = ``margin`` and :math:`N_i` the
    target neighbours of :math:`i`: the :math:`k` nearest points of the same class in
    the *original* Euclidean space, fixed while :math:`L` changes
    (:func:`lmnn_target_neighbors`). With :math:`m = 1` this is the LMNN loss of
    Weinberger & Saul (2009). The impostor sum runs over *all* differently-labelled
    :math:`l`.

    **Relation to metric-learn.** metric-learn 0.7's ``LMNN._loss_grad`` returns
    :math:`r \sum D_{ij} + (1 - r) \sum_{\text{active}} (1 + D_{ij} - D_{il})`, where
    :math:`r` = ``regularization`` weights the *pull* term and "active" means
    :math:`D_{il} < 1 + D_{ij}`. Its impostor search only keeps pairs within
    :math:`1 + \max_{j \in N_i} D_{ij}` of either point, which contains every active
    triplet, so nothing is dropped: the value and gradient equal this function's with
    ``push_weight = 1 - regularization`` and ``margin = 1`` (tested to rounding). Other
    differences: metric-learn fixes the margin at 1 (here
    :math:`\ell(L; m) = m\,\ell(L/\sqrt{m}; 1)`) and breaks distance ties in the
    target search with an unstable sort (stable here: smaller index first). Both
    libraries make a point its own last target neighbour when its class has exactly
    ``n_neighbors`` members (:func:`lmnn_target_neighbors`; tested against metric-learn).

    **Gradient.** The hinge is not differentiable where
    :math:`m + D_{ij} - D_{il} = 0`; there the subgradient 0 is used (a triplet counts
    as active only when :math:`m + D_{ij} - D_{il} > 0` strictly, like metric-learn).
    The loss is piecewise linear in the :math:`D_{ij}`, with slopes
    :math:`G_{ij} = \partial \ell / \partial D_{ij}`: :math:`(1 - \mu) + \mu\, a_{ij}`
    on target pairs (:math:`a_{ij}` active triplets :math:`(i, j, \cdot)`),
    :math:`-\mu\, b_{il}` on impostor pairs (:math:`b_{il}` active triplets
    :math:`(i, \cdot, l)`), 0 elsewhere. Hence

    .. math::
        \nabla_L \ell = 2 L \sum_{ij} G_{ij} (x_i - x_j)(x_i - x_j)^\top
        = 2 L X^\top (\mathrm{diag}(H 1) - H) X, \qquad H = G + G^\top,

    computed in a ``jax.custom_vjp`` block by block with the loss, never forming an
    ``(n, n, d)`` array (``docs/derivations.md``). Gradients flow to ``transform`` and
    ``x`` (with the target neighbours held fixed); ``labels`` and
    ``target_neighbors`` get none.

    **Under jax.jit.** Finding target neighbours needs concrete data, so with
    ``target_neighbors=None`` the call fails on traced ``x`` or ``labels`` (also under
    ``jax.grad`` with respect to ``x``). Compute them once outside with
    :func:`lmnn_target_neighbors` and pass them in; traced labels must then be integers
    (only their equality matters).

    **Differentiation.** As :func:`metricjax.losses.mlkr_loss`: reverse mode and
    ``jax.hessian`` use the closed-form gradient; forward mode (``jax.jvp``,
    ``jax.jacfwd``) is not supported (a ``jax.custom_vjp`` rule).

    Args:
        transform: :math:`L`, shape ``(k_L, d)``.
        x: inputs, shape ``(n, d)``.
        labels: class labels, shape ``(n,)``. Any values ``np.unique`` can sort on the
            host; integers under ``jit``.
        target_neighbors: ``(n, k)`` integer indices of the target neighbours
            (distinct, same label, not the point itself). ``None``: computed with
            :func:`lmnn_target_neighbors` from ``x`` and ``labels``.
        n_neighbors: :math:`k` when ``target_neighbors`` is ``None`` (ignored otherwise).
        push_weight: :math:`\mu \in [0, 1]`: a Python float (static; a concrete 0
            skips the impostor search), or a traced scalar (e.g. under ``jax.vmap``
            over several values; its range is then not checked and the impostors are
            always searched; not differentiated).
        margin: :math:`m \ge 0`, a static Python float.
        sample_weight: weights :math:`s_i \ge 0`, shape ``(n,)`` (``None``: all 1):
            the pull term of pair :math:`(i, j)` is scaled by :math:`s_i s_j`, each
            hinge :math:`(i, j, l)` by :math:`s_i s_j s_l`. With
            ``target_neighbors=None`` the target neighbours are searched among the
            points of positive weight only (a traceable search, so the weights may be
            traced, e.g. ``jax.vmap`` over cross-validation folds); a point short of
            ``k`` such neighbours keeps fewer (the empty slots weigh 0). Weight 0 is
            then exactly a dropped point: not an anchor, not a target neighbour, not an
            impostor. With explicit ``target_neighbors`` they are used as given (a
            zero-weight neighbour's terms vanish, it is not replaced). Not
            differentiated.
        block_size: rows :math:`i` processed at a time; ``"auto"`` (or ``None``) keeps
            the ``(b, k, n)`` working set near 32 MiB. Results do not depend on it beyond
            rounding.
        impostors: ``None`` (sum over all differently-labelled :math:`l`), or an active
            set from :func:`lmnn_impostors` (searched with this ``margin``, the same
            ``x`` and target neighbours): the impostor sum then runs over its pairs
            only, in ``O(p k + n k d)`` for ``p`` pairs instead of ``O(n^2 k)``, with the
            same closed-form gradient (Laplacian form on the pair list). Searched at
            the current ``transform`` it gives *the same* loss and gradient (up to
            rounding); searched at an earlier one, a lower bound of the loss.
            ``block_size`` is not used then.

    Returns:
        Scalar loss in the floating dtype of ``transform`` and ``x`` (float32 for
        float16 or bfloat16 input, which is computed in float32).

    References:
        K. Q. Weinberger and L. K. Saul, `Distance Metric Learning for Large Margin
        Nearest Neighbor Classification <https://jmlr.org/papers/v10/weinberger09a.html>`_,
        JMLR 10, 2009.
    """
    x = _checks.points(x, "x")
    transform = _checks.transform_matrix(transform, x.shape[1])
    n = x.shape[0]
    dt = _checks.compute_dtype(x, transform)  # half precision is computed in float32
    mu_traced, mu = _push_weight(push_weight, dt)
    m = _non_negative(margin, "margin")
    w = None if sample_weight is None else _checks.sample_weight(sample_weight, n, dt)
    codes, tn, ok = _codes_and_targets(x, labels, target_neighbors, n_neighbors, w)
    weights = None if w is None else (_pair_weights(w, tn, ok), w)
    if impostors is not None:
        anchors, imp, mask = _check_impostors(impostors, n)
        return _lmnn_active.active_loss(
            jnp.asarray(transform, dt), jnp.asarray(x, dt), tn, anchors, imp, mask, mu, m,
            weights, mu_traced,
        )
    b = _block_rows(block_size, n, tn.shape[1], jnp.dtype(dt).itemsize)
    return _lmnn_jit(
        jnp.asarray(transform, dt), jnp.asarray(x, dt), codes, tn, weights, mu_traced, mu, m, b
    )


def _push_weight(push_weight, dt):
    """``(traced mu or None, static mu or None)``: concrete values are checked and static."""
    if _checks._is_traced(push_weight):
        if jnp.shape(push_weight) != ():
            raise ValueError(f"`push_weight` must be a scalar, got shape {jnp.shape(push_weight)}")
        if not jnp.issubdtype(jnp.result_type(push_weight), jnp.number):
            raise TypeError(f"`push_weight` must be a real number, got dtype {push_weight.dtype}")
        return jax.lax.stop_gradient(jnp.asarray(push_weight, dt)), None
    mu = _static_float(push_weight, "push_weight")
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"`push_weight` must lie in [0, 1], got {mu}")
    return None, mu


# ----------------------------------------------------------------------------------
# the impostor active set
# ----------------------------------------------------------------------------------
class LMNNImpostors(NamedTuple):
    r"""An impostor active set of LMNN: a padded, fixed-shape list of pairs :math:`(i, l)`.

    Made by :func:`lmnn_impostors`, consumed by ``lmnn_loss(..., impostors=...)``. A
    pytree of arrays: pass it through ``jax.jit`` as data; its ``capacity`` (the
    length of the arrays, a power of two by default) is its only static property, so
    sets of one capacity share one compiled program.

    Attributes:
        anchors: ``(capacity,)`` int32, the anchor :math:`i` of each pair (sorted).
        impostors: ``(capacity,)`` int32, the impostor :math:`l` (:math:`c_l \ne c_i`).
        mask: ``(capacity,)`` bool, true on the ``count`` listed pairs, false on padding.
        count: ``()`` int32, the number of listed pairs.
    """

    anchors: Shaped[Array, " p"]
    impostors: Shaped[Array, " p"]
    mask: Shaped[Array, " p"]
    count: Shaped[Array, ""]


#: Smallest capacity of an active set chosen by ``capacity="auto"``.
_MIN_CAPACITY = 256


def _check_impostors(impostors, n: int):
    if not isinstance(impostors, LMNNImpostors):
        raise TypeError(
            "`impostors` must be an LMNNImpostors from lmnn_impostors(...), got "
            f"{type(impostors).__name__}"
        )
    a, l, mask = (jnp.asarray(v) for v in impostors[:3])
    if a.ndim != 1 or a.shape != l.shape or a.shape != mask.shape:
        raise ValueError(
            "`impostors` arrays must be 1-D of one length, got shapes "
            f"{a.shape}, {l.shape}, {mask.shape}"
        )
    if not (jnp.issubdtype(a.dtype, jnp.integer) and jnp.issubdtype(l.dtype, jnp.integer)):
        raise TypeError("`impostors.anchors` and `impostors.impostors` must be integers")
    if mask.dtype != jnp.bool_:
        raise TypeError(f"`impostors.mask` must be boolean, got dtype {mask.dtype}")
    if not (_checks._is_traced(a) or _checks._is_traced(l)) and a.size:
        # on the host (NumPy arrays: no compiled reduction per capacity, and nothing
        # staged when the set is a constant inside a jitted function)
        ah, lh = np.asarray(a), np.asarray(l)
        if max(ah.max(), lh.max()) >= n or min(ah.min(), lh.min()) < 0:
            raise ValueError(f"`impostors` indices must lie in [0, {n}) for the {n} points of `x`")
    return a.astype(jnp.int32), l.astype(jnp.int32), mask


def _check_capacity(capacity):
    if capacity is None or (isinstance(capacity, str) and capacity == "auto"):
        return None
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ValueError(f"`capacity` must be a positive int or 'auto', got {capacity!r}")
    return int(capacity)


def _pad_pairs(anchors, impostors, capacity: int) -> LMNNImpostors:
    count = anchors.size
    pad = capacity - count
    # padding repeats the last pair (or (0, 0)): sorted anchors, in range, masked off
    fill_a = anchors[-1] if count else 0
    fill_l = impostors[-1] if count else 0
    a = np.concatenate([anchors, np.full(pad, fill_a, np.int32)])
    l = np.concatenate([impostors, np.full(pad, fill_l, np.int32)])
    mask = np.arange(capacity) < count
    return LMNNImpostors(jnp.asarray(a), jnp.asarray(l), jnp.asarray(mask), jnp.int32(count))


def with_capacity(active_set: LMNNImpostors, capacity: int) -> LMNNImpostors:
    """``active_set`` padded to at least ``capacity`` pairs (fits keep one shape, one compilation)."""
    count = int(active_set.count)
    if capacity <= active_set.anchors.shape[0]:
        return active_set
    a = np.asarray(active_set.anchors)[:count]
    return _pad_pairs(a, np.asarray(active_set.impostors)[:count], capacity)


def auto_capacity(count: int) -> int:
    """Capacity of ``capacity="auto"``: ``count`` rounded up to a power of two (at least 256)."""
    return max(_MIN_CAPACITY, 1 << max(0, int(count) - 1).bit_length())


def lmnn_impostors(
    transform: Transform,
    x: Points,
    labels: Labels,
    *,
    target_neighbors: TargetNeighbors | None = None,
    n_neighbors: int = 3,
    margin: float = 1.0,
    slack: float = 0.0,
    capacity: int | str | None = "auto",
    max_pairs: int | None = None,
    block_size: int | str | None = "auto",
    sample_weight: SampleWeight | None = None,
) -> LMNNImpostors | None:
    r"""The impostor active set of LMNN at ``transform``: every pair that can be active.

    All ordered pairs :math:`(i, l)` with :math:`c_l \ne c_i` and

    .. math::
        D_{il} \le \max_{j \in N_i} D_{ij} + m + s, \qquad
        D_{ij} = \lVert L x_i - L x_j \rVert^2,

    with :math:`m` = ``margin``, :math:`s` = ``slack`` :math:`\ge 0`, :math:`N_i` the
    target neighbours. A triplet :math:`(i, j, l)` is active (a non-zero hinge in
    :func:`lmnn_loss`) only when :math:`D_{il} < m + D_{ij}`, so the set holds every
    active triplet at ``transform``: ``lmnn_loss(..., impostors=set)`` then *equals*
    the full loss and gradient there. Between two searches (``L`` moving) the set goes
    stale; the slack keeps points that are about to become impostors, and the loss on
    a stale set is a lower bound of the full one. This is the active-set scheme of
    Weinberger & Saul (2009, section 6.1 and appendix A: the impostors are recomputed
    every few iterations, the gradient is evaluated on the active set in between).

    The search runs over row blocks of the distance matrix (the engine's block-size
    rule: memory ``O(b n)``, never ``n^2``, plus the pairs found); each block's mask
    goes to the host, which keeps the indices. The comparison carries a rounding
    allowance (relative to :math:`q_i + q_l + r_i`, the squared norms and the radius), so
    a pair on the radius is kept: float64 inputs are searched in float32 (half the bytes,
    faster products) with an allowance that covers the cast and the float32 products,
    unless the squared norms leave float32's comfortable range (above ``1e30`` or all
    below ``1e-20``); the set may then hold a few extra pairs on the boundary, which
    change nothing (their hinges are 0). It needs concrete inputs (not under
    ``jax.jit``); the set itself is a fixed-shape pytree for jitted code.

    Args:
        transform: :math:`L`, shape ``(k_L, d)``.
        x: inputs, shape ``(n, d)``.
        labels: class labels, shape ``(n,)`` (as for :func:`lmnn_loss`).
        target_neighbors: ``(n, k)`` target neighbours; ``None``: computed with
            :func:`lmnn_target_neighbors` (``n_neighbors`` of them).
        n_neighbors: :math:`k` when ``target_neighbors`` is ``None``.
        margin: :math:`m \ge 0`, the margin of the loss the set is for.
        slack: :math:`s \ge 0`, extra radius (squared-distance units).
        capacity: length of the padded arrays: ``"auto"`` (or ``None``) rounds the
            number of pairs up to a power of two (at least 256), so that sets of
            similar size share one compiled loss; an int is used as given.
        max_pairs: give up and return ``None`` when more pairs than this are found
            (a memory budget: the caller falls back to the full streaming loss);
            ``None``: no limit.
        block_size: rows per search block; ``"auto"`` keeps the ``(b, n)`` working set
            near 32 MiB.
        sample_weight: as in :func:`lmnn_loss`; with ``target_neighbors=None`` the
            set is searched around the same (weighted) target neighbours as the loss's.

    Returns:
        An :class:`LMNNImpostors`, or ``None`` when ``max_pairs`` is exceeded.

    Raises:
        ValueError: negative ``margin`` / ``slack``, ``capacity`` smaller than the
            number of pairs, bad shapes or target neighbours (as :func:`lmnn_loss`).
        TypeError: traced inputs.

    References:
        K. Q. Weinberger and L. K. Saul, `Distance Metric Learning for Large Margin
        Nearest Neighbor Classification <https://jmlr.org/papers/v10/weinberger09a.html>`_,
        JMLR 10, 2009 (section 6.1 "Solver", appendix A "active sets").
    """
    if _checks._is_traced(transform) or _checks._is_traced(x) or _checks._is_traced(labels):
        raise TypeError(
            "lmnn_impostors needs concrete `transform`, `x` and `labels`; call it outside "
            "jax.jit and pass the set to the jitted loss"
        )
    x = _checks.points(x, "x")
    transform = _checks.transform_matrix(transform, x.shape[1])
    n = x.shape[0]
    m = _non_negative(margin, "margin")
    s = _non_negative(slack, "slack")
    cap = _check_capacity(capacity)
    if max_pairs is not None and (
        isinstance(max_pairs, bool) or not isinstance(max_pairs, (int, np.integer)) or max_pairs < 0
    ):
        raise ValueError(f"`max_pairs` must be a non-negative int or None, got {max_pairs!r}")
    dt = _checks.compute_dtype(x, transform)
    w = None if sample_weight is None else _checks.sample_weight(sample_weight, n, dt)
    # empty slots (weighted search) only widen the radius: the set stays complete
    codes, tn, _ = _codes_and_targets(x, labels, target_neighbors, n_neighbors, w)
    _, z = _engine.embed(jnp.asarray(transform, dt), jnp.asarray(x, dt))
    b = _lmnn_active.search_block_rows(block_size, n, jnp.dtype(dt).itemsize)
    found = _lmnn_active.find_impostors(z, codes, tn, m + s, b, max_pairs)
    if found is None:
        return None
    anchors, imp = found
    if cap is None:
        cap = auto_capacity(anchors.size)
    elif cap < anchors.size:
        raise ValueError(
            f"`capacity`={cap} is smaller than the {anchors.size} impostor pairs found; "
            "pass a larger capacity or 'auto'"
        )
    return _pad_pairs(anchors, imp, cap)
