"""Pairwise squared distances, their gradients and Jacobians, and float32 accuracy.

A tour of the core of metricjax (rows of ``x`` are observations, every distance is
squared):

1. ``D(X)``, ``D(M)`` and ``D(A)`` (``M = L^T L``) of a few points, and a check that
   ``pairwise_sq_mahalanobis(x, L^T L)`` equals ``pairwise_sq_transformed(x, L)``.
2. ``jax.grad`` of a scalar function through each distance, compared with autodiff of
   the plain maths in ``metricjax.reference``.
3. Full Jacobians ``dD_ij / d(arg)_kl`` in closed form against ``jax.jacfwd`` and
   ``jax.jacrev``, with the largest difference.
4. float32 far from the origin (``x = 1000 + noise``): metricjax centres the points
   before the ``||x||^2 + ||y||^2 - 2 x.y`` expansion; the naive expansion loses every
   significant digit. Figure ``01_float32_offset.png``: error against the offset.
5. Gradients in training: recover a hidden metric ``M* = L*^T L*`` from its distance
   matrix with ``mj.fit`` (L-BFGS) on ``mean (D(A) - D*)^2``.

Run from the repository root::

    python examples/01_pairwise_and_grad.py
    python examples/01_pairwise_and_grad.py --max-iter 50 --out /tmp/pairwise
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import metricjax as mj  # noqa: E402
from metricjax import reference  # noqa: E402

HIGHEST = jax.lax.Precision.HIGHEST


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--max-iter",
        type=int,
        default=200,
        help="L-BFGS iterations of the metric-recovery fit (section 5)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="folder for the figure (created if missing)",
    )
    return p.parse_args()


def header(title):
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}")


def show(name, a):
    print(f"{name}:\n{np.array2string(np.asarray(a), precision=3, suppress_small=True)}")


def maxdiff(a, b):
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


# ------------------------------------------------------------------------ 1
def section_distances():
    header("1. Distances of a few points (rows are observations, squared distances)")
    x = jnp.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    y = jnp.array([[1.0, 1.0], [-2.0, 0.0]])
    metric = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    transform = jnp.asarray(np.linalg.cholesky(np.asarray(metric)).T)  # L^T L = M
    show("x", x)
    show("D(X) = pairwise_sq_euclidean(x)", mj.pairwise_sq_euclidean(x))
    show("pairwise_sq_euclidean(x, y), shape (4, 2)", mj.pairwise_sq_euclidean(x, y))
    show("M", metric)
    show("D(M) = pairwise_sq_mahalanobis(x, M)", mj.pairwise_sq_mahalanobis(x, metric))
    show("L (upper Cholesky factor, L^T L = M)", transform)
    d_a = mj.pairwise_sq_transformed(x, transform)
    show("D(A) = pairwise_sq_transformed(x, L)", d_a)
    print(
        f"max |D(M) - D(A)| = {maxdiff(mj.pairwise_sq_mahalanobis(x, metric), d_a):.2e}"
        "  (same metric, two parametrisations)"
    )


# ------------------------------------------------------------------------ 2
def section_grad(key):
    header("2. jax.grad of a scalar function through the distances")
    kx, kl = jax.random.split(key)
    x = jax.random.normal(kx, (30, 4))
    transform = 0.5 * jax.random.normal(kl, (2, 4))
    metric = transform.T @ transform

    def soft_count(d):  # a smooth "number of close pairs"
        return jnp.sum(jnp.exp(-d))

    cases = [
        (
            "d/dx sum exp(-D(X))",
            lambda x: soft_count(mj.pairwise_sq_euclidean(x)),
            lambda x: soft_count(reference.pairwise_sq_euclidean(x)),
            x,
        ),
        (
            "d/dM sum exp(-D(M))",
            lambda m: soft_count(mj.pairwise_sq_mahalanobis(x, m)),
            lambda m: soft_count(reference.pairwise_sq_mahalanobis(x, m)),
            metric,
        ),
        (
            "d/dL sum exp(-D(A))",
            lambda t: soft_count(mj.pairwise_sq_transformed(x, t)),
            lambda t: soft_count(reference.pairwise_sq_transformed(x, t)),
            transform,
        ),
    ]
    print(f"x: {x.shape}, L: {transform.shape}, M = L^T L: {metric.shape}; float32\n")
    print(f"{'gradient':<22} {'shape':>8} {'max |g|':>10} {'max |g - g_reference|':>22}")
    for name, f, f_ref, arg in cases:
        g = jax.jit(jax.grad(f))(arg)
        g_ref = jax.jit(jax.grad(f_ref))(arg)
        print(
            f"{name:<22} {str(g.shape):>8} {float(jnp.max(jnp.abs(g))):>10.3e} "
            f"{maxdiff(g, g_ref):>22.2e}"
        )
    show("\nd/dL sum exp(-D(A)) (closed-form rules)", jax.grad(cases[2][1])(transform))


# ------------------------------------------------------------------------ 3
def section_jacobians(key):
    header("3. Full Jacobians dD_ij/d(arg)_kl: closed form vs jax.jacfwd / jax.jacrev")
    kx, kl = jax.random.split(key)
    x = jax.random.normal(kx, (6, 3))
    transform = jax.random.normal(kl, (2, 3))
    metric = transform.T @ transform + jnp.eye(3)
    # jax.jit: one compilation per Jacobian instead of one per primitive in eager mode
    cases = [
        ("wrt_x(x)", lambda m: jax.jit(partial(mj.jacobians.wrt_x, method=m))(x)),
        ("wrt_x(x, M)", lambda m: jax.jit(partial(mj.jacobians.wrt_x, method=m))(x, metric)),
        ("wrt_metric(x)", lambda m: jax.jit(partial(mj.jacobians.wrt_metric, method=m))(x)),
        (
            "wrt_transform(x, L)",
            lambda m: jax.jit(partial(mj.jacobians.wrt_transform, method=m))(x, transform),
        ),
    ]
    print(f"x: {x.shape}, L: {transform.shape}, M: {metric.shape}; float32\n")
    print(
        f"{'jacobian':<20} {'shape':>14} {'max |J|':>9} {'max diff jacfwd':>16} "
        f"{'max diff jacrev':>16}"
    )
    for name, jac in cases:
        j = jac("closed_form")
        dfwd, drev = maxdiff(j, jac("jacfwd")), maxdiff(j, jac("jacrev"))
        print(
            f"{name:<20} {str(j.shape):>14} {float(jnp.max(jnp.abs(j))):>9.3f} "
            f"{dfwd:>16.2e} {drev:>16.2e}"
        )
    j = mj.jacobians.wrt_x(x[:3, :2], method="closed_form")
    print(
        "\nexample, x = first 3 points and 2 features: dD_01/dx_kl "
        "(only rows k = 0 and k = 1 are non-zero)"
    )
    show("J[0, 1]", j[0, 1])


# ------------------------------------------------------------------------ 4
def naive_sq_euclidean(x):
    """The textbook expansion without centring: ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j."""
    q = jnp.sum(x * x, axis=1)
    return q[:, None] + q[None, :] - 2 * jnp.matmul(x, x.T, precision=HIGHEST)


def section_float32(key, out):
    header("4. float32 far from the origin: x = 1000 + noise (why centring matters)")
    n, d = 200, 3
    noise = np.asarray(jax.random.normal(key, (n, d)), np.float64)
    offsets = [0.0, 1.0, 10.0, 100.0, 1e3, 1e4]
    methods = {
        "metricjax (centred)": mj.pairwise_sq_euclidean,
        "naive ||x||^2+||y||^2-2xy": naive_sq_euclidean,
        "difference form (reference)": reference.pairwise_sq_euclidean,
    }
    errors = {m: [] for m in methods}
    rounding = []  # error of the float64 computation on float32-rounded inputs
    for off in offsets:
        x64 = off + noise
        exact = np.sum((x64[:, None, :] - x64[None, :, :]) ** 2, axis=-1)  # float64 truth
        x32 = jnp.asarray(x64, jnp.float32)
        for m, f in methods.items():
            errors[m].append(float(np.max(np.abs(np.asarray(f(x32), np.float64) - exact))))
        r64 = np.asarray(x32, np.float64)
        r64 = np.sum((r64[:, None, :] - r64[None, :, :]) ** 2, axis=-1)
        rounding.append(float(np.max(np.abs(r64 - exact))))
        if off == 1e3:
            median = float(np.median(exact[~np.eye(n, dtype=bool)]))
            naive = np.asarray(naive_sq_euclidean(x32))
            print(
                f"{n} points in {d}-D, N(0, 1) noise around {off:g}; the median distance is "
                f"{median:.2f}, the squared norms are ~{d * off**2:.0e}\n"
            )
            print(f"{'float32 method':<30} {'max abs error':>14} {'relative to median':>19}")
            for m in methods:
                e = errors[m][-1]
                print(f"{m:<30} {e:>14.3e} {e / median:>19.2e}")
            neg = int(np.sum(naive[~np.eye(n, dtype=bool)] < 0))
            print(
                f"\nnaive expansion: {neg} of {n * (n - 1)} off-diagonal entries are "
                f"negative, diagonal up to {np.max(np.abs(np.diag(naive))):.1f} "
                f"(metricjax: exactly 0)"
            )
            print(
                f"the error left in metricjax is that of rounding the inputs to float32: "
                f"exact arithmetic on the rounded inputs is off by {rounding[-1]:.3e}"
            )
    print(
        f"\nmax abs error against the offset:\n{'offset':>10} "
        + " ".join(f"{m[:28]:>28}" for m in methods)
    )
    for i, off in enumerate(offsets):
        print(f"{off:>10g} " + " ".join(f"{errors[m][i]:>28.2e}" for m in methods))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = [dict(marker="o", ms=9, mfc="none"), dict(marker="s"), dict(marker="^", ls="--")]
    for (m, e), style in zip(errors.items(), styles):
        ax.plot(offsets[1:], e[1:], label=m, **style)
    ax.plot(offsets[1:], rounding[1:], color="0.5", ls=":", label="float32 rounding of x alone")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offset c  (x = c + N(0, 1) noise, 3-D)")
    ax.set_ylabel("max |D_float32 - D_exact|")
    ax.set_title("float32 squared distances far from the origin")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / "01_float32_offset.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved figure: {path}")


# ------------------------------------------------------------------------ 5
def section_fit(key, max_iter):
    header("5. Gradients in training: recover a hidden metric from its distances")
    kx, kl, k0 = jax.random.split(key, 3)
    x = jax.random.normal(kx, (50, 4))
    l_true = jax.random.normal(kl, (2, 4))
    m_true = l_true.T @ l_true
    target = mj.pairwise_sq_mahalanobis(x, m_true)

    def stress(transform, x, target):
        return jnp.mean((mj.pairwise_sq_transformed(x, transform) - target) ** 2)

    l0 = 0.1 * jax.random.normal(k0, (2, 4))
    t0 = time.perf_counter()
    res = mj.fit(stress, l0, x, target, max_iter=max_iter, tol=1e-10)
    secs = time.perf_counter() - t0
    m = res.params.T @ res.params
    rel = float(jnp.linalg.norm(m - m_true) / jnp.linalg.norm(m_true))
    print(
        "loss(L) = mean (pairwise_sq_transformed(x, L) - D*)^2, D* = D(M*), "
        "M* = L*^T L* of rank 2, L from a random start"
    )
    print(
        f"iterations {res.num_iter}, converged {res.converged}, loss "
        f"{res.loss_history[0]:.3e} -> {res.loss_history[-1]:.3e}, "
        f"grad norm {res.grad_norm:.1e}, {secs:.1f} s (with compilation)"
    )
    print(f"relative error of the recovered metric ||L^T L - M*|| / ||M*|| = {rel:.2e}")


def main():
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(0)
    k2, k3, k4, k5 = jax.random.split(key, 4)
    section_distances()
    section_grad(k2)
    section_jacobians(k3)
    section_float32(k4, args.out)
    section_fit(k5, args.max_iter)
    print(f"\ntotal time: {time.perf_counter() - T_START:.1f} s (imports and compilation included)")


if __name__ == "__main__":
    main()
