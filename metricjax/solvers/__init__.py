"""Solvers of the classic metric-learning algorithms (compiled ``jax.lax`` loops) and shared helpers.

The algorithms that are not a plain loss minimisation (ITML's cyclic Bregman
projections, MMC's projected gradient, the linear-algebra learners Covariance, LFDA
and RCA) as pure functions of arrays; the estimators of :mod:`metricjax.estimators`
wrap them. Their differentiable objectives, where they have one, are in
:mod:`metricjax.losses`.
"""

from metricjax._checks import check_pairs as check_pairs
from metricjax.solvers._covariance import covariance_components as covariance_components
from metricjax.solvers._itml import ITMLResult as ITMLResult
from metricjax.solvers._itml import default_bounds as default_bounds
from metricjax.solvers._itml import itml_solve as itml_solve
from metricjax.solvers._lfda import lfda_components as lfda_components
from metricjax.solvers._mmc import MMCResult as MMCResult
from metricjax.solvers._mmc import mmc_solve as mmc_solve
from metricjax.solvers._prior import components_from_metric as components_from_metric
from metricjax.solvers._prior import initial_metric as initial_metric
from metricjax.solvers._rca import rca_components as rca_components

__all__ = [
    "covariance_components",
    "lfda_components",
    "rca_components",
    "itml_solve",
    "ITMLResult",
    "default_bounds",
    "mmc_solve",
    "MMCResult",
    "initial_metric",
    "components_from_metric",
    "check_pairs",
]
