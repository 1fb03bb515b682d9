"""Every public function gives the same numbers eagerly and under ``jax.jit`` (chex variants)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import metricjax as mj
from metricjax import jacobians, reference
from metricjax.losses import (
    kernel_regression,
    lmnn_loss,
    lmnn_target_neighbors,
    mlkr_loss,
    nca_loss,
)

_RNG = np.random.default_rng(0)
X = _RNG.standard_normal((16, 3))
Y = _RNG.standard_normal((5, 3))
A = _RNG.standard_normal((3, 3))
METRIC = A @ A.T + np.eye(3)
L = _RNG.standard_normal((2, 3))
T = X[:, 0] + 0.1 * _RNG.standard_normal(16)
LAB = np.arange(16) % 2
TN = lmnn_target_neighbors(X, LAB, 2)

# (name, function, args): every argument is an array, so jit traces all of them
CASES = [
    ("pairwise_sq_euclidean", mj.pairwise_sq_euclidean, (X,)),
    ("pairwise_sq_euclidean_xy", mj.pairwise_sq_euclidean, (X, Y)),
    ("pairwise_sq_mahalanobis", mj.pairwise_sq_mahalanobis, (X, METRIC)),
    ("pairwise_sq_mahalanobis_xy", mj.pairwise_sq_mahalanobis, (X, METRIC, Y)),
    ("pairwise_sq_transformed", mj.pairwise_sq_transformed, (X, L)),
    ("pairwise_sq_transformed_xy", mj.pairwise_sq_transformed, (X, L, Y)),
    ("pairwise_euclidean", mj.pairwise_euclidean, (X, Y)),
    ("pairwise_mahalanobis", mj.pairwise_mahalanobis, (X, METRIC)),
    ("reference_sq_transformed", reference.pairwise_sq_transformed, (X, L, Y)),
    ("jacobian_wrt_x", lambda x: jacobians.wrt_x(x), (X[:5],)),
    ("jacobian_wrt_metric", lambda x: jacobians.wrt_metric(x), (X[:5],)),
    ("jacobian_wrt_transform", jacobians.wrt_transform, (X[:5], L)),
    ("mlkr_loss", mlkr_loss, (L, X, T)),
    ("mlkr_grad", jax.grad(mlkr_loss), (L, X, T)),
    ("nca_loss", lambda L, x, c: nca_loss(L, x, c, num_classes=2), (L, X, LAB)),
    ("nca_grad", jax.grad(lambda L, x, c: nca_loss(L, x, c, num_classes=2)), (L, X, LAB)),
    ("lmnn_loss", lambda L, x, c, tn: lmnn_loss(L, x, c, target_neighbors=tn), (L, X, LAB, TN)),
    ("lmnn_grad", jax.grad(lambda L, x, c, tn: lmnn_loss(L, x, c, target_neighbors=tn)),
     (L, X, LAB, TN)),
    ("kernel_regression", kernel_regression, (L, X, T, Y)),
]


class VariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CASES)
    def test_eager_and_jit_agree_with_the_float64_value(self, fn, args):
        with jax.enable_x64(True):
            want = fn(*args)  # float64, eager
        got = self.variant(fn)(*(jnp.asarray(a, jnp.float32) if a.dtype.kind == "f" else a
                                 for a in args))  # fmt: skip
        chex.assert_trees_all_equal_dtypes(got, jax.tree.map(lambda a: a.astype(jnp.float32), want))
        chex.assert_trees_all_close(got, want.astype(np.float32), rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("name,fn,args", CASES, ids=[c[0] for c in CASES])
def test_float64_eager_equals_jit(name, fn, args):
    with jax.enable_x64(True):
        chex.assert_trees_all_close(fn(*args), jax.jit(fn)(*args), rtol=1e-12, atol=1e-14)
