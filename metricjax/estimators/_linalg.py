"""Shared fit machinery of the closed-form learners (Covariance, LFDA, RCA).

They solve a linear-algebra problem once (:mod:`metricjax.solvers`), with no
optimizer: :class:`ClosedFormLearner` validates the input as every estimator does,
runs the jit-compiled solver in ``float64`` (inside ``jax.enable_x64(True)``) whatever
the input's dtype, as metric-learn does, and stores ``components_`` in the dtype of
the data. The problem is a few ``(d, d)`` eigendecompositions: float64 costs little,
and float32 loses what these learners exist for on features of different scales (a
covariance whose eigenvalues span more than ``1 / eps32``: with features scaled over
1e-2..1e2, float32's pseudo-inverse dropped the finest feature and Covariance + 3-NN
fell from 0.84 to 0.58 accuracy; LFDA and RCA called the scatter singular). The
functional solvers keep the precision they are given. A ``fit`` that raises leaves
the estimator as it was.
"""

import jax
import numpy as np

from metricjax.estimators._base import PointsTransformer


class ClosedFormLearner(PointsTransformer):
    """Base of the learners whose ``components_`` come from one solver call."""

    _needs_y = False  # LFDA and RCA_Supervised learn from labels

    @staticmethod
    def _solve(solver, X, *args, **kwargs):
        """``solver(X, *args, **kwargs)`` in float64, as a NumPy array in the dtype of ``X``."""
        with jax.enable_x64(True):
            out = solver(np.asarray(X, np.float64), *args, **kwargs)
            out = out[0] if isinstance(out, tuple) else out
            return np.array(out, dtype=X.dtype)
