"""LMNN with the impostor active set vs metric-learn: one loss+gradient, and whole fits.

1. **One loss + gradient** at ``n = 5000``, ``d = 20`` (``--quick``: ``n = 1000``),
   float64 and float32, ``L = I / 2``, 3 target neighbours, push weight 0.5:

   * metric-learn's ``LMNN._loss_grad`` (its own radius-limited impostor search
     included),
   * metricjax's full streaming ``lmnn_loss`` (all differently-labelled points),
   * metricjax's active-set loss on a fresh set (``lmnn_loss(..., impostors=...)``,
     the per-iteration cost of the fit), and the search itself
     (``lmnn_impostors`` with the estimator's default slack 0.5, the set the fits
     use, done every ``impostor_refresh`` iterations); "search +
     eval" is the cost of one evaluation that also searches, the fair comparison
     with ``_loss_grad``.

2. **Whole fit** from the identity at ``n in {2000, 5000}`` (``--quick``: 1200),
   ``max_iter = 200`` for every library: wall time (metricjax: first fit with its
   compilation, and a second, warm one) and the final loss, all evaluated with
   metricjax's *full* float64 loss, so "equal or lower loss" is checked on one
   scale. metricjax runs the active set (``impostor_refresh=10``: searched every 10
   iterations) and the full loss (``impostor_refresh=None``, the default).

The NumPy references run in a child process with ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` removed from its environment, so that NumPy's OpenBLAS picks its
own kernel; the header records the CPU model and the BLAS libraries (threadpoolctl)
of both processes. pylmnn is not compared: version 1.6.4 installs but does not
import on current scikit-learn without ``six`` and ``GPyOpt``, and with those
stubbed its fit fails on current SciPy (``'x0' must only have one dimension``).

Run from the repository root::

    python benchmarks/bench_lmnn.py            # full, writes results/lmnn.md / .json
    python benchmarks/bench_lmnn.py --quick    # small, writes results/lmnn_quick.*
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _machine import blas_info, cpu_model, run_reference  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
D, K, PUSH = 20, 3, 0.5


#: impostor_slack of the estimator's active-set fits (LMNN's default), for the searches
SLACK = 0.5


def data(n, d=D, seed=0):
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=n, n_features=d, n_informative=max(2, d // 4), n_redundant=0,
        n_classes=3, n_clusters_per_class=2, class_sep=1.0, random_state=seed,
    )  # fmt: skip


def _median(fn, repeats=3, max_total_s=20.0):
    times, out = [], None
    t_end = time.perf_counter() + max_total_s
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() > t_end:
            break
    return float(np.median(times)), out


# ----------------------------------------------------------------------------------
# the reference process: metric-learn (NumPy)
# ----------------------------------------------------------------------------------
def reference_main(spec):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from benchmarks._reference_libs import metric_learn_compat

    ml = metric_learn_compat()
    from metric_learn.lmnn import _sum_outer_products

    warnings.simplefilter("ignore")
    out = {"cpu": cpu_model(), "blas": blas_info(), "eval": [], "fit": []}
    for n in spec["eval_sizes"]:
        x, y = data(n)
        L = np.eye(D) * 0.5
        lm = ml.LMNN(n_neighbors=K, regularization=1 - PUSH)
        lm.labels_ = np.unique(y)
        tn = lm._select_targets(x, y)
        df = _sum_outer_products(x, tn.ravel(), np.repeat(np.arange(n), K))
        t, res = _median(lambda: lm._loss_grad(x, L, df, K, 1 - PUSH, tn, y))
        out["eval"].append({"n": n, "ms": 1e3 * t, "loss": float(res[1])})
    for n in spec["fit_sizes"]:
        x, y = data(n)
        est = ml.LMNN(init="identity", n_neighbors=K, regularization=1 - PUSH,
                      max_iter=spec["max_iter"])  # fmt: skip
        t0 = time.perf_counter()
        est.fit(x, y)
        out["fit"].append({"n": n, "s": time.perf_counter() - t0,
                           "components": est.components_.tolist(), "n_iter": est.n_iter_})  # fmt: skip
    print(json.dumps(out))


# ----------------------------------------------------------------------------------
# metricjax (this process)
# ----------------------------------------------------------------------------------
def ours_eval(n):
    import jax
    import jax.numpy as jnp

    from metricjax.losses import lmnn_impostors, lmnn_loss, lmnn_target_neighbors

    x, y = data(n)
    tn = lmnn_target_neighbors(x, y, K)
    row = {"n": n}
    for dt, tag in ((np.float64, "f64"), (np.float32, "f32")):
        with jax.enable_x64(dt == np.float64):
            L, xj = jnp.asarray(np.eye(D) * 0.5, dt), jnp.asarray(x, dt)
            codes, tnj = jnp.asarray(y, jnp.int32), jnp.asarray(tn)
            full = jax.jit(jax.value_and_grad(
                lambda L, x, c, t: lmnn_loss(L, x, c, target_neighbors=t, push_weight=PUSH)))
            act = jax.jit(jax.value_and_grad(
                lambda L, x, c, t, s: lmnn_loss(L, x, c, target_neighbors=t, push_weight=PUSH,
                                                impostors=s)))  # fmt: skip
            # the set a fit uses: the estimator's default slack
            search = lambda: lmnn_impostors(L, xj, y, target_neighbors=tn, margin=1.0,
                                            slack=SLACK)  # fmt: skip
            s = search()  # compiles the search
            jax.block_until_ready(full(L, xj, codes, tnj))
            jax.block_until_ready(act(L, xj, codes, tnj, s))
            t_full, v_full = _median(lambda: jax.block_until_ready(full(L, xj, codes, tnj)))
            t_act, v_act = _median(lambda: jax.block_until_ready(act(L, xj, codes, tnj, s)))
            t_search, _ = _median(search)
            row[f"{tag} full ms"] = 1e3 * t_full
            row[f"{tag} active ms"] = 1e3 * t_act
            row[f"{tag} search ms"] = 1e3 * t_search
            row[f"{tag} pairs"] = int(s.count)
            row[f"{tag} loss"] = float(v_act[0])
            row[f"{tag} full loss"] = float(v_full[0])
    return row


def full_loss64(components, x, y):
    import jax

    from metricjax.losses import lmnn_loss

    with jax.enable_x64(True):
        return float(lmnn_loss(np.asarray(components, np.float64), x, y, n_neighbors=K,
                               push_weight=PUSH))  # fmt: skip


def ours_fit(n, max_iter):
    from metricjax.estimators import LMNN

    x, y = data(n)
    row = {"n": n}
    # the active set is opt-in: refresh it every 10 iterations
    for tag, kw in (("active", {"impostor_refresh": 10}), ("full", {"impostor_refresh": None})):
        times = []
        for _ in range(2):  # first: with compilation; second: warm
            est = LMNN(init="identity", n_neighbors=K, push_weight=PUSH, max_iter=max_iter, **kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                est.fit(x, y)
                times.append(time.perf_counter() - t0)
        row[f"{tag} first s"], row[f"{tag} warm s"] = times
        row[f"{tag} loss"] = full_loss64(est.components_, x, y)
        row[f"{tag} n_iter"] = int(est.n_iter_)
    return row


# ----------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------
def render(res) -> str:
    h = res["header"]
    md = ["# LMNN: impostor active set vs metric-learn", "",
          f"CPU: {h['cpu']}; metricjax process BLAS: {h['blas']}; reference process "
          f"(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset) BLAS: {h['ref_blas']}.",
          f"jax {h['jax']}, {h['date']}, quick={h['quick']}, load average at the start "
          f"{h.get('load', '?')}. Timings are medians of up to 3 runs: on a shared machine "
          "they are noisy.", "",
          f"## One loss + gradient (d = 20, L = I/2, 3 target neighbours; active set searched "
          f"with slack {SLACK}, as in the fits)", "",
          "| n | dtype | metric-learn ms | full ms | active ms | search ms | search+active ms "
          "| pairs | ratio (eval only) | ratio (search+eval) |",
          "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r, ref in zip(res["eval"], res["ref"]["eval"]):
        for tag in ("f64", "f32"):
            both = r[f"{tag} search ms"] + r[f"{tag} active ms"]
            md.append(
                f"| {r['n']} | {tag} | {ref['ms']:.1f} | {r[f'{tag} full ms']:.1f} | "
                f"{r[f'{tag} active ms']:.1f} | {r[f'{tag} search ms']:.1f} | {both:.1f} | "
                f"{r[f'{tag} pairs']} | {ref['ms'] / r[f'{tag} active ms']:.1f}x | "
                f"{ref['ms'] / both:.1f}x |"
            )
    md += ["", f"## Whole fit from the identity (max_iter = {h['max_iter']}), final loss by "
           "metricjax's full float64 loss", "",
           "| n | metric-learn s | loss | active first s | active warm s | loss | iters "
           "| full first s | full warm s | loss | iters | speed-up (warm active) "
           "| speed-up (warm full) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r, ref in zip(res["fit"], res["ref"]["fit"]):
        md.append(
            f"| {r['n']} | {ref['s']:.2f} | {ref['loss']:.6g} | {r['active first s']:.2f} | "
            f"{r['active warm s']:.2f} | {r['active loss']:.6g} | {r['active n_iter']} | "
            f"{r['full first s']:.2f} | {r['full warm s']:.2f} | {r['full loss']:.6g} | "
            f"{r['full n_iter']} | {ref['s'] / r['active warm s']:.1f}x | "
            f"{ref['s'] / r['full warm s']:.1f}x |"
        )
    md += ["", "A search (every 10 iterations) that finds new impostors makes a new loss and "
           "restarts L-BFGS's curvature memory, so active-set fits take more iterations "
           "than the full loss's; the first fit also compiles one loop per set capacity."]
    return "\n".join(md) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reference", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference:
        return reference_main(json.loads(args.reference))
    import jax

    eval_sizes = [1000] if args.quick else [5000]
    fit_sizes = [1200] if args.quick else [2000, 5000]
    max_iter = 200
    spec = {"eval_sizes": eval_sizes, "fit_sizes": fit_sizes, "max_iter": max_iter}
    ref = run_reference(spec, __file__)
    for r in ref["fit"]:
        x, y = data(r["n"])
        r["loss"] = full_loss64(r.pop("components"), x, y)
    res = {
        "header": {"cpu": cpu_model(), "blas": blas_info(), "ref_blas": ref["blas"],
                   "jax": jax.__version__, "quick": args.quick, "max_iter": max_iter,
                   "load": [round(v, 1) for v in os.getloadavg()],
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "ref": ref,
        "eval": [ours_eval(n) for n in eval_sizes],
        "fit": [ours_fit(n, max_iter) for n in fit_sizes],
    }  # fmt: skip
    name = "lmnn_quick" if args.quick else "lmnn"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1))
    (RESULTS / f"{name}.md").write_text(render(res))
    print(render(res))


if __name__ == "__main__":
    main()
