"""Scale past one n x n matrix: streamed MLKR at n = 100,000, a large fit, mini-batches.

Writes ``benchmarks/results/scale.md`` and ``scale.json``. Three sections, each
measurement in a fresh subprocess (so that its peak resident memory, ``ru_maxrss``,
is its own):

1. **Loss + gradient vs n.** ``jax.jit(jax.value_and_grad(mlkr_loss))`` with respect
   to ``L`` (``20 x 20``), ``d = 20``, float32, for ``n`` from 1,000 to 100,000: time
   (first call after compilation, then the median of further calls), peak RSS of the
   process and XLA's temporary memory. With a fixed block size the working set is
   ``O(b n)``; power laws fitted to time (expect ``n^2``) and memory (expect ``n``).
2. **An estimator fit at n = 50,000**: ``metricjax.MLKR`` (float32, ``max_iter``
   L-BFGS iterations), wall time per iteration and peak RSS.
3. **Mini-batch vs full batch** on a synthetic regression problem (``n = 20,000``
   training points, 5 informative and 15 noise features): full-batch L-BFGS against
   :func:`metricjax.fit_minibatch` with several batch sizes. Full-data loss and test
   MSE (kernel regression against the training set) vs wall time.

Run ``python benchmarks/bench_scale.py`` (about 8 min on 2 CPU cores), ``--quick`` for a
smoke test (writes nothing), ``--skip fit minibatch`` to run only the table.
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (recorded in the header) reduces page-fault
costs on CPU. On a GPU the same command runs on the GPU (JAX picks it); see
``docs/scaling.md`` for the exact command.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

RESULTS = pathlib.Path(__file__).parent / "results"
MIB = 2**20


# ----------------------------------------------------------------------------- helpers
def _rss_bytes() -> int:
    """Current resident set size of this process."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux
        pass
    import psutil

    return int(psutil.Process().memory_info().rss)


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def regression_data(n, d=20, informative=5, seed=0, noise=0.1):
    """``y = sin(x w) + noise`` with ``w`` on the first ``informative`` features."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = np.zeros(d)
    w[:informative] = rng.standard_normal(informative) / np.sqrt(informative)
    y = np.sin(2 * x @ w) + noise * rng.standard_normal(n)
    return x, y


def _child(args: list[str], env=None, timeout=1800, script=__file__) -> dict:
    """Run ``script`` (this one by default) with ``args`` in a fresh process; return its
    last JSON line."""
    cmd = [sys.executable, script, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _powerlaw(ns, ys):
    """Exponent and prefactor of ``y = c n^p`` (least squares in log-log)."""
    import numpy as np

    p, logc = np.polyfit(np.log(ns), np.log(ys), 1)
    return float(p), float(np.exp(logc))


# ----------------------------------------------------------------------------- children
def child_eval(n: int, dtype: str, block: str, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from metricjax.losses import mlkr_loss
    from metricjax.losses._engine import resolve_block_size

    jax.config.update("jax_enable_x64", dtype == "float64")
    x, y = regression_data(n)
    d = x.shape[1]
    L = jnp.asarray(0.5 * np.eye(d), dtype)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    bs = "auto" if block == "auto" else int(block)
    b = resolve_block_size(bs, n, jnp.dtype(dtype).itemsize)
    f = jax.jit(jax.value_and_grad(lambda L, x, y: mlkr_loss(L, x, y, block_size=bs)))
    t0 = time.perf_counter()
    compiled = f.lower(L, x, y).compile()
    compile_s = time.perf_counter() - t0
    stats = compiled.memory_analysis()
    temp = int(stats.temp_size_in_bytes) if stats is not None else -1
    rss_ready = _rss_bytes()
    peak_ready = _peak_rss_bytes()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss, grad = jax.block_until_ready(compiled(L, x, y))
        times.append(time.perf_counter() - t0)
        if times[0] > 20:  # very large n: one or two runs are enough
            if len(times) >= 2:
                break
    device_peak = None
    if jax.default_backend() != "cpu":  # ru_maxrss is host memory only
        stats = jax.devices()[0].memory_stats() or {}
        device_peak = stats.get("peak_bytes_in_use")
    return {
        "n": n,
        "dtype": dtype,
        "device": str(jax.devices()[0]),
        "device_peak_mib": None if device_peak is None else device_peak / MIB,
        "block_size": b,
        "block": block,
        "first_s": times[0],
        "median_s": float(np.median(times[1:] if len(times) > 1 else times)),
        "runs": len(times),
        "compile_s": compile_s,
        "xla_temp_mib": temp / MIB,
        "rss_ready_mib": rss_ready / MIB,
        "peak_before_run_mib": peak_ready / MIB,
        "peak_rss_mib": _peak_rss_bytes() / MIB,
        "loss": float(loss),
        "grad_finite": bool(np.all(np.isfinite(np.asarray(grad)))),
    }


def child_fit(n: int, max_iter: int) -> dict:
    import warnings

    import numpy as np

    import metricjax as mj

    x, y = regression_data(n)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    est = mj.MLKR(init="identity", max_iter=max_iter, tol=0.0)
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is small on purpose
        est.fit(x, y)
    total = time.perf_counter() - t0
    hist = np.asarray(est.loss_history_, dtype=float)
    return {
        "n": n,
        "d": x.shape[1],
        "dtype": "float32",
        "max_iter": max_iter,
        "n_iter": int(est.n_iter_),
        "fit_s": total,
        "s_per_iter": total / max(1, int(est.n_iter_)),
        "loss_first": float(hist[0]),
        "loss_last": float(hist[-1]),
        "loss_history": hist.tolist(),
        "completed": bool(np.all(np.isfinite(est.components_))),
        "rss_before_fit_mib": rss0 / MIB,
        "peak_rss_mib": _peak_rss_bytes() / MIB,
    }


def child_minibatch(n: int, n_test: int, full_iter: int, plan: list[tuple[int, int]]) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import metricjax as mj
    from metricjax.losses import kernel_regression, mlkr_loss

    x_all, y_all = regression_data(n + n_test, seed=1)
    mu, sd = x_all[:n].mean(0), x_all[:n].std(0)
    x_all = ((x_all - mu) / sd).astype(np.float32)
    y_all = ((y_all - y_all[:n].mean()) / y_all[:n].std()).astype(np.float32)
    x, y, xt, yt = x_all[:n], y_all[:n], x_all[n:], y_all[n:]
    d = x.shape[1]
    L0 = jnp.eye(d, dtype=jnp.float32)
    full_loss = jax.jit(mlkr_loss)

    def test_mse(L):
        pred = np.asarray(kernel_regression(L, x, y, xt))
        return float(np.mean((pred - yt) ** 2))

    def curve(checkpoints):
        return [
            {"t_s": t, "step": s, "full_loss": float(full_loss(p, x, y)), "test_mse": test_mse(p)}
            for t, s, p in checkpoints
        ]

    runs = []
    base = {"t_s": 0.0, "step": 0, "full_loss": float(full_loss(L0, x, y)), "test_mse": test_mse(L0)}

    # full batch: L-BFGS (the estimators' default), compiled once beforehand
    checkpoints = []
    t_start = [0.0]

    def cb_full(it, loss, params):
        checkpoints.append((time.perf_counter() - t_start[0], it, params))

    # compile the loop first (same loss, settings and shapes: the timed run reuses it)
    mj.fit(mlkr_loss, L0, x, y, max_iter=full_iter, tol=0.0, gtol=0.0,
           callback=lambda *a: True, chunk_size=1)
    t_start[0] = time.perf_counter()
    res = mj.fit(mlkr_loss, L0, x, y, max_iter=full_iter, tol=0.0, gtol=0.0,
                 callback=cb_full, chunk_size=max(1, full_iter // 12))
    runs.append({"method": "full batch L-BFGS", "batch_size": n, "steps": res.num_iter,
                 "curve": [base, *curve(checkpoints)]})
    print(json.dumps({"done": "full", "t": checkpoints[-1][0]}), file=sys.stderr, flush=True)

    for batch_size, steps in plan:
        opt = optax.adam(optax.cosine_decay_schedule(3e-2, steps, alpha=0.1))
        key = jax.random.key(0)
        # compile first (same shapes, same loss/optimizer objects: the timed run reuses it)
        mj.fit_minibatch(mlkr_loss, L0, x, y, batch_size=batch_size, key=key, optimizer=opt,
                         num_steps=steps, callback=lambda *a: True, chunk_size=1)
        checkpoints = []

        def cb_mb(it, loss, params):
            checkpoints.append((time.perf_counter() - t_start[0], it, params))

        t_start[0] = time.perf_counter()
        mj.fit_minibatch(mlkr_loss, L0, x, y, batch_size=batch_size, key=key, optimizer=opt,
                         num_steps=steps, callback=cb_mb, chunk_size=max(1, steps // 12))
        runs.append({"method": "mini-batch Adam", "batch_size": batch_size, "steps": steps,
                     "curve": [base, *curve(checkpoints)]})
        print(json.dumps({"done": batch_size, "t": checkpoints[-1][0]}), file=sys.stderr,
              flush=True)
    return {"n": n, "n_test": n_test, "d": d, "dtype": "float32", "runs": runs,
            "optimizer (mini-batch)": "optax.adam(cosine_decay_schedule(3e-2, steps, alpha=0.1))",
            "peak_rss_mib": _peak_rss_bytes() / MIB}


# ----------------------------------------------------------------------------- report
def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(rows, keys):
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def fits_for(rows, min_n):
    """Power laws for time and memory; a linear fit for the memory the run adds."""
    import numpy as np

    big = [r for r in rows if r["n"] >= min_n]
    if len(big) < 2:
        return {}
    ns = np.array([r["n"] for r in big], float)
    out = {}
    out["time exponent"], _ = _powerlaw(ns, [r["median_s"] for r in big])
    out["XLA temp exponent"], _ = _powerlaw(ns, [r["xla_temp_mib"] for r in big])
    # memory the run adds on top of the compiled, ready process (same process)
    inc = np.array([r["peak_rss_mib"] - r["rss_ready_mib"] for r in rows])
    n_all = np.array([r["n"] for r in rows], float)
    slope, base = np.polyfit(n_all, inc, 1)
    pred = base + slope * n_all
    r2 = 1 - np.sum((inc - pred) ** 2) / max(np.sum((inc - inc.mean()) ** 2), 1e-30)
    out["RSS increment: fixed MiB"] = float(base)
    out["RSS increment: bytes per point"] = float(slope * MIB)
    out["RSS increment: R^2 of the linear fit"] = float(r2)
    out["fit range"] = f"n >= {min_n}"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="tiny sizes; writes nothing")
    ap.add_argument("--sizes", type=int, nargs="*",
                    default=[1000, 2000, 5000, 10000, 20000, 50000, 100000])
    ap.add_argument("--blocks", nargs="*", default=["128", "auto"],
                    help="block sizes of the table (ints or 'auto')")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--fit-n", type=int, default=50000)
    ap.add_argument("--fit-iter", type=int, default=10)
    ap.add_argument("--mb-n", type=int, default=20000)
    ap.add_argument("--full-iter", type=int, default=40)
    ap.add_argument("--skip", nargs="*", default=[], choices=["scale", "fit", "minibatch"])
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--name", default="scale", help="results file stem (default: scale)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the .md from the existing .json")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    if args.report_only:
        result = json.loads((out / f"{args.name}.json").read_text())
        for block in {r["block"] for r in result["scale"]}:
            result["scale_fits"][block] = fits_for(
                [r for r in result["scale"] if r["block"] == block], 5000)
        (out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
        (out / f"{args.name}.md").write_text(report(result))
        return

    if args.child:
        kind, *rest = args.child
        if kind == "eval":
            res = child_eval(int(rest[0]), rest[1], rest[2], int(rest[3]))
        elif kind == "fit":
            res = child_fit(int(rest[0]), int(rest[1]))
        else:
            plan = [tuple(int(v) for v in p.split(":")) for p in rest[3:]]
            res = child_minibatch(int(rest[0]), int(rest[1]), int(rest[2]), plan)
        print(json.dumps(res), flush=True)
        return

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from _timing import env_header

    if args.quick:
        args.sizes, args.fit_n, args.fit_iter, args.mb_n, args.full_iter = [500, 1000], 2000, 2, 2000, 4
        plan = [(256, 40)]
    else:
        plan = [(256, 4000), (1024, 3000), (4096, 400)]
    header = env_header()
    header["loadavg (1, 5, 15 min) at start"] = list(os.getloadavg())
    print(json.dumps(header), flush=True)
    t_all = time.perf_counter()
    scale, fits, fit_row, mb = [], {}, None, None
    if "scale" not in args.skip:
        for block in args.blocks:
            for n in args.sizes:
                row = _child(["--child", "eval", str(n), args.dtype, block, str(args.repeats)])
                print(json.dumps(row), flush=True)
                scale.append(row)
            fits[block] = fits_for([r for r in scale if r["block"] == block], 5000)
            print(json.dumps({"block": block, **fits[block]}), flush=True)
    if "fit" not in args.skip:
        fit_row = _child(["--child", "fit", str(args.fit_n), str(args.fit_iter)])
        print(json.dumps({k: v for k, v in fit_row.items() if k != "loss_history"}), flush=True)
    if "minibatch" not in args.skip:
        mb = _child(["--child", "minibatch", str(args.mb_n), str(args.mb_n // 4),
                     str(args.full_iter), *(f"{b}:{s}" for b, s in plan)])
        print(json.dumps(mb)[:2000], flush=True)
    header["loadavg (1, 5, 15 min) at end"] = list(os.getloadavg())
    header["total benchmark time s"] = round(time.perf_counter() - t_all, 1)
    if args.quick:
        return
    out.mkdir(parents=True, exist_ok=True)
    old = {}
    if (out / f"{args.name}.json").exists():
        old = json.loads((out / f"{args.name}.json").read_text())
    result = {
        "env": header,
        "scale": scale or old.get("scale", []),
        "scale_fits": fits or old.get("scale_fits", {}),
        "fit": fit_row or old.get("fit"),
        "minibatch": mb or old.get("minibatch"),
        "repeat_runs": old.get("repeat_runs", []),
    }
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{args.name}.md").write_text(report(result))
    print(f"wrote {out / (args.name + '.md')}")


def report(r) -> str:
    env = r["env"]
    md = ["# Scaling: streamed MLKR, a fit at n = 50,000, mini-batches", ""]
    md += [f"- {k}: `{v}`" for k, v in env.items()]
    md += ["", "Produced by `python benchmarks/bench_scale.py`. The machine was shared with "
           "other jobs (load averages above): absolute times are upper bounds, exponents "
           "are what to read.", ""]
    if r.get("scale"):
        md += ["## 1. MLKR loss + gradient vs n (float32, d = 20, L 20 x 20)", "",
               "`jax.jit(jax.value_and_grad(mlkr_loss))` with respect to L. One process per "
               "row. `first s`: first call after compilation; `median s`: later calls. "
               "`peak RSS`: the process's `ru_maxrss` (Python, JAX, the data, compilation "
               "and the run); `ready RSS`: resident memory after compiling, before the first "
               "call; `XLA temp`: the compiled program's temporary buffers.", ""]
        keys = ["n", "block", "block_size", "first_s", "median_s", "runs", "peak_rss_mib",
                "rss_ready_mib", "increment_mib", "xla_temp_mib", "compile_s", "loss"]
        for x in r["scale"]:
            x["increment_mib"] = x["peak_rss_mib"] - x["rss_ready_mib"]
        for block, fit in r.get("scale_fits", {}).items():
            rows = [x for x in r["scale"] if x["block"] == block]
            md += [f"### block_size = {block}", "", _table(rows, keys)]
            if fit:
                md += ["Power-law fits `y = c n^p` (" + fit["fit range"] + "): "
                       + ", ".join(f"{k}: **{v:.2f}**" for k, v in fit.items()
                                   if k.endswith("exponent"))
                       + ". RSS increment = `peak RSS - ready RSS` of the same process, "
                       "linear fit over all n: "
                       f"{fit['RSS increment: fixed MiB']:.0f} MiB + "
                       f"{fit['RSS increment: bytes per point']:.0f} bytes x n "
                       f"(R^2 = {fit['RSS increment: R^2 of the linear fit']:.2f}).", ""]
    if r.get("repeat_runs"):
        md += ["### Run-to-run variation", "",
               "The same measurements in other runs of this script (other processes shared "
               "the 2 cores in most of them: compare the load averages). Times roughly "
               "double under a load of 4-5.", "",
               _table(r["repeat_runs"], list(dict.fromkeys(k for x in r["repeat_runs"]
                                                           for k in x))), ""]
    if r.get("fit"):
        f = r["fit"]
        md += ["## 2. `metricjax.MLKR` fit at n = 50,000 (float32, d = 20)", "",
               _table([f], ["n", "d", "max_iter", "n_iter", "fit_s", "s_per_iter",
                            "loss_first", "loss_last", "completed", "peak_rss_mib"]),
               "`fit_s` includes compilation; one L-BFGS iteration evaluates the loss and "
               "gradient once or more (line search).", ""]
    if r.get("minibatch"):
        m = r["minibatch"]
        md += [f"## 3. Mini-batch vs full batch (MLKR, n = {m['n']:,} train, {m['n_test']:,} "
               f"test, d = {m['d']}: 5 informative + 15 noise features, float32)", "",
               "Full-data training loss (the leave-one-out MLKR loss on all training points) "
               "and test MSE of kernel regression (against the training set, learned L) at "
               "checkpoints; time excludes compilation and the evaluations. Start (L = I): "
               f"loss {m['runs'][0]['curve'][0]['full_loss']:.1f}, test MSE "
               f"{m['runs'][0]['curve'][0]['test_mse']:.3f}. Mini-batch optimizer: "
               f"`{m['optimizer (mini-batch)']}`.", ""]
        rows = []
        full = m["runs"][0]["curve"][-1]["full_loss"]  # full-batch final loss
        marks = (1, 3, 10, 30)
        for run in m["runs"]:
            c = run["curve"]
            row = {"method": run["method"], "batch_size": run["batch_size"],
                   "steps": run["steps"], "time s": c[-1]["t_s"],
                   "final full loss": c[-1]["full_loss"], "final test MSE": c[-1]["test_mse"]}
            for t in marks:
                seen = [p["full_loss"] for p in c if p["t_s"] <= t]
                row[f"loss by {t} s"] = min(seen)
            for tol in (0.05, 0.02, 0.01):
                hit = [p["t_s"] for p in c if p["full_loss"] <= (1 + tol) * full]
                row[f"s to {100 * tol:.0f}% of full-batch final"] = min(hit) if hit else "never"
            rows.append(row)
        md += [_table(rows, list(dict.fromkeys(k for row in rows for k in row))), ""]
        md += ["`loss by t s`: the best full-data loss at a checkpoint reached within t "
               "seconds; `s to x%`: first checkpoint within x% of the full-batch final loss.",
               ""]
        md += ["Whole curves (time, step, full loss, test MSE) are in `scale.json`.", ""]
    return "\n".join(md)


if __name__ == "__main__":
    main()
