r"""Several processes (hosts): global row-sharded arrays from each process's own rows.

The row-sharded losses (:func:`metricjax.sharded`, ``sharded_*_loss``) run unchanged
across processes once JAX is started with :func:`jax.distributed.initialize` and the
data are *global* arrays whose rows are split over all devices of all processes. This
module builds those arrays from the rows each process loaded, in any counts:

.. code-block:: python

    import metricjax as mj
    from metricjax import distributed

    distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=rank)
    x, n = distributed.global_rows(x_local)     # (n_pad, d) global, first n rows real
    y, _ = distributed.global_rows(y_local)
    loss = mj.sharded(mj.losses.mlkr_loss, n_valid=n)
    res = mj.fit(loss, L0, x, y)                # every process runs the same program

Rows are ordered process by process (process 0's rows first). When the counts differ,
or do not divide the local device count, every process pads its rows to a common
length and one compiled gather moves the real rows to the front (a single all-to-all,
once); the losses mask the trailing padding (``n_valid``). Launching, SLURM and the
communication per step: ``docs/scaling.md`` and ``examples/06_multi_process.py``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from metricjax._typing import Array, ArrayLike, Shaped
from metricjax.losses._sharded import _axis, row_mesh

__all__ = ["GlobalRows", "global_rows", "initialize"]


class GlobalRows(NamedTuple):
    """A global row-sharded array and the number of its leading rows that are data."""

    array: Shaped[Array, " n_pad *rest"]
    n_valid: int


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs,
) -> None:
    """:func:`jax.distributed.initialize`, with CPU collectives switched on first.

    On CPUs, cross-process collectives need ``jax_cpu_collectives_implementation =
    "gloo"`` (set here before JAX starts its backend; harmless on GPUs, which use
    NCCL). With no arguments JAX reads the cluster environment (SLURM, Open MPI,
    Kubernetes...). Call it before any other JAX call of the process.

    Args:
        coordinator_address: ``"host:port"`` of process 0.
        num_processes: total number of processes.
        process_id: this process's rank, ``0 <= process_id < num_processes``.
        **kwargs: passed on to :func:`jax.distributed.initialize`.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        **kwargs,
    )


def global_rows(
    local: Shaped[ArrayLike, " m *rest"], mesh: Mesh | None = None, *, axis_name: str | None = None
) -> GlobalRows:
    """Assemble the rows every process holds into one global array split by rows.

    Every process calls it with its own rows (``local``: ``(m_p, ...)``, any
    ``m_p >= 0``, same trailing shape and dtype everywhere). The result has
    ``n_pad >= n = sum_p m_p`` rows: process 0's rows, then process 1's, ..., then
    padding (zeros) up to a multiple of the device count, sharded as
    ``NamedSharding(mesh, PartitionSpec(axis_name))``. Pass ``n_valid`` on to the
    sharded losses (:func:`metricjax.sharded` ``(..., n_valid=n)``), which mask the
    padding. With one process it is :func:`metricjax.shard_rows` plus padding.

    Args:
        local: this process's rows.
        mesh: a 1-D mesh whose devices are grouped by process in process order
            (the default :func:`metricjax.row_mesh`, over ``jax.devices()``).
        axis_name: the mesh axis (default: its only axis).

    Returns:
        ``GlobalRows(array, n_valid)``.

    Raises:
        ValueError: a mesh with several axes, processes owning different numbers of
            its devices or not in process order, or a 0-d ``local``.
    """
    mesh = row_mesh() if mesh is None else mesh
    axis = _axis(mesh, axis_name)
    if len(mesh.axis_names) != 1:
        raise ValueError(f"global_rows needs a 1-D mesh, got axes {mesh.axis_names}")
    local = np.asarray(local)
    if local.ndim == 0:
        raise ValueError("`local` must have a row axis, got a 0-d array")
    owners = [d.process_index for d in mesh.devices.reshape(-1)]
    nproc = jax.process_count()
    per_proc = owners.count(0) if owners else 0
    if owners != sorted(owners) or any(owners.count(i) != per_proc for i in range(nproc)):
        raise ValueError(
            "the mesh's devices must be grouped by process, in process order, the same "
            "number per process (metricjax.row_mesh() over jax.devices() is)"
        )
    counts = np.asarray(multihost_utils.process_allgather(np.int64(local.shape[0]))).reshape(-1)
    slot = max(1, -(-int(counts.max()) // per_proc)) * per_proc
    padded = np.zeros((slot, *local.shape[1:]), local.dtype)
    padded[: local.shape[0]] = local
    sharding = NamedSharding(mesh, P(axis))
    shape = (nproc * slot, *local.shape[1:])
    arr = jax.make_array_from_process_local_data(sharding, padded, shape)
    n = int(counts.sum())
    if np.all(counts == slot):
        return GlobalRows(arr, n)
    # real rows to the front, padding to the back: one static gather (same on every process)
    real = np.concatenate([p * slot + np.arange(c) for p, c in enumerate(counts)])
    order = np.concatenate([real, np.setdiff1d(np.arange(shape[0]), real)])
    move = jax.jit(lambda a: jnp.take(a, jnp.asarray(order), axis=0), out_shardings=sharding)
    return GlobalRows(move(arr), n)
