"""Gradient of a scalar function of the pairwise distances: closed-form rules vs honest autodiff.

For ``loss = sum(sin(D))`` with ``D`` one of ``D(X)``, ``D(M)``, ``D(A)`` (self
distances), times ``jax.grad`` through metricjax's closed-form rules
(``mj.pairwise_sq_*``) against two autodiff baselines, all under ``jax.jit``:

* **plain** (THE baseline): ``jax.grad`` of the same centred expansion
  ``q_i + q_j - 2 X S X^T`` in plain ``jnp`` without custom rules
  (``metricjax.reference.expansion_sq_*``);
* **difference form**: ``jax.grad`` of the textbook ``(n, n, d)`` difference form
  (``metricjax.reference.pairwise_sq_*``), what a user who writes the formula gets.
  Run only where its XLA temporary memory fits ``--mem-budget``.

Grid: every distance x argument set (``D(X)``: x; ``D(M)``: x, metric, both;
``D(A)``: x, transform, both) x dtype (float32, float64) x ``n in {1024, 4096}`` x
``d in {16, 128}``. Per cell: compile time, median time (the implementations timed
in interleaved rounds, so that load on a shared machine hits them alike), XLA temp
memory, largest gradient difference relative to the plain baseline, the time ratio
plain / rules, and the machine **limit** for the work no implementation can avoid,
measured in the same process (see :func:`limits`), with the ratio rules / limit.

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
from metricjax._rules import mm  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64 cells; float32 inputs stay float32

RESULTS = Path(__file__).resolve().parent / "results"
IMPLS = ("rules", "plain", "diff")

# distance -> (rules, plain autodiff of the expansion, difference form)
DISTANCES = {
    "D(X)": (mj.pairwise_sq_euclidean, ref.expansion_sq_euclidean, ref.pairwise_sq_euclidean),
    "D(M)": (
        mj.pairwise_sq_mahalanobis,
        ref.expansion_sq_mahalanobis,
        ref.pairwise_sq_mahalanobis,
    ),
    "D(A)": (
        mj.pairwise_sq_transformed,
        ref.expansion_sq_transformed,
        ref.pairwise_sq_transformed,
    ),
}

# (distance, gradient with respect to, argnums, (n, n) x (n, d) products the limit counts)
# Products: the gradient with respect to x needs G and G^T applied to (n, d) arrays
# (sum_j (G_ij + G_ji) ...): two products; with respect to M only X^T G X: one;
# with respect to L, Z^T L_H X with H = G + G^T: two.
CASES = [
    ("D(X)", "x", (0,), 2),
    ("D(M)", "x", (0,), 2),
    ("D(M)", "metric", (1,), 1),
    ("D(M)", "both", (0, 1), 2),
    ("D(A)", "x", (0,), 2),
    ("D(A)", "transform", (1,), 2),
    ("D(A)", "both", (0, 1), 2),
]


def _loss(dist):
    return lambda *args: jnp.sum(jnp.sin(dist(*args)))


def make_args(name: str, n: int, d: int, dtype, seed: int = 0):
    """``x ~ N(0, 1)``; ``M = I + B B^T / d`` (SPD); ``L = I + 0.1 B`` is ``(d, d)``."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, d)), dtype)
    if name == "D(X)":
        return (x,)
    b = rng.standard_normal((d, d)) / np.sqrt(d)
    if name == "D(M)":
        return x, jnp.asarray(np.eye(d) + b @ b.T, dtype)
    return x, jnp.asarray(np.eye(d) + 0.1 * b, dtype)


def limits(n: int, d: int, dtype, *, repeats: int) -> dict:
    """Time the work a gradient of ``sum(sin(D))`` cannot avoid, on this machine, now.

    * ``fwd``: the distance product ``(n, d) x (d, n)`` written to a fresh ``n^2``
      buffer (page faults included), ``2 n^2 d`` FLOP;
    * ``cos``: one transcendental per pair (``jax.grad`` needs ``cos(D)``, not
      ``sin(D)``), reading ``D`` and writing the fresh ``n^2`` cotangent ``G``;
    * ``back_w``: ``G (n, n) x W (n, w)``, reading ``G`` once: the backward products,
      counted as one product of width ``w = p d`` for ``p`` products of width ``d``
      (a kernel that reads each tile of ``G`` once can serve ``G`` and ``G^T`` alike).

    The limit of a cell is ``fwd + cos + back_{p d}``; small ``(n, d)`` and ``(d, d)``
    work is left out. Every figure is a median after one warm-up run.
    """
    rng = np.random.default_rng(1)
    big = jnp.asarray(rng.standard_normal((n, n)), dtype)
    out = {}
    x = jnp.asarray(rng.standard_normal((n, d)), dtype)
    out["fwd"] = _median(lambda a: mm(a, a.T), x, repeats=repeats)
    out["cos"] = _median(jnp.cos, big, repeats=repeats)
    for p in (1, 2):
        w = jnp.asarray(rng.standard_normal((n, p * d)), dtype)
        out[f"back_{p}"] = _median(lambda g, w: mm(g, w), big, w, repeats=repeats)
    return out


def _median(f, *args, repeats):
    comp = _timing.compile_jit(f, *args)
    return _timing.median_time(comp.fn, *args, repeats=repeats)[0]


def run_cell(name, wrt, argnums, products, n, d, dtype, lim, *, repeats, budget, max_total_s):
    args = make_args(name, n, d, dtype)
    row = {
        "distance": name,
        "wrt": wrt,
        "n": n,
        "d": d,
        "dtype": jnp.dtype(dtype).name,
        "limit_s": lim["fwd"] + lim["cos"] + lim[f"back_{products}"],
        "limit_parts_s": {"fwd": lim["fwd"], "cos": lim["cos"], "back": lim[f"back_{products}"]},
    }
    compiled = {}
    for impl, dist in zip(IMPLS, DISTANCES[name]):
        comp = _timing.compile_jit(jax.grad(_loss(dist), argnums=argnums), *args)
        row[impl] = {"compile_s": comp.compile_s, "temp_bytes": comp.temp_bytes}
        if impl == "diff" and comp.temp_bytes > budget:
            row[impl]["skipped"] = f"needs {comp.temp_bytes / _timing.GIB:.1f} GiB"
        else:
            compiled[impl] = comp.fn
    meds, times, outs = _timing.interleaved_medians(
        compiled, *args, repeats=repeats, max_total_s=max_total_s
    )
    plain = [np.asarray(g, np.float64) for g in outs["plain"]]
    for impl in compiled:
        row[impl].update(median_s=meds[impl], times_s=times[impl], repeats=len(times[impl]))
        grads = [np.asarray(g, np.float64) for g in outs[impl]]
        row[impl]["rel_grad_diff"] = max(
            float(np.max(np.abs(g - p)) / np.max(np.abs(p))) for g, p in zip(grads, plain)
        )
    return row


# ----------------------------------------------------------------------------- output
def _ms(s):
    return f"{s * 1e3:.3g}" if s < 1 else f"{s * 1e3:.0f}"


def _mib(b):
    return f"{b / _timing.MIB:.3g}"


def table(rows) -> str:
    head = (
        "| distance | wrt | dtype | n | d | rules ms | plain ms | diff-form ms "
        "| plain / rules | rules temp MiB | plain temp MiB | diff temp MiB "
        "| compile s (rules, plain, diff) | rel. grad diff rules | rel. grad diff diff-form "
        "| limit ms | rules / limit |"
    )
    lines = [head, "|" + "---|" * 17]
    for r in rows:
        ru, pl, df = r["rules"], r["plain"], r["diff"]
        cells = [
            r["distance"],
            r["wrt"],
            r["dtype"],
            str(r["n"]),
            str(r["d"]),
            f"{_ms(ru['median_s'])} (k={ru['repeats']})",
            _ms(pl["median_s"]),
            df.get("skipped") or _ms(df["median_s"]),
            f"{pl['median_s'] / ru['median_s']:.2f}x",
            _mib(ru["temp_bytes"]),
            _mib(pl["temp_bytes"]),
            _mib(df["temp_bytes"]),
            f"{ru['compile_s']:.2f}, {pl['compile_s']:.2f}, {df['compile_s']:.2f}",
            f"{ru['rel_grad_diff']:.1e}",
            f"{df['rel_grad_diff']:.1e}" if "rel_grad_diff" in df else "n/a",
            _ms(r["limit_s"]),
            f"{ru['median_s'] / r['limit_s']:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows) -> str:
    slower = [r for r in rows if r["rules"]["median_s"] > r["plain"]["median_s"]]
    heavier = [r for r in rows if r["rules"]["temp_bytes"] > r["plain"]["temp_bytes"]]
    ratios = [r["plain"]["median_s"] / r["rules"]["median_s"] for r in rows]
    to_limit = [r["rules"]["median_s"] / r["limit_s"] for r in rows]

    def names(rs):
        return ", ".join(
            f"{r['distance']} {r['wrt']} {r['dtype']} n={r['n']} d={r['d']}" for r in rs
        )

    return "\n".join(
        [
            f"- cells: {len(rows)}; plain / rules time: min {min(ratios):.2f}x, "
            f"median {np.median(ratios):.2f}x, max {max(ratios):.2f}x",
            f"- rules slower than plain in {len(slower)} cells"
            + (f": {names(slower)}" if slower else ""),
            f"- rules temp memory above plain in {len(heavier)} cells"
            + (f": {names(heavier)}" if heavier else ""),
            f"- rules / limit: min {min(to_limit):.2f}x, median {np.median(to_limit):.2f}x, "
            f"max {max(to_limit):.2f}x; within 2x in "
            f"{sum(t <= 2 for t in to_limit)} of {len(rows)} cells",
            "",
        ]
    )


def header_md(env, args, elapsed_s) -> str:
    return "\n".join(
        [
            "# Pairwise-distance gradients: closed-form rules vs honest autodiff",
            "",
            "Gradient of `sum(sin(D))` (self distances) through metricjax's closed-form rules",
            "(`mj.pairwise_sq_*`, *rules*) vs `jax.grad` of the same centred expansion in plain",
            "`jnp` (`metricjax.reference.expansion_sq_*`, *plain*: the baseline) and of the",
            "`(n, n, d)` difference form (`metricjax.reference.pairwise_sq_*`, *diff-form*);",
            "all jitted. Time: median of k interleaved rounds after one warm-up round (the",
            "implementations alternate, so machine load hits them alike), each run ended by",
            "`jax.block_until_ready`. Memory: XLA temporary buffers",
            "(`compiled.memory_analysis().temp_size_in_bytes`; arguments and outputs excluded).",
            "Compile: trace + lower + compile. `rel. grad diff` = max abs(impl - plain) / max",
            "abs(plain), over the differentiated arguments. `limit`: this machine's time, in",
            "this process, for the work a gradient cannot avoid: the distance product written",
            "to a fresh n^2 buffer, n^2 cosines into a fresh n^2 buffer, and the backward",
            "(n, n) x (n, p d) product (p = 1 for the metric alone, else 2) — see `limits()`",
            "in `benchmarks/bench_pairwise.py`. Fresh n^2 buffers pay page faults (about",
            "50 ms per 128 MB here); the limit includes them, as every implementation pays them.",
            f"Difference-form runs needing more than {args.mem_budget:g} GiB of temp memory are",
            "skipped (their compiled temp memory is still shown). `D(A)` uses a square `(d, d)`",
            "transform; `D(M)` an SPD metric.",
            "",
            f"- date: {env['date']}",
            f"- CPU: {env['cpu_model']}; CPU count {env['cpu_count']} (usable: {env['cpu_affinity']})",
            f"- load average before / after: {env['load_before']} / {env['load_after']}",
            f"- BLAS (threadpoolctl): {env['blas']}",
            f"- jax {env['jax']}, jaxlib {env['jaxlib']}; devices: {', '.join(env['devices'])}",
            f"- GLIBC_TUNABLES: `{env['GLIBC_TUNABLES']}`; XLA_FLAGS: `{env['XLA_FLAGS']}`",
            f"- python: {env['python']}, {env['platform']}",
            f"- total benchmark time: {elapsed_s:.0f} s",
            "",
            "",
        ]
    )


NOTES = """
## How the rules differ from plain autodiff (what the ratios measure)

Both sides evaluate the centred expansion and both need, for the gradient with respect
to the points, the products `G W` and `G^T W` of the `(n, n)` cotangent `G` with
`(n, d)` arrays (`G^T W` reads `G` by columns: XLA's CPU kernel for it is several times
slower than for `G W`, and neither side can avoid it without an `n^2` transpose, which
is slower still). The rules win by what they leave out:

* no `n^2` elementwise pass in the backward: the factor `-2` of `-2 X S X^T` sits on the
  `(n, d)` tangent, where plain autodiff multiplies the `(n, n)` cotangent by it;
* half the forward products: the self distances are computed in `(256, 256)` tiles on
  and above the diagonal and mirrored (`metricjax._rules._sym_expansion`), which also
  makes `D` bitwise symmetric; plain autodiff computes the whole `X S X^T`;
* for `D(M)` with respect to `M` alone, one `(n, n) x (n, d)` product (`G X`).

They pay for one zero-initialised `n^2` buffer that the tiles are written into (XLA has
no uninitialised arrays), a `while` loop over the tiles, and the exact zero diagonal.
Where the forward product is cheap (`d = 16`) and the backward has a single fast product
(`D(M)` with respect to `M` alone), the saving and the cost are of the same size: expect
a ratio near 1 there, on either side of it from run to run on a shared machine.

The limit counts one full `(n, d) x (d, n)` product written to a fresh buffer, so the
rules' forward (half the product) can beat that part of it; `rules / limit` below 1 in
a part does not mean the limit is wrong, only that it is a conservative model. The
backward part of the limit is the fast layout (`G W`, one read of `G`): the gap between
`rules` and `limit` is mostly XLA's slow `G^T W` and the extra passes over `n^2` arrays
(row and column sums of `G`, the zero initialisation).
"""


def recheck(args) -> None:
    """Re-time the cells where the rules lost, with more rounds, in a separate run."""
    payload = json.loads((args.out / "pairwise.json").read_text())
    lost = [r for r in payload["rows"] if r["rules"]["median_s"] > r["plain"]["median_s"]]
    cases = {(c[0], c[1]): c for c in CASES}
    load_before = _timing.load_average()
    rows = []
    for r in lost:
        name, wrt, argnums, products = cases[(r["distance"], r["wrt"])]
        dtype = jnp.dtype(r["dtype"])
        lim = limits(r["n"], r["d"], dtype, repeats=args.repeats)
        row = run_cell(
            name,
            wrt,
            argnums,
            products,
            r["n"],
            r["d"],
            dtype,
            lim,
            repeats=args.recheck,
            budget=0,
            max_total_s=None,
        )
        rows.append(row)
        print(
            f"{name} wrt {wrt} {row['dtype']} n={r['n']} d={r['d']}: rules "
            f"{row['rules']['median_s'] * 1e3:.1f} ms, plain {row['plain']['median_s'] * 1e3:.1f} ms",
            flush=True,
        )
    head = [
        "",
        f"## Re-check: the {len(lost)} cells where the rules were slower, {args.recheck} rounds",
        "",
        f"A separate run of `--recheck {args.recheck}` on {_timing.env_header()['date']}, "
        f"load average before / after: {load_before} / {_timing.load_average()}. The "
        "difference form is not re-run.",
        "",
    ]
    md = (args.out / "pairwise.md").read_text() + "\n".join(head) + "\n"
    if rows:
        md += summary(rows) + "\n" + table(rows) + "\n"
    (args.out / "pairwise.md").write_text(md)
    payload["recheck"] = {"rounds": args.recheck, "load_before": load_before, "rows": rows}
    (args.out / "pairwise.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"appended to {args.out / 'pairwise.md'}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, no result files")
    p.add_argument("--mem-budget", type=float, default=0.75, help="GiB of diff-form temp memory")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per cell")
    p.add_argument(
        "--max-time-per-config",
        type=float,
        default=6.0,
        help="seconds of timed rounds per cell; slow cells get fewer rounds (>= 3)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    p.add_argument(
        "--recheck",
        type=int,
        default=0,
        metavar="K",
        help="re-time, with K rounds, the cells of OUT/pairwise.json where the rules were "
        "slower than plain, and append the result to pairwise.md/.json",
    )
    args = p.parse_args(argv)
    if args.recheck:
        recheck(args)
        return

    if args.quick:
        sizes = [(n, d) for n in (16, 64) for d in (3, 8)]
        args.repeats = 3
    else:
        sizes = [(n, d) for n in (1024, 4096) for d in (16, 128)]
    budget = args.mem_budget * _timing.GIB
    env = _timing.env_header()
    env["load_before"] = _timing.load_average()
    print(f"jax {env['jax']} on {env['devices']}, {env['cpu_model']}", flush=True)

    t_start = time.perf_counter()
    rows = []
    for dtype in (jnp.float32, jnp.float64):
        for n, d in sizes:
            lim = limits(n, d, dtype, repeats=args.repeats)
            for name, wrt, argnums, products in CASES:
                row = run_cell(
                    name,
                    wrt,
                    argnums,
                    products,
                    n,
                    d,
                    dtype,
                    lim,
                    repeats=args.repeats,
                    budget=budget,
                    max_total_s=args.max_time_per_config,
                )
                rows.append(row)
                print(
                    f"{name} wrt {wrt:9s} {row['dtype']} n={n:5d} d={d:4d}: "
                    f"rules {row['rules']['median_s'] * 1e3:.1f} ms, "
                    f"plain {row['plain']['median_s'] * 1e3:.1f} ms, "
                    f"limit {row['limit_s'] * 1e3:.1f} ms",
                    flush=True,
                )
    elapsed = time.perf_counter() - t_start
    env["load_after"] = _timing.load_average()

    md = header_md(env, args, elapsed) + summary(rows) + "\n" + table(rows) + "\n" + NOTES
    print()
    print(md)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pairwise.md").write_text(md)
        payload = {
            "env": env,
            "settings": {
                "loss": "sum(sin(D))",
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
