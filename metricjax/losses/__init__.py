"""Metric-learning losses of a linear map ``L`` (``(k, d)``), first argument for ``jax.grad``."""

from metricjax.losses._lmnn import lmnn_loss as lmnn_loss
from metricjax.losses._lmnn import lmnn_target_neighbors as lmnn_target_neighbors
from metricjax.losses._mlkr import kernel_regression as kernel_regression
from metricjax.losses._mlkr import mlkr_loss as mlkr_loss
from metricjax.losses._nca import nca_loss as nca_loss
from metricjax.losses._softneighbour import block_size_for as block_size_for

__all__ = [
    "mlkr_loss",
    "nca_loss",
    "kernel_regression",
    "lmnn_loss",
    "lmnn_target_neighbors",
    "block_size_for",
    "sharded_mlkr_loss",
    "sharded_nca_loss",
]


def __getattr__(name):
    # the row-sharded losses live in metricjax._sharding (imported with metricjax)
    if name in ("sharded_mlkr_loss", "sharded_nca_loss"):
        from metricjax import _sharding

        return getattr(_sharding, name)
    raise AttributeError(f"module 'metricjax.losses' has no attribute {name!r}")
