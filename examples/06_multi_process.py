"""MLKR trained across several processes with ``jax.distributed`` (one per host or GPU).

On one machine (spawns the workers, CPU, one device each)::

    python examples/06_multi_process.py --num-processes 2

On a cluster: the same script, one process per host (or per GPU), each told the
coordinator's address and its rank, e.g. on SLURM (``docs/scaling.md``)::

    srun python examples/06_multi_process.py --num-processes $SLURM_NTASKS \\
        --process-id $SLURM_PROCID --coordinator $(hostname -s):12345

Each process makes (here: draws) only its own rows; ``global_rows`` assembles the
global row-sharded arrays, the sharded loss masks the padding, and ``mj.fit`` runs the
same compiled L-BFGS loop on every process. Process 0 prints the result.
"""

import argparse
import os
import socket
import subprocess
import sys
import time


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-processes", type=int, default=2)
    ap.add_argument("--process-id", type=int, default=None,
                    help="this process's rank; omit to spawn all workers on this machine")
    ap.add_argument("--coordinator", default=None, help="host:port of process 0")
    ap.add_argument("--n", type=int, default=1000, help="rows in all (split over the processes)")
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--max-iter", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=600, help="seconds, when spawning")
    ap.add_argument("--out", default=None, help="unused (no figures); accepted like the other examples")
    return ap.parse_args(argv)


def spawn(args) -> int:
    """Start ``--num-processes`` workers on 127.0.0.1; kill them all if one fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    base = [sys.executable, os.path.abspath(__file__), "--num-processes", str(args.num_processes),
            "--coordinator", f"127.0.0.1:{port}", "--n", str(args.n), "--d", str(args.d),
            "--max-iter", str(args.max_iter)]
    procs = [subprocess.Popen([*base, "--process-id", str(i)], env=env)
             for i in range(args.num_processes)]
    deadline = time.monotonic() + args.timeout
    try:
        while any(p.poll() is None for p in procs):
            if any(p.returncode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                print("a worker failed or the run timed out: stopping all", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return max(p.returncode for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def worker(args) -> None:
    import jax
    import numpy as np

    from metricjax import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    import metricjax as mj
    from metricjax.losses import mlkr_loss

    rank, size = jax.process_index(), jax.process_count()
    # this process's rows only (a real loader reads its part of the files)
    lo, hi = rank * args.n // size, (rank + 1) * args.n // size
    rng = np.random.default_rng(rank)
    x_local = rng.standard_normal((hi - lo, args.d)).astype(np.float32)
    y_local = (np.sin(x_local[:, 0]) + x_local[:, 1] ** 2).astype(np.float32)

    x, n = distributed.global_rows(x_local)
    y, _ = distributed.global_rows(y_local)
    loss = mj.sharded(mlkr_loss, n_valid=n)
    L0 = np.eye(args.d, dtype=np.float32) / np.sqrt(args.d)   # identical on every process
    t = time.perf_counter()
    res = mj.fit(loss, L0, x, y, max_iter=args.max_iter)
    hist = np.asarray(res.loss_history)
    if rank == 0:
        print(f"{size} processes, {len(jax.devices())} devices, n = {n} (padded to {x.shape[0]}), "
              f"d = {args.d}: loss {hist[0]:.4g} -> {hist[-1]:.4g} in {int(res.num_iter)} "
              f"L-BFGS iterations, {time.perf_counter() - t:.1f} s")
        L = np.asarray(res.params.addressable_data(0))  # replicated: every process has it
        print("largest weights on the features:", np.round(np.linalg.norm(L, axis=0)[:4], 2))
    jax.distributed.shutdown()


if __name__ == "__main__":
    a = parse()
    if a.process_id is None and a.coordinator is None and a.num_processes > 1:
        sys.exit(spawn(a))
    worker(a)
