"""Bad ``sample_weight`` for the weakly supervised losses (ITML, MMC, LSML, SCML); see
``_bad_input.py``. One weight per constraint; the checks are ``_checks.sample_weight``'s."""

from __future__ import annotations

import _bad_input as bi
import numpy as np

from metricjax.losses import (
    itml_loss,
    itml_loss_transform,
    lsml_loss,
    lsml_transform_loss,
    mmc_loss,
    mmc_loss_transform,
    scml_loss,
)

FUNCTIONAL = bi.Table()
row = FUNCTIONAL.row

_rng = np.random.default_rng(0)
P = 6  # constraints
D = 3
PAIRS = _rng.standard_normal((P, 2, D)).astype(np.float32)
YP = np.array([1, -1, 1, -1, 1, -1])
QUADS = _rng.standard_normal((P, 4, D)).astype(np.float32)
TRIPS = _rng.standard_normal((P, 3, D)).astype(np.float32)
BASIS = _rng.standard_normal((4, D)).astype(np.float32)
EYE = np.eye(D, dtype=np.float32)
BOUNDS = np.array([1.0, 2.0])

CALLS = {
    "itml": (itml_loss, (EYE, PAIRS, YP), {"bounds": BOUNDS}),
    "itml-transform": (itml_loss_transform, (EYE, PAIRS, YP), {"bounds": BOUNDS}),
    "mmc": (mmc_loss, (EYE, PAIRS, YP), {}),
    "mmc-transform": (mmc_loss_transform, (EYE, PAIRS, YP), {}),
    "lsml": (lsml_loss, (EYE, QUADS), {}),
    "lsml-transform": (lsml_transform_loss, (EYE, QUADS), {}),
    "scml": (scml_loss, (np.ones(4, np.float32), TRIPS, BASIS), {}),
}
CASES = [
    ("shape", np.ones(2), r"`sample_weight` must have shape \(6,\), one weight per constraint"),
    ("negative", -np.ones(P), r"`sample_weight` must be finite and >= 0"),
    ("nan", np.full(P, np.nan), r"`sample_weight` must be finite and >= 0"),
    ("all-zero", np.zeros(P), r"`sample_weight` must have at least 1 positive weight, got 0"),
]
for name, (fn, args, kw) in CALLS.items():
    for case, w, match in CASES:
        # the shape is checked while tracing: the same error under jax.jit
        row(f"{name}-sample-weight-{case}", fn, args, {**kw, "sample_weight": w}, ValueError,
            match, case == "shape")


test_functional_bad_input, test_functional_bad_input_under_jit = bi.functional_tests(FUNCTIONAL)
