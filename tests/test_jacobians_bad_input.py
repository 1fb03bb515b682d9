"""Bad input to the closed-form Jacobians (``metricjax.jacobians``); see ``_bad_input.py``."""

from __future__ import annotations

import _bad_input as bi
import numpy as np
from _bad_input import X, f32

from metricjax import jacobians as jac

FUNCTIONAL = bi.Table()
row = FUNCTIONAL.row

row("wrt_x-x-rank1", jac.wrt_x, (f32(3),), {}, ValueError, r"`x` must be 2-D", True)
row("wrt_x-metric-wrong-d", jac.wrt_x, (X, f32(2, 2)), {}, ValueError, r"`metric` has shape", True)
row(
    "wrt_x-metric-nonsquare",
    jac.wrt_x,
    (X, f32(3, 2)),
    {},
    ValueError,
    r"`metric` must be a square",
    True,
)
row("wrt_x-complex", jac.wrt_x, (X.astype(np.complex64),), {}, TypeError, r"`x` is complex", True)
row(
    "wrt_x-method",
    jac.wrt_x,
    (X,),
    {"method": "finite_differences"},
    ValueError,
    r"method must be one of \('closed_form', 'jacfwd', 'jacrev'\)",
    True,
)
row("wrt_metric-x-rank3", jac.wrt_metric, (f32(2, 2, 2),), {}, ValueError, r"`x` must be 2-D", True)
row(
    "wrt_metric-empty",
    jac.wrt_metric,
    (f32(0, 3),),
    {},
    ValueError,
    r"`x` must have at least",
    True,
)
row(
    "wrt_metric-method",
    jac.wrt_metric,
    (X,),
    {"method": "jvp"},
    ValueError,
    r"method must be one",
    True,
)
row(
    "wrt_transform-width",
    jac.wrt_transform,
    (X, f32(2, 2)),
    {},
    ValueError,
    r"`transform` has shape \(2, 2\): its width",
    True,
)
row(
    "wrt_transform-strings",
    jac.wrt_transform,
    (X, np.full((2, 3), "a")),
    {},
    TypeError,
    r"`transform` must be numeric",
)


test_functional_bad_input, test_functional_bad_input_under_jit = bi.functional_tests(FUNCTIONAL)
