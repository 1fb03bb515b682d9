"""Bad input to the NCA loss (``metricjax.losses._nca``); see ``_bad_input.py``."""

from __future__ import annotations

import _bad_input as bi
import jax
import numpy as np
from _bad_input import LAB, ONLY_JIT, L, N, X, f32

from metricjax.losses import nca_loss

FUNCTIONAL = bi.Table()
row = FUNCTIONAL.row

row(
    "nca-labels-shape",
    nca_loss,
    (L, X, LAB[:3]),
    {},
    ValueError,
    r"`labels` must have shape \(8,\), got \(3,\)",
)
row(
    "nca-labels-shape-jit",
    nca_loss,
    (L, X, LAB[:3]),
    {"num_classes": 2},
    ValueError,
    r"`labels` must have shape \(8,\)",
    True,
)
row(
    "nca-one-sample",
    nca_loss,
    (L, X[:1], LAB[:1]),
    {},
    ValueError,
    r"NCA needs at least 2 samples, got n=1",
)
row(
    "nca-labels-nan",
    nca_loss,
    (L, X, np.where(LAB == 1, np.nan, 0.0)),
    {},
    ValueError,
    r"`labels` contains NaN",
)
row(
    "nca-labels-object",
    nca_loss,
    (L, X, np.array([0, "a"] * 4, object)),
    {},
    TypeError,
    r"`labels` must be integers, strings or floats",
)
row(
    "nca-num-classes-too-small",
    nca_loss,
    (L, X, np.arange(N) % 3),
    {"num_classes": 2},
    ValueError,
    r"`labels` has 3 distinct classes but `num_classes`=2",
)
row(
    "nca-num-classes-type",
    nca_loss,
    (L, X, LAB),
    {"num_classes": 2.5},
    TypeError,
    r"`num_classes` must be an int",
)
row(
    "nca-jit-needs-num-classes",
    nca_loss,
    (L, X, LAB),
    {},
    ValueError,
    r"under jit, pass `num_classes`",
    ONLY_JIT,
)
row(
    "nca-jit-float-labels",
    nca_loss,
    (L, X, LAB.astype(np.float32)),
    {"num_classes": 2},
    TypeError,
    r"`labels` must be integers under jit",
    ONLY_JIT,
)
row(
    "nca-transform-width",
    nca_loss,
    (f32(2, 2), X, LAB),
    {"num_classes": 2},
    ValueError,
    r"`transform` has shape \(2, 2\)",
    True,
)
row(
    "nca-x-complex",
    nca_loss,
    (L, X.astype(np.complex64), LAB),
    {"num_classes": 2},
    TypeError,
    r"`x` is complex",
    True,
)


test_functional_bad_input, test_functional_bad_input_under_jit = bi.functional_tests(FUNCTIONAL)


def test_one_class_is_accepted_by_nca_loss():
    """Documented: well defined (constant -n, zero gradient)."""
    ones = np.zeros(N, int)
    val, grad = jax.value_and_grad(nca_loss)(L, X, ones)
    assert float(val) == -N
    np.testing.assert_allclose(grad, np.zeros_like(L), atol=1e-5)  # zero up to rounding
