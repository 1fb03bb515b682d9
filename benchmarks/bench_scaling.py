"""The scaling figure: one loss + gradient of MLKR, NCA and LMNN vs n, beside the machine's limit.

For ``n`` from 1,000 to 100,000 (``d = k = 20``, float32 by default), each loss's
``jax.jit(jax.value_and_grad(loss))`` with respect to ``L``, default settings
(``block_size="auto"``), each measurement in a fresh process so that its peak resident
memory (``ru_maxrss``) is its own:

* **time**: the median of the calls after the first (one call is enough past 20 s);
* **peak memory**: the process's peak RSS (Python, JAX, the data, compilation and the
  run) and XLA's temporary buffers of the compiled program;
* **the limit**: the work the computation cannot avoid, at the rates this machine
  reaches (measured once, in a child, on an in-cache ``1024 x 4096`` block, the
  fastest of 15 calls): for MLKR and NCA ``n^2`` exps (a fused exp + row sum), the distance
  matmul ``(n, k) x (k, n)`` and the gradient matmul ``(n, n) x (n, d)``
  (``benchmarks/bench_losses.py``'s ``machine_floor``, the model of
  ``machine_limits.py``); for LMNN the same two matmuls and one fused hinge
  ``max(0, 1 + a_i - D_il)`` + row sum per target neighbour (``3 n^2`` elements).
  The limit assumes every ``n^2`` pass runs at its in-cache rate; it ignores the
  target-neighbour search of LMNN (done once per fit, timed separately here).

LMNN's target neighbours (3 per point, 3 classes) are searched before the timing, on
the device (the traceable search ``lmnn_loss`` runs with ``sample_weight``), and
passed as ``target_neighbors``.

Writes ``benchmarks/results/scaling.md``, ``scaling.json`` and ``scaling.png`` (time
and peak memory vs n, the limit lines dashed; the memory panel also draws what one
dense ``n x n`` float32 matrix would take). ``python benchmarks/bench_scaling.py``
(about 10 minutes on 2 cores), ``--quick`` for a smoke test (small sizes, writes to a
temporary folder), ``--report-only`` to redraw from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_scale import _child as _run_child  # noqa: E402
from bench_scale import _peak_rss_bytes, _powerlaw, regression_data  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"
MIB = 2**20
LOSSES = ("MLKR", "NCA", "LMNN")
D = K = 20
TARGETS = 3  # LMNN target neighbours per point


def _child(args: list[str]) -> dict:
    """This script with ``args`` in a fresh process (its last JSON line)."""
    return _run_child(args, timeout=3600, script=__file__)


def _data(n: int):
    """Regression targets (MLKR) and 3 classes from their terciles (NCA, LMNN)."""
    import numpy as np

    x, y = regression_data(n, D)
    labels = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    return x, y, labels


def child_eval(loss: str, n: int, dtype: str, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from metricjax.losses import _lmnn as lmnn_impl
    from metricjax.losses import lmnn_loss, mlkr_loss, nca_loss
    from metricjax.losses._engine import block_rows

    jax.config.update("jax_enable_x64", dtype == "float64")
    x, y, labels = _data(n)
    L = jnp.asarray(0.5 * np.eye(K, D), dtype)
    x = jnp.asarray(x, dtype)
    search_s = None
    if loss == "MLKR":
        f, args = lambda L, x, y: mlkr_loss(L, x, y), (jnp.asarray(y, dtype),)
    elif loss == "NCA":
        f, args = lambda L, x, c: nca_loss(L, x, c, num_classes=3), (jnp.asarray(labels),)
    else:
        codes = jnp.asarray(labels, jnp.int32)
        b = block_rows("auto", n, n, jnp.dtype(dtype).itemsize, arrays_per_pair=4)
        search = jax.jit(lambda x, c: lmnn_impl.masked_target_neighbors(
            x, c, jnp.ones(n, x.dtype), TARGETS, b))  # fmt: skip
        t0 = time.perf_counter()
        tn, ok = jax.block_until_ready(search(x, codes))
        search_s = time.perf_counter() - t0
        assert bool(jnp.all(ok))
        f = lambda L, x, c, t: lmnn_loss(L, x, c, target_neighbors=t, push_weight=0.5)
        args = (codes, tn)
    vg = jax.jit(jax.value_and_grad(f))
    t0 = time.perf_counter()
    compiled = vg.lower(L, x, *args).compile()
    compile_s = time.perf_counter() - t0
    stats = compiled.memory_analysis()
    temp = int(stats.temp_size_in_bytes) if stats is not None else -1
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        value, grad = jax.block_until_ready(compiled(L, x, *args))
        times.append(time.perf_counter() - t0)
        if times[0] > 20 and len(times) >= 2:  # very large n: two calls are enough
            break
    return {
        "loss": loss,
        "n": n,
        "dtype": dtype,
        "device": str(jax.devices()[0]),
        "first_s": times[0],
        "median_s": float(np.median(times[1:] if len(times) > 1 else times)),
        "runs": len(times),
        "compile_s": compile_s,
        "target_search_s": search_s,
        "xla_temp_mib": temp / MIB,
        "peak_rss_mib": _peak_rss_bytes() / MIB,
        "value": float(value),
        "grad_finite": bool(np.all(np.isfinite(np.asarray(grad)))),
    }


def child_rates(dtype: str, rows: int = 1024, cols: int = 4096, repeats: int = 15) -> dict:
    """This machine's best rates for the unavoidable work, on in-cache ``(rows, cols)`` blocks.

    A blocked loss never streams an ``n x n`` array through memory: it forms each block
    of ``rows`` query rows in cache and uses it there. The rates are therefore measured
    on one such block (the fastest of ``repeats`` calls).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from _timing import median_time

    jax.config.update("jax_enable_x64", dtype == "float64")
    hi = jax.lax.Precision.HIGHEST
    rng = np.random.default_rng(0)
    blk = jnp.asarray(rng.standard_normal((rows, cols)), dtype)
    zr = jnp.asarray(rng.standard_normal((rows, K)), dtype)
    zc = jnp.asarray(rng.standard_normal((cols, K)), dtype)
    xx = jnp.asarray(rng.standard_normal((cols, D)), dtype)
    a = jnp.asarray(rng.standard_normal(rows), dtype)
    t = lambda f, *args: min(median_time(jax.jit(f), *args, repeats=repeats)[1])
    t_exp = t(lambda g: jnp.sum(jnp.exp(-g * g), axis=1), blk)
    t_hinge = t(lambda g, a: jnp.sum(jnp.maximum(0, 1 + a[:, None] - g), axis=1), blk, a)
    t_mm = t(lambda zr, zc: jnp.sum(jnp.matmul(zr, zc.T, precision=hi), axis=1), zr, zc)
    t_gemm = t(lambda g, x: jnp.matmul(g, x, precision=hi), blk, xx)
    size = rows * cols
    return {
        "block": [rows, cols],
        "dtype": dtype,
        "exp_per_s": size / t_exp,
        "hinge_per_s": size / t_hinge,
        "matmul_flops": 2 * size * K / t_mm,
        "gemm_flops": 2 * size * D / t_gemm,
    }


def floor_s(loss: str, n: int, rates: dict) -> float:
    """The limit (s) of one loss + gradient at ``n`` points from the measured ``rates``."""
    matmuls = 2 * n * n * K / rates["matmul_flops"] + 2 * n * n * D / rates["gemm_flops"]
    if loss == "LMNN":
        return TARGETS * n * n / rates["hinge_per_s"] + matmuls
    return n * n / rates["exp_per_s"] + matmuls


def report(result: dict) -> str:
    env = result["env"]
    rates = result["rates"]
    lines = [
        "# Scaling: one loss + gradient vs n, MLKR / NCA / LMNN, beside the machine's limit",
        "",
        *(f"- {k}: `{v}`" for k, v in env.items()),
        "",
        "Produced by `python benchmarks/bench_scaling.py`; figure: `scaling.png`. "
        f"d = k = {D}, {result['dtype']}, default block sizes, "
        "`jax.jit(jax.value_and_grad(loss))` with respect to `L`, one fresh process per row.",
        "",
        f"Best rates measured here on an in-cache {rates['block'][0]} x {rates['block'][1]} "
        "block: exp + row sum "
        f"{rates['exp_per_s'] / 1e9:.2f} G/s, hinge + row sum {rates['hinge_per_s'] / 1e9:.2f} G/s, "
        f"distance matmul {rates['matmul_flops'] / 1e9:.0f} GFLOP/s, gradient matmul "
        f"{rates['gemm_flops'] / 1e9:.0f} GFLOP/s. The limit of a row: MLKR / NCA "
        f"`n^2` exps + both matmuls; LMNN `{TARGETS} n^2` hinges + both matmuls "
        "(see the script's docstring).",
        "",
        "| loss | n | median s | limit s | / limit | compile s | peak RSS MiB | XLA temp MiB "
        "| target search s | runs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lim = floor_s(r["loss"], r["n"], rates)
        search = "" if r["target_search_s"] is None else f"{r['target_search_s']:.3g}"
        lines.append(
            f"| {r['loss']} | {r['n']} | {r['median_s']:.4g} | {lim:.4g} | "
            f"{r['median_s'] / lim:.2f}x | {r['compile_s']:.2f} | {r['peak_rss_mib']:.0f} | "
            f"{r['xla_temp_mib']:.1f} | {search} | {r['runs']} |"
        )
    lines += ["", "Fitted power laws for n >= 5,000 (time ~ n^p) and peak memory:", ""]
    for loss in LOSSES:
        rows = [r for r in result["rows"] if r["loss"] == loss and r["n"] >= 5000]
        if len(rows) < 2:
            continue
        ns = [r["n"] for r in rows]
        p, _ = _powerlaw(ns, [r["median_s"] for r in rows])
        ratios = [r["median_s"] / floor_s(loss, r["n"], rates) for r in rows]
        lines.append(
            f"- {loss}: p = {p:.2f}; time / limit from {min(ratios):.2f}x to {max(ratios):.2f}x; "
            f"peak RSS {rows[0]['peak_rss_mib']:.0f} MiB at n = {ns[0]:,} and "
            f"{rows[-1]['peak_rss_mib']:.0f} MiB at n = {ns[-1]:,} (one dense n x n float32 "
            f"matrix at n = {ns[-1]:,}: {ns[-1] ** 2 * 4 / MIB:,.0f} MiB)."
        )
    return "\n".join(lines) + "\n"


def figure(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rates = result["rates"]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = dict(zip(LOSSES, ("tab:blue", "tab:orange", "tab:green")))
    for loss in LOSSES:
        rows = [r for r in result["rows"] if r["loss"] == loss]
        if not rows:
            continue
        ns = np.array([r["n"] for r in rows])
        grid = np.geomspace(ns.min(), ns.max(), 50)
        ax_t.loglog(ns, [r["median_s"] for r in rows], "o-", color=colors[loss], label=loss)
        ax_t.loglog(grid, [floor_s(loss, int(v), rates) for v in grid], "--",
                    color=colors[loss], alpha=0.7, label=f"{loss} limit")  # fmt: skip
        ax_m.loglog(ns, [r["peak_rss_mib"] for r in rows], "o-", color=colors[loss], label=loss)
    ns_all = np.array(sorted({r["n"] for r in result["rows"]}))
    ax_m.loglog(ns_all, ns_all.astype(float) ** 2 * 4 / MIB, ":", color="gray",
                label="one dense n x n float32 matrix")  # fmt: skip
    ax_t.set(xlabel="n", ylabel="seconds", title=f"one loss + gradient ({result['dtype']}, d = {D})")
    ax_m.set(xlabel="n", ylabel="MiB", title="peak resident memory of the process")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['env'].get('cpu_model', '')}, {result['env'].get('devices', '')}",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="small sizes, temporary output")
    ap.add_argument("--sizes", type=int, nargs="*",
                    default=[1000, 2000, 5000, 10000, 20000, 50000, 100000])  # fmt: skip
    ap.add_argument("--losses", nargs="*", default=list(LOSSES), choices=LOSSES)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--report-only", action="store_true", help="redraw from scaling.json")
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "rates":
            res = child_rates(rest[0])
        else:
            res = child_eval(rest[0], int(rest[1]), rest[2], int(rest[3]))
        print(json.dumps(res), flush=True)
        return
    out = pathlib.Path(tempfile.mkdtemp() if args.quick else args.out)
    if args.report_only:
        result = json.loads((out / "scaling.json").read_text())
    else:
        from _timing import cpu_model, env_header

        if args.quick:
            args.sizes, args.repeats = [500, 1000], 2
        env = env_header()
        env["cpu_model"] = cpu_model()
        env["loadavg (1, 5, 15 min) at start"] = list(os.getloadavg())
        t_all = time.perf_counter()
        rates = _child(["--child", "rates", args.dtype])
        print(json.dumps(rates), flush=True)
        rows = []
        for loss in args.losses:
            for n in args.sizes:
                row = _child(["--child", "eval", loss, str(n), args.dtype, str(args.repeats)])
                print(json.dumps(row), flush=True)
                rows.append(row)
        env["loadavg (1, 5, 15 min) at end"] = list(os.getloadavg())
        env["total benchmark time s"] = round(time.perf_counter() - t_all, 1)
        result = {"env": env, "dtype": args.dtype, "rates": rates, "rows": rows}
        out.mkdir(parents=True, exist_ok=True)
        (out / "scaling.json").write_text(json.dumps(result, indent=1))
    (out / "scaling.md").write_text(report(result))
    figure(result, out / "scaling.png")
    print(report(result))
    print(f"wrote {out / 'scaling.md'} and scaling.png")


if __name__ == "__main__":
    main()
