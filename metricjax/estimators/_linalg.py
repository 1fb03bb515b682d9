"""Shared fit machinery of the closed-form learners (Covariance, LFDA, RCA).

They solve a linear-algebra problem once (:mod:`metricjax.solvers`), with no
optimizer: :class:`ClosedFormLearner` validates the input as every estimator does,
runs the jit-compiled solver in the precision of the data (``float32`` in
``float32``, ``float64`` inside ``jax.enable_x64(True)``) and stores
``components_`` in that dtype. A ``fit`` that raises leaves the estimator as it was.
"""

import jax
import numpy as np

from metricjax.estimators._base import PointsTransformer


class ClosedFormLearner(PointsTransformer):
    """Base of the learners whose ``components_`` come from one solver call."""

    _needs_y = False  # LFDA and RCA_Supervised learn from labels

    @staticmethod
    def _solve(solver, X, *args, **kwargs):
        """``solver(X, *args, **kwargs)`` in the precision of ``X``, as a NumPy array."""
        with jax.enable_x64(X.dtype == np.float64):
            out = solver(X, *args, **kwargs)
            out = out[0] if isinstance(out, tuple) else out
            return np.array(out, dtype=X.dtype)
