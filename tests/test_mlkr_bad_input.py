"""Bad input to the MLKR loss and kernel regression (``metricjax.losses._mlkr``); see
``_bad_input.py``."""

from __future__ import annotations

import _bad_input as bi
import numpy as np
import pytest
from _bad_input import L, N, T, X, Y, f32

import metricjax as mj
from metricjax.losses import kernel_regression, mlkr_loss

FUNCTIONAL = bi.Table()
row = FUNCTIONAL.row

row(
    "mlkr-one-sample",
    mlkr_loss,
    (L, X[:1], T[:1]),
    {},
    ValueError,
    r"MLKR needs at least 2 samples in `x`, got n=1",
    True,
)
row(
    "mlkr-empty",
    mlkr_loss,
    (L, f32(0, 3), f32(0)),
    {},
    ValueError,
    r"`x` must have at least one",
    True,
)
row("mlkr-y-rows", mlkr_loss, (L, X, T[:5]), {}, ValueError, r"`y` has 5 rows but `x` has 8", True)
row(
    "mlkr-y-rank3",
    mlkr_loss,
    (L, X, f32(N, 1, 1)),
    {},
    ValueError,
    r"`y` must have shape \(n,\) or \(n, c\)",
    True,
)
row("mlkr-y-scalar", mlkr_loss, (L, X, np.float32(1)), {}, ValueError, r"`y` must have shape", True)
row(
    "mlkr-y-strings",
    mlkr_loss,
    (L, X, np.array(list("abcdefgh"))),
    {},
    TypeError,
    r"`y` must be numeric.*<U1",
)
row(
    "mlkr-y-object",
    mlkr_loss,
    (L, X, np.array([None] * N)),
    {},
    TypeError,
    r"`y` must be numeric.*object",
)
row(
    "mlkr-y-complex",
    mlkr_loss,
    (L, X, T.astype(np.complex64)),
    {},
    TypeError,
    r"`y` is complex",
    True,
)
row(
    "mlkr-transform-width",
    mlkr_loss,
    (f32(2, 2), X, T),
    {},
    ValueError,
    r"`transform` has shape \(2, 2\): its width must equal the points' d=3",
    True,
)
row(
    "mlkr-transform-rank1",
    mlkr_loss,
    (f32(3), X, T),
    {},
    ValueError,
    r"`transform` must be 2-D",
    True,
)
row("mlkr-x-rank1", mlkr_loss, (L, f32(N), T), {}, ValueError, r"`x` must be 2-D", True)
row(
    "mlkr-block-size",
    mlkr_loss,
    (L, X, T),
    {"block_size": 0},
    ValueError,
    r"`block_size` must be a positive int",
    True,
)
row(
    "mlkr-block-size-str",
    mlkr_loss,
    (L, X, T),
    {"block_size": "big"},
    ValueError,
    r"`block_size` must be a positive int",
)
row(
    "kr-query-width",
    kernel_regression,
    (L, X, T, f32(2, 2)),
    {},
    ValueError,
    r"`x_train` has d=3 features but `x_query` has d=2",
    True,
)
row(
    "kr-query-rank1",
    kernel_regression,
    (L, X, T, f32(3)),
    {},
    ValueError,
    r"`x_query` must be 2-D",
    True,
)
row(
    "kr-query-complex",
    kernel_regression,
    (L, X, T, Y.astype(np.complex64)),
    {},
    TypeError,
    r"`x_query` is complex",
    True,
)
row(
    "kr-y-rows",
    kernel_regression,
    (L, X, T[:3]),
    {},
    ValueError,
    r"`y_train` has 3 rows but `x_train` has 8",
    True,
)
row(
    "kr-one-sample",
    kernel_regression,
    (L, X[:1], T[:1], Y),
    {},
    ValueError,
    r"at least 2 samples in `x_train`",
    True,
)


test_functional_bad_input, test_functional_bad_input_under_jit = bi.functional_tests(FUNCTIONAL)


def test_nan_targets_pass_through_mlkr_loss():
    bad = T.copy()
    bad[0] = np.nan
    assert np.isnan(float(mlkr_loss(L, X, bad)))
    with pytest.raises(ValueError, match=r"`y` contains NaN"):
        mj.check_finite("y", bad)
