"""scikit-learn estimators on metric-learn's API (needs the ``sklearn`` extra).

Every estimator is a :class:`MahalanobisLearner`: it learns a linear map ``components_``
and offers ``transform``, ``get_mahalanobis_matrix``, ``get_metric``, ``pair_distance``
and ``pair_score``. ``pip install "metricjax[sklearn]"`` installs scikit-learn.
"""

from metricjax.estimators._base import DEFAULT_TOL as DEFAULT_TOL
from metricjax.estimators._base import MahalanobisLearner as MahalanobisLearner
from metricjax.estimators._covariance import Covariance as Covariance
from metricjax.estimators._lfda import LFDA as LFDA
from metricjax.estimators._lmnn import LMNN as LMNN
from metricjax.estimators._mlkr import MLKR as MLKR
from metricjax.estimators._nca import NCA as NCA
from metricjax.estimators._rca import RCA as RCA
from metricjax.estimators._rca import RCA_Supervised as RCA_Supervised

__all__ = [
    "MLKR",
    "NCA",
    "LMNN",
    "Covariance",
    "LFDA",
    "RCA",
    "RCA_Supervised",
    "MahalanobisLearner",
    "DEFAULT_TOL",
]
