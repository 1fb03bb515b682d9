"""Bad input to the LMNN loss and target neighbours (``metricjax.losses._lmnn``); see
``_bad_input.py``."""

from __future__ import annotations

import _bad_input as bi
import numpy as np
from _bad_input import INF_X, LAB, NAN_X, ONLY_JIT, TN, L, N, X, f32

from metricjax.losses import lmnn_loss, lmnn_target_neighbors

FUNCTIONAL = bi.Table()
row = FUNCTIONAL.row


def lmnn_with_tn(transform, x, labels, tn, margin=1.0, sample_weight=None):
    """``lmnn_loss`` with the (keyword-only) target neighbours passed positionally, for jit."""
    return lmnn_loss(transform, x, labels, target_neighbors=tn, margin=margin,
                     sample_weight=sample_weight)


row(
    "lmnn-push-weight",
    lmnn_loss,
    (L, X, LAB),
    {"push_weight": 2.0},
    ValueError,
    r"`push_weight` must lie in \[0, 1\], got 2.0",
)
row(
    "lmnn-push-weight-nan",
    lmnn_loss,
    (L, X, LAB),
    {"push_weight": float("nan")},
    ValueError,
    r"`push_weight` must be finite",
)
row(
    "lmnn-margin",
    lmnn_loss,
    (L, X, LAB),
    {"margin": -1.0},
    ValueError,
    r"`margin` must be non-negative, got -1.0",
)
row(
    "lmnn-n-neighbors",
    lmnn_loss,
    (L, X, LAB),
    {"n_neighbors": 0},
    ValueError,
    r"`n_neighbors` must be at least 1, got 0",
)
row(
    "lmnn-n-neighbors-type",
    lmnn_loss,
    (L, X, LAB),
    {"n_neighbors": 1.5},
    TypeError,
    r"`n_neighbors` must be a positive int",
)
row(
    "lmnn-class-too-small",
    lmnn_loss,
    (L, X, np.array([0, 1, 1, 1, 1, 1, 1, 1])),
    {},
    ValueError,
    r"class 0 has 1 member\(s\), but n_neighbors=3 needs at least 3 per class",
)
row(
    "lmnn-one-sample",
    lmnn_loss,
    (L, X[:1], LAB[:1]),
    {"n_neighbors": 2},
    ValueError,
    r"class 0 has 1 member",
)
row(
    "lmnn-labels-shape",
    lmnn_loss,
    (L, X, LAB[:3]),
    {},
    ValueError,
    r"`labels` must have shape \(8,\), got \(3,\)",
)
row(
    "lmnn-labels-nan",
    lmnn_loss,
    (L, X, np.where(LAB == 1, np.nan, 0.0)),
    {},
    ValueError,
    r"`labels` contains NaN",
)
row(
    "lmnn-x-nan",
    lmnn_loss,
    (L, NAN_X, LAB),
    {"n_neighbors": 1},
    ValueError,
    r"`x` contains NaN or inf",
)
row(
    "lmnn-tn-shape",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": TN[:3]},
    ValueError,
    r"`target_neighbors` must have shape \(8, k\), k >= 1, got \(3, 1\)",
)
row(
    "lmnn-tn-shape-jit",
    lmnn_with_tn,
    (L, X, LAB, TN[:3]),
    {},
    ValueError,
    r"`target_neighbors` must have shape \(8, k\)",
    True,
)
row(
    "lmnn-tn-float",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": TN.astype(float)},
    TypeError,
    r"`target_neighbors` must be integers",
)
row(
    "lmnn-tn-range",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": TN + 5},
    ValueError,
    r"`target_neighbors` entries must lie in \[0, 8\)",
)
row(
    "lmnn-tn-duplicate",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": np.c_[TN, TN]},
    ValueError,
    r"point 0 lists the same target neighbour twice",
)
row(
    "lmnn-tn-other-label",
    lmnn_loss,
    (L, X, LAB),
    {"target_neighbors": TN[::-1].copy()},
    ValueError,
    r"target neighbour 4 of point 0 has a different label",
)
row(
    "lmnn-jit-needs-tn",
    lmnn_loss,
    (L, X, LAB),
    {},
    TypeError,
    r"with target_neighbors=None, `x` and `labels` must be concrete;(.|\n)*or sample_weight",
    ONLY_JIT,
)
row(
    "lmnn-jit-float-labels",
    lmnn_with_tn,
    (L, X, LAB.astype(np.float32), TN),
    {},
    TypeError,
    r"`labels` must be integers under jit",
    ONLY_JIT,
)
row(
    "lmnn-transform-width",
    lmnn_with_tn,
    (f32(2, 2), X, LAB, TN),
    {},
    ValueError,
    r"`transform` has shape \(2, 2\)",
    True,
)
row(
    "lmnn-static-traced",
    lmnn_with_tn,
    (L, X, LAB, TN, np.float32(1)),
    {},
    TypeError,
    r"`margin` must be a concrete Python float",
    ONLY_JIT,
)
for id_, w, match in [
    ("shape", np.ones(3), r"`sample_weight` must have shape \(8,\), one weight per point"),
    ("negative", -np.ones(N), r"`sample_weight` must be finite and >= 0"),
    ("nan", np.full(N, np.nan), r"`sample_weight` must be finite and >= 0"),
    ("all-zero", np.zeros(N), r"`sample_weight` must have at least 2 positive weights"),
]:
    row(f"lmnn-sample-weight-{id_}", lmnn_loss, (L, X, LAB), {"n_neighbors": 1, "sample_weight": w},
        ValueError, match)
row(
    "lmnn-sample-weight-shape-jit",
    lmnn_with_tn,
    (L, X, LAB, TN),
    {"sample_weight": np.ones(3)},
    ValueError,
    r"`sample_weight` must have shape \(8,\)",
    True,
)
row(
    "lmnn-push-weight-traced-shape",
    lambda L, x, labels, tn, mu: lmnn_loss(L, x, labels, target_neighbors=tn, push_weight=mu),
    (L, X, LAB, TN, np.ones(2, np.float32)),
    {},
    ValueError,
    r"`push_weight` must be a scalar, got shape \(2,\)",
    ONLY_JIT,
)
row(
    "lmnn_tn-n-neighbors-bool",
    lmnn_target_neighbors,
    (X, LAB),
    {"n_neighbors": True},
    TypeError,
    r"`n_neighbors` must be a positive int",
)
row(
    "lmnn_tn-traced",
    lmnn_target_neighbors,
    (X, LAB),
    {},
    TypeError,
    r"lmnn_target_neighbors needs concrete `x` and `labels`",
    ONLY_JIT,
)
row(
    "lmnn_tn-x-inf",
    lmnn_target_neighbors,
    (INF_X, LAB),
    {"n_neighbors": 1},
    ValueError,
    r"`x` contains NaN or inf",
)


test_functional_bad_input, test_functional_bad_input_under_jit = bi.functional_tests(FUNCTIONAL)


def test_one_class_is_accepted_by_lmnn_loss():
    """Documented: well defined (pull term only)."""
    ones = np.zeros(N, int)
    assert np.isfinite(float(lmnn_loss(L, X, ones, n_neighbors=1)))
