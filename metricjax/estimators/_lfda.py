"""LFDA estimator: Local Fisher Discriminant Analysis (Sugiyama, 2007)."""

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from metricjax.estimators._linalg import ClosedFormLearner
from metricjax.solvers import lfda_components

_EMBEDDINGS = ("weighted", "orthonormalized", "plain")


class LFDA(ClosedFormLearner):
    r"""Local Fisher Discriminant Analysis (LFDA): supervised, multimodal-aware.

    Solves :math:`S^{(lb)} \varphi = \lambda S^{(lw)} \varphi` for the local between-
    and within-class scatters (:func:`metricjax.solvers.lfda_components`, which gives
    the formulas) and keeps the ``n_components`` leading eigenvectors, so that
    same-class neighbours stay close while classes separate, without forcing a class
    into a single cluster.

    metric-learn 0.7.0's ``LFDA`` has bugs (local scale, a shifted between-class
    scatter, ``k`` carried over from one class to the next, complex output on a
    singular scatter; see :mod:`metricjax.solvers._lfda`): this estimator follows the
    paper, and equals metric-learn's code with those bugs patched (up to the sign of
    each row of ``components_``). A singular local within-class scatter raises a
    ``ValueError`` (metric-learn returns complex or NaN components).

    Args:
        n_components: dimension of the embedding, in ``[1, n_features]``; ``None``
            means ``n_features``.
        k: the neighbour defining the local scale :math:`\sigma_i` (distance to the
            ``k``-th nearest member of the class), ``>= 1``; ``None`` means 7; at
            most ``n_c - 1`` in a class of ``n_c`` points (with a warning).
        embedding_type: ``"weighted"`` (rows :math:`\sqrt{\lambda_i}\varphi_i^\top`),
            ``"orthonormalized"`` (orthonormal rows spanning the same space) or
            ``"plain"`` (:math:`\varphi_i^\top`).
        preprocessor: ``None``, an array of points (``X`` may then be given as 1-D
            indices into it), or a callable from indices to points.

    Attributes:
        components_: :math:`L`, shape ``(n_components, n_features)``, dtype of ``X``.
        classes_: the class labels, sorted.
        n_features_in_: number of features seen during ``fit``.

    References:
        M. Sugiyama, `Dimensionality Reduction of Multimodal Labeled Data by Local Fisher
        Discriminant Analysis <https://www.jmlr.org/papers/v8/sugiyama07b.html>`_,
        JMLR 8, 2007.

    Examples:
        >>> from sklearn.datasets import load_iris
        >>> from metricjax.estimators import LFDA
        >>> X, y = load_iris(return_X_y=True)
        >>> LFDA(n_components=2, k=5).fit(X, y).transform(X).shape
        (150, 2)
    """

    _needs_y = True

    def __init__(self, n_components=None, k=None, embedding_type="weighted", preprocessor=None):
        self._set_params(locals())

    def fit(self, X, y):
        """Learn ``components_`` from the points ``X`` and their class labels ``y``.

        Args:
            X: array-like ``(n_samples, n_features)``, finite, ``n_samples >= 2``.
            y: class labels ``(n_samples,)``, at least two classes.

        Returns:
            ``self``.

        Raises:
            ValueError: bad input, fewer than two classes, ``n_components`` or ``k`` out
                of range, or a singular local within-class scatter (constant or
                linearly dependent features, fewer points than features).
        """
        return self._fit_atomic(self._fit, X, y)

    def _fit(self, X, y):
        if self.embedding_type not in _EMBEDDINGS:
            raise ValueError(
                f"`embedding_type` must be one of {_EMBEDDINGS}, got {self.embedding_type!r}"
            )
        X, y = self._points(X, y, reset=True, ensure_min_samples=2)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"LFDA needs samples of at least 2 classes; got 1 class ({classes[0]!r})"
            )
        comps = self._solve(
            lfda_components,
            X,
            codes.reshape(-1),
            n_components=self.n_components,
            k=self.k,
            embedding_type=self.embedding_type,
        )
        return {"components_": comps, "classes_": classes}
