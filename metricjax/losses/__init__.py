"""Metric-learning losses of a linear map ``L`` (``(k, d)``), first argument for ``jax.grad``.

Each loss is a pure function ``loss(transform, x, ...)`` with a closed-form gradient
(``jax.custom_vjp``), usable with :func:`metricjax.fit`, any optax optimizer and inside
a flax model. ``jax.grad``, ``jax.value_and_grad`` and ``jax.jacrev`` work, and so does
``jax.hessian`` (forward-over-reverse: forward mode through the closed-form gradient,
whose passes are plain ``jnp``; tested for every loss); ``jax.jvp`` / ``jax.jacfwd`` of a
loss itself do not (JAX refuses forward mode through a ``custom_vjp``).
"""

from metricjax.losses._engine import block_size_for as block_size_for
from metricjax.losses._itml import itml_loss as itml_loss
from metricjax.losses._itml import itml_loss_transform as itml_loss_transform
from metricjax.losses._lmnn import LMNNImpostors as LMNNImpostors
from metricjax.losses._lmnn import lmnn_impostors as lmnn_impostors
from metricjax.losses._lmnn import lmnn_loss as lmnn_loss
from metricjax.losses._lmnn import lmnn_target_neighbors as lmnn_target_neighbors
from metricjax.losses._lsml import lsml_loss as lsml_loss
from metricjax.losses._lsml import lsml_transform_loss as lsml_transform_loss
from metricjax.losses._mlkr import kernel_regression as kernel_regression
from metricjax.losses._mlkr import mlkr_loss as mlkr_loss
from metricjax.losses._mlkr import mlkr_ridge_loss as mlkr_ridge_loss
from metricjax.losses._mmc import mmc_loss as mmc_loss
from metricjax.losses._mmc import mmc_loss_transform as mmc_loss_transform
from metricjax.losses._nca import nca_loss as nca_loss
from metricjax.losses._scml import scml_loss as scml_loss
from metricjax.losses._sharded import row_mesh as row_mesh
from metricjax.losses._sharded import shard_rows as shard_rows
from metricjax.losses._sharded import sharded as sharded
from metricjax.losses._sharded import sharded_lmnn_loss as sharded_lmnn_loss
from metricjax.losses._sharded import sharded_mlkr_loss as sharded_mlkr_loss
from metricjax.losses._sharded import sharded_nca_loss as sharded_nca_loss

__all__ = [
    "lsml_loss",
    "lsml_transform_loss",
    "scml_loss",
    "mlkr_loss",
    "mlkr_ridge_loss",
    "nca_loss",
    "kernel_regression",
    "lmnn_loss",
    "lmnn_impostors",
    "LMNNImpostors",
    "lmnn_target_neighbors",
    "block_size_for",
    "itml_loss",
    "itml_loss_transform",
    "mmc_loss",
    "mmc_loss_transform",
    "sharded",
    "sharded_lmnn_loss",
    "sharded_mlkr_loss",
    "sharded_nca_loss",
    "row_mesh",
    "shard_rows",
]
