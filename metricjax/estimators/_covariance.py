"""Covariance estimator: the Mahalanobis distance of the data covariance."""

from metricjax.estimators._linalg import ClosedFormLearner
from metricjax.solvers import covariance_components


class Covariance(ClosedFormLearner):
    r"""The classic Mahalanobis distance: :math:`M` is the inverse data covariance.

    .. math::
        \Sigma = \frac{1}{n-1} \sum_i (x_i - \bar x)(x_i - \bar x)^\top, \qquad
        M = \Sigma^{+}, \qquad L^\top L = M,

    the Moore--Penrose pseudo-inverse when :math:`\Sigma` is singular (a constant
    direction of the data gets weight 0). Unsupervised (``y`` is ignored); the same
    ``components_`` as metric-learn 0.7.0's ``Covariance`` (upper-triangular Cholesky
    factor of :math:`M`), computed by :func:`metricjax.solvers.covariance_components`.
    Scale invariant by construction: ``Covariance().fit(c * X).transform(c * X)`` is
    ``Covariance().fit(X).transform(X)``.

    Args:
        preprocessor: ``None``, an array of points (``X`` may then be given as 1-D
            indices into it), or a callable from indices to points.

    Attributes:
        components_: :math:`L`, shape ``(n_features, n_features)``, in the dtype of ``X``
            (``float32`` or ``float64``).
        n_features_in_: number of features seen during ``fit``.

    References:
        P. C. Mahalanobis, On the generalised distance in statistics, Proc. National
        Institute of Sciences of India 2(1), 1936.

    Examples:
        >>> from sklearn.datasets import load_iris
        >>> from metricjax.estimators import Covariance
        >>> X, _ = load_iris(return_X_y=True)
        >>> Covariance().fit(X).transform(X).shape
        (150, 4)
    """

    def __init__(self, preprocessor=None):
        self.preprocessor = preprocessor

    def fit(self, X, y=None):
        """Learn ``components_`` from the covariance of ``X``.

        Args:
            X: array-like ``(n_samples, n_features)``, finite, ``n_samples >= 2``.
            y: ignored.

        Returns:
            ``self``.
        """
        return self._fit_atomic(self._fit, X)

    def _fit(self, X):
        X = self._points(X, reset=True, ensure_min_samples=2)
        return {"components_": self._solve(covariance_components, X)}
