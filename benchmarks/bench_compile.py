"""First-fit compile time of the estimators, each in a fresh process (issue 12, item 5).

What a user waits for on the first ``fit`` of a session: ``mj.MLKR``, ``mj.NCA`` and
``mj.LMNN`` (the problems of ``bench_losses.py``'s whole-fit table: d = 20, the identity
as the initial map) at n = 500, 2000 and 5000, float64 and float32. Each measurement is
a new Python process that imports metricjax and fits twice; the first fit's time minus
the second's (the same fit, compiled) is the compile time, and the process's JAX
events during the first fit split it into tracing, lowering to MLIR and XLA's
compilation. The fits are capped at 20 iterations (``tol=0``): the compiled programs are
those of a full fit (the iteration cap is a traced argument), and short fits keep the
difference precise. Medians of ``--repeat`` processes (default 3).

Persistent cache: JAX can keep compiled programs on disk between sessions
(``jax_compilation_cache_dir``). For n = 2000 one process fills an empty cache and a
second one fits with it; its first fit's extra time is in the last columns. Both set
``jax_persistent_cache_min_compile_time_secs = 0`` and
``jax_persistent_cache_min_entry_size_bytes = -1`` (cache every program, as JAX's
documentation shows for small programs).

Writes ``benchmarks/results/compile.md``. ``python benchmarks/bench_compile.py``
(about 10 minutes on 2 cores) or ``--quick`` (n = 500 only, one process per cell).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

HERE = pathlib.Path(__file__).resolve().parent
KINDS = ("MLKR", "NCA", "LMNN")
D = 20
ITERS = 20


def child(kind: str, n: int, dtype: str, cache: str | None) -> dict:
    """One fresh process's measurement (run with ``--child``)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    events: dict[str, float] = {}

    def listen(name, seconds, **kwargs):
        events[name] = events.get(name, 0.0) + seconds

    import metricjax as mj

    sys.path.insert(0, str(HERE))
    from bench_losses import _same_start, classification_data, regression_data

    x, y = regression_data(n, D) if kind == "MLKR" else classification_data(n, D)
    x = x.astype(dtype)
    y = y.astype(dtype) if kind == "MLKR" else y

    def one_fit():
        est = getattr(mj, kind)(**_same_start(kind, D), max_iter=ITERS, tol=0)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # capped on purpose: "did not converge"
            est.fit(x, y)
        return time.perf_counter() - t0

    jax.monitoring.register_event_duration_secs_listener(listen)
    first = one_fit()
    seen = dict(events)
    second = min(one_fit() for _ in range(2))
    key = "/jax/core/compile/"
    return {
        "first": first,
        "second": second,
        "trace": seen.get(key + "jaxpr_trace_duration", 0.0),
        "lower": seen.get(key + "jaxpr_to_mlir_module_duration", 0.0),
        "xla": seen.get(key + "backend_compile_duration", 0.0),
    }


def _spawn(kind, n, dtype, cache=None) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps([kind, n, dtype, cache])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{kind} n={n} {dtype} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="processes per cell; medians reported")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return
    sys.path.insert(0, str(HERE))
    from _timing import env_markdown, load_average

    load_before = load_average()
    sizes = (500,) if args.quick else (500, 2000, 5000)
    repeat = 1 if args.quick else args.repeat
    cache_n = sizes[-1] if args.quick else 2000
    rows = []
    for n in sizes:
        for kind in KINDS:
            for dtype in ("float64", "float32"):
                runs = [_spawn(kind, n, dtype) for _ in range(repeat)]
                row = {"kind": kind, "n": n, "dtype": dtype, "runs": runs}
                for key in ("first", "second", "trace", "lower", "xla"):
                    row[key] = statistics.median(r[key] for r in runs)
                row["compile"] = statistics.median(r["first"] - r["second"] for r in runs)
                row["all"] = [r["first"] - r["second"] for r in runs]
                if n == cache_n:
                    with tempfile.TemporaryDirectory() as cache:
                        _spawn(kind, n, dtype, cache)  # fills the cache
                        warm = _spawn(kind, n, dtype, cache)
                    row["cached"] = warm["first"] - warm["second"]
                print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
                rows.append(row)
    worst = max(r["compile"] for r in rows)
    over = [r for r in rows if r["compile"] >= 2.0]
    lines = [
        "# First-fit compile time (each measurement a fresh process)",
        "",
        env_markdown(),
        f"- load average before the run: {load_before}",
        "",
        f"d = {D}; the estimators of bench_losses.py's whole fits, capped at {ITERS} "
        f"iterations (tol = 0); compile s = first fit - second fit of the process, the "
        f"median of {repeat} processes (each value in the last column); trace, lower and "
        "XLA s: JAX's compile events during the first fit (medians). Cached: a second "
        "process with JAX's persistent compilation cache filled by a first one.",
        "",
        "| estimator | n | dtype | first fit s | second fit s | compile s | trace s | "
        "lower s | XLA s | compile s, persistent cache | each process's compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cached = f"{r['cached']:.2f}" if "cached" in r else ""
        lines.append(
            f"| {r['kind']} | {r['n']} | {r['dtype']} | {r['first']:.2f} | {r['second']:.3f} | "
            f"{r['compile']:.2f} | {r['trace']:.2f} | {r['lower']:.2f} | {r['xla']:.2f} | "
            f"{cached} | {', '.join(f'{v:.2f}' for v in r['all'])} |"
        )
    verdict = (
        f"Target (issue 12): under 2 s. Met in every cell (largest median {worst:.2f} s)."
        if not over else
        f"Target (issue 12): under 2 s. Missed in {len(over)} of {len(rows)} cells: "
        + ", ".join(f"{r['kind']} n = {r['n']} {r['dtype']} {r['compile']:.2f} s" for r in over)
        + "."
    )  # fmt: skip
    lines += ["", verdict]
    text = "\n".join(lines) + "\n"
    print(text)
    name = "compile_quick.md" if args.quick else "compile.md"
    (HERE / "results" / name).write_text(text)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
