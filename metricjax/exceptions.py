"""Errors metricjax raises beyond the built-in ones (metric-learn's ``metric_learn.exceptions``)."""

from __future__ import annotations

import numpy as np

__all__ = ["NonPSDError"]


class NonPSDError(np.linalg.LinAlgError):
    """A matrix that must be positive semi-definite (an ``init``, a ``prior``, a learned
    metric) has a negative eigenvalue.

    A subclass of ``numpy.linalg.LinAlgError`` (itself a ``ValueError``), as metric-learn
    0.7.0's ``NonPSDError``: ``except NonPSDError``, ``except LinAlgError`` and
    ``except ValueError`` all catch it. The message names the matrix and its smallest
    eigenvalue; without one it is metric-learn's.
    """

    def __init__(self, message: str | None = None):
        super().__init__("Matrix is not positive semidefinite (PSD)." if message is None else message)
