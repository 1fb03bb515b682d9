"""Weakly supervised learners (ITML, MMC, SDML, LSML, SCML) vs metric-learn 0.7.0: quality, fit time.

Two parts, every ratio from the same run:

* **quality**: on iris, wine, breast cancer and digits (70/30 stratified split,
  standardised on the training part, seeds 0-4), each ``*_Supervised`` learner
  (``random_state=seed``, metric-learn's default hyperparameters) followed by a
  3-nearest-neighbour classifier: test accuracy, metricjax vs metric-learn; and each
  pairs learner's (ITML, MMC, SDML) ``score`` (ROC AUC) on held-out pairs drawn from the
  test part, after fitting on pairs drawn from the training part.
* **speed**: the whole ``fit`` of the pairs learners ITML, MMC, SDML on 1,000 / 5,000 /
  20,000 pairs (half similar, half dissimilar) of a synthetic 10-feature, 5-class set,
  metricjax in float64 and float32 (first call, compilation included, and a warm
  refit), metric-learn in float64. A learner that fails (metric-learn's SDML on current
  scikit-learn) is recorded with its error and NaN.

metric-learn runs in a child process (``--reference``) whose environment has
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` removed, so NumPy's BLAS picks its own
kernel; the header records the CPU model and the BLAS kernel (threadpoolctl) of both
processes.

Run from the repository root::

    python benchmarks/bench_weak.py --quick        # a smoke run, writes nothing
    python benchmarks/bench_weak.py                # full: benchmarks/results/weak.{json,md}
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _machine import UNSET_FOR_REFERENCE, blas_info, cpu_model, run_reference  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DATASETS = ("iris", "wine", "breast_cancer", "digits")
ALGOS = ("ITML", "MMC", "SDML")  # pairs learners (fit speed, held-out pair AUC)
SUPERVISED = ("ITML", "MMC", "SDML", "LSML", "SCML")  # *_Supervised + 3-NN
SPEED_SIZES = (1000, 5000, 20000)


# ----------------------------------------------------------------------------------
# shared by both processes
# ----------------------------------------------------------------------------------
def load(name):
    from sklearn import datasets

    return getattr(datasets, f"load_{name}")(return_X_y=True)


def split(name, seed):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load(name)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


def pairs_of(X, y, n, seed):
    from metricjax.constraints import Constraints, wrap_pairs

    return wrap_pairs(X, Constraints(y).positive_negative_pairs(n, random_state=seed))


def speed_data(n_pairs, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(2000) % 5
    X = rng.standard_normal((2000, 10))
    X[:, :3] += y[:, None] * np.array([1.0, 0.5, -0.7])
    return pairs_of(X, y, n_pairs // 2, seed)


def knn_accuracy(Z_tr, y_tr, Z_te, y_te):
    from sklearn.neighbors import KNeighborsClassifier

    return float(KNeighborsClassifier(3).fit(Z_tr, y_tr).score(Z_te, y_te))


def run_quality(lib, datasets, seeds, n_pairs, max_iter):
    rows = []
    for name in datasets:
        for seed in seeds:
            X_tr, X_te, y_tr, y_te = split(name, seed)
            tr_pairs, tr_y = pairs_of(X_tr, y_tr, n_pairs, seed)
            te_pairs, te_y = pairs_of(X_te, y_te, n_pairs, seed + 100)
            for algo in SUPERVISED:
                kw = {} if max_iter is None or algo == "SDML" else {"max_iter": max_iter}
                if algo == "SCML" and max_iter is not None:
                    kw["output_iter"] = min(500, max_iter)
                row = {"data": name, "seed": seed, "algo": algo}
                try:
                    sup = getattr(lib, f"{algo}_Supervised")(random_state=seed, **kw)
                    t0 = time.perf_counter()
                    sup.fit(X_tr, y_tr)
                    row["fit_s"] = time.perf_counter() - t0
                    row["knn_acc"] = knn_accuracy(
                        sup.transform(X_tr), y_tr, sup.transform(X_te), y_te
                    )
                except Exception as err:  # metric-learn's SDML fails on current scikit-learn
                    row["knn_acc"], row["error"] = (
                        float("nan"),
                        f"{type(err).__name__}: {err}"[:200],
                    )
                row["pairs_auc"] = float("nan")
                if algo in ALGOS:
                    try:
                        weak = getattr(lib, algo)(random_state=seed, **kw).fit(tr_pairs, tr_y)
                        row["pairs_auc"] = float(weak.score(te_pairs, te_y))
                    except Exception as err:
                        row["pairs_error"] = f"{type(err).__name__}: {err}"[:200]
                rows.append(row)
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def run_speed(lib, sizes, dtypes, max_iter, warm: bool):
    rows = []
    for n in sizes:
        pairs, y = speed_data(n)
        for algo in ALGOS:
            for dt in dtypes:
                p = pairs.astype(dt)
                kw = {} if algo == "SDML" else {"max_iter": max_iter}
                kw.update({"balance_param": 1e-3} if algo == "SDML" else {})
                row = {"algo": algo, "n_pairs": int(len(p)), "dtype": dt}
                try:
                    t0 = time.perf_counter()
                    getattr(lib, algo)(**kw).fit(p, y)
                    row["cold_s"] = time.perf_counter() - t0
                    if warm:
                        t0 = time.perf_counter()
                        getattr(lib, algo)(**kw).fit(p, y)
                        row["warm_s"] = time.perf_counter() - t0
                except Exception as err:
                    row["cold_s"] = row["warm_s"] = float("nan")
                    row["error"] = f"{type(err).__name__}: {err}"[:200]
                rows.append(row)
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# ----------------------------------------------------------------------------------
# the metric-learn child process
# ----------------------------------------------------------------------------------
def reference_main(spec):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from benchmarks._reference_libs import metric_learn_compat

    ml = metric_learn_compat()
    warnings.simplefilter("ignore")
    out = {"cpu": cpu_model(), "blas": blas_info()}
    out["quality"] = run_quality(
        ml, spec["datasets"], spec["seeds"], spec["n_pairs"], spec["max_iter"]
    )
    out["speed"] = run_speed(ml, spec["sizes"], ["float64"], spec["speed_max_iter"], warm=False)
    print(json.dumps(out))


# ----------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------
def summarise(ours, ref):
    def mean(rows, data, algo, key):
        return float(np.mean([r[key] for r in rows if r["data"] == data and r["algo"] == algo]))

    qual = []
    for data in sorted({r["data"] for r in ours["quality"]}):
        for algo in SUPERVISED:
            qual.append({
                "data": data, "algo": algo,
                "knn_acc_metricjax": mean(ours["quality"], data, algo, "knn_acc"),
                "knn_acc_metric_learn": mean(ref["quality"], data, algo, "knn_acc"),
                "pairs_auc_metricjax": mean(ours["quality"], data, algo, "pairs_auc"),
                "pairs_auc_metric_learn": mean(ref["quality"], data, algo, "pairs_auc"),
            })  # fmt: skip
    speed = []
    ref_t = {(r["algo"], r["n_pairs"]): r["cold_s"] for r in ref["speed"]}
    for r in ours["speed"]:
        t_ref = ref_t[(r["algo"], r["n_pairs"])]
        speed.append({**r, "metric_learn_s": t_ref, "speedup_cold": t_ref / r["cold_s"],
                      "speedup_warm": t_ref / r["warm_s"]})  # fmt: skip
    return qual, speed


def render(data, out_dir):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "weak.json").write_text(json.dumps(data, indent=1))
    lines = [
        "# Weakly supervised learners vs metric-learn 0.7.0",
        "",
        "```",
        json.dumps(data["env"], indent=1),
        "```",
        "",
    ]
    lines += ["## Quality (mean over seeds)", "",
              "| data | algo | 3-NN acc metricjax | 3-NN acc metric-learn | pairs AUC metricjax | pairs AUC metric-learn |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for q in data["quality"]:
        lines.append(f"| {q['data']} | {q['algo']} | {q['knn_acc_metricjax']:.4f} | {q['knn_acc_metric_learn']:.4f} "
                     f"| {q['pairs_auc_metricjax']:.4f} | {q['pairs_auc_metric_learn']:.4f} |")  # fmt: skip
    lines += ["", "## Whole fit time", "",
              "| algo | pairs | dtype | metricjax cold s | metricjax warm s | metric-learn s | speed-up cold | warm |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in data["speed"]:
        lines.append(f"| {s['algo']} | {s['n_pairs']} | {s['dtype']} | {s['cold_s']:.3f} | {s['warm_s']:.3f} "
                     f"| {s['metric_learn_s']:.3f} | {s['speedup_cold']:.1f}x | {s['speedup_warm']:.1f}x |")  # fmt: skip
    (out_dir / "weak.md").write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="iris, 1 seed, small sizes; writes nothing"
    )
    ap.add_argument("--reference", metavar="SPEC", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.reference:
        reference_main(json.loads(args.reference))
        return
    spec = {"datasets": list(DATASETS), "seeds": list(range(5)), "n_pairs": 200,
            "max_iter": None, "sizes": list(SPEED_SIZES), "speed_max_iter": 100}  # fmt: skip
    if args.quick:
        spec.update(
            datasets=["iris"], seeds=[0], n_pairs=50, max_iter=50, sizes=[400], speed_max_iter=10
        )
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from benchmarks._timing import env_header
    from metricjax import estimators as lib

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    ref = run_reference(spec, __file__)
    import jax

    header = env_header()
    header.update(cpu=cpu_model(), blas_metricjax=blas_info(), blas_metric_learn=ref["blas"],
                  unset_for_metric_learn=list(UNSET_FOR_REFERENCE), spec=spec)  # fmt: skip
    ours = {
        "quality": run_quality(
            lib, spec["datasets"], spec["seeds"], spec["n_pairs"], spec["max_iter"]
        )
    }
    with jax.enable_x64(True):
        ours["speed"] = run_speed(
            lib, spec["sizes"], ["float64", "float32"], spec["speed_max_iter"], warm=True
        )
    qual, speed = summarise(ours, ref)
    header["total benchmark time s"] = round(time.perf_counter() - t0, 1)
    data = {
        "env": header,
        "quality": qual,
        "speed": speed,
        "raw": {"metricjax": ours, "metric_learn": ref},
    }
    print(json.dumps(header))
    for q in qual:
        print(json.dumps(q))
    for s in speed:
        print(json.dumps(s))
    if not args.quick:
        render(data, args.out)


if __name__ == "__main__":
    main()
