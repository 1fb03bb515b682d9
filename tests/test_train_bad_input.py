"""Bad input to ``metricjax.fit`` (``metricjax._train``); see ``_bad_input.py``."""

from __future__ import annotations

import _bad_input as bi
import jax.numpy as jnp
import pytest

import metricjax as mj

FUNCTIONAL = bi.Table()
row = FUNCTIONAL.row


def _quadratic(w):
    return jnp.sum((w - 1.0) ** 2)


row(
    "fit-max-iter",
    mj.fit,
    (_quadratic, jnp.zeros(2)),
    {"max_iter": 0},
    ValueError,
    r"`max_iter` must be an integer >= 1, got 0",
)
row(
    "fit-tol",
    mj.fit,
    (_quadratic, jnp.zeros(2)),
    {"tol": -1.0},
    ValueError,
    r"`tol` must be a number >= 0, got -1.0",
)
row(
    "fit-gtol-nan",
    mj.fit,
    (_quadratic, jnp.zeros(2)),
    {"gtol": float("nan")},
    ValueError,
    r"`gtol` must be a number >= 0, got nan",
)
row(
    "fit-nonfinite-initial-loss",
    mj.fit,
    (_quadratic, jnp.array([jnp.inf, 0.0])),
    {},
    FloatingPointError,
    r"the initial loss is not finite \(inf\)",
)
row(
    "fit-nan-data",
    mj.fit,
    (lambda w, a: jnp.sum((w - a) ** 2), jnp.zeros(2), jnp.array([jnp.nan, 0.0])),
    {},
    FloatingPointError,
    r"the initial loss is not finite \(nan\)",
)
row("fit-loss-not-callable", mj.fit, (None, jnp.zeros(2)), {}, TypeError, r"callable")
row(
    "fit-loss-not-scalar",
    mj.fit,
    (lambda w: w**2, jnp.zeros(2)),
    {},
    TypeError,
    r"scalar-output functions",
)
row(
    "fit-integer-params",
    mj.fit,
    (_quadratic, jnp.zeros(2, jnp.int32)),
    {},
    TypeError,
    r"params",
)
row(
    "fit-max-iter-string",
    mj.fit,
    (_quadratic, jnp.zeros(2)),
    {"max_iter": "many"},
    ValueError,
    r"`max_iter`",
)


@pytest.mark.parametrize(bi.FUNCTIONAL_PARAMS, FUNCTIONAL)
def test_functional_bad_input(fn, args, kwargs, exc, match, jit):
    bi.check_bad_input(fn, args, kwargs, exc, match, jit)


# (no row here is a trace-time error, so there is no under-jit variant in this file)
