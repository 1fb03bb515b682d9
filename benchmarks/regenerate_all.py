"""Regenerate every results file in one run, on one machine.

Each benchmark runs at its full size in its own process (the same Python), so that all
of ``benchmarks/results/`` comes from the same machine and session; each keeps its own
protocol (reference libraries in child processes with ``OPENBLAS_CORETYPE`` /
``OPENBLAS_L2_SIZE`` unset, its own environment header). The benchmarks run in the
caller's environment, so NumPy references use every core as they would for a user
(their best speed on large products), except the weakly supervised ones, which get
``OPENBLAS_NUM_THREADS=1``, their documented protocol: on a shared 2-core machine
OpenBLAS's threads made NumPy's small ``eigh`` 35x slower, so one thread is the
reference's best speed there (``bench_weak.py``). ``results/regenerate.md`` records the
commit and whether the working tree had changes.

Two phases:

1. **Timed** benchmarks (speed results), strictly one after another on an otherwise idle
   machine.
2. **Untimed** benchmarks (accuracy only: ``bench_quality.py`` and the quality part of
   ``bench_weak.py``), run side by side (``--jobs``, default 2): their results do not
   depend on the load, and on 2 cores this saves about half an hour. The fit times they
   print are not speed results.

``bench_gpu.py`` runs only where JAX sees a GPU; elsewhere it is recorded as skipped and
``results/gpu.md`` keeps the GPU run it holds (its header names the device and date).
At the end it writes ``results/regenerate.md``: the environment header, and for every
benchmark its phase, command, exit status and wall time (a failing benchmark is
recorded, the run goes on; the exit status is 1 then).

Expect about two hours on 2 cores (the run of ``results/regenerate.md``: 6,704 s in all;
pairwise 4 min, losses 18, scale 8, scaling 9, the weakly supervised speed part 8; quality
44 and the weakly supervised quality part 58, side by side), plus about 13 min for
``compile``, added to the plan after that run. Run from the repository root::

    python benchmarks/regenerate_all.py                  # everything
    python benchmarks/regenerate_all.py --dry-run        # the commands, nothing run
    python benchmarks/regenerate_all.py --only sweep weak_speed
    python benchmarks/regenerate_all.py --skip gpu comm
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time
from typing import NamedTuple

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"


class Bench(NamedTuple):
    """One benchmark command of the plan."""

    script: str
    args: tuple[str, ...] = ()
    timed: bool = True  # speed results: run alone; False: accuracy only, may share the CPU
    needs_gpu: bool = False  # skipped (results kept) where JAX sees no GPU
    env: tuple[tuple[str, str], ...] = ()  # set for this benchmark only


#: metric-learn's small eigendecompositions: one BLAS thread is its best speed (see above)
ONE_BLAS_THREAD = (("OPENBLAS_NUM_THREADS", "1"),)


#: name -> benchmark: every ``bench_*.py`` of this folder, at full size, in run order.
PLAN = {
    "pairwise": Bench("bench_pairwise.py"),
    "losses": Bench("bench_losses.py"),
    "compile": Bench("bench_compile.py"),
    "scale": Bench("bench_scale.py"),
    "scaling": Bench("bench_scaling.py"),
    "lmnn": Bench("bench_lmnn.py"),
    "lmnn_weights": Bench("bench_lmnn_weights.py"),
    "comm": Bench("bench_comm.py"),
    "sweep": Bench("bench_sweep.py"),
    "weak_speed": Bench("bench_weak.py", ("--part", "speed"), env=ONE_BLAS_THREAD),
    "gpu": Bench("bench_gpu.py", needs_gpu=True),
    "quality": Bench("bench_quality.py", timed=False),
    "weak_quality": Bench("bench_weak.py", ("--part", "quality"), timed=False, env=ONE_BLAS_THREAD),
}


def _selected(only, skip):
    unknown = sorted((set(only or ()) | set(skip or ())) - set(PLAN))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {sorted(PLAN)}")
    return [name for name in PLAN if (not only or name in only) and name not in (skip or ())]


def _command(name):
    bench = PLAN[name]
    return [sys.executable, str(HERE / bench.script), *bench.args]


def _header() -> str:
    sys.path.insert(0, str(HERE.parent))
    from benchmarks._timing import env_markdown

    return env_markdown()


def _has_gpu(env) -> bool:
    """Whether JAX, in a fresh process with the run's environment, picks a GPU."""
    code = "import jax; print(jax.default_backend())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == ["gpu"]


def _row(name, phase, cmd, rc, seconds):
    extra = " ".join(f"{k}={v}" for k, v in PLAN[name].env)
    shown = " ".join([str(pathlib.Path(cmd[1]).relative_to(HERE.parent)), *cmd[2:]])
    return f"| {name} | {phase} | `{shown}` | {extra or '-'} | {rc} | {seconds} |"


def _commit() -> str:
    """``git describe``-like: the commit, and ``+ changes`` if the tree differs from it."""
    git = ["git", "-C", str(HERE.parent)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        return "(not a git checkout)"
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def _run(names, jobs: int, phase: str, env) -> tuple[list[str], int]:
    """Run the benchmarks ``names``, at most ``jobs`` at a time, each in ``env`` plus its
    own settings: their report rows (in the order they end) and how many failed."""
    pending, running, rows, failed = list(names), {}, [], 0
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            cmd = _command(name)
            print(f"== {name} ({phase}): {' '.join(cmd)}", flush=True)
            proc = subprocess.Popen(cmd, cwd=HERE.parent, env={**env, **dict(PLAN[name].env)})
            running[name] = (cmd, proc, time.perf_counter())
        time.sleep(0.1)
        for name, (cmd, proc, t0) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            seconds = time.perf_counter() - t0
            failed += rc != 0
            rows.append(_row(name, phase, cmd, rc, f"{seconds:.0f}"))
            print(f"== {name}: exit {rc} after {seconds:.0f} s", flush=True)
            del running[name]
    return rows, failed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", metavar="NAME", help=f"run only these ({', '.join(PLAN)})")
    ap.add_argument("--skip", nargs="*", metavar="NAME", default=[], help="leave these out")
    ap.add_argument("--jobs", type=int, default=2, help="untimed benchmarks run side by side")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {args.jobs}")
    names = _selected(args.only, args.skip)
    timed = [n for n in names if PLAN[n].timed]
    untimed = [n for n in names if not PLAN[n].timed]
    if args.dry_run:
        for name in timed + untimed:
            print(f"{name}: {' '.join(_command(name))}")
        return 0
    env = dict(os.environ)
    commit = _commit()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    gpu = any(PLAN[n].needs_gpu for n in names) and _has_gpu(env)
    rows, failed, t_run = [], 0, time.perf_counter()
    for name in timed:  # one after another
        if PLAN[name].needs_gpu and not gpu:
            print(f"== {name}: skipped, JAX sees no GPU here", flush=True)
            rows.append(_row(name, "timed", _command(name), "skipped: no GPU (results kept)", "-"))
            continue
        done, bad = _run([name], 1, "timed", env)
        rows, failed = rows + done, failed + bad
    done, bad = _run(untimed, args.jobs, f"untimed ({args.jobs} side by side)", env)
    rows, failed = rows + done, failed + bad
    report = [
        "# All results regenerated in one run",
        "",
        _header(),
        f"- commit: {commit}",
        f"- OPENBLAS_NUM_THREADS: {env.get('OPENBLAS_NUM_THREADS', '(unset)')} (the run's; "
        "a benchmark's own settings are in its row)",
        f"- total wall time: {time.perf_counter() - t_run:.0f} s",
        "",
        "Timed benchmarks ran one after another on an otherwise idle machine; the untimed",
        "ones (accuracy only) ran after them, side by side.",
        "",
        "| benchmark | phase | command | environment | exit status | wall time (s) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    (RESULTS / "regenerate.md").write_text("\n".join(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
