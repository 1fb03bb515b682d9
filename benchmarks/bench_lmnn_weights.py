"""Cost of LMNN's sample weights and traced push weight (issue 14), loss + gradient.

At ``n`` points (``d = 10``, 3 classes, ``k = 3`` target neighbours), median time of
``jax.value_and_grad`` of ``lmnn_loss`` w.r.t. ``L``, the variants run in turns:

* **plain**: no weights, static ``push_weight = 0.5`` (the path of today's fits);
* **weighted**: ``sample_weight`` (ones) with given target neighbours: the weighting's
  cost alone (an extra ``(b, k, n)`` product per block);
* **weighted + search**: ``sample_weight`` and ``target_neighbors=None``: the traceable
  masked target-neighbour search (``metricjax._rules.top_k_rows``: ``lax.top_k``, or
  ``k`` ``argmax`` passes in float64) runs in every call, as in a
  ``jax.vmap`` over fold weights;
* **traced mu**: ``push_weight`` a jit argument (vmap over push weights).

``python benchmarks/bench_lmnn_weights.py`` (n = 2000 and 4000, float32 and float64,
about 2-4 minutes on a loaded 2-core CPU; prints a markdown table and writes it to
``results/lmnn_weights.md``) or ``--quick`` (n = 500, float64; printed only).
"""

import argparse
import datetime
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _timing import cpu_model, interleaved_medians, load_average  # noqa: E402

from metricjax.losses import lmnn_loss, lmnn_target_neighbors  # noqa: E402


def variants(x, labels, tn):
    grad = lambda f: jax.jit(jax.value_and_grad(f))
    ones = jnp.ones(x.shape[0], x.dtype)
    mu = jnp.asarray(0.5, x.dtype)
    traced = jax.jit(jax.value_and_grad(
        lambda L, m: lmnn_loss(L, x, labels, target_neighbors=tn, push_weight=m)))
    return {
        "plain": grad(lambda L: lmnn_loss(L, x, labels, target_neighbors=tn)),
        "weighted": grad(lambda L: lmnn_loss(L, x, labels, target_neighbors=tn, sample_weight=ones)),
        "weighted + search": grad(lambda L: lmnn_loss(L, x, labels, sample_weight=ones)),
        "traced mu": lambda L: traced(L, mu),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 500, float64 only")
    args = ap.parse_args()
    sizes, dtypes = ((500,), ("float64",)) if args.quick else ((2000, 4000), ("float32", "float64"))
    lines = [
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; CPU: {cpu_model()}; "
        f"load: {load_average()}; JAX {jax.__version__}",
        "",
        "| n | dtype | plain (ms) | weighted | weighted + search | traced mu |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(lines))
    for dtype in dtypes:
        with jax.enable_x64(dtype == "float64"):
            for n in sizes:
                rng = np.random.default_rng(0)
                labels = np.arange(n) % 3
                x = jnp.asarray(rng.normal(size=(n, 10)) + np.eye(10)[labels], dtype)
                tn = jnp.asarray(lmnn_target_neighbors(x, labels, 3))
                L = jnp.eye(10, dtype=dtype)
                med, _, outs = interleaved_medians(variants(x, jnp.asarray(labels), tn), L,
                                                   repeats=5, max_total_s=30)
                ref = float(outs["plain"][0])
                for name, out in outs.items():  # same loss in every variant
                    assert abs(float(out[0]) - ref) <= 1e-4 * abs(ref), (name, out[0], ref)
                base = med["plain"]
                rel = [f"{med[k] / base:.2f}x" for k in ("weighted", "weighted + search", "traced mu")]
                lines.append(f"| {n} | {dtype} | {1e3 * base:.1f} | " + " | ".join(rel) + " |")
                print(lines[-1], flush=True)
    if not args.quick:  # the full run is a results file; --quick only prints
        (pathlib.Path(__file__).parent / "results" / "lmnn_weights.md").write_text(
            "\n".join(lines) + "\n"
        )


if __name__ == "__main__":
    main()
