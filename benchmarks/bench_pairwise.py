"""Gradient of a scalar function of the pairwise distances: closed-form rules vs autodiff.

For ``loss = sum(sin(D))`` with ``D`` one of ``D(X)``, ``D(M)``, ``D(A)`` (self
distances, float32), times ``jax.grad`` of the loss through metricjax's closed-form
rules against ``jax.grad`` through :mod:`metricjax.reference` (difference form with an
``(n, n, d)`` intermediate), both under ``jax.jit``. For each configuration it records

* compile time (trace + lower + XLA compile),
* median wall time of ``k`` runs after one warm-up run,
* XLA temporary memory (``memory_analysis().temp_size_in_bytes``), and
* the largest gradient difference relative to the largest reference gradient entry.

A reference whose temporary memory (read from the compiled program, before running)
exceeds ``--mem-budget`` GiB is not run and is recorded as skipped.

Usage (from the repository root)::

    python benchmarks/bench_pairwise.py            # full grid, writes benchmarks/results/
    python benchmarks/bench_pairwise.py --quick    # tiny smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _timing  # noqa: E402

import metricjax as mj  # noqa: E402
from metricjax import reference as ref  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _loss(dist):
    return lambda *args: jnp.sum(jnp.sin(dist(*args)))


# (distance, gradient with respect to, argnum, closed form, reference)
CASES = [
    ("D(X)", "x", 0, mj.pairwise_sq_euclidean, ref.pairwise_sq_euclidean),
    ("D(M)", "x", 0, mj.pairwise_sq_mahalanobis, ref.pairwise_sq_mahalanobis),
    ("D(M)", "metric", 1, mj.pairwise_sq_mahalanobis, ref.pairwise_sq_mahalanobis),
    ("D(A)", "x", 0, mj.pairwise_sq_transformed, ref.pairwise_sq_transformed),
    ("D(A)", "transform", 1, mj.pairwise_sq_transformed, ref.pairwise_sq_transformed),
]


def make_args(name: str, n: int, d: int, seed: int = 0):
    """float32 inputs: ``x ~ N(0, 1)``; ``M = I + B B^T / d`` (SPD); ``L`` is ``(d, d)``."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    if name == "D(X)":
        return (x,)
    b = rng.standard_normal((d, d)) / np.sqrt(d)
    if name == "D(M)":
        return x, jnp.asarray(np.eye(d) + b @ b.T, jnp.float32)
    return x, jnp.asarray(np.eye(d) + 0.1 * b, jnp.float32)


def run_one(name, wrt, argnum, closed, reference, n, d, *, repeats, budget_bytes, max_total_s):
    args = make_args(name, n, d)
    row = {"distance": name, "wrt": wrt, "n": n, "d": d}
    grads = {}
    for impl, dist in (("closed", closed), ("reference", reference)):
        comp = _timing.compile_jit(jax.grad(_loss(dist), argnums=argnum), *args)
        entry = {"compile_s": comp.compile_s, "temp_bytes": comp.temp_bytes}
        if impl == "reference" and comp.temp_bytes > budget_bytes:
            entry["skipped"] = f"skipped (needs {comp.temp_bytes / _timing.GIB:.1f} GiB)"
        else:
            med, times, out = _timing.median_time(
                comp.fn, *args, repeats=repeats, max_total_s=max_total_s
            )
            entry.update(median_s=med, times_s=times, repeats=len(times))
            grads[impl] = np.asarray(out, np.float64)
        del comp
        row[impl] = entry
    if len(grads) == 2:
        scale = np.max(np.abs(grads["reference"]))
        row["rel_grad_diff"] = float(np.max(np.abs(grads["closed"] - grads["reference"])) / scale)
    return row


def _fmt_s(s):
    return f"{s * 1e3:.3g}" if s < 1 else f"{s * 1e3:.0f}"


def table(rows) -> str:
    head = (
        "| distance | grad wrt | n | d | closed: compile s | closed: ms | closed: temp MiB "
        "| reference: compile s | reference: ms | reference: temp MiB "
        "| time ratio ref/closed | memory ratio ref/closed | rel. grad diff |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        c, f = r["closed"], r["reference"]
        mib = _timing.MIB
        cells = [
            r["distance"],
            r["wrt"],
            str(r["n"]),
            str(r["d"]),
            f"{c['compile_s']:.2f}",
            f"{_fmt_s(c['median_s'])} (k={c['repeats']})",
            f"{c['temp_bytes'] / mib:.3g}",
            f"{f['compile_s']:.2f}",
        ]
        if "skipped" in f:
            cells += [f["skipped"], f"{f['temp_bytes'] / mib:.0f}", "n/a"]
        else:
            cells += [
                f"{_fmt_s(f['median_s'])} (k={f['repeats']})",
                f"{f['temp_bytes'] / mib:.3g}",
                f"{f['median_s'] / c['median_s']:.1f}x",
            ]
        cells.append(f"{f['temp_bytes'] / max(c['temp_bytes'], 1):.1f}x")
        cells.append(f"{r['rel_grad_diff']:.1e}" if "rel_grad_diff" in r else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header_md(env, args, elapsed_s) -> str:
    return "\n".join(
        [
            "# Pairwise-distance gradients: closed-form rules vs autodiff reference",
            "",
            "Gradient of `sum(sin(D))` (self distances, float32) through metricjax's closed-form",
            "rules (`mj.pairwise_sq_*`) vs `jax.grad` of `metricjax.reference` (difference form,",
            "`(n, n, d)` intermediate); both jitted. Time: median of k runs after one warm-up,",
            "each ended by `jax.block_until_ready`. Memory: XLA temporary buffers from",
            "`jax.jit(f).lower(args).compile().memory_analysis().temp_size_in_bytes` (arguments",
            "and outputs excluded). Compile: trace + lower + compile. Ratios come from the same",
            "run. `rel. grad diff` = max abs(closed - reference) / max abs(reference).",
            f"References needing more than {args.mem_budget:g} GiB of temp memory are not run.",
            "For skipped rows the memory ratio uses the compiled (not run) reference.",
            "`D(A)` uses a square `(d, d)` transform. Timings on a shared machine vary from run",
            "to run; compare ratios within one run.",
            "",
            f"- date: {env['date']}",
            f"- jax: {env['jax']}",
            f"- devices: {', '.join(env['devices'])}",
            f"- CPU count: {env['cpu_count']} (usable by this process: {env['cpu_affinity']})",
            f"- GLIBC_TUNABLES: `{env['GLIBC_TUNABLES']}`",
            f"- XLA_FLAGS: `{env['XLA_FLAGS']}`",
            f"- python: {env['python']}, {env['platform']}",
            f"- total benchmark time: {elapsed_s:.0f} s",
            "",
            "",
        ]
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, no result files")
    p.add_argument("--mem-budget", type=float, default=6.0, help="GiB of XLA temp memory")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per configuration")
    p.add_argument(
        "--max-time-per-config",
        type=float,
        default=5.0,
        help="seconds of timed runs per configuration; slow ones get fewer repeats (>= 3)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = p.parse_args(argv)

    if args.quick:
        sizes = [(n, d) for n in (16, 64) for d in (3, 8)]
        args.repeats = 3
    else:
        sizes = [(n, d) for n in (256, 1024, 4096) for d in (16, 128)]
    budget = args.mem_budget * _timing.GIB
    env = _timing.env_header()
    print(f"jax {env['jax']} on {env['devices']}, {env['cpu_count']} CPUs", flush=True)

    t_start = time.perf_counter()
    rows = []
    for n, d in sizes:
        for case in CASES:
            row = run_one(
                *case,
                n,
                d,
                repeats=args.repeats,
                budget_bytes=budget,
                max_total_s=args.max_time_per_config,
            )
            rows.append(row)
            ref_txt = row["reference"].get("skipped") or f"{row['reference']['median_s']:.4f} s"
            print(
                f"{row['distance']:5s} wrt {row['wrt']:9s} n={n:5d} d={d:4d}: "
                f"closed {row['closed']['median_s']:.4f} s, reference {ref_txt}",
                flush=True,
            )
    elapsed = time.perf_counter() - t_start

    md = header_md(env, args, elapsed) + table(rows) + "\n"
    print()
    print(md)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pairwise.md").write_text(md)
        payload = {
            "env": env,
            "settings": {
                "loss": "sum(sin(D))",
                "dtype": "float32",
                "mem_budget_gib": args.mem_budget,
                "repeats": args.repeats,
                "max_time_per_config_s": args.max_time_per_config,
                "total_time_s": elapsed,
            },
            "rows": rows,
        }
        (args.out / "pairwise.json").write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.out / 'pairwise.md'} and {args.out / 'pairwise.json'}")


if __name__ == "__main__":
    main()
