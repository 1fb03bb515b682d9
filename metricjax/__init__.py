"""metricjax: differentiable metric learning in JAX.

Pairwise squared distances D(X), D(M), D(A) with closed-form derivative rules and
their full Jacobians; MLKR, NCA and LMNN losses with closed-form gradients; a
jit-compiled optax training loop; scikit-learn estimators (``metricjax.MLKR``,
``metricjax.NCA``, ``metricjax.LMNN``, needing the ``sklearn`` extra). Rows of ``x``
are observations and every distance is squared.
"""

from metricjax import jacobians as jacobians
from metricjax import losses as losses
from metricjax import reference as reference
from metricjax._checks import check_finite as check_finite
from metricjax._distances import pairwise_sq_euclidean as pairwise_sq_euclidean
from metricjax._distances import pairwise_sq_mahalanobis as pairwise_sq_mahalanobis
from metricjax._distances import pairwise_sq_transformed as pairwise_sq_transformed
from metricjax._train import FitResult as FitResult
from metricjax._train import fit as fit

__version__ = "0.1.0"

_ESTIMATORS = ("MLKR", "NCA", "LMNN")


def __getattr__(name):
    # The estimators need scikit-learn (an optional extra): import them on first use.
    if name in _ESTIMATORS:
        from metricjax import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'metricjax' has no attribute {name!r}")


__all__ = [
    "pairwise_sq_euclidean",
    "pairwise_sq_mahalanobis",
    "pairwise_sq_transformed",
    "jacobians",
    "losses",
    "reference",
    "fit",
    "FitResult",
    "check_finite",
    "MLKR",
    "NCA",
    "LMNN",
    "__version__",
]
