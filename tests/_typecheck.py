"""The test-time type checker and how to step around it.

pytest runs with jaxtyping's import hook (``--jaxtyping-packages`` in pyproject.toml):
every annotated function of metricjax checks its arguments' shapes and types. Users
run without it, so tests of *our* error messages for bad input call the function
beneath the checker with :func:`unchecked`.
"""


def unchecked(fn):
    """``fn`` without the jaxtyping/beartype wrapper the import hook put around it."""
    return getattr(fn, "__wrapped__", fn)
