"""The test-time type checker and how to step around it.

pytest runs with jaxtyping's import hook (``--jaxtyping-packages`` in pyproject.toml):
every annotated function of metricjax checks its arguments' shapes and types. Users
run without it, so tests of *our* error messages for bad input run their calls as a
user would, with the checker switched off: :func:`unchecked` (a function) or
:func:`unchecked_calls` (a block). Everything else in the suite runs checked.
"""

import contextlib
import functools

import jaxtyping


@contextlib.contextmanager
def unchecked_calls():
    """Within the block, metricjax's annotations are not checked (as for a user)."""
    old = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", old)


def unchecked(fn):
    """``fn``, called with the annotation checker switched off (nested calls included)."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with unchecked_calls():
            return fn(*args, **kwargs)

    return call
