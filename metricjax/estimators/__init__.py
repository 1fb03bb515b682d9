"""scikit-learn estimators on metric-learn's API (needs the ``sklearn`` extra).

Every estimator is a :class:`MahalanobisLearner`: it learns a linear map ``components_``
and offers ``transform``, ``get_mahalanobis_matrix``, ``get_metric``, ``pair_distance``
and ``pair_score``. ``pip install "metricjax[sklearn]"`` installs scikit-learn.
"""

from metricjax.estimators._base import DEFAULT_TOL as DEFAULT_TOL
from metricjax.estimators._base import MahalanobisLearner as MahalanobisLearner
from metricjax.estimators._base import PointsTransformer as PointsTransformer
from metricjax.estimators._covariance import Covariance as Covariance
from metricjax.estimators._itml import ITML as ITML
from metricjax.estimators._itml import ITML_Supervised as ITML_Supervised
from metricjax.estimators._lfda import LFDA as LFDA
from metricjax.estimators._lmnn import LMNN as LMNN
from metricjax.estimators._lsml import LSML as LSML
from metricjax.estimators._lsml import LSML_Supervised as LSML_Supervised
from metricjax.estimators._mlkr import MLKR as MLKR
from metricjax.estimators._mlkr_cv import MLKRCV as MLKRCV
from metricjax.estimators._mmc import MMC as MMC
from metricjax.estimators._mmc import MMC_Supervised as MMC_Supervised
from metricjax.estimators._nca import NCA as NCA
from metricjax.estimators._rca import RCA as RCA
from metricjax.estimators._rca import RCA_Supervised as RCA_Supervised
from metricjax.estimators._scml import SCML as SCML
from metricjax.estimators._scml import SCML_Supervised as SCML_Supervised
from metricjax.estimators._sdml import SDML as SDML
from metricjax.estimators._sdml import SDML_Supervised as SDML_Supervised
from metricjax.estimators._tuples import PairsLearner as PairsLearner
from metricjax.estimators._tuples import QuadrupletsLearner as QuadrupletsLearner
from metricjax.estimators._tuples import TripletsLearner as TripletsLearner

__all__ = [
    "MLKR",
    "MLKRCV",
    "NCA",
    "LMNN",
    "ITML",
    "ITML_Supervised",
    "MMC",
    "MMC_Supervised",
    "LSML",
    "LSML_Supervised",
    "SCML",
    "SCML_Supervised",
    "SDML",
    "SDML_Supervised",
    "MahalanobisLearner",
    "PointsTransformer",
    "PairsLearner",
    "TripletsLearner",
    "QuadrupletsLearner",
    "Covariance",
    "LFDA",
    "RCA",
    "RCA_Supervised",
    "DEFAULT_TOL",
]
