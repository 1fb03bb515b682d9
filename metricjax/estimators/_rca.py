"""RCA estimators: Relevant Components Analysis (Bar-Hillel et al., 2005)."""

import numpy as np

from metricjax.constraints import Constraints
from metricjax.estimators._base import check_int, constraint_labels
from metricjax.estimators._linalg import ClosedFormLearner
from metricjax.solvers import rca_components

_REFERENCES = """
    References:
        A. Bar-Hillel, T. Hertz, N. Shental, D. Weinshall, `Learning a Mahalanobis
        Metric from Equivalence Constraints <https://jmlr.org/papers/v6/bar-hillel05a.html>`_,
        JMLR 6, 2005.
"""


class RCA(ClosedFormLearner):
    __doc__ = (
        r"""Relevant Components Analysis (RCA): whitening by the within-chunklet covariance.

    A chunklet is a set of points known to share a class. With :math:`C` the covariance
    of the points around their chunklet means, :math:`L = C^{-1/2}` (so
    :math:`M = C^{-1}`); with ``n_components < n_features`` the data are first
    projected by the constrained Fisher discriminant
    (:func:`metricjax.solvers.rca_components`). Same ``components_`` as metric-learn
    0.7.0's ``RCA`` (up to row signs when ``n_components < n_features``); where
    metric-learn warns and returns NaN (a singular :math:`C`: too few chunklet points,
    constant or dependent features) this raises a ``ValueError`` saying why.

    Args:
        n_components: output dimension in ``[1, n_features]``; ``None`` means
            ``n_features``.
        preprocessor: ``None``, an array of points (``X`` may then be given as 1-D
            indices into it), or a callable from indices to points.

    Attributes:
        components_: :math:`L`, shape ``(n_components, n_features)``, dtype of ``X``.
        n_features_in_: number of features seen during ``fit``.
"""
        + _REFERENCES
        + r"""
    Examples:
        >>> import numpy as np
        >>> from metricjax.estimators import RCA
        >>> X = np.random.RandomState(0).randn(20, 3)
        >>> chunks = np.repeat(np.arange(5), 4)          # 5 chunklets of 4 points
        >>> RCA().fit(X, chunks).components_.shape
        (3, 3)
    """
    )

    def __init__(self, n_components=None, preprocessor=None):
        self._set_params(locals())

    def fit(self, X, chunks):
        """Learn ``components_`` from points and their chunklets.

        Args:
            X: array-like ``(n_samples, n_features)``, finite, ``n_samples >= 2``.
            chunks: ``(n_samples,)`` ints: ``chunks[i] = j >= 0`` puts point ``i`` in
                chunklet ``j``; ``-1``: in no chunklet.

        Returns:
            ``self``.

        Raises:
            ValueError: bad input, no chunklet of two or more points, or a singular
                within-chunklet covariance.
        """
        return self._fit_atomic(self._fit, X, chunks)

    def _fit(self, X, chunks):
        X = self._points(X, reset=True, ensure_min_samples=2)
        return {
            "components_": self._solve(rca_components, X, chunks, n_components=self.n_components)
        }


class RCA_Supervised(RCA):  # noqa: N801  (metric-learn's name)
    __doc__ = (
        r"""RCA from class labels: chunklets drawn at random within each class.

    ``fit(X, y)`` draws ``n_chunks`` disjoint chunklets of ``chunk_size`` same-class
    points with :meth:`metricjax.constraints.Constraints.chunks` (the same draws as
    metric-learn for the same ``random_state``), then fits :class:`RCA`.

    Args:
        n_components: output dimension in ``[1, n_features]``; ``None`` means
            ``n_features``.
        n_chunks: number of chunklets, ``>= 1``.
        chunk_size: points per chunklet, ``>= 2``.
        preprocessor: as in :class:`RCA`.
        random_state: seed or ``numpy.random.RandomState`` for the chunklet draws.
        num_chunks: metric-learn's deprecated name of ``n_chunks`` (``FutureWarning``).

    Attributes:
        components_: :math:`L`, shape ``(n_components, n_features)``, dtype of ``X``.
        n_features_in_: number of features seen during ``fit``.
"""
        + _REFERENCES
    )

    _needs_y = True

    def __init__(
        self,
        n_components=None,
        n_chunks=100,
        chunk_size=2,
        preprocessor=None,
        random_state=None,
        num_chunks="deprecated",
    ):
        self._set_params(locals())

    def fit(self, X, y):
        """Draw chunklets from the labels ``y`` and learn ``components_``.

        Args:
            X: array-like ``(n_samples, n_features)``, finite.
            y: class labels ``(n_samples,)``. A negative integer label marks an
                unlabelled point (metric-learn's convention): it joins no chunklet,
                with a ``UserWarning``.

        Returns:
            ``self``.

        Raises:
            ValueError: the classes cannot hold ``n_chunks`` disjoint chunklets of
                ``chunk_size`` points, or the chunklets leave the within-chunklet
                covariance singular (``n_chunks * (chunk_size - 1) < n_features``
                always does).
        """
        return self._fit_atomic(self._fit_supervised, X, y)

    def _fit_supervised(self, X, y):
        n_chunks = check_int(self._renamed("n_chunks", "num_chunks"), "n_chunks", 1)
        chunk_size = check_int(self.chunk_size, "chunk_size", 2)
        X, y = self._points(X, y, reset=True, ensure_min_samples=2)
        labels = constraint_labels(y, "RCA_Supervised", min_classes=1)
        chunks = Constraints(labels).chunks(
            n_chunks, chunk_size=chunk_size, random_state=self.random_state
        )
        if n_chunks * (chunk_size - 1) < X.shape[1]:
            raise ValueError(
                f"RCA_Supervised with n_chunks={n_chunks} and chunk_size={chunk_size} gives "
                f"n_chunks * (chunk_size - 1) = {n_chunks * (chunk_size - 1)} degrees of "
                f"freedom for {X.shape[1]} features: the within-chunklet covariance is "
                "singular. Increase n_chunks or chunk_size (metric-learn warns and returns NaN)."
            )
        return {
            "components_": self._solve(
                rca_components, X, np.asarray(chunks), n_components=self.n_components
            )
        }
