"""A sweep as one compiled program: 16 MLKR fits, vmapped vs sequential (issue 14).

4 ridge strengths x 4 cross-validation folds of MLKR (``mlkr_loss + a ||L||^2``, the
folds as ``sample_weight`` vectors, weight 0 = held out) at ``n = 1000``, ``d = 10``:

* **vmapped**: ``jax.jit(jax.vmap(jax.vmap(fit)))`` over strengths and fold weights,
  one program (compilation reported separately);
* **sequential**: 16 calls of ``mj.fit`` (the compiled loop cached after the first);
* **GridSearchCV**: ``GridSearchCV(mj.MLKR(...), cv=4)`` with 4 candidate values of
  ``tol`` (16 estimator fits, end to end). ``mj.MLKR`` has no regulariser on this
  branch (it is added on another one), so this row times the same *number* of
  estimator fits on the same folds, not the same objective.

float32 and float64, CPU, same run. Writes ``benchmarks/results/sweep.md``.
``python benchmarks/bench_sweep.py`` (full size, about 3-6 minutes on a loaded 2-core
machine) or ``--quick`` (n = 200).
"""

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _timing import cpu_model, env_header  # noqa: E402

import metricjax as mj  # noqa: E402
from metricjax.losses import mlkr_loss  # noqa: E402

ALPHAS = (0.01, 0.1, 1.0, 10.0)
FOLDS = 4


def ridge_mlkr(L, x, y, w, a):
    """Weighted MLKR plus a traced ridge strength ``a``."""
    return mlkr_loss(L, x, y, sample_weight=w) + a * jnp.sum(L**2)


def data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] + 0.1 * rng.normal(size=n)
    return x, y


def run(n, d, max_iter, dtype):
    x, y = data(n, d)
    folds = np.arange(n) % FOLDS
    W = np.stack([(folds != f).astype(float) for f in range(FOLDS)])
    with jax.enable_x64(dtype == "float64"):
        x, y, W = (jnp.asarray(a, dtype) for a in (x, y, W))
        alphas = jnp.asarray(ALPHAS, dtype)
        L0 = 0.1 * jnp.eye(d, dtype=dtype)

        def one(a, w):
            r = mj.fit(ridge_mlkr, L0, x, y, w, a, max_iter=max_iter)
            return r.params, r.num_iter

        t0 = time.perf_counter()
        grid = jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))
        compiled = grid.lower(alphas, W).compile()
        t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        params, iters = jax.block_until_ready(compiled(alphas, W))
        t_vmap = time.perf_counter() - t0

        t0 = time.perf_counter()
        seq_iters = []
        for a in alphas:
            for w in W:
                r = mj.fit(ridge_mlkr, L0, x, y, w, a, max_iter=max_iter)
                jax.block_until_ready(r.params)
                seq_iters.append(r.num_iter)
        t_seq = time.perf_counter() - t0

    from sklearn.model_selection import GridSearchCV, PredefinedSplit

    xs, ys = np.asarray(x), np.asarray(y)
    t0 = time.perf_counter()
    GridSearchCV(
        mj.MLKR(max_iter=max_iter, init="identity"),
        {"tol": [1e-6, 1e-7, 1e-8, 1e-9]},
        cv=PredefinedSplit(folds),
        n_jobs=1,
    ).fit(xs, ys)
    t_grid = time.perf_counter() - t0
    same = np.asarray(iters).ravel().tolist() == seq_iters
    return dict(dtype=dtype, compile=t_compile, vmap=t_vmap, seq=t_seq, grid=t_grid,
                iters=np.asarray(iters).ravel().tolist(), same_iters=same)


def main():
    load_before = " ".join(f"{v:.1f}" for v in __import__("os").getloadavg())
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, d, max_iter = (200, 10, 50) if args.quick else (1000, 10, 100)
    rows = [run(n, d, max_iter, dt) for dt in ("float32", "float64")]
    lines = [
        "# Sweep: 16 MLKR fits as one compiled program",
        "",
        "\n".join(f"- {k}: {v}" for k, v in env_header().items()),
        f"- CPU: {cpu_model()}; load average before the run: {load_before}",
        "",
        f"n = {n}, d = {d}, 4 ridge strengths x 4 folds, max_iter = {max_iter}"
        + (" (--quick)" if args.quick else ""),
        "",
        "| dtype | vmapped run (s) | vmapped compile (s) | sequential mj.fit (s) | "
        "GridSearchCV(mj.MLKR), 16 fits (s) | iterations per fit | vmapped = sequential iters |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['vmap']:.2f} | {r['compile']:.2f} | {r['seq']:.2f} | "
            f"{r['grid']:.2f} | {r['iters']} | {r['same_iters']} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = pathlib.Path(__file__).parent / "results" / ("sweep_quick.md" if args.quick else "sweep.md")
    out.write_text(text)


if __name__ == "__main__":
    main()
