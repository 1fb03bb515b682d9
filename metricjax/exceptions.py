"""Errors metricjax raises beyond the built-in ones (metric-learn's ``metric_learn.exceptions``)."""

from __future__ import annotations

import numpy as np

__all__ = ["InvalidParameterError", "NonPSDError", "PreprocessorError"]

#: metric-learn 0.7.0's ``NonPSDError`` message, word for word.
NON_PSD_MESSAGE = "Matrix is not positive semidefinite (PSD)."


def _message_and_note(message: str, detail: str | None):
    """``(str(err), note)``: metric-learn's message and our detail as a note (Python >= 3.11),
    or the detail appended to the message where exceptions have no notes (3.10)."""
    if detail is None or hasattr(BaseException, "add_note"):
        return message, detail
    return f"{message} {detail}", None  # pragma: no cover - Python 3.10


class NonPSDError(np.linalg.LinAlgError):
    """A matrix that must be positive semi-definite (an ``init``, a ``prior``, a learned
    metric) has a negative eigenvalue.

    A subclass of ``numpy.linalg.LinAlgError`` (itself a ``ValueError``), as metric-learn
    0.7.0's ``NonPSDError``: ``except NonPSDError``, ``except LinAlgError`` and
    ``except ValueError`` all catch it. ``str(err)`` is metric-learn's message, word for
    word (code and tests ported from metric-learn compare it); ``detail`` names the
    matrix and its smallest eigenvalue, and is attached as a note, so tracebacks show it
    (Python >= 3.11; on 3.10, which has no notes, it is appended to the message).

    Args:
        detail: what is not PSD, e.g. "`prior` is not positive semi-definite: its
            smallest eigenvalue is -10 < -1e-15".
    """

    def __init__(self, detail: str | None = None):
        self.detail = detail
        message, note = _message_and_note(NON_PSD_MESSAGE, detail)
        super().__init__(message)
        if note is not None:
            self.add_note(note)


class PreprocessorError(ValueError):
    """The ``preprocessor`` failed on the indices it was given (metric-learn's
    ``PreprocessorError``).

    Raised, as in metric-learn 0.7.0, for any exception of the preprocessor: an index
    out of range or not an integer (array preprocessors), or whatever a callable
    preprocessor raised, which is kept as ``__cause__`` and ``original_error``.
    ``str(err)`` is metric-learn's message, word for word; ``detail`` (what metricjax
    was doing: the points or the tuples) is attached as a note. A subclass of
    ``ValueError`` (metric-learn's derives from ``Exception``), so that code catching
    either ``PreprocessorError`` or ``ValueError`` catches it.

    Args:
        original_error: the exception the preprocessor raised.
        detail: context, e.g. "the `preprocessor` failed on the pairs".
    """

    def __init__(self, original_error: BaseException, detail: str | None = None):
        self.original_error = original_error
        self.detail = detail
        message, note = _message_and_note(
            f"An error occurred when trying to use the preprocessor: {original_error!r}", detail
        )
        super().__init__(message)
        if note is not None:
            self.add_note(note)


class InvalidParameterError(ValueError, TypeError):
    """A hyperparameter of the wrong type, e.g. ``NCA(max_iter="a")`` or ``ITML(gamma=None)``.

    A subclass of both ``ValueError`` and ``TypeError``, as scikit-learn's
    ``sklearn.utils._param_validation.InvalidParameterError``: code ported from
    scikit-learn (which raises that error for every invalid hyperparameter) or from
    metric-learn (which raises ``ValueError`` for most) and written ``except ValueError``
    catches it, and so does ``except TypeError``. Values of the right type but out of
    range (``max_iter=0``) raise ``ValueError``; bad data raise ``ValueError`` or
    ``TypeError`` as described in ``docs/input_policy.md``.
    """
