"""``benchmarks/bench_gpu.py`` runs end to end on a CPU (``--quick``) and reports failures."""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
SECTIONS = ("rates", "accuracy", "losses", "fit", "distances")
HEADINGS = (
    "## Device limits (measured)",
    "## float32 far from the origin",
    "## One loss + gradient",
    "## Whole fit",
    "## Distance rules",
)


def _run(out: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--quick", "--out", str(out), *extra]
    # a smoke test: it inherits the test run's XLA flags (conftest.py: cheaper CPU
    # code generation) and its compilation cache
    env = dict(os.environ)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_quick")
    # budget + grace stays below the 120 s timeout: the script always ends by itself
    proc = _run(out, "--budget", "100", "--grace", "10")
    return proc, out


def test_quick_run_writes_markdown_and_json(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "gpu.md").read_text()
    for heading in HEADINGS:
        assert heading in md, heading
    for field in ("- date:", "- device:", "- JAX:", "- CPU:", "- command:", "bench_gpu.py"):
        assert field in md, field
    assert md.strip() in proc.stdout  # the markdown is printed too
    data = json.loads((out / "gpu.json").read_text())
    assert {"env", "settings", *SECTIONS} <= set(data)
    assert data["env"]["backend"] == "cpu"
    assert data["env"]["device_kind"]
    assert "stopped" not in data["env"]


def test_quick_run_every_case_succeeds(quick_run):
    _, out = quick_run
    data = json.loads((out / "gpu.json").read_text())
    for section in SECTIONS:
        rows = data[section]
        assert rows, section
        bad = [r for r in rows if r.get("status") != "ok"]
        assert not bad, (section, bad)
    losses = {(r["loss"], r["dtype"]) for r in data["losses"]}
    assert losses == {(name, dt) for name in ("MLKR", "NCA", "LMNN")
                      for dt in ("float32", "float64")}
    assert {r["distance"] for r in data["distances"]} == {"D(X)", "D(A)", "D(M)"}


def test_quick_run_numbers_are_consistent(quick_run):
    """The dense twins agree with metricjax; float32 stays accurate far from the origin."""
    _, out = quick_run
    data = json.loads((out / "gpu.json").read_text())
    for r in data["losses"]:
        tol = 1e-4 if r["dtype"] == "float32" else 1e-10
        assert r["dense"] == "ok", r
        assert r["rel_loss_diff"] < tol and r["rel_grad_diff"] < tol, r
        assert r["floor_s"] > 0 and r["best_s"] > 0
    for r in data["distances"]:
        assert r["rel_grad_diff"] < 1e-4, r
    for r in data["fit"]:
        assert r["iterations"] >= 1 and r["final_loss"] < r["initial_loss"], r
    (acc,) = data["accuracy"]
    for name in ("D(X)", "D(M)", "D(A)"):
        assert acc[name] < 1e-4 and acc[f"{name}_diag"] == 0.0
    assert acc["mlkr_loss"] < 1e-5 and acc["mlkr_grad"] < 1e-5
    kinds = {(r["dtype"], r["kind"]) for r in data["rates"]}
    assert kinds == {(dt, k) for dt in ("float32", "float64") for k in ("matmul", "exp")}


def test_exhausted_budget_skips_every_case_with_a_note(tmp_path):
    proc = _run(tmp_path, "--budget", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu.json").read_text())
    rows = [r for s in SECTIONS for r in data[s]]
    assert rows and all(r["status"] == "skipped: time budget used up" for r in rows)
    md = (tmp_path / "gpu.md").read_text()
    assert "skipped: time budget used up" in md
    assert all(h in md for h in HEADINGS)


def test_watchdog_ends_the_run_and_keeps_the_results(tmp_path):
    t0 = time.perf_counter()
    proc = _run(tmp_path, "--budget", "1", "--grace", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.perf_counter() - t0 < 60
    data = json.loads((tmp_path / "gpu.json").read_text())
    md = (tmp_path / "gpu.md").read_text()
    assert all(h in md for h in HEADINGS)
    if "stopped" in data["env"]:  # the watchdog fired (a slow or loaded machine)
        assert data["env"]["stopped"].startswith("watchdog after 2 s")
        assert "**stopped early**: watchdog" in md
    else:  # the budget check stopped the run (skipping the rest) before the watchdog's time
        rows = [r for s in SECTIONS for r in data[s]]
        assert rows and any(r.get("status", "").startswith("skipped: time budget") for r in rows)
        assert data["env"]["total_s"] < 2 + 1


def test_a_failing_case_is_recorded_not_raised(tmp_path):
    from benchmarks import bench_gpu

    args = argparse.Namespace(out=tmp_path, budget=60.0, grace=5.0, repeats=3, block_gib=1.0,
                              sizes={}, quick=True, verbose=False, max_time_per_case=1.0)
    run = bench_gpu.Run(args, {"date": "d", "device_kind": "cpu", "backend": "cpu",
                               "device_count": 1, "jax": "j", "jaxlib": "j", "metricjax": "m",
                               "python": "p", "cpu_model": "c", "cpu_count": 1,
                               "command": "c", "XLA_FLAGS": "", "XLA_PYTHON_CLIENT_PREALLOCATE": ""})

    def boom(row):
        raise FloatingPointError("bad | news\nsecond line")

    def fine(row):
        row.update(first_s=2.0, second_s=1.0, iterations=3, ms_per_iter=333.0, converged=True,
                   initial_loss=9.0, final_loss=1.0)

    run.case("fit", {"dtype": "float32", "n": 5, "max_iter": 1}, boom)
    run.case("fit", {"dtype": "float64", "n": 5, "max_iter": 1}, fine)
    run.case("distances", {"distance": "D(X)"}, lambda row: None)  # malformed: no fields
    rows = json.loads((tmp_path / "gpu.json").read_text())["fit"]
    assert rows[0]["status"].startswith("error: FloatingPointError: bad / news second line")
    assert rows[1]["status"] == "ok"
    md = (tmp_path / "gpu.md").read_text()
    assert "error: FloatingPointError" in md
    assert "| float64 | 5 | 1 | 2.00 | 1.00 | 3 |" in md
    assert "(this table could not be rendered: KeyError" in md  # the other tables survive
    assert all(h in md for h in HEADINGS)
