"""Bad input to the pairwise distances (``metricjax._distances``); see ``_bad_input.py``."""

from __future__ import annotations

import _bad_input as bi
import jax.numpy as jnp
import numpy as np
import pytest
from _bad_input import METRIC, NAN_X, PLAIN, SQUARED, L, N, X, Y, dist_args, f32, param_of

import metricjax as mj

FUNCTIONAL = bi.Table()
row = FUNCTIONAL.row

for fn in SQUARED + PLAIN:
    n = fn.__name__
    row(f"{n}-x-rank1", fn, dist_args(fn, f32(3)), {}, ValueError, r"`x` must be 2-D", True)
    row(f"{n}-x-rank3", fn, dist_args(fn, f32(2, 3, 3)), {}, ValueError, r"`x` must be 2-D", True)
    row(f"{n}-x-scalar", fn, dist_args(fn, 1.0), {}, ValueError, r"`x` must be 2-D")
    row(
        f"{n}-x-no-rows",
        fn,
        dist_args(fn, f32(0, 3)),
        {},
        ValueError,
        r"`x` must have at least one row",
        True,
    )
    row(
        f"{n}-x-no-columns",
        fn,
        dist_args(fn, f32(4, 0), f32(0, 0) if param_of(fn) is not None else None),
        {},
        ValueError,
        r"`x` must have at least one row and one column",
        True,
    )
    row(
        f"{n}-y-width",
        fn,
        dist_args(fn, X, y=f32(2, 2)),
        {},
        ValueError,
        r"`x` has d=3 features but `y` has d=2",
        True,
    )
    row(f"{n}-y-rank1", fn, dist_args(fn, X, y=f32(3)), {}, ValueError, r"`y` must be 2-D", True)
    row(
        f"{n}-y-no-rows",
        fn,
        dist_args(fn, X, y=f32(0, 3)),
        {},
        ValueError,
        r"`y` must have at least one row",
        True,
    )
    row(
        f"{n}-x-complex",
        fn,
        dist_args(fn, X.astype(np.complex64)),
        {},
        TypeError,
        r"`x` is complex",
        True,
    )
    row(
        f"{n}-y-complex",
        fn,
        dist_args(fn, X, y=Y.astype(np.complex64)),
        {},
        TypeError,
        r"`y` is complex",
        True,
    )
    row(
        f"{n}-x-object",
        fn,
        dist_args(fn, X.astype(object)),
        {},
        TypeError,
        r"`x` must be numeric.*object",
    )
    row(
        f"{n}-x-strings",
        fn,
        dist_args(fn, [["a", "b"], ["c", "d"]]),
        {},
        TypeError,
        r"`x` must be numeric.*<U1",
    )
    row(f"{n}-x-None", fn, dist_args(fn, None), {}, TypeError, r"`x` must be numeric")
    row(
        f"{n}-x-ragged",
        fn,
        dist_args(fn, [[1.0, 2.0], [3.0]]),
        {},
        TypeError,
        r"`x` must be array-like",
    )
    row(
        f"{n}-x-datetime",
        fn,
        dist_args(fn, np.zeros((2, 2), "M8[s]")),
        {},
        TypeError,
        r"`x` must be numeric.*datetime64",
    )

for fn in (mj.pairwise_sq_mahalanobis, mj.pairwise_mahalanobis):
    n = fn.__name__
    row(
        f"{n}-metric-nonsquare",
        fn,
        (X, f32(3, 2)),
        {},
        ValueError,
        r"`metric` must be a square \(d, d\) matrix, got shape \(3, 2\)",
        True,
    )
    row(
        f"{n}-metric-wrong-d",
        fn,
        (X, f32(2, 2)),
        {},
        ValueError,
        r"`metric` has shape \(2, 2\) but the points have d=3",
        True,
    )
    row(f"{n}-metric-rank1", fn, (X, f32(3)), {}, ValueError, r"`metric` must be a square", True)
    row(
        f"{n}-metric-rank3",
        fn,
        (X, f32(2, 3, 3)),
        {},
        ValueError,
        r"`metric` must be a square",
        True,
    )
    row(
        f"{n}-metric-complex",
        fn,
        (X, METRIC.astype(np.complex64)),
        {},
        TypeError,
        r"`metric` is complex",
        True,
    )
    row(
        f"{n}-metric-strings",
        fn,
        (X, np.full((3, 3), "a")),
        {},
        TypeError,
        r"`metric` must be numeric",
    )

fn = mj.pairwise_sq_transformed
row(
    "transform-wrong-width",
    fn,
    (X, f32(2, 4)),
    {},
    ValueError,
    r"`transform` has shape \(2, 4\): its width must equal the points' d=3",
    True,
)
row("transform-transposed", fn, (X, f32(3, 2)), {}, ValueError, r"`transform`.*width", True)
row("transform-rank1", fn, (X, f32(3)), {}, ValueError, r"`transform` must be 2-D", True)
row(
    "transform-no-rows",
    fn,
    (X, f32(0, 3)),
    {},
    ValueError,
    r"`transform` must have at least one row",
    True,
)
row(
    "transform-complex",
    fn,
    (X, L.astype(np.complex64)),
    {},
    TypeError,
    r"`transform` is complex",
    True,
)


test_functional_bad_input, test_functional_bad_input_under_jit = bi.functional_tests(FUNCTIONAL)


# ----------------------------------------------------------------------------- converted, not refused
@pytest.mark.parametrize("fn", SQUARED + PLAIN, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_])
def test_integer_and_bool_input_is_promoted_to_default_float(fn, dtype):
    xi = (np.arange(12).reshape(4, 3) % 3).astype(dtype)
    param = param_of(fn)
    got = fn(*dist_args(fn, xi, None if param is None else param.astype(np.int32)))
    assert got.dtype == jnp.result_type(float)
    want = fn(*dist_args(fn, xi.astype(np.float32)))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_integer_input_becomes_float64_under_x64(x64):
    got = mj.pairwise_euclidean(np.arange(6).reshape(3, 2))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got[0, 1], np.sqrt(8.0), rtol=1e-15)


@pytest.mark.parametrize("fn", SQUARED + PLAIN, ids=lambda f: f.__name__)
def test_single_sample_is_valid_for_distances(fn):
    got = fn(*dist_args(fn, X[:1]))
    np.testing.assert_array_equal(got, np.zeros((1, 1), np.float32))


# ----------------------------------------------------------------------------- NaN passes through
@pytest.mark.parametrize("fn", SQUARED + PLAIN, ids=lambda f: f.__name__)
def test_nan_passes_through_the_functional_api_and_check_finite_catches_it(fn):
    """Documented: no value checks on the jitted path; ``check_finite`` is the opt-in guard."""
    got = np.asarray(fn(*dist_args(fn, NAN_X)))
    # The centring uses the mean of all points, so one NaN reaches every entry; only
    # the diagonal, which is set to 0, stays finite.
    off = ~np.eye(N, dtype=bool)
    assert np.isnan(got[off]).all()
    np.testing.assert_array_equal(np.diag(got), 0)
    with pytest.raises(ValueError, match=r"`x` contains NaN or inf"):
        mj.check_finite("x", NAN_X)


def test_nan_metric_and_transform_pass_through():
    bad = METRIC.copy()
    bad[0, 0] = np.nan
    assert np.isnan(np.asarray(mj.pairwise_sq_mahalanobis(X, bad))[0, 1])
    assert np.isnan(np.asarray(mj.pairwise_sq_transformed(X, bad))[0, 1])
    with pytest.raises(ValueError, match=r"`metric` contains NaN"):
        mj.check_finite("metric", bad)
