"""Shared fixtures: PRNG key, float64 context, strict rank promotion."""

import pathlib
import sys

import jax
import pytest

# The repository root, so tests can import the test-only reference shims of
# ``benchmarks/_reference_libs.py`` (metric-learn on current scikit-learn).
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Hidden broadcasting between arrays of different rank, and implicit promotion
# between dtypes (float32 with float64, ints with floats), fail loudly in the tests.
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def as_user():
    """Run the test as a user would: metricjax's annotations unchecked (see _typecheck.py).

    For tests of our own error messages, which the test-time type checker would
    otherwise pre-empt with its own.
    """
    from _typecheck import unchecked_calls

    with unchecked_calls():
        yield


@pytest.fixture
def standard_promotion():
    """JAX's standard dtype promotion, for tests that drive flax/optax code (not strict-clean)."""
    with jax.numpy_dtype_promotion("standard"):
        yield
