"""The example scripts run end to end at a tiny budget, print their results and save figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# script -> (figures it saves, lines its output must contain)
CASES = {
    "01_pairwise_and_grad.py": (
        ["01_float32_offset.png"],
        [
            "D(X) = pairwise_sq_euclidean(x)",
            "max |D(M) - D(A)|",
            "max |g - g_reference|",
            "max diff jacfwd",
            "naive expansion:",
            "relative error of the recovered metric",
        ],
    ),
    "02_mlkr_regression.py": (
        ["02_mlkr_regression.png"],
        [
            "test MSE",
            "Euclidean, L = I",
            "(LOO-tuned)",
            "MLKR, plain (lam = 0)",
            "noise share of trace(L^T L)",
            "MLKR test MSE",
        ],
    ),
    "03_nca_iris.py": (
        ["03_nca.png"],
        [
            "test acc",
            "Euclidean (13-D)",
            "metricjax NCA, full 13 x 13",
            "metricjax NCA, 2-D",
            "scikit-learn NCA, 2-D",
            "2-D NCA:",
        ],
    ),
    "08_mlkr_alpha_grid.py": (
        ["05_mlkr_alpha.png"],
        ["test R²", "k-NN alone (CV-tuned k)", "MLKR(3, alpha=0.0)", "GridSearchCV chose alpha"],
    ),
    "04_flax_metric_head.py": (
        ["04_flax_metric_head.png"],
        [
            "3-NN test acc",
            "raw pixels (64-D)",
            "PCA of the pixels (8-D)",
            "learned metric head (8-D)",
            "learned metric head (2-D)",
            "metric head:",
        ],
    ),
    "05_pairs_itml.py": (
        ["05_pairs_itml.png"],
        [
            "held-out pairs      ROC AUC",
            "Euclidean",
            "ITML fit:",
            "ITML held-out ROC AUC",
        ],
    ),
    "06_multi_process.py": ([], ["2 processes, 2 devices", "L-BFGS iterations"]),
}


def run_example(script, out, *extra):
    env = dict(os.environ, MPLBACKEND="Agg", JAX_NUMPY_RANK_PROMOTION="raise")
    cmd = [sys.executable, str(EXAMPLES / script), "--max-iter", "5", "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script, tmp_path):
    out = tmp_path / "figures"  # does not exist yet: the script must create it
    proc = run_example(script, out)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    figures, lines = CASES[script]
    for name in figures:
        path = out / name
        assert path.is_file(), f"{script} did not save {name}"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        assert path.stat().st_size > 10_000, f"{name} looks empty"
    for line in lines:
        assert line in proc.stdout, f"{script} did not print {line!r}:\n{proc.stdout}"


# examples whose run is tested in another file (their own command-line options)
TESTED_ELSEWHERE = {"07_sweep.py": "tests/test_sweep.py"}


def test_examples_are_documented():
    scripts = sorted(p.name for p in EXAMPLES.glob("[0-9]*.py"))
    assert sorted(set(scripts) - set(TESTED_ELSEWHERE)) == sorted(CASES), (
        "every example script needs a test case here"
    )
    for script, where in TESTED_ELSEWHERE.items():
        assert script in (EXAMPLES.parent / where).read_text()
    readme = (EXAMPLES / "README.md").read_text()
    for name in scripts:
        assert f"examples/{name}" in readme, f"examples/README.md does not mention {name}"
