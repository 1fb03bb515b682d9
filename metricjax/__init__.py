"""metricjax: differentiable metric learning in JAX.

Pairwise squared distances D(X), D(M), D(A) with closed-form derivative rules and
their full Jacobians; MLKR, NCA and LMNN losses with closed-form gradients; a
jit-compiled optax training loop; scikit-learn estimators needing the ``sklearn`` extra
(``metricjax.MLKR``, ``NCA``, ``LMNN``, the weakly supervised ``ITML``, ``SDML``, ``MMC``,
``LSML``, ``SCML`` with their ``*_Supervised`` versions, ``LFDA``, ``RCA``, ``Covariance``;
imported on first use). Rows of ``x``
are observations; the ``pairwise_sq_*`` distances are squared, ``pairwise_euclidean``
and ``pairwise_mahalanobis`` are their square roots (with derivatives that are finite
at coincident points).
"""

from metricjax import constraints as constraints
from metricjax import distributed as distributed
from metricjax import exceptions as exceptions
from metricjax import jacobians as jacobians
from metricjax import losses as losses
from metricjax import reference as reference
from metricjax import solvers as solvers
from metricjax._checks import check_finite as check_finite
from metricjax._distances import pairwise_euclidean as pairwise_euclidean
from metricjax._distances import pairwise_mahalanobis as pairwise_mahalanobis
from metricjax._distances import pairwise_sq_euclidean as pairwise_sq_euclidean
from metricjax._distances import pairwise_sq_mahalanobis as pairwise_sq_mahalanobis
from metricjax._distances import pairwise_sq_transformed as pairwise_sq_transformed
from metricjax._persist import SavedState as SavedState
from metricjax._persist import load_state as load_state
from metricjax._persist import save_state as save_state
from metricjax._train import FitResult as FitResult
from metricjax._train import MinibatchResult as MinibatchResult
from metricjax._train import fit as fit
from metricjax._train import fit_minibatch as fit_minibatch
from metricjax.constraints import Constraints as Constraints
from metricjax.losses import row_mesh as row_mesh
from metricjax.losses import shard_rows as shard_rows
from metricjax.losses import sharded as sharded

__version__ = "0.1.0"

_ESTIMATORS = ("MLKR", "MLKRCV", "NCA", "LMNN", "ITML", "ITML_Supervised", "MMC", "MMC_Supervised",
               "LSML", "LSML_Supervised", "SCML", "SCML_Supervised",
               "SDML", "SDML_Supervised", "Covariance", "LFDA", "RCA", "RCA_Supervised")


# Imported on first use, as they need optional extras: metricjax.nn (flax),
# metricjax.plot (matplotlib) and metricjax.estimators (scikit-learn).
_SUBMODULES = ("nn", "plot", "estimators")


def _installed(module: str) -> bool:
    """Whether an optional dependency can be imported (found, not imported)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _lazy_names() -> set:
    """The names imported on first use whose extra is installed: ``help(metricjax)``,
    ``dir`` and ``from metricjax import *`` list only those (the others raise an
    ImportError naming the extra when used)."""
    names = {"plot"}  # imports without matplotlib; its functions name the extra
    if _installed("sklearn"):
        names |= {"estimators", *_ESTIMATORS}
    if _installed("flax"):
        names.add("nn")
    return names


def __dir__():
    # tab completion lists the names imported on first use as well
    return sorted(set(globals()) | set(__all__) | _lazy_names())


def __getattr__(name):
    # The estimators need scikit-learn (an optional extra): import them on first use.
    if name in _ESTIMATORS:
        import importlib

        return getattr(importlib.import_module("metricjax.estimators"), name)
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"metricjax.{name}")
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
    "solvers",
    "constraints",
    "Constraints",
    "distributed",
    "fit",
    "FitResult",
    "fit_minibatch",
    "MinibatchResult",
    "sharded",
    "row_mesh",
    "shard_rows",
    "check_finite",
    "save_state",
    "load_state",
    "SavedState",
    "__version__",
    *sorted(_lazy_names() - {"nn", "plot"}),  # the estimators, where scikit-learn is installed
]
