"""Communication per step of the row-sharded losses, read from the compiled program.

For MLKR, NCA and LMNN (loss + gradient with respect to L, float32) on ``p`` forced
CPU devices: the collectives in the optimised HLO (all-gather, reduce-scatter,
all-reduce) with the bytes each moves (its result shape), against XLA's flop count
per device (``compiled.cost_analysis()``), and the wall time of one evaluation for
p = 1 .. 4 (a strong-scaling table). Run::

    python benchmarks/bench_comm.py            # n = 4200, d = 32, k = 8: results/comm.md
    python benchmarks/bench_comm.py --quick    # n = 600, printed only

It sets ``--xla_force_host_platform_device_count`` itself (4 CPU devices); forced
CPU devices share the machine's cores, so the times show overheads, not speed-ups.
"""

import argparse
import json
import os
import pathlib
import re
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--quick", action="store_true")
ap.add_argument("--devices", type=int, default=4)
ap.add_argument("--reps", type=int, default=3)
args = ap.parse_args()
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

import metricjax as mj  # noqa: E402
from metricjax.losses import lmnn_loss, lmnn_target_neighbors, mlkr_loss, nca_loss  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _timing import env_markdown  # noqa: E402

n, d, k = (600, 32, 8) if args.quick else (4200, 32, 8)  # divisible by 1 .. 4
rng = np.random.default_rng(0)
x = rng.standard_normal((n, d)).astype(np.float32)
y = np.sin(x[:, 0]).astype(np.float32)
labels = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0).astype(np.int32)
tn = lmnn_target_neighbors(x, labels, 3).astype(np.int32)
L = (np.eye(k, d) * 0.5).astype(np.float32)

COLL = re.compile(r"=\s*(\(?[^=]*?\)?)\s+(all-gather|reduce-scatter|all-reduce|all-to-all)(?:-start)?\(")
SHAPE = re.compile(r"(f32|f64|s32|s64|u32|pred)\[([0-9,]*)\]")
SIZE = {"f32": 4, "f64": 8, "s32": 4, "s64": 8, "u32": 4, "pred": 1}


def collectives(hlo: str):
    out = {}
    for line in hlo.splitlines():
        m = COLL.search(line)
        if not m:
            continue
        nbytes = 0
        for t, dims in SHAPE.findall(m.group(1)):
            nbytes += SIZE[t] * int(np.prod([int(s) for s in dims.split(",") if s] or [1]))
        c = out.setdefault(m.group(2), [0, 0])
        c[0] += 1
        c[1] += nbytes
    return out


def case(name, p):
    mesh = mj.row_mesh(jax.devices()[:p])
    xs = mj.shard_rows(x, mesh)
    if name == "mlkr":
        f = mj.sharded(mlkr_loss, mesh)
        fn, data = (lambda L, x, y: f(L, x, y)), (xs, mj.shard_rows(y, mesh))
    elif name == "nca":
        f = mj.sharded(nca_loss, mesh)
        fn, data = (lambda L, x, c: f(L, x, c, num_classes=3)), (xs, mj.shard_rows(labels, mesh))
    else:
        f = mj.sharded(lmnn_loss, mesh)
        fn = lambda L, x, c, t: f(L, x, c, target_neighbors=t)  # noqa: E731
        data = (xs, mj.shard_rows(labels, mesh), mj.shard_rows(tn, mesh))
    step = jax.jit(jax.value_and_grad(fn))
    compiled = step.lower(L, *data).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    jax.block_until_ready(step(L, *data))
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        jax.block_until_ready(step(L, *data))
        times.append(time.perf_counter() - t)
    return {
        "loss": name, "p": p, "n": n, "d": d, "k": k,
        "flops_per_device": float(cost.get("flops", float("nan"))),
        "collectives": collectives(compiled.as_text()),
        "time_s": float(np.median(times)),
    }


rows = [case(name, p) for name in ("mlkr", "nca", "lmnn") for p in range(1, args.devices + 1)]
lines = [
    f"# n = {n}, d = {d}, k = {k}, float32, {os.cpu_count()} CPU cores, jax {jax.__version__}",
    "",
    env_markdown(),
    "",
    "| loss | p | flops / device | all-gather (ops, bytes) | reduce-scatter | all-reduce | time (s) |",
    "|---|---|---|---|---|---|---|",
]
for r in rows:
    c = r["collectives"]
    cell = lambda key: f"{c[key][0]}, {c[key][1]:,}" if key in c else "-"  # noqa: E731
    lines.append(f"| {r['loss']} | {r['p']} | {r['flops_per_device']:.3g} | {cell('all-gather')} | "
                 f"{cell('reduce-scatter')} | {cell('all-reduce')} | {r['time_s']:.4f} |")  # fmt: skip
print("\n".join(lines))
json.dump(rows, sys.stderr)
if not args.quick:  # the full run is a results file; --quick only prints
    out = pathlib.Path(__file__).resolve().parent / "results" / "comm.md"
    out.write_text("\n".join(lines) + "\n")
