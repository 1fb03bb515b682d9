"""Learned-metric quality: every learner's kNN score beside metric-learn's and Euclidean's.

For each data set and seed (a 70/30 split, features standardised on the training
part) the script fits every learner with **default parameters** (except
``n_components`` where stated) and scores a k-NN on its embedding:

* regression (test R²): diabetes; ``make_friedman1`` with 10 noise features;
  ``make_friedman3`` with 10 noise features; a sparse sinusoidal target on 20
  features (``_sine``). Learners: Euclidean k-NN with k tuned by 5-fold CV over
  {5, 10, 20, 40}; ``MLKR(n_components=3) -> kNN(20)`` and ``MLKR.predict``
  (metricjax), the same with metric-learn's ``MLKR``.
* classification (test accuracy, 3-NN): iris, wine, breast cancer, digits.
  Learners: Euclidean; metricjax ``NCA``, ``LMNN``, ``LFDA(k=5)``, ``Covariance``,
  ``RCA_Supervised(n_chunks=max(d, n_train // 6), chunk_size=3)``; metric-learn's counterparts;
  and metricjax's weakly supervised learners from labels (``ITML_Supervised``,
  ``MMC_Supervised``, ``SDML_Supervised``, ``LSML_Supervised``, ``SCML_Supervised``, with
  metric-learn's defaults), so every estimator of the package meets the no-metric
  baseline here; ``bench_weak.py`` compares those with metric-learn's.

Writes ``benchmarks/results/quality.md`` (mean ± std over seeds) and
``quality.json``; ``--quick`` (2 seeds, at most 300 rows per set, metricjax and
Euclidean only) writes ``quality_quick.md``.

Full run (5 seeds, every learner, metric-learn included; long on 2 cores)::

    python benchmarks/bench_quality.py

Quick check::

    python benchmarks/bench_quality.py --quick

Refit only some learners (those whose name contains TEXT) and merge them into the saved
full run, or rewrite the table from the saved JSON::

    python benchmarks/bench_quality.py --only _Supervised
    python benchmarks/bench_quality.py --render
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sklearn.datasets import (  # noqa: E402
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
    make_friedman1,
    make_friedman3,
)
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def _noisy(make, n, seed=0):
    X, y = make(n_samples=n, noise=0.0, random_state=seed)
    rng = np.random.RandomState(seed)
    return np.c_[X, rng.standard_normal((n, 10))], y


def _sine(n=500, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, 20))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.standard_normal(n)
    return X, y


def regression_sets():
    X, y = load_diabetes(return_X_y=True)
    yield "diabetes", X, y
    X, y = make_friedman1(n_samples=500, n_features=15, noise=0.5, random_state=0)
    yield "friedman1 + 10 noise", X, y
    yield "friedman3 + 10 noise", *_noisy(make_friedman3, 500)
    yield "sparse sine (20 features)", *_sine()


def classification_sets():
    for name, load in (
        ("iris", load_iris),
        ("wine", load_wine),
        ("breast cancer", load_breast_cancer),
        ("digits", load_digits),
    ):
        X, y = load(return_X_y=True)
        yield name, X, y


def _reg_learners(quick):
    import metricjax as mj

    out = {
        "MLKR(3) -> kNN(20)": lambda: ("embed", mj.MLKR(n_components=3)),
        "MLKR(3).predict": lambda: ("predict", mj.MLKR(n_components=3)),
    }
    if not quick:
        from benchmarks._reference_libs import metric_learn_compat

        ml = metric_learn_compat()
        out["metric-learn MLKR(3) -> kNN(20)"] = lambda: ("embed", ml.MLKR(n_components=3))
    return out


def _clf_learners(quick, n_features, n_train):
    import metricjax as mj

    chunks = max(n_features, n_train // 6)  # half the training points in chunklets
    out = {
        "NCA": lambda: mj.NCA(),
        "LMNN": lambda: mj.LMNN(),
        "LFDA(k=5)": lambda: mj.LFDA(k=5),
        "Covariance": lambda: mj.Covariance(),
        f"RCA_Supervised({chunks}x3)": lambda: mj.RCA_Supervised(n_chunks=chunks, chunk_size=3),
        # the weakly supervised learners from labels, with metric-learn's defaults (their
        # metric-learn counterparts are compared in bench_weak.py, on the same footing)
        "ITML_Supervised": lambda: mj.ITML_Supervised(),
        "MMC_Supervised": lambda: mj.MMC_Supervised(),
        "SDML_Supervised": lambda: mj.SDML_Supervised(),
        "LSML_Supervised": lambda: mj.LSML_Supervised(),
        "SCML_Supervised": lambda: mj.SCML_Supervised(),
    }
    if not quick:
        from benchmarks._reference_libs import metric_learn_compat

        ml = metric_learn_compat()
        out.update(
            {
                "metric-learn NCA": lambda: ml.NCA(),
                "metric-learn LMNN": lambda: ml.LMNN(),
                "metric-learn LFDA(k=5)": lambda: ml.LFDA(k=5),
                "metric-learn Covariance": lambda: ml.Covariance(),
                f"metric-learn RCA_Supervised({chunks}x3)": lambda: ml.RCA_Supervised(
                    n_chunks=chunks, chunk_size=3
                ),
            }
        )
    return out


def _split(X, y, seed, max_rows):
    if max_rows and len(X) > max_rows:
        keep = np.random.RandomState(seed).choice(len(X), max_rows, replace=False)
        X, y = X[keep], y[keep]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), ytr, yte


def _score(fn):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fn())
    except Exception as err:  # a learner that fails on a set is recorded, not fatal
        return f"fails: {type(err).__name__}: {_one_line(str(err))[:60]}"


def _one_line(text):
    """A message fit for a Markdown table cell: one line, no ``|``."""
    return " ".join(str(text).split()).replace("|", "/")


def _selected(learners, only):
    return {k: v for k, v in learners.items() if only is None or only in k}


def run(seeds, quick, max_rows, only=None):
    rows = []
    for name, X, y in regression_sets():
        if not _selected(_reg_learners(quick), only):
            continue
        scores = {}
        for seed in seeds:
            Xtr, Xte, ytr, yte = _split(X, y, seed, max_rows)
            grid = GridSearchCV(KNeighborsRegressor(), {"n_neighbors": [5, 10, 20, 40]})
            scores.setdefault("Euclidean kNN (tuned k)", []).append(
                grid.fit(Xtr, ytr).score(Xte, yte)
            )
            for lname, make in _selected(_reg_learners(quick), only).items():

                def one(make=make):
                    kind, est = make()
                    est.random_state = seed if hasattr(est, "random_state") else None
                    est.fit(Xtr, ytr)
                    if kind == "predict":
                        return est.score(Xte, yte)
                    knn = KNeighborsRegressor(20).fit(est.transform(Xtr), ytr)
                    return knn.score(est.transform(Xte), yte)

                scores.setdefault(lname, []).append(_score(one))
        rows.append(("regression R²", name, scores))
        print(name, {k: v for k, v in scores.items()}, flush=True)
    for name, X, y in classification_sets():
        scores = {}
        for seed in seeds:
            Xtr, Xte, ytr, yte = _split(X, y, seed, max_rows)

            def knn(ztr, zte):
                return KNeighborsClassifier(3).fit(ztr, ytr).score(zte, yte)

            scores.setdefault("Euclidean 3-NN", []).append(knn(Xtr, Xte))
            for lname, make in _selected(_clf_learners(quick, X.shape[1], len(Xtr)), only).items():

                def one(make=make):
                    est = make()
                    if hasattr(est, "random_state"):
                        est.random_state = seed
                    est.fit(Xtr, ytr)
                    return knn(est.transform(Xtr), est.transform(Xte))

                scores.setdefault(lname, []).append(_score(one))
        rows.append(("3-NN accuracy", name, scores))
        print(name, scores, flush=True)
    return rows


def _fmt(v):
    nums = [x for x in v if isinstance(x, float)]
    if len(nums) < len(v):
        return _one_line(next(x for x in v if not isinstance(x, float)))
    return f"{np.mean(nums):.3f} ± {np.std(nums):.3f}"


def _baseline(scores):
    """The no-metric row of a set: Euclidean k-NN (tuned k for regression)."""
    return next(k for k in scores if k.startswith("Euclidean"))


def worse_than_no_metric(scores):
    """Learners whose mean score is below the no-metric mean by more than one std.

    "One standard deviation": the larger of the two rows' standard deviations over
    the seeds. A learner that failed on the set counts as worse. Returns
    ``{learner: mean difference}`` (negative: worse), the failures as ``nan``.
    """
    baseline = _baseline(scores)
    base = np.asarray(scores[baseline], float)
    out = {}
    for name, v in scores.items():
        if name == baseline:
            continue
        if not all(isinstance(x, float) for x in v):
            out[name] = float("nan")
            continue
        diff = np.mean(v) - base.mean()
        if diff < -max(np.std(v), base.std()):
            out[name] = float(diff)
    return out


def write(rows, path, header):
    lines = [header, ""]
    flagged = []
    for metric, name, scores in rows:
        baseline = _baseline(scores)
        base = np.mean(scores[baseline])
        worse = worse_than_no_metric(scores)
        lines += [f"### {name} ({metric})", "",
                  "| learner | score | − no metric | worse by > 1 std |", "|---|---|---|---|"]  # fmt: skip
        for k, v in scores.items():
            nums = [x for x in v if isinstance(x, float)]
            delta = f"{np.mean(nums) - base:+.3f}" if len(nums) == len(v) else "—"
            mark = "" if k == baseline else ("**yes**" if k in worse else "no")
            lines.append(f"| {k} | {_fmt(v)} | {delta} | {mark} |")
            if k in worse:
                flagged.append(f"- {name}: {k} ({_fmt(v)} against {_fmt(scores[baseline])})")
        lines.append("")
    lines += ["### Worse than no metric by more than one standard deviation", ""]
    lines += flagged or ["None: every learner matches or beats the no-metric k-NN on every set."]
    lines.append("")
    path.write_text("\n".join(lines))


def _header(env, quick):
    seeds, rows = (2, "at most 300 rows, ") if quick else (5, "")
    return (
        f"# Learned-metric quality ({'quick: ' if quick else ''}{seeds} seeds, {rows}"
        f"mean ± std, default parameters; {env['seconds']} s)\n\nWritten by "
        "`benchmarks/bench_quality.py`; see its docstring for the protocol. "
        "\"− no metric\": the learner's mean minus the Euclidean k-NN's mean; \"worse by > 1 std\": "
        "below it by more than the larger of the two standard deviations over the seeds.\n\n"
        f"Environment: `{json.dumps(env)}`"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", metavar="TEXT",
                    help="fit only the learners whose name contains TEXT (and the Euclidean "
                         "baseline) and merge their scores into the saved JSON")  # fmt: skip
    ap.add_argument("--render", action="store_true",
                    help="rewrite the Markdown table from the saved JSON, without fitting")  # fmt: skip
    args = ap.parse_args()
    stem = "quality_quick" if args.quick else "quality"
    if args.render:
        saved = json.loads((RESULTS / f"{stem}.json").read_text())
        rows = [(r["metric"], r["set"], r["scores"]) for r in saved["rows"]]
        write(rows, RESULTS / f"{stem}.md", _header(saved["env"], args.quick))
        return
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    max_rows = 300 if args.quick else None
    t0 = time.time()
    rows = run(seeds, args.quick, max_rows, args.only)
    RESULTS.mkdir(exist_ok=True)
    from benchmarks._timing import env_header

    env = env_header()  # date, versions, CPU model, BLAS kernels
    env["seconds"] = round(time.time() - t0)
    if not args.quick:
        import metric_learn

        env["metric_learn"] = metric_learn.__version__
    if args.only is not None:  # merge into the saved run (same splits: same seeds)
        saved = json.loads((RESULTS / f"{stem}.json").read_text())
        new = {(m, n): sc for m, n, sc in rows}
        merged = []
        for r in saved["rows"]:
            scores = dict(r["scores"])
            for k, v in new.get((r["metric"], r["set"]), {}).items():
                if k.startswith("Euclidean"):
                    assert v == scores[k], "the saved run used other splits"
                else:
                    scores[k] = v
            merged.append((r["metric"], r["set"], scores))
        rows = merged
        env = saved["env"] | {f"merged ({args.only})": env}
    write(rows, RESULTS / f"{stem}.md", _header(env, args.quick))
    (RESULTS / f"{stem}.json").write_text(json.dumps({
        "env": env,
        "rows": [{"metric": m, "set": n, "scores": s, "worse_than_no_metric": worse_than_no_metric(s)}
                 for m, n, s in rows],
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
