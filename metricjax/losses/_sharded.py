r"""MLKR, NCA and LMNN sharded by rows across devices (of one process or several).

The rows of the pairwise matrix are split over the devices of a 1-D mesh axis
(``"rows"`` by default) with ``jax.shard_map``. Each device

1. holds its ``m = n / p`` rows of ``x`` (and of ``y`` or the labels),
2. all-gathers the small embedded points ``Z = (X - \bar x) L^T`` (``(n, k)``) and
   the values (``(n, c)``) of all points (and the centred ``X`` when the gradient
   uses the ``G X`` product, see :func:`metricjax.losses._engine.rows_pass`),
3. runs the blocked engine for its own query rows against all ``n`` columns,
4. reduces: the loss and the ``(k, d)`` gradient are ``psum``-ed, the per-column
   accumulators (``G^T 1``, ``G^T Z``, ``P^T W``) are ``psum_scatter``-ed back to
   the devices that own those points.

The result equals the one-device loss and gradient up to summation order (tested
to ``rtol = 1e-10`` in float64). Memory per device is ``O(b n + n (k + c) + m d)``
(plus ``n d`` for the all-gathered inputs in the wide form); communication per
evaluation is ``O(n (k + c + d))`` numbers, against ``O(n^2 (k + c) / p)`` flops.

``n`` need not be a multiple of the device count: the rows are padded to one and
the padded points are masked out (no neighbour of anyone, no loss, zero gradient).
Sample weights are split with the rows: each device scales its own rows' losses and
all-gathers the ``(n,)`` weights for the kernel (MLKR, NCA) or the hinges (LMNN). Inputs that already end in padding (e.g. from
:func:`metricjax.distributed.global_rows`) pass ``n_valid``, the number of real rows.
LMNN (:func:`sharded_lmnn_loss`) has the same layout with LMNN's hinge pass: it also
all-gathers the centred ``X`` and the labels, and scatters the target neighbours'
and impostors' column terms back to their owners. For the cheapest layout, make ``n`` a multiple of the device count and place the
inputs with ``NamedSharding(mesh, PartitionSpec("rows"))`` (then no padding or
resharding happens inside the call). Multi-host use and GPU notes:
``docs/scaling.md``.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from metricjax import _checks
from metricjax._rules import (
    laplacian_combine,
    laplacian_metric_finish,
    laplacian_transform_finish,
    mm,
)
from metricjax._typing import (
    Array,
    ArrayLike,
    Labels,
    Points,
    SampleWeight,
    Scalar,
    Shaped,
    TargetNeighbors,
    Targets,
    Transform,
)
from metricjax.losses import _engine as sn
from metricjax.losses import _lmnn
from metricjax.losses._lmnn import lmnn_loss, lmnn_rows
from metricjax.losses._lmnn_active import primal_value
from metricjax.losses._mlkr import _prepare, _sq_error, mlkr_loss
from metricjax.losses._nca import _neg_match, nca_loss
from metricjax.losses._nca import _prepare as _nca_prepare

__all__ = [
    "row_mesh",
    "shard_rows",
    "sharded",
    "sharded_lmnn_loss",
    "sharded_mlkr_loss",
    "sharded_nca_loss",
]

DEFAULT_AXIS = "rows"


def row_mesh(devices=None, axis_name: str = DEFAULT_AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all of ``jax.devices()``, every host).

    Args:
        devices: a sequence of devices, or ``None`` for ``jax.devices()``.
        axis_name: name of the mesh axis the rows are split over.

    Returns:
        ``jax.sharding.Mesh`` with one axis.
    """
    devs = jax.devices() if devices is None else list(devices)
    if not devs:
        raise ValueError("`devices` is empty")
    return Mesh(np.asarray(devs, dtype=object), (axis_name,))


def shard_rows(
    a: Shaped[ArrayLike, " n *rest"], mesh: Mesh | None = None, axis_name: str | None = None
) -> Shaped[Array, " n *rest"]:
    """Place ``a`` split by rows (axis 0) over ``mesh`` (one host).

    ``jax.device_put(a, NamedSharding(mesh, PartitionSpec(axis_name)))``; the number
    of rows must be a multiple of the number of devices on that axis. On several
    hosts build the global array with ``jax.make_array_from_process_local_data``
    instead (``docs/scaling.md``).
    """
    mesh = row_mesh() if mesh is None else mesh
    axis = _axis(mesh, axis_name)
    p = mesh.shape[axis]
    if np.shape(a)[0] % p:
        raise ValueError(
            f"{np.shape(a)[0]} rows cannot be split evenly over {p} devices; pass the "
            "array unsharded (the sharded losses pad it) or drop rows"
        )
    return jax.device_put(a, NamedSharding(mesh, P(axis)))


def _axis(mesh: Mesh, axis_name: str | None) -> str:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis_name is None:
        if len(mesh.axis_names) != 1:
            raise ValueError(
                f"the mesh has axes {mesh.axis_names}; pass `axis_name` (the axis the rows "
                "are split over)"
            )
        return mesh.axis_names[0]
    if axis_name not in mesh.axis_names:
        raise ValueError(f"`axis_name` {axis_name!r} is not an axis of the mesh {mesh.axis_names}")
    return axis_name


def _block_rows(block_size, m: int, n: int, itemsize: int) -> int:
    """Rows per block on one device: ``m`` local rows against ``n`` columns."""
    return sn.block_rows(block_size, m, n, itemsize)


class _Config(NamedTuple):
    f: Any  # per-row loss f(a, u)
    mesh: Mesh
    axis: str
    block_size: int
    n_valid: int


def _embed_own_rows(transform, x, axis: str, n_valid: int):
    """This device's row offset, centred rows and embedding (the mean over all real rows)."""
    m = x.shape[0]
    offset = jax.lax.axis_index(axis) * m
    valid = (offset + jnp.arange(m, dtype=offset.dtype)) < n_valid
    total = jax.lax.psum(jnp.sum(jnp.where(valid[:, None], x, 0), axis=0), axis)
    xc, zq = sn.embed(transform, x, (total / n_valid)[None, :])
    return offset, xc, zq


def _scatter(a, axis: str):
    """Sum over devices, keep this device's rows."""
    return jax.lax.psum_scatter(a, axis, scatter_dimension=0, tiled=True)


def _pad_rows(n_devices: int, *arrays):
    """``(n_pad, arrays)``: the rows zero-padded to ``n_pad``, the next multiple of ``n_devices``."""
    n = arrays[0].shape[0]
    n_pad = -(-n // n_devices) * n_devices
    if n_pad != n:
        arrays = tuple(
            jnp.pad(a, ((0, n_pad - n),) + ((0, 0),) * (a.ndim - 1)) for a in arrays
        )
    return n_pad, arrays


def _local(cfg: _Config, with_grad: bool, need_x: bool, need_values: bool):
    """The per-device function of the shard_map."""
    axis = cfg.axis

    def run(transform, x, values, targets, weight):
        d = x.shape[1]
        offset, xc, zq = _embed_own_rows(transform, x, axis, cfg.n_valid)
        z = jax.lax.all_gather(zq, axis, tiled=True)
        v = jax.lax.all_gather(values, axis, tiled=True)
        # sample weights: this device's rows scale their f, all points' weights the kernel
        wall = jax.lax.all_gather(weight, axis, tiled=True)
        common = dict(row_offset=offset, n_valid=cfg.n_valid, block_size=cfg.block_size,
                      qw=weight, cw=wall)  # fmt: skip
        if not with_grad:
            loss = sn.rows_pass(zq, targets, z, v, cfg.f, with_grad=False, **common)
            return jax.lax.psum(loss, axis)
        lbar_form = sn.use_lbar_form(need_x, d, zq.shape[1])
        xall = jax.lax.all_gather(xc, axis, tiled=True) if lbar_form else None
        r = sn.rows_pass(
            zq, targets, z, v, cfg.f, xq=xc if lbar_form else None, x=xall,
            with_grad=True, need_values=need_values, **common,
        )
        scatter = functools.partial(_scatter, axis=axis)
        colsum = scatter(r.colsum)
        if lbar_form:
            xlx = jax.lax.psum(laplacian_metric_finish(r.xgx, colsum, xc), axis)
            lbar = 2 * mm(transform, xlx)
            xbar = jnp.zeros_like(x)
        else:
            zbar = 2 * laplacian_combine(0, colsum, -r.rows, scatter(r.gtz), zq)
            lbar = jax.lax.psum(mm(zbar.T, xc), axis)
            xbar = mm(zbar, transform) if need_x else jnp.zeros_like(x)
        vbar = scatter(r.values) if need_values else jnp.zeros_like(values)
        return jax.lax.psum(r.loss, axis), lbar, xbar, vbar, r.targets

    rows = P(axis)
    out_specs = P() if not with_grad else (P(), P(), rows, rows, rows)
    # check_vma=False: the engine's scan carries start replicated (zeros) and become
    # device-varying; every replicated output is an explicit psum.
    return jax.shard_map(
        run,
        mesh=cfg.mesh,
        in_specs=(P(), rows, rows, rows, rows),
        out_specs=out_specs,
        check_vma=False,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _sharded_sn(transform, x, values, targets, weight, cfg: _Config):
    return _local(cfg, False, False, False)(transform, x, values, targets, weight)


def _sharded_sn_fwd(transform, x, values, targets, weight, cfg: _Config):
    # symbolic_zeros=True: skip the x / values cotangents nobody asked for.
    need_x, need_values = x.perturbed, values.perturbed
    loss, lbar, xbar, vbar, ubar = _local(cfg, True, need_x, need_values)(
        transform.value, x.value, values.value, targets.value, weight.value
    )
    # The gradient is complete after the forward pass: it is the residual, and the
    # backward rule only scales it (no (n, n) block is stored or recomputed).
    return loss, (lbar, xbar if need_x else None, vbar if need_values else None, ubar)


def _sharded_sn_bwd(cfg, res, g):
    del cfg
    # the sample weights are data, not differentiated (as in the one-device losses)
    return (*(None if r is None else g * r for r in res), None)


_sharded_sn.defvjp(_sharded_sn_fwd, _sharded_sn_bwd, symbolic_zeros=True)


def _n_valid(n_valid, n: int) -> int:
    """Checked count of real rows: the first ``n_valid`` of ``n`` (the rest is padding)."""
    if n_valid is None:
        return n
    if isinstance(n_valid, bool) or not isinstance(n_valid, (int, np.integer)):
        raise TypeError(f"`n_valid` must be an int, got {n_valid!r}")
    if not 2 <= n_valid <= n:
        raise ValueError(f"`n_valid` must lie in [2, {n}] (the rows of `x`), got {n_valid}")
    return int(n_valid)


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9))
def _run(transform, x, values, targets, weight, f, mesh, axis, block_size, n_valid):
    p = mesh.shape[axis]
    n_pad, (x, values, targets, weight) = _pad_rows(p, x, values, targets, weight)
    b = _block_rows(block_size, n_pad // p, n_pad, x.dtype.itemsize)
    cfg = _Config(f, mesh, axis, b, n_valid)
    return _sharded_sn(transform, x, values, targets, weight, cfg)


def sharded_mlkr_loss(
    transform: Transform,
    x: Points,
    y: Targets,
    *,
    sample_weight: SampleWeight | None = None,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
    block_size: int | str | None = "auto",
    n_valid: int | None = None,
) -> Scalar:
    r""":func:`metricjax.losses.mlkr_loss` with the rows split over the devices of ``mesh``.

    Same value and gradients (with respect to ``transform``, ``x`` and ``y``) as the
    one-device loss, up to summation order. Works eagerly, under ``jax.jit`` and in
    :func:`metricjax.fit`.

    Args:
        transform: :math:`L`, shape ``(k, d)`` (replicated on every device).
        x: ``(n, d)``; any ``n >= 2`` (padded to a multiple of the device count).
        y: ``(n,)`` or ``(n, c)``.
        sample_weight: ``(n,)`` weights :math:`s_i \ge 0` split with the rows, as in
            :func:`metricjax.losses.mlkr_loss` (weight 0 is exactly a dropped point;
            ``None``: all 1). Not differentiated.
        mesh: a ``jax.sharding.Mesh``; ``None``: :func:`row_mesh` over all devices.
        axis_name: the mesh axis the rows are split over (needed for a mesh with
            several axes; the others hold replicas).
        block_size: rows per block on each device (``"auto"``: about 32 MiB of
            ``(b, n)`` temporaries per device, or all local rows when they fit).
        n_valid: only the first ``n_valid`` rows are data, the rest is padding (no
            neighbour of anyone, no loss, zero gradient): the count that
            :func:`metricjax.distributed.global_rows` returns. ``None``: all rows.

    Returns:
        Scalar loss, replicated.
    """
    transform, x, y2 = _prepare(transform, x, y)
    mesh = row_mesh() if mesh is None else mesh
    axis = _axis(mesh, axis_name)
    _check_block(block_size)
    nv = _n_valid(n_valid, x.shape[0])
    w = _checks.sample_weight(sample_weight, x.shape[0], x.dtype)
    return _run(transform, x, y2, y2, w, _sq_error, mesh, axis, block_size, nv)


def sharded_nca_loss(
    transform: Transform,
    x: Points,
    labels: Labels,
    *,
    num_classes: int | None = None,
    sample_weight: SampleWeight | None = None,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
    block_size: int | str | None = "auto",
    n_valid: int | None = None,
) -> Scalar:
    """:func:`metricjax.losses.nca_loss` with the rows split over the devices of ``mesh``.

    Same value and gradients (with respect to ``transform`` and ``x``) as the
    one-device loss, up to summation order, ``sample_weight`` included. Arguments as
    in :func:`metricjax.losses.nca_loss` and :func:`sharded_mlkr_loss`.
    """
    transform, x, onehot = _nca_prepare(transform, x, labels, num_classes)
    mesh = row_mesh() if mesh is None else mesh
    axis = _axis(mesh, axis_name)
    _check_block(block_size)
    nv = _n_valid(n_valid, x.shape[0])
    w = _checks.sample_weight(sample_weight, x.shape[0], x.dtype)
    return _run(transform, x, onehot, onehot, w, _neg_match, mesh, axis, block_size, nv)


# ----------------------------------------------------------------------------------
# LMNN: the same layout, with LMNN's hinge pass (losses/_lmnn.py) per device
# ----------------------------------------------------------------------------------
class _LmnnConfig(NamedTuple):
    mesh: Mesh
    axis: str
    push_weight: float
    margin: float
    block_size: int
    n_valid: int
    weighted: bool = False


def _lmnn_local(cfg: _LmnnConfig, with_grad: bool, need_x: bool):
    """Per device: own query rows against the all-gathered ``X``, ``Z`` and labels.

    The target neighbours' and impostors' contributions to other devices' rows
    (``G^T 1``, ``G^T Z`` and the target scatter) are ``psum_scatter``-ed back to the
    devices that own those points, as for the soft-neighbour column accumulators.
    """
    axis = cfg.axis

    def run(transform, x, codes, tn, *weights):
        offset, xq, zq = _embed_own_rows(transform, x, axis, cfg.n_valid)
        xall = jax.lax.all_gather(xq, axis, tiled=True)
        z = jax.lax.all_gather(zq, axis, tiled=True)
        call = jax.lax.all_gather(codes, axis, tiled=True)
        args = (xq, zq, codes, tn, xall, z, call, cfg.push_weight, cfg.margin, cfg.block_size)
        common = dict(row_offset=offset, n_valid=cfg.n_valid)
        if cfg.weighted:  # own rows' target-pair weights, all points' weights
            common.update(aq=weights[0], w=jax.lax.all_gather(weights[1], axis, tiled=True))
        if not with_grad:
            return jax.lax.psum(lmnn_rows(*args, with_grad=False, **common), axis)
        loss, part, colsum, gtz, zcol, zrow = lmnn_rows(
            *args, with_grad=True, need_x=need_x, **common
        )
        scatter = functools.partial(_scatter, axis=axis)
        colsum = scatter(colsum)
        lbar = jax.lax.psum(laplacian_transform_finish(part, colsum, xq, zq), axis)
        xbar = jnp.zeros_like(x)
        if need_x:
            zbar = 2 * laplacian_combine(0, colsum, -(zrow + scatter(zcol)), scatter(gtz), zq)
            xbar = mm(zbar, transform)
        return jax.lax.psum(loss, axis), lbar, xbar

    rows = P(axis)
    return jax.shard_map(
        run,
        mesh=cfg.mesh,
        in_specs=(P(), rows, rows, rows) + ((rows, rows) if cfg.weighted else ()),
        out_specs=P() if not with_grad else (P(), P(), rows),
        check_vma=False,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _sharded_lmnn(transform, x, codes, tn, weights, cfg: _LmnnConfig):
    return _lmnn_local(cfg, False, False)(transform, x, codes, tn, *(weights or ()))


def _sharded_lmnn_fwd(transform, x, codes, tn, weights, cfg: _LmnnConfig):
    need_x = x.perturbed
    loss, lbar, xbar = _lmnn_local(cfg, True, need_x)(
        transform.value, x.value, codes.value, tn.value, *(primal_value(weights) or ())
    )
    return loss, (lbar, xbar if need_x else None)


def _sharded_lmnn_bwd(cfg, res, g):
    del cfg
    lbar, xbar = res
    # the weights are data, not differentiated (as in the one-device loss)
    return g * lbar, None if xbar is None else g * xbar, None, None, None


_sharded_lmnn.defvjp(_sharded_lmnn_fwd, _sharded_lmnn_bwd, symbolic_zeros=True)


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9, 10))
def _run_lmnn(transform, x, codes, tn, weights, mesh, axis, push_weight, margin, block_size,
              n_valid):  # fmt: skip
    p = mesh.shape[axis]
    n_pad, (x, codes, tn, *weights) = _pad_rows(p, x, codes, tn, *(weights or ()))
    b = _lmnn._block_rows(block_size, n_pad, tn.shape[1], x.dtype.itemsize, m=n_pad // p)
    cfg = _LmnnConfig(mesh, axis, push_weight, margin, b, n_valid, bool(weights))
    return _sharded_lmnn(transform, x, codes, tn, tuple(weights) or None, cfg)


def sharded_lmnn_loss(
    transform: Transform,
    x: Points,
    labels: Labels,
    *,
    target_neighbors: TargetNeighbors | None = None,
    n_neighbors: int = 3,
    push_weight: float = 0.5,
    margin: float = 1.0,
    sample_weight: SampleWeight | None = None,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
    block_size: int | str | None = "auto",
    n_valid: int | None = None,
) -> Scalar:
    """:func:`metricjax.losses.lmnn_loss` with the rows split over the devices of ``mesh``.

    Same value and gradients (with respect to ``transform`` and ``x``) as the
    one-device loss, up to summation order. Each device holds its rows, their labels
    and target neighbours (global row indices), all-gathers the centred ``X``
    (``(n, d)``), the embedding ``Z`` (``(n, k)``) and the labels, runs LMNN's blocked
    hinge pass on its own rows against all points, and ``psum_scatter``-s the
    contributions to other devices' rows back to their owners.

    Arguments as in :func:`metricjax.losses.lmnn_loss` and :func:`sharded_mlkr_loss`.
    Under ``jax.jit`` or with global arrays spanning several processes pass
    ``target_neighbors`` (global indices) and integer ``labels``; with ``n_valid``
    the padding rows may hold any in-range indices. ``sample_weight`` (``(n,)``, as in
    :func:`metricjax.losses.lmnn_loss`: pull terms weighted :math:`s_i s_j`, hinges
    :math:`s_i s_j s_l`) is split with the rows; without ``target_neighbors`` they are
    searched among the points of positive weight (on the device, traceable), and
    rows at or past ``n_valid`` get weight 0.
    """
    x = _checks.points(x, "x")
    transform = _checks.transform_matrix(transform, x.shape[1])
    n = x.shape[0]
    nv = _n_valid(n_valid, n)
    mu = _lmnn._static_float(push_weight, "push_weight")
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"`push_weight` must lie in [0, 1], got {mu}")
    mg = _lmnn._static_float(margin, "margin")
    if mg < 0:
        raise ValueError(f"`margin` must be non-negative, got {mg}")
    mesh = row_mesh() if mesh is None else mesh
    axis = _axis(mesh, axis_name)
    _check_block(block_size)
    dt = _checks.compute_dtype(x, transform)
    if sample_weight is not None:
        w = _checks.sample_weight(sample_weight, n, dt)
        w = jnp.where(jnp.arange(n) < nv, w, 0)  # padding rows: no neighbour, no loss
        if target_neighbors is not None and nv != n:  # padding rows: any in-range index
            codes, tn, ok = _lmnn._label_codes(labels, n)[0], target_neighbors, None
        else:
            codes, tn, ok = _lmnn._codes_and_targets(x, labels, target_neighbors, n_neighbors, w)
        tn = jnp.asarray(tn, jnp.int32)
        weights = (_lmnn._pair_weights(w, tn, ok), w)
        return _run_lmnn(
            jnp.asarray(transform, dt), jnp.asarray(x, dt), codes, tn, weights, mesh, axis,
            mu, mg, block_size, nv,
        )
    codes, host_codes = _lmnn._label_codes(labels, n)
    if target_neighbors is None:
        if nv != n or _checks._is_traced(x) or host_codes is None:
            raise TypeError(
                "pass `target_neighbors` (global row indices) for traced, padded or "
                "multi-process inputs; on one host lmnn_target_neighbors(x, labels) computes them"
            )
        tn = jnp.asarray(_lmnn.lmnn_target_neighbors(x, labels, n_neighbors), jnp.int32)
    elif nv != n:
        tn = jnp.asarray(target_neighbors, jnp.int32)  # padding rows: any in-range index
    else:
        tn = _lmnn._check_target_neighbors(target_neighbors, n, host_codes)
    return _run_lmnn(
        jnp.asarray(transform, dt), jnp.asarray(x, dt), codes, tn, None, mesh, axis, mu, mg,
        block_size, nv,
    )


def sharded_lmnn_pairs_loss(
    transform, x, codes, target_neighbors, pair_weight, sample_weight, *, mesh, push_weight,
    margin, block_size,
):  # fmt: skip
    """:func:`metricjax.losses._lmnn.lmnn_pairs_loss` split by rows over ``mesh`` (no checks:
    the estimator builds its inputs)."""
    dt = jnp.result_type(transform, x)
    weights = (jnp.asarray(pair_weight, dt), jnp.asarray(sample_weight, dt))
    return _run_lmnn(
        jnp.asarray(transform, dt), jnp.asarray(x, dt), jnp.asarray(codes, jnp.int32),
        jnp.asarray(target_neighbors, jnp.int32), weights, mesh, _axis(mesh, None),
        float(push_weight), float(margin), block_size, x.shape[0],
    )


def _check_block(block_size) -> None:
    sn.resolve_block_size(block_size, 2, 8)  # validates; the size is resolved per device


def sharded(
    loss_fn: Callable[..., Any],
    mesh: Mesh | None = None,
    *,
    axis_name: str | None = None,
    n_valid: int | None = None,
) -> Callable[..., Any]:
    """The row-sharded version of :func:`~metricjax.losses.mlkr_loss`, :func:`~metricjax.losses.nca_loss` or :func:`~metricjax.losses.lmnn_loss`.

    ``sharded(mlkr_loss, mesh)`` is ``functools.partial(sharded_mlkr_loss,
    mesh=mesh, axis_name=axis_name)``: same call signature as the loss it replaces,
    same numbers, the work split by rows across the devices of ``mesh``. Build it
    once and reuse it (:func:`metricjax.fit` caches its compiled loop per loss
    object).

    Args:
        loss_fn: :func:`metricjax.losses.mlkr_loss`, :func:`metricjax.losses.nca_loss`
            or :func:`metricjax.losses.lmnn_loss`.
        mesh: ``jax.sharding.Mesh``; ``None``: :func:`row_mesh` over all devices.
        axis_name: mesh axis of the rows (for a mesh with several axes).
        n_valid: the number of real rows when the inputs end in padding (from
            :func:`metricjax.distributed.global_rows`); ``None``: all rows are data.

    Examples:
        >>> import jax, metricjax as mj
        >>> loss = mj.sharded(mj.losses.mlkr_loss)        # all devices, axis "rows"
        >>> # res = mj.fit(loss, L0, x, y)                 # same as one device
    """
    mesh = row_mesh() if mesh is None else mesh
    axis = _axis(mesh, axis_name)
    fns = {mlkr_loss: sharded_mlkr_loss, nca_loss: sharded_nca_loss, lmnn_loss: sharded_lmnn_loss}
    for plain, fn in fns.items():
        if loss_fn is plain:
            return functools.partial(fn, mesh=mesh, axis_name=axis, n_valid=n_valid)
    raise ValueError(
        "sharded() supports metricjax.losses.mlkr_loss, nca_loss and lmnn_loss; for another "
        "soft-neighbour loss use metricjax.losses._engine.rows_pass in a shard_map"
    )
