"""metricjax: differentiable metric learning in JAX.

Pairwise squared distances D(X), D(M), D(A) with closed-form derivative rules and
their full Jacobians; MLKR, NCA and LMNN losses with closed-form gradients; a
jit-compiled optax training loop; scikit-learn estimators (``metricjax.MLKR``,
``metricjax.NCA``, ``metricjax.LMNN``, needing the ``sklearn`` extra). Rows of ``x``
are observations; the ``pairwise_sq_*`` distances are squared, ``pairwise_euclidean``
and ``pairwise_mahalanobis`` are their square roots (with derivatives that are finite
at coincident points).
"""

from metricjax import jacobians as jacobians
from metricjax import losses as losses
from metricjax import reference as reference
from metricjax._checks import check_finite as check_finite
from metricjax._distances import pairwise_euclidean as pairwise_euclidean
from metricjax._distances import pairwise_mahalanobis as pairwise_mahalanobis
from metricjax._distances import pairwise_sq_euclidean as pairwise_sq_euclidean
from metricjax._distances import pairwise_sq_mahalanobis as pairwise_sq_mahalanobis
from metricjax._distances import pairwise_sq_transformed as pairwise_sq_transformed
from metricjax._sharding import row_mesh as row_mesh
from metricjax._sharding import shard_rows as shard_rows
from metricjax._sharding import sharded as sharded
from metricjax._train import FitResult as FitResult
from metricjax._train import MinibatchResult as MinibatchResult
from metricjax._train import fit as fit
from metricjax._train import fit_minibatch as fit_minibatch

__version__ = "0.1.0"

_ESTIMATORS = ("MLKR", "NCA", "LMNN")


# Imported on first use: metricjax.nn (flax), metricjax.plot (matplotlib, an optional
# extra) and the checkpoint helpers of metricjax._persist.
_SUBMODULES = ("nn", "plot")
_PERSIST = ("save_state", "load_state", "SavedState")


def __getattr__(name):
    # The estimators need scikit-learn (an optional extra): import them on first use.
    if name in _ESTIMATORS:
        from metricjax import estimators

        return getattr(estimators, name)
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"metricjax.{name}")
    if name in _PERSIST:
        from metricjax import _persist

        return getattr(_persist, name)
    raise AttributeError(f"module 'metricjax' has no attribute {name!r}")


__all__ = [
    "pairwise_sq_euclidean",
    "pairwise_sq_mahalanobis",
    "pairwise_sq_transformed",
    "pairwise_euclidean",
    "pairwise_mahalanobis",
    "jacobians",
    "losses",
    "reference",
    "fit",
    "FitResult",
    "fit_minibatch",
    "MinibatchResult",
    "sharded",
    "row_mesh",
    "shard_rows",
    "check_finite",
    "MLKR",
    "NCA",
    "LMNN",
    "save_state",
    "load_state",
    "SavedState",
    "__version__",
]
