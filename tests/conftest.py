"""Shared fixtures: PRNG key, float64 context, strict rank promotion."""

import jax
import pytest

# Hidden broadcasting between arrays of different rank fails loudly in the tests.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield
