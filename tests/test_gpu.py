"""GPU-only checks: float32 far from the origin, and ``Precision.HIGHEST`` on the GPU path.

Skipped unless JAX runs on a GPU (``jax.default_backend() == "gpu"``); the skip is the
only CPU behaviour. ``METRICJAX_GPU_TESTS_ON_CPU=1`` lifts the skip so that the same
checks can be run (and pass) on a CPU.

On recent NVIDIA GPUs, float32 matrix products may run in TF32 (10-bit mantissa) unless
asked for ``Precision.HIGHEST``; the distance expansion then loses about three digits.
The tolerances below sit between what true float32 achieves (errors near ``1e-7``) and
what TF32 products give: a float64 twin with TF32-rounded matmul operands is checked to
violate them on the same data, so a TF32 path cannot pass.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metricjax as mj
from benchmarks.bench_gpu import accuracy_far_from_origin

_FORCED = os.environ.get("METRICJAX_GPU_TESTS_ON_CPU") == "1"
pytestmark = pytest.mark.skipif(
    jax.default_backend() != "gpu" and not _FORCED,
    reason="needs a GPU (jax.default_backend() == 'gpu')",
)

DIST_RTOL = 1e-4  # off-diagonal relative error of the float32 distances (CPU: ~1e-6)
LOSS_RTOL = 5e-6  # float32 vs float64 MLKR loss (true float32: ~1e-7; TF32: > 2e-5)
GRAD_RTOL = 2e-5  # float32 vs float64 MLKR gradient, relative to its largest entry (TF32: > 1e-4)


@pytest.fixture(scope="module")
def errors():
    with jax.enable_x64(True):
        return accuracy_far_from_origin(1024, 16, offset=1e4)


@pytest.mark.parametrize("name", ["D(X)", "D(M)", "D(A)"])
def test_float32_distances_far_from_origin(errors, name):
    assert errors[name] < DIST_RTOL, errors
    assert errors[f"{name}_diag"] == 0.0


def test_float32_mlkr_matches_float64_beyond_tf32(errors):
    assert errors["mlkr_loss"] < LOSS_RTOL, errors
    assert errors["mlkr_grad"] < GRAD_RTOL, errors


def test_tolerances_reject_tf32_products(errors):
    """The same computation with TF32-rounded matmul operands fails the tolerances."""
    assert errors["emulated_tf32_loss"] > LOSS_RTOL, errors
    assert errors["emulated_tf32_grad"] > GRAD_RTOL, errors


def _data(n=300, d=6, k=4):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    y = jnp.asarray(rng.standard_normal(n), jnp.float32)
    labels = jnp.asarray(np.arange(n) % 3, jnp.int32)
    transform = jnp.asarray(0.5 * np.eye(k, d), jnp.float32)
    metric = jnp.asarray(np.eye(d), jnp.float32)
    tn = jnp.asarray(mj.losses.lmnn_target_neighbors(np.asarray(x), np.asarray(labels), 3))
    return x, y, labels, transform, metric, tn


def _gradient(name):
    """``(function, arguments)``: the gradient of a loss or of a distance rule, by name."""
    x, y, labels, transform, metric, tn = _data()
    losses = mj.losses
    if name.startswith(("mlkr", "nca", "lmnn")):
        loss, b = name.split(" b=")
        b = int(b)  # 300: one dense block; 64: the blocked scan
        if loss == "mlkr":
            return jax.grad(lambda L, x, y: losses.mlkr_loss(L, x, y, block_size=b),
                            argnums=(0, 1)), (transform, x, y)
        if loss == "nca":
            return jax.grad(lambda L, x, c: losses.nca_loss(L, x, c, num_classes=3, block_size=b),
                            argnums=(0, 1)), (transform, x, labels)
        return jax.grad(lambda L, x, c, t: losses.lmnn_loss(L, x, c, target_neighbors=t,
                                                            block_size=b),
                        argnums=(0, 1)), (transform, x, labels, tn)
    if name == "D(X)":
        return jax.grad(lambda x: jnp.sum(jnp.sin(mj.pairwise_sq_euclidean(x)))), (x,)
    if name == "D(A)":
        return jax.grad(lambda x, L: jnp.sum(jnp.sin(mj.pairwise_sq_transformed(x, L))),
                        argnums=(0, 1)), (x, transform)
    return jax.grad(lambda x, M: jnp.sum(jnp.sin(mj.pairwise_sq_mahalanobis(x, M))),
                    argnums=(0, 1)), (x, metric)


GRADIENTS = [f"{loss} b={b}" for b in (300, 64) for loss in ("mlkr", "nca", "lmnn")]
GRADIENTS += ["D(X)", "D(A)", "D(M)"]


@pytest.mark.parametrize("name", GRADIENTS)
def test_lowered_gradient_dots_are_highest_precision(name):
    fn, args = _gradient(name)
    text = jax.jit(fn).lower(*args).as_text()
    dots = [line for line in text.splitlines() if "stablehlo.dot" in line]
    assert dots, f"{name}: no dot ops in the lowered gradient"
    bad = [line.strip() for line in dots if "precision = [HIGHEST, HIGHEST]" not in line]
    assert not bad, f"{name}: dots without Precision.HIGHEST:\n" + "\n".join(bad[:5])


@pytest.mark.parametrize("name", GRADIENTS)
def test_compiled_gradient_keeps_highest_precision(name):
    """After XLA's passes (GEMM rewriting on GPUs) the products still ask for HIGHEST."""
    fn, args = _gradient(name)
    text = jax.jit(fn).lower(*args).compile().as_text()
    products = [
        line for line in text.splitlines()
        if " dot(" in line or "__cublas$gemm" in line or "__cublas$lt$matmul" in line
    ]
    assert products, f"{name}: no matrix products in the compiled gradient"
    bad = [line.strip()[:300] for line in products if "highest" not in line.lower()]
    assert not bad, f"{name}: products without HIGHEST precision:\n" + "\n".join(bad[:5])
    assert "tf32" not in text.lower(), f"{name}: a TF32 algorithm in the compiled module"
