"""A whole experiment as one compiled program: 5-fold CV x 8 ridge strengths of MLKR.

``mj.MLKRCV`` chooses MLKR's ridge strength ``alpha`` by 5-fold cross-validation on
scikit-learn's diabetes data (standardised): its 40 fits (8 strengths x 5 folds) and
their held-out R² run in one compiled program, ``jax.jit(jax.vmap(jax.vmap(mj.fit)))``
over the strengths and the folds (each fold a ``sample_weight`` vector, 0 = held out):
``MLKRCV()`` calls it once for the whole grid (on a CPU the default; its members run
one after another inside the program, each for its own iterations), ``MLKRCV(batch=
"folds")`` once per strength with its 5 folds batched (the default on an accelerator,
where a batch runs side by side and waits for its slowest member; folds of one
strength need similar numbers of iterations, strengths do not). Then scikit-learn's ``GridSearchCV(mj.MLKR(), {"alpha": ...})``
does the same with the same grid and folds, one estimator fit at a time (and
its compiled loop reused across them). Printed: the selected strength, the mean
held-out R² of every strength side by side, and the time of each (compilation
included); asserted: the same selection and the same per-fold scores (rtol 1e-3; most
agree to 1e-12, see the comment at the end).

Run: ``python examples/07_sweep.py`` (about a minute on 2 cores) or ``--quick``
(150 rows; ``MLKRCV()`` and ``GridSearchCV`` only).
"""

import argparse
import time

import jax
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import StandardScaler

import metricjax as mj

FOLDS = 5


def main(quick: bool = False):
    X, y = load_diabetes(return_X_y=True)
    if quick:
        X, y = X[:150], y[:150]
    X = StandardScaler().fit_transform(X)  # float64: the fits run in float64
    y = y / y.std()
    alphas = list(mj.MLKRCV().alphas)  # the default grid: 0.003 ... 10, 8 values
    cv = KFold(FOLDS, shuffle=True, random_state=0)

    jax.jit(lambda a: a + 1)(0.0)  # the process's first compilation, outside the timings
    # each timing below starts from empty compilation caches: it includes its compilations
    t0 = time.perf_counter()
    model = mj.MLKRCV(alphas=alphas, cv=cv).fit(X, y)
    t_one = time.perf_counter() - t0  # compilation, the 40 fits, the refit

    t_folds = float("nan")
    per_alpha = model
    if not quick:  # --quick skips it (tests/test_estimators_mlkr_cv.py has it)
        jax.clear_caches()
        t0 = time.perf_counter()
        per_alpha = mj.MLKRCV(alphas=alphas, cv=cv, batch="folds").fit(X, y)
        t_folds = time.perf_counter() - t0  # the program, one alpha (5 folds) per call

    jax.clear_caches()
    t0 = time.perf_counter()
    search = GridSearchCV(mj.MLKR(), {"alpha": alphas}, cv=cv).fit(X, y)
    t_grid = time.perf_counter() - t0
    grid_scores = np.stack(
        [search.cv_results_[f"split{i}_test_score"] for i in range(FOLDS)], axis=1
    )

    print(f"diabetes, n = {len(X)}, {FOLDS} folds x {len(alphas)} ridge strengths "
          f"= {FOLDS * len(alphas)} MLKR fits")  # fmt: skip
    print("alpha      mean held-out R²: MLKRCV   GridSearchCV   iterations (mean of folds)")
    for a, ours, theirs, it in zip(
        alphas, model.scores_.mean(1), grid_scores.mean(1), model.cv_n_iter_.mean(1)
    ):
        print(f"{a:9.4g}   {ours:22.6f}   {theirs:12.6f}   {it:8.1f}")
    print(f"selected alpha: MLKRCV {model.alpha_:g}, GridSearchCV {search.best_params_['alpha']:g}")
    print(f"time, compilation included: MLKRCV() (batch={'grid' if jax.default_backend() == 'cpu' else 'folds'!r}, "
          f"one program + refit) {t_one:.1f} s, MLKRCV(batch='folds') {t_folds:.1f} s, "
          f"GridSearchCV(mj.MLKR) {t_grid:.1f} s ({t_grid / t_one:.1f}x MLKRCV())")  # fmt: skip
    print(f"backend: {jax.default_backend()}")
    assert model.alpha_ == search.best_params_["alpha"] == per_alpha.alpha_
    np.testing.assert_allclose(per_alpha.scores_, model.scores_, rtol=1e-3, atol=1e-6)
    # the per-fold scores agree to rounding (1e-12) where the loss is well curved; in
    # the weakest-regularised fits it is flat at tol=1e-6, and rounding (a fold as
    # weights over all rows vs the fold's own rows, or another batch shape) can move
    # the stopping iteration:
    # 3e-4 relative on 2 of the 40 scores at alpha=0.003 (tests/test_estimators_mlkr_cv.py
    # checks 1e-6 on well-conditioned data)
    np.testing.assert_allclose(model.scores_, grid_scores, rtol=1e-3, atol=1e-6)
    close = np.isclose(model.scores_, grid_scores, rtol=1e-6, atol=0)
    print(f"per-fold scores equal at rtol 1e-6: {int(close.sum())} of {close.size}")
    return model, search


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
