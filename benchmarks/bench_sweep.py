"""A sweep as one compiled program: 16 MLKR fits, vmapped vs sequential vs GridSearchCV (issue 14).

4 ridge strengths x 4 folds (``KFold(4)``) of the estimator's objective, MLKR with its
dimensionless ridge ``alpha`` (:class:`metricjax.MLKR`, default settings: L-BFGS,
``max_iter=1000``, ``tol=1e-6``), at ``n = 1000``, ``d = 10``; every fit has the same
initial map, ridge weight and training rows in the three rows of the table:

* **vmapped**: the compiled grid of :class:`metricjax.MLKRCV`,
  ``jax.jit(jax.vmap(jax.vmap(mj.fit)))`` over strengths and fold weight vectors (plus
  each fold's held-out R²), one program; compilation timed separately
  (``lower().compile()``) and included in the end-to-end time;
* **sequential**: the same 16 fits as 16 calls of ``mj.fit`` (the loop compiled once,
  on the first call, included);
* **GridSearchCV**: ``GridSearchCV(mj.MLKR(), {"alpha": ...}, cv=KFold(4),
  refit=False)``: 16 estimator fits on the fold's rows, end to end (its compilations
  included).

float32 and float64, CPU, same run. Writes ``benchmarks/results/sweep.md`` (or
``sweep_quick.md``). ``python benchmarks/bench_sweep.py`` (full size: 16 fits at
n = 1000 three times per dtype; expect 15-30 minutes on a loaded 2-core machine) or
``--quick`` (n = 200).

Why the vmapped program can lose on a CPU: a batched ``while_loop`` runs its body for
every member until the *slowest* member has converged (finished members are carried
unchanged, but computed), and so does the batched line search inside each L-BFGS
step; each member also computes its held-out rows (weight 0). The work is about
``16 * max(n_iter) * cost(n)`` against ``sum(n_iter) * cost(n_train)`` one by one.
With iteration counts that differ several-fold between strengths, that is several
times the work; it pays off where the per-fit overhead dominates (compilation of
many fold shapes in GridSearchCV, dispatch, small n) or on an accelerator that runs
the batch at the cost of one member.
"""

import argparse
import os
import pathlib
import sys
import time
import warnings

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _timing import cpu_model, env_header  # noqa: E402

import metricjax as mj  # noqa: E402

ALPHAS = (0.01, 0.1, 1.0, 10.0)


def reading(rows) -> str:
    """What the table says, from its own numbers: iteration counts and the targets."""
    out = []
    for r in rows:
        it = np.asarray(r["iters"])
        total = r["compile"] + r["vmap"]
        seq_ok = total <= r["seq"]
        grid_ok = r["grid"] / total >= 5
        out.append(
            f"{r['dtype']}: the batched loop runs all {it.size} members until the slowest "
            f"has converged ({it.max()} iterations; {it.min()} for the quickest), "
            f"{it.size} x {it.max()} = {it.size * it.max()} member iterations against "
            f"{it.sum()} one by one, line searches included; target vmapped <= sequential "
            f"{'met' if seq_ok else 'missed'} ({total:.2f} s vs {r['seq']:.2f} s), "
            f">= 5x faster than GridSearchCV {'met' if grid_ok else 'missed'} "
            f"({r['grid'] / total:.2f}x)."
        )
    out.append(
        "Why and what could fix it: the members' iteration counts differ with alpha, and "
        "the batched program's compilation costs several times one fit's loop; batching "
        "members of similar iteration counts (MLKRCV(batch='folds'), the default: one call "
        "per alpha, vmapped over its folds) or dropping converged members between chunks "
        "of iterations reduces the waste; the batched form pays off on an accelerator, "
        "where the members run side by side."
    )
    return "Reading: " + "\n\n".join(out)


FOLDS = 4


def data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] + 0.1 * rng.normal(size=n)
    return x, y


def run(n, d, dtype):
    from sklearn.model_selection import GridSearchCV, KFold

    x, y = data(n, d)
    x, y = x.astype(dtype), y.astype(dtype)
    cv = KFold(FOLDS)
    est = mj.MLKRCV(alphas=ALPHAS, cv=cv)
    grid = est._grid(x, y, None)  # the inputs MLKRCV.fit builds: per-fold L0, ridge, weights
    L0, ridge, W, _, xj, yj = grid["args"]
    with jax.enable_x64(dtype == "float64"):
        t0 = time.perf_counter()
        compiled = grid["program"].lower(*grid["args"]).compile()
        t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        params, scores, iters, _, _ = jax.block_until_ready(compiled(*grid["args"]))
        t_vmap = time.perf_counter() - t0
        # MLKRCV(batch="folds"): the same program over one alpha at a time
        rest = grid["args"][2:]
        t0 = time.perf_counter()
        per_alpha = grid["program"].lower(L0, ridge[:1], *rest).compile()
        t_compile_folds = time.perf_counter() - t0
        t0 = time.perf_counter()
        for a in range(len(ALPHAS)):
            jax.block_until_ready(per_alpha(L0, ridge[a : a + 1], *rest))
        t_folds = time.perf_counter() - t0

        t0 = time.perf_counter()
        seq_iters, seq_params = [], []
        for a in range(len(ALPHAS)):
            for f in range(FOLDS):
                r = mj.fit(grid["loss"], L0[f], xj, yj, W[f], ridge[a, f],
                           max_iter=grid["max_iter"], tol=grid["tol"])  # fmt: skip
                seq_iters.append(r.num_iter)
                seq_params.append(np.asarray(r.params))
        t_seq = time.perf_counter() - t0

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = GridSearchCV(mj.MLKR(), {"alpha": list(ALPHAS)}, cv=cv, refit=False).fit(x, y)
    t_grid = time.perf_counter() - t0
    ref = np.stack([search.cv_results_[f"split{i}_test_score"] for i in range(FOLDS)], axis=1)
    iters = np.asarray(iters).ravel().tolist()
    diff = np.max(np.abs(np.asarray(params).reshape(len(seq_params), *seq_params[0].shape)
                         - np.stack(seq_params)))  # fmt: skip
    return dict(
        dtype=dtype, compile=t_compile, vmap=t_vmap, seq=t_seq,
        folds=t_compile_folds + t_folds, folds_run=t_folds, grid=t_grid, iters=iters,
        same_iters=iters == seq_iters, param_diff=float(diff),
        score_diff=float(np.max(np.abs(np.asarray(scores) - ref))),
    )  # fmt: skip


def main():
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, d = (200, 10) if args.quick else (1000, 10)
    rows = [run(n, d, dt) for dt in ("float32", "float64")]
    lines = [
        "# Sweep: 16 MLKR fits (4 alphas x 4 folds) as one compiled program",
        "",
        "\n".join(f"- {k}: {v}" for k, v in env_header().items()),
        f"- CPU: {cpu_model()}; load average before the run: {load_before}",
        "",
        f"n = {n}, d = {d}, MLKR's objective (ridge alpha in {list(ALPHAS)}), KFold(4), "
        "L-BFGS, max_iter = 1000, tol = 1e-6" + (" (--quick)" if args.quick else ""),
        "",
        "| dtype | vmapped compile (s) | vmapped run (s) | vmapped end to end (s) | "
        "batch='folds': 4 calls, compile + run (s) | "
        "sequential mj.fit (s) | GridSearchCV(mj.MLKR) (s) | sequential / vmapped | "
        "GridSearchCV / vmapped | iterations per fit | same iterations | "
        "max param diff | max score diff vs GridSearchCV |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        total = r["compile"] + r["vmap"]
        lines.append(
            f"| {r['dtype']} | {r['compile']:.2f} | {r['vmap']:.2f} | {total:.2f} | "
            f"{r['folds']:.2f} (run {r['folds_run']:.2f}) | "
            f"{r['seq']:.2f} | {r['grid']:.2f} | {r['seq'] / total:.2f}x | "
            f"{r['grid'] / total:.2f}x | {r['iters']} | {r['same_iters']} | "
            f"{r['param_diff']:.1e} | {r['score_diff']:.1e} |"
        )
    lines += ["", reading(rows)]
    text = "\n".join(lines) + "\n"
    print(text)
    out = pathlib.Path(__file__).parent / "results" / ("sweep_quick.md" if args.quick else "sweep.md")
    out.write_text(text)


if __name__ == "__main__":
    main()
