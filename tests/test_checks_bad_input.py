"""Bad input to ``metricjax.check_finite`` (``metricjax._checks``), and the check that the
per-module bad-input tables together cover every public function; see ``_bad_input.py``."""

from __future__ import annotations

import _bad_input as bi
import jax.numpy as jnp
import numpy as np
import pytest
import test_distances_bad_input
import test_jacobians_bad_input
import test_lmnn_bad_input
import test_mlkr_bad_input
import test_nca_bad_input
import test_train_bad_input
from _bad_input import INF_X, NAN_X, ONLY_JIT, X

import metricjax as mj
from metricjax import jacobians as jac
from metricjax.losses import (
    kernel_regression,
    lmnn_loss,
    lmnn_target_neighbors,
    mlkr_loss,
    nca_loss,
)

FUNCTIONAL = bi.Table()
row = FUNCTIONAL.row

row(
    "check_finite-nan",
    mj.check_finite,
    ("x", NAN_X),
    {},
    ValueError,
    r"`x` contains NaN or inf \(1 of 24 entries\)",
)
row(
    "check_finite-inf-second",
    mj.check_finite,
    ("data", X, INF_X),
    {},
    ValueError,
    r"`data` contains NaN or inf",
)
row(
    "check_finite-nan-list",
    mj.check_finite,
    ("y", [1.0, float("nan")]),
    {},
    ValueError,
    r"`y` contains NaN or inf",
)
row(
    "check_finite-bf16",
    mj.check_finite,
    ("x", jnp.array([jnp.nan], jnp.bfloat16)),
    {},
    ValueError,
    r"`x` contains NaN or inf",
)
row(
    "check_finite-name-missing",
    mj.check_finite,
    (NAN_X,),
    {},
    TypeError,
    r"`name` \(the first argument.*must be a str",
)
row(
    "check_finite-strings",
    mj.check_finite,
    ("x", np.array(["a"])),
    {},
    TypeError,
    r"`x` must be numeric",
)
row(
    "check_finite-complex", mj.check_finite, ("x", np.array([1j])), {}, TypeError, r"`x` is complex"
)
row(
    "check_finite-traced",
    lambda a: mj.check_finite("x", a),
    (X,),
    {},
    TypeError,
    r"check_finite needs concrete arrays but `x` is traced",
    ONLY_JIT,
)


@pytest.mark.parametrize(bi.FUNCTIONAL_PARAMS, FUNCTIONAL)
def test_functional_bad_input(fn, args, kwargs, exc, match, jit):
    bi.check_bad_input(fn, args, kwargs, exc, match, jit)


# (no row here is a trace-time error, so there is no under-jit variant in this file)


def test_check_finite_accepts_finite_input_of_every_supported_kind():
    for a in (
        X,
        X.astype(np.float64),
        np.arange(3),
        np.ones(2, bool),
        [1.0, 2.0],
        jnp.ones(3, jnp.bfloat16),
        None,
    ):
        mj.check_finite("x", a)
    mj.check_finite("nothing")  # no arrays: nothing to check


# ----------------------------------------------------------------------------- the union
#: the per-module tables (this file's included)
TABLES = {
    "distances": test_distances_bad_input.FUNCTIONAL,
    "jacobians": test_jacobians_bad_input.FUNCTIONAL,
    "mlkr": test_mlkr_bad_input.FUNCTIONAL,
    "nca": test_nca_bad_input.FUNCTIONAL,
    "lmnn": test_lmnn_bad_input.FUNCTIONAL,
    "train": test_train_bad_input.FUNCTIONAL,
    "checks": FUNCTIONAL,
}

#: every public function the tables must cover (``metricjax.reference`` holds the
#: unchecked autodiff oracles and is out of scope, see docs/input_policy.md)
COVERED = {
    mj.pairwise_sq_euclidean,
    mj.pairwise_sq_mahalanobis,
    mj.pairwise_sq_transformed,
    mj.pairwise_euclidean,
    mj.pairwise_mahalanobis,
    jac.wrt_x,
    jac.wrt_metric,
    jac.wrt_transform,
    mlkr_loss,
    kernel_regression,
    nca_loss,
    lmnn_loss,
    lmnn_target_neighbors,
    mj.fit,
    mj.check_finite,
}


def test_table_covers_every_public_function():
    every_row = [p for table in TABLES.values() for p in table]
    tabled = {p.values[0] for p in every_row}
    missing = {f.__name__ for f in COVERED - tabled}
    assert not missing, f"no bad-input row for {sorted(missing)}"
    assert len([p for table in TABLES.values() for p in table.jitted]) >= 60
    ids = [p.id for p in every_row]
    assert len(ids) == len(set(ids)), "a row id is used twice"
    # these two files have no under-jit test
    assert not TABLES["train"].jitted and not TABLES["checks"].jitted
