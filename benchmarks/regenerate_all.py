"""Regenerate every results file in one run, on one machine, one benchmark after another.

Each benchmark runs at its full size in its own process (the same Python), in the
order below, so that all of ``benchmarks/results/`` comes from the same machine and
session; each keeps its own protocol (reference libraries in child processes with
``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` unset, its own environment header).
``OPENBLAS_NUM_THREADS=1`` is set for the run (on a shared 2-core machine OpenBLAS's
threads made NumPy's small ``eigh`` 35x slower; see ``bench_weak.py``). At the end it
writes ``results/regenerate.md``: the environment header, and for every benchmark its
command, exit status and wall time (a failing benchmark is recorded, the run goes on).

Expect a few hours on 2 cores (measured separately: ``bench_quality.py`` 35 minutes,
``bench_weak.py``'s quality part 37 minutes, its speed part 8.5 minutes).
Run from the repository root::

    python benchmarks/regenerate_all.py                  # everything
    python benchmarks/regenerate_all.py --dry-run        # the commands, nothing run
    python benchmarks/regenerate_all.py --only sweep weak
    python benchmarks/regenerate_all.py --skip gpu comm
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: name -> (script, arguments): every ``bench_*.py`` of this folder, at full size.
PLAN = {
    "pairwise": ("bench_pairwise.py", []),
    "losses": ("bench_losses.py", []),
    "scale": ("bench_scale.py", []),
    "scaling": ("bench_scaling.py", []),
    "lmnn": ("bench_lmnn.py", []),
    "lmnn_weights": ("bench_lmnn_weights.py", []),
    "comm": ("bench_comm.py", []),
    "sweep": ("bench_sweep.py", []),
    "quality": ("bench_quality.py", []),
    "weak": ("bench_weak.py", []),
    "gpu": ("bench_gpu.py", []),
}


def _selected(only, skip):
    unknown = sorted((set(only or ()) | set(skip or ())) - set(PLAN))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {sorted(PLAN)}")
    return [name for name in PLAN if (not only or name in only) and name not in (skip or ())]


def _command(name):
    script, args = PLAN[name]
    return [sys.executable, str(HERE / script), *args]


def _header() -> str:
    sys.path.insert(0, str(HERE.parent))
    from benchmarks._timing import env_header

    return "\n".join(f"- {key}: {value}" for key, value in env_header().items())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", metavar="NAME", help=f"run only these ({', '.join(PLAN)})")
    ap.add_argument("--skip", nargs="*", metavar="NAME", default=[], help="leave these out")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    names = _selected(args.only, args.skip)
    if args.dry_run:
        for name in names:
            print(f"{name}: {' '.join(_command(name))}")
        return 0
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    rows, failed = [], 0
    for name in names:
        cmd = _command(name)
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent, env=env)
        seconds = time.perf_counter() - t0
        failed += rc != 0
        rows.append(f"| {name} | `{' '.join(cmd[1:])}` | {rc} | {seconds:.0f} |")
        print(f"== {name}: exit {rc} after {seconds:.0f} s", flush=True)
    report = [
        "# All results regenerated in one run",
        "",
        _header(),
        f"- OPENBLAS_NUM_THREADS: {env['OPENBLAS_NUM_THREADS']}",
        "",
        "| benchmark | command | exit status | wall time (s) |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    (RESULTS / "regenerate.md").write_text("\n".join(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
