"""Two real processes on 127.0.0.1 (``jax.distributed`` + gloo): the same numbers as one.

Each worker is a subprocess with one CPU device, holding its own share of the rows
(13 and 12 of n = 25: unequal, so :func:`metricjax.distributed.global_rows` pads and
the losses mask). Every worker also has all the data, to compute the one-process
reference. Bounded: the workers are killed if the pair has not finished in time.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

LIMIT_S = float(os.environ.get("METRICJAX_TEST_DISTRIBUTED_LIMIT_S", 180))  # ~40 s idle

WORKER = textwrap.dedent(
    """
    import json, sys, time
    rank, port = int(sys.argv[1]), int(sys.argv[2])
    t0 = time.time()

    def step(what):  # progress on stderr, shown if the test fails
        print(f"[{rank}] {time.time() - t0:5.1f} s {what}", file=sys.stderr, flush=True)

    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from metricjax import distributed
    distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=rank,
                           initialization_timeout=40)
    step("initialized")
    import metricjax as mj
    from metricjax.losses import lmnn_loss, lmnn_target_neighbors, mlkr_loss, nca_loss
    assert jax.process_count() == 2 and len(jax.devices()) == 2

    rng = np.random.default_rng(0)                 # the same data in both processes
    n, d, k = 25, 4, 3
    x = rng.standard_normal((n, d)) + 2.0
    y = np.sin(x[:, 0]) + 0.1 * rng.standard_normal(n)
    labels = (x[:, 1] > 2.0).astype(np.int32) + (x[:, 2] > 2.5).astype(np.int32)
    tn = lmnn_target_neighbors(x, labels, 2).astype(np.int32)
    L = 0.5 * rng.standard_normal((k, d))
    part = slice(0, 13) if rank == 0 else slice(13, n)   # unequal shares: padding

    xg, nv = distributed.global_rows(x[part])
    yg, _ = distributed.global_rows(y[part])
    cg, _ = distributed.global_rows(labels[part])
    tg, _ = distributed.global_rows(tn[part])
    step("global arrays")
    assert nv == n and xg.shape[0] == 26 and not xg.is_fully_addressable

    def rel(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))

    def replicated(a):  # a replicated global value as a host array
        return np.asarray(a.addressable_data(0))

    out = {"n_pad": int(xg.shape[0])}
    mlkr = mj.sharded(mlkr_loss, n_valid=nv)
    nca = mj.sharded(nca_loss, n_valid=nv)
    lmnn = mj.sharded(lmnn_loss, n_valid=nv)
    cases = {
        "mlkr": (lambda L, x, y: mlkr(L, x, y), (xg, yg), lambda L: mlkr_loss(L, x, y)),
        "nca": (lambda L, x, c: nca(L, x, c, num_classes=3), (xg, cg),
                lambda L: nca_loss(L, x, labels, num_classes=3)),
        "lmnn": (lambda L, x, c, t: lmnn(L, x, c, target_neighbors=t), (xg, cg, tg),
                 lambda L: lmnn_loss(L, x, labels, target_neighbors=tn)),
    }
    for name, (f, data, plain) in cases.items():
        v, g = jax.jit(jax.value_and_grad(f))(L, *data)
        v0, g0 = jax.value_and_grad(plain)(L)
        out[name] = max(rel(replicated(v), v0), rel(replicated(g), g0))
        step(name)

    a = mj.fit(mlkr, L, xg, yg, max_iter=20, tol=0.0, gtol=0.0)
    b = mj.fit(mlkr_loss, L, x, y, max_iter=20, tol=0.0, gtol=0.0)
    step("fit")
    out["fit_iters"] = int(a.num_iter)
    out["fit_loss"] = rel(np.asarray(a.loss_history)[-1], np.asarray(b.loss_history)[-1])
    out["fit_first_last"] = [float(np.asarray(a.loss_history)[0]), float(np.asarray(a.loss_history)[-1])]
    print("RESULT " + json.dumps(out), flush=True)
    jax.distributed.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:  # the OS picks a free port; parallel workers get different ones
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process():
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    # one CPU device per process (the run's other XLA flags are kept)
    env["XLA_FLAGS"] = " ".join(
        f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f
    )
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(rank), str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for rank in (0, 1)
    ]
    deadline = time.monotonic() + LIMIT_S
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        logs = [p.communicate()[1][-2000:] for p in procs]
        pytest.fail(f"the two processes did not finish in {LIMIT_S} s:\n" + "\n".join(logs))
    finally:
        for p in procs:  # on any failure: no orphans
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_so, se) in zip(procs, outs):
        assert p.returncode == 0, se[-4000:]
    results = [json.loads(so.split("RESULT ", 1)[1].splitlines()[0]) for so, _ in outs]
    assert results[0] == results[1]  # every process sees the same replicated values
    out = results[0]
    assert out["n_pad"] == 26
    for name in ("mlkr", "nca", "lmnn"):
        assert out[name] < 1e-10, out
    assert out["fit_iters"] == 20
    assert out["fit_first_last"][1] < out["fit_first_last"][0]
    assert out["fit_loss"] < 1e-10, out
