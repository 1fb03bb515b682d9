r"""The GPU benchmark in one command: losses, fits, distance rules and float32 accuracy.

Runs on whatever device JAX picks (GPU if present, else CPU) and writes ``gpu.md`` and
``gpu.json`` into ``--out`` (default ``benchmarks/results/``); the markdown is also
printed. Everything is jit-compiled, warmed up, ended by ``jax.block_until_ready`` and
timed as the median of several runs (``_timing.median_time``), in float32 and float64.

0. **Device limits**, measured here: the matmul rate (``2 N^3`` FLOP of an ``N x N``
   product at ``Precision.HIGHEST``) and the fused ``exp`` + row-sum rate (elements/s;
   the better of arguments generated in the kernel and arguments read from memory).
1. **One loss + gradient** (``jax.value_and_grad`` with respect to ``L``, ``d = k = 20``)
   of ``mlkr_loss``, ``nca_loss`` (3 classes) and ``lmnn_loss`` (3 target neighbours,
   precomputed, ``n <= 20000``) at ``n in {5000, 20000, 100000}``: metricjax with
   GPU-sized blocks (``block_size_for(n, --block-gib)``) and, for MLKR at
   ``n >= 20000``, the default ``block_size="auto"`` (128-row blocks there), against
   ``jax.value_and_grad`` of a dense jnp twin of the same loss (same centred expansion
   and precision; "out of memory" when its ``(n, n)`` arrays alone, or XLA's temporary
   buffers, exceed 90% of the device memory). ``floor`` is the time the
   unavoidable work would take at the measured limits: ``n^2`` exps plus the matmuls
   ``2 n^2 k`` (distances) + ``4 n^2 k`` (gradient: ``G Z`` and ``G^T Z``) + ``2 n^2 c``
   (softmax-weighted values, ``c`` value columns: 1 for MLKR, the classes for NCA); LMNN
   has no exps and no values (``6 n^2 k`` FLOP; its hinge terms are not counted).
2. **Whole fit** ``mj.fit(mlkr_loss, 0.5 I, x, y, max_iter=100)`` at ``n in {5000, 20000}``:
   the first call (compilation included) and a second identical call (compiled loop
   cached), iterations and final loss.
3. **Distance rules**: ``jax.grad`` of ``sum(sin(D))`` through ``pairwise_sq_euclidean``
   (wrt ``x``), ``pairwise_sq_transformed`` (wrt ``L`` and ``x``) and
   ``pairwise_sq_mahalanobis`` (wrt ``M`` and ``x``), ``n in {4096, 16384}``,
   ``d in {16, 128}``, against ``jax.grad`` of the same centred expansion in plain jnp.
4. **float32 far from the origin**: points at offset ``1e4`` with unit spread; largest
   off-diagonal relative error of the three float32 distance matrices against a float64
   NumPy difference form of the same (float32-rounded) points, and the relative error of
   a float32 MLKR loss and gradient against float64. Two contrasts on the same data: a
   dense jnp twin at the device's *default* matmul precision (TF32 on recent NVIDIA GPUs
   when XLA enables it), and a float64 twin whose forward products have operands rounded
   to TF32's 10-bit mantissa (device independent).

Sections run in the order 0, 4, 1, 2, 3 (``--sections`` picks some; 0 runs with 1).
On one H200 the default budget covers 0, 4, 1, 2 and about half of 3 (XLA's autotuning
makes each float32 distance program take 2-12 s to compile); ``--sections distances``
runs 3 alone (an estimated 3 minutes there).
Budget: no new case starts after ``--budget`` seconds, a case predicted (from the same
case at a smaller ``n``, as ``n^2``) to overrun is skipped, and a watchdog writes what
was measured and exits at ``--budget + --grace`` seconds. A failing case is recorded
in its table row; it does not stop the run. Results are rewritten after every case.

Usage (from the repository root)::

    PYTHONPATH=. python3 benchmarks/bench_gpu.py --out benchmarks/results   # < 5 min on a GPU
    python benchmarks/bench_gpu.py --quick --out /tmp/gpu                  # tiny sizes, any CPU

``--quick`` runs every section at tiny sizes (fits and distance rules in float32 only)
in well under a minute on two CPU cores.

Needs only jax, optax, numpy, metricjax and the standard library.
"""

import argparse
import functools
import gc
import json
import math
import os
import pathlib
import shlex
import sys
import threading
import time
import traceback
import types

import numpy as np

try:  # run as ``python benchmarks/bench_gpu.py`` (script folder on sys.path) or imported
    from benchmarks import _timing
except ImportError:  # pragma: no cover - depends on how the script is started
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import _timing


def _ensure_jaxtyping() -> bool:
    """Register a do-nothing ``jaxtyping`` if it is missing; True if the stub was used.

    Some metricjax modules annotate with ``jaxtyping`` (evaluated at import time). The
    benchmark must run on machines with only jax, optax and numpy, so a missing
    ``jaxtyping`` gets a stand-in whose ``Float[...]`` etc. return the bare array type.
    """
    try:
        import jaxtyping  # noqa: F401

        return False
    except ImportError:
        pass

    class _Dtype:
        def __class_getitem__(cls, item):
            return item[0] if isinstance(item, tuple) else item

    stub = types.ModuleType("jaxtyping")
    for name in ("Float", "Int", "Bool", "Shaped", "Real", "Num", "Integer", "Inexact", "UInt"):
        setattr(stub, name, _Dtype)
    stub.Array = object
    stub.ArrayLike = object
    stub.jaxtyped = lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda f: f))
    sys.modules["jaxtyping"] = stub
    return True


_JAXTYPING_STUB = _ensure_jaxtyping()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import metricjax as mj  # noqa: E402
from metricjax._rules import mm  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DTYPES = ("float32", "float64")
GIB = _timing.GIB


# ----------------------------------------------------------------------------- sizes
def full_sizes() -> dict:
    return dict(
        d=20, loss_n=(5000, 20000, 100000), lmnn_max_n=20000, auto_min_n=20000,
        fit_n=(5000, 20000), fit_iter=100, dist_n=(4096, 16384), dist_d=(16, 128), acc_n=1024, acc_d=16,
        mm_n=8192, exp_shape=(8192, 131072), fit_dtypes=DTYPES, dist_dtypes=DTYPES,
    )


def quick_sizes() -> dict:
    return dict(
        d=4, loss_n=(96,), lmnn_max_n=96, auto_min_n=0, fit_n=(96,), fit_iter=5, dist_n=(48,),
        dist_d=(4,), acc_n=96, acc_d=8, mm_n=128, exp_shape=(64, 1024),
        fit_dtypes=("float32",), dist_dtypes=("float32",),
    )


# ----------------------------------------------------------------------------- data
def regression_data(n: int, d: int, seed: int = 0):
    """``y = sin(x w) + noise``, ``x ~ N(0, I)``, float64 NumPy."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = np.zeros(d)
    w[: max(1, d // 4)] = rng.standard_normal(max(1, d // 4))
    return x, np.sin(x @ w) + 0.1 * rng.standard_normal(n)


def blob_data(n: int, d: int, classes: int = 3, seed: int = 0):
    """Gaussian blobs: ``x = centre[label] + N(0, I)``, labels ``0 .. classes-1`` balanced."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    centres = 1.5 * rng.standard_normal((classes, d))
    return centres[labels] + rng.standard_normal((n, d)), labels.astype(np.int32)


# ----------------------------------------------------------------------------- dense twins
def _centred_embedding(transform, x):
    xc = x - jax.lax.stop_gradient(jnp.mean(x, axis=0, keepdims=True))
    return mm(xc, transform.T)


def _dense_sq(z):
    """``q_i + q_j - 2 z_i . z_j`` for the rows of ``z`` (the expansion metricjax uses)."""
    q = jnp.sum(z * z, axis=1)
    return q[:, None] + q[None, :] - 2 * mm(z, z.T)


def _dense_softmax(transform, x):
    z = _centred_embedding(transform, x)
    n = z.shape[0]
    i = jnp.arange(n)
    dist = _dense_sq(z).at[i, i].set(jnp.inf)  # no self-neighbour
    return jax.nn.softmax(-dist, axis=1)


def dense_mlkr(transform, x, y):
    """MLKR, dense: ``sum_i (sum_j p_ij y_j - y_i)^2`` with the row softmax of ``-D``."""
    p = _dense_softmax(transform, x)
    yhat = mm(p, y[:, None])[:, 0]
    return jnp.sum((yhat - y) ** 2)


def dense_nca(transform, x, onehot):
    """NCA, dense: ``-sum_i sum_{j: c_j = c_i} p_ij``."""
    p = _dense_softmax(transform, x)
    return -jnp.sum(mm(p, onehot) * onehot)


def dense_lmnn(transform, x, codes, tn, *, push_weight=0.5, margin=1.0):
    """LMNN, dense: pull + push over the ``(n, k, n)`` triplet hinges."""
    dist = _dense_sq(_centred_embedding(transform, x))
    dt = jnp.take_along_axis(dist, tn, axis=1)  # (n, k) target distances
    other = codes[:, None] != codes[None, :]
    hinge = jnp.maximum(margin + dt[:, :, None] - dist[:, None, :], 0)
    push = jnp.sum(jnp.where(other[:, None, :], hinge, 0))
    return (1 - push_weight) * jnp.sum(dt) + push_weight * push


def _centred(x):
    return x - jax.lax.stop_gradient(jnp.mean(x, axis=0, keepdims=True))


def expansion_euclidean(x):
    """``D(X)`` as the plain centred expansion (for ``jax.grad`` by autodiff)."""
    return jnp.maximum(_dense_sq(_centred(x)), 0)


def expansion_transformed(x, transform):
    return jnp.maximum(_dense_sq(mm(_centred(x), transform.T)), 0)


def expansion_mahalanobis(x, metric):
    xc = _centred(x)
    u = mm(xc, 0.5 * (metric + metric.T))
    q = jnp.sum(u * xc, axis=1)
    return q[:, None] + q[None, :] - 2 * mm(u, xc.T)


# ----------------------------------------------------------------------------- accuracy (4)
def tf32_round(a):
    """Round to TF32 (10 explicit mantissa bits), straight-through for ``jax.grad``."""
    m, e = jnp.frexp(a)
    r = jnp.ldexp(jnp.round(m * 2048.0) / 2048.0, e)
    return a + jax.lax.stop_gradient(r - a)


def _mlkr_emulated_tf32(transform, x, y):
    """Dense MLKR in float64 whose forward products take TF32-rounded operands."""
    xc = _centred(x)
    z = tf32_round(xc) @ tf32_round(transform).T
    zr = tf32_round(z)
    q = jnp.sum(z * z, axis=1)
    n = x.shape[0]
    i = jnp.arange(n)
    dist = (q[:, None] + q[None, :] - 2 * (zr @ zr.T)).at[i, i].set(jnp.inf)
    p = jax.nn.softmax(-dist, axis=1)
    return jnp.sum((p @ y - y) ** 2)


def _mlkr_default_precision(transform, x, y):
    """Dense MLKR with the device's default matmul precision (no ``HIGHEST``)."""
    xc = _centred(x)
    z = jnp.matmul(xc, transform.T, precision=jax.lax.Precision.DEFAULT)
    q = jnp.sum(z * z, axis=1)
    n = x.shape[0]
    i = jnp.arange(n)
    g = jnp.matmul(z, z.T, precision=jax.lax.Precision.DEFAULT)
    dist = (q[:, None] + q[None, :] - 2 * g).at[i, i].set(jnp.inf)
    p = jax.nn.softmax(-dist, axis=1)
    return jnp.sum((jnp.matmul(p, y, precision=jax.lax.Precision.DEFAULT) - y) ** 2)


def _np_sq_dist(x, s=None, chunk=128):
    """float64 NumPy difference form ``(x_i - x_j)^T S (x_i - x_j)`` (``S = I`` if None)."""
    n = x.shape[0]
    out = np.empty((n, n))
    for a in range(0, n, chunk):
        diff = x[a : a + chunk, None, :] - x[None, :, :]
        sd = diff if s is None else diff @ s
        out[a : a + chunk] = np.einsum("ijk,ijk->ij", sd, diff)
    return out


def far_data(n: int, d: int, *, offset: float = 1e4, seed: int = 0):
    """float32 points ``offset + N(0, I)``, a SPD ``M`` and a ``(d, d)`` ``L`` (NumPy float32)."""
    rng = np.random.default_rng(seed)
    x = (offset + rng.standard_normal((n, d))).astype(np.float32)
    b = rng.standard_normal((d, d)) / np.sqrt(d)
    metric = (np.eye(d) + b @ b.T).astype(np.float32)
    transform = (np.eye(d) + 0.1 * b).astype(np.float32)
    y = np.sin(x[:, 0].astype(np.float64) - offset + x[:, 1] - offset).astype(np.float32)
    return x, metric, transform, y


def _off_diag_rel(d32, ref):
    off = ~np.eye(ref.shape[0], dtype=bool)
    err = np.abs(np.asarray(d32, np.float64) - ref)[off] / ref[off]
    return float(np.max(err))


def _rel(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(a - ref)) / max(np.max(np.abs(ref)), 1e-300))


def accuracy_far_from_origin(n: int = 1024, d: int = 16, *, offset: float = 1e4,
                             seed: int = 0) -> dict:
    """float32 errors far from the origin on the current default device.

    Needs 64-bit floats enabled (``jax_enable_x64`` or ``jax.enable_x64(True)``).
    Returns a dict of maximum relative errors:

    * ``D(X)``, ``D(M)``, ``D(A)``: off-diagonal ``|D32 - D64| / D64`` against the
      float64 NumPy difference form of the same float32 points, and ``*_diag``, the
      largest absolute diagonal entry (exactly 0 expected);
    * ``mlkr_loss`` / ``mlkr_grad``: float32 ``jax.value_and_grad(mlkr_loss)`` against
      float64 on the same data (``L = 0.3 (I + 0.1 B)``), gradient error relative to its
      largest entry;
    * ``default_precision_loss`` / ``_grad``: a dense jnp twin at the device's default
      matmul precision, float32, against the same float64 reference;
    * ``emulated_tf32_loss`` / ``_grad``: a float64 dense twin with its forward matmul
      operands rounded to TF32 (10-bit mantissa), against the same reference.
    """
    if jnp.zeros(1, jnp.float64).dtype != jnp.float64:
        raise RuntimeError("accuracy_far_from_origin needs 64-bit floats enabled")
    x, metric, transform, y = far_data(n, d, offset=offset, seed=seed)
    x64 = x.astype(np.float64)
    out = {"n": n, "d": d, "offset": offset}
    cases = (
        ("D(X)", lambda: mj.pairwise_sq_euclidean(jnp.asarray(x)), None),
        ("D(M)", lambda: mj.pairwise_sq_mahalanobis(jnp.asarray(x), jnp.asarray(metric)),
         0.5 * (metric.astype(np.float64) + metric.T.astype(np.float64))),
        ("D(A)", lambda: mj.pairwise_sq_transformed(jnp.asarray(x), jnp.asarray(transform)),
         transform.T.astype(np.float64) @ transform.astype(np.float64)),
    )
    for name, fn, s in cases:
        got = np.asarray(jax.block_until_ready(fn()))
        if got.dtype != np.float32:
            raise AssertionError(f"{name} returned {got.dtype}, expected float32")
        ref = _np_sq_dist(x64, s)
        out[name] = _off_diag_rel(got, ref)
        out[f"{name}_diag"] = float(np.max(np.abs(np.diag(got))))
    lt = 0.3 * transform.astype(np.float64)
    vg = jax.jit(jax.value_and_grad(mj.losses.mlkr_loss))
    v64, g64 = vg(jnp.asarray(lt), jnp.asarray(x64), jnp.asarray(y, jnp.float64))
    v32, g32 = vg(jnp.asarray(lt, jnp.float32), jnp.asarray(x), jnp.asarray(y))
    if v32.dtype != jnp.float32 or g32.dtype != jnp.float32:
        raise AssertionError(f"float32 MLKR returned {v32.dtype} / {g32.dtype}")
    out["mlkr_loss_value"] = float(v64)
    out["mlkr_loss"] = abs(float(v32) - float(v64)) / abs(float(v64))
    out["mlkr_grad"] = _rel(g32, g64)
    for tag, fn, dt in (("default_precision", _mlkr_default_precision, jnp.float32),
                        ("emulated_tf32", _mlkr_emulated_tf32, jnp.float64)):
        vt, gt = jax.jit(jax.value_and_grad(fn))(
            jnp.asarray(lt, dt), jnp.asarray(x64, dt), jnp.asarray(y, dt))
        out[f"{tag}_loss"] = abs(float(vt) - float(v64)) / abs(float(v64))
        out[f"{tag}_grad"] = _rel(gt, g64)
    return out


# ----------------------------------------------------------------------------- run state
class Run:
    """Rows, budget and incremental output of one benchmark run."""

    def __init__(self, args, env):
        self.args = args
        self.env = env
        self.t0 = time.perf_counter()
        self.sections = {"rates": [], "accuracy": [], "losses": [], "fit": [], "distances": []}
        self.history = {}  # cost key -> (n, fixed s, work s) of the last measured case
        self.current = None
        self.stopped = None
        self.lock = threading.Lock()
        self.write_lock = threading.RLock()  # the watchdog exits holding it: no half-written file
        self.mem_limit = _memory_limit()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.args.budget - self.elapsed()

    def case(self, section: str, row: dict, fn, *, cost_key=None, n=None):
        """Run ``fn(row)`` (it fills ``row``) unless the budget forbids; never raises."""
        skip = None
        if self.left() <= 0:
            skip = "skipped: time budget used up"
        elif cost_key is not None and cost_key in self.history and n is not None:
            n0, fixed, work = self.history[cost_key]
            pred = fixed + work * (n / n0) ** 2  # compilation is fixed, the runs grow as n^2
            if pred > self.left():
                skip = f"skipped: predicted {pred:.0f} s > {self.left():.0f} s left"
        if skip:
            row["status"] = skip
        else:
            self.current = f"{section}: {row}"
            t = time.perf_counter()
            try:
                fn(row)
                row.setdefault("status", "ok")
            except Exception as err:  # one failing case must not stop the run
                row["status"] = _error_text(err)
                if self.args.verbose:
                    traceback.print_exc()
            spent = time.perf_counter() - t
            row["case_s"] = round(spent, 2)
            if cost_key is not None and n is not None and row["status"] == "ok":
                work = min(row.get("work_s", spent), spent)
                self.history[cost_key] = (n, spent - work, work)
            self.current = None
            gc.collect()
        with self.lock:
            self.sections[section].append(row)
        print(f"[{self.elapsed():6.1f} s] {section}: " + _short(row), flush=True)
        self.write()

    def data(self) -> dict:
        with self.lock:
            sections = {k: list(v) for k, v in self.sections.items()}
        env = dict(self.env, total_s=round(self.elapsed(), 1))
        if self.stopped:
            env["stopped"] = self.stopped
        return {"env": env, "settings": self.settings(), **sections}

    def settings(self) -> dict:
        a = self.args
        return {"quick": a.quick, "budget_s": a.budget, "grace_s": a.grace,
                "repeats": a.repeats, "block_gib": a.block_gib, "sizes": a.sizes,
                "memory_limit_gib": self.mem_limit / GIB}

    def write(self) -> str:
        with self.write_lock:
            data = self.data()
            md = render(data)
            out = pathlib.Path(self.args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "gpu.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
            (out / "gpu.md").write_text(md)
            return md


def _error_text(err: Exception) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ").replace("|", "/")
    if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
        return "out of memory (at run time): " + text[:120]
    return "error: " + text[:200]


def _short(row: dict) -> str:
    keep = {k: v for k, v in row.items() if not isinstance(v, (list, dict))}
    return json.dumps(keep, default=str)[:300]


def _memory_limit() -> int:
    """Bytes one program may use: the device's allocator limit, else half the host RAM."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"])
    except Exception:  # noqa: S110 - not every backend reports memory statistics
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):
        return 8 * GIB


def _as(dtype, *arrays):
    return [jnp.asarray(a, dtype) for a in arrays]


def _timed(run: Run, fn, *args, max_total_s=None):
    """Compile ahead of time, then the median wall time; returns (median_s, compiled, out)."""
    comp = _timing.compile_jit(fn, *args)
    med, times, out = _timing.median_time(
        comp.fn, *args, repeats=run.args.repeats,
        max_total_s=run.args.max_time_per_case if max_total_s is None else max_total_s)
    return med, comp, len(times), out


# ----------------------------------------------------------------------------- 0: rates
def bench_rates(run: Run, sizes: dict):
    """The matmul rate and the best of two fused exp + row-sum kernels, per dtype."""
    for dtype in DTYPES:
        def matmul_rate(row, dtype=dtype):
            n = sizes["mm_n"]
            ka, kb = jax.random.split(jax.random.key(0))
            a = jax.random.normal(ka, (n, n), dtype)
            b = jax.random.normal(kb, (n, n), dtype)
            med, comp, k, _ = _timed(run, mm, a, b)
            row.update(what="matmul N x N x N, Precision.HIGHEST", size=f"N = {n}",
                       rate=2 * n**3 / med, unit="FLOP/s", ms=1e3 * med, runs=k)

        def exp_iota(row, dtype=dtype):
            r, c = sizes["exp_shape"]

            def f(s):
                i = jax.lax.broadcasted_iota(dtype, (r, c), 0)
                j = jax.lax.broadcasted_iota(dtype, (r, c), 1)
                return jnp.sum(jnp.exp(-s * (i + j)), axis=1)

            med, comp, k, _ = _timed(run, f, jnp.asarray(1e-6, dtype))
            row.update(what="exp + row sum, arguments made in the kernel", size=f"{r} x {c}",
                       rate=r * c / med, unit="elements/s", ms=1e3 * med, runs=k)

        def exp_memory(row, dtype=dtype):
            r, c = sizes["exp_shape"]
            c = max(c // 4, 1)
            a = -jax.random.uniform(jax.random.key(1), (r, c), dtype)
            med, comp, k, _ = _timed(run, lambda a: jnp.sum(jnp.exp(a), axis=1), a)
            row.update(what="exp + row sum of an array in memory", size=f"{r} x {c}",
                       rate=r * c / med, unit="elements/s", ms=1e3 * med, runs=k)

        run.case("rates", {"dtype": dtype, "kind": "matmul"}, matmul_rate)
        run.case("rates", {"dtype": dtype, "kind": "exp"}, exp_iota)
        run.case("rates", {"dtype": dtype, "kind": "exp"}, exp_memory)


def _rate(run: Run, dtype: str, kind: str) -> float | None:
    """The best measured rate of ``kind`` in ``dtype`` (None if none succeeded)."""
    rates = [r["rate"] for r in run.sections["rates"]
             if r["dtype"] == dtype and r["kind"] == kind and r.get("status") == "ok"]
    return max(rates) if rates else None


# ----------------------------------------------------------------------------- 4: accuracy
def bench_accuracy(run: Run, sizes: dict):
    def acc(row):
        res = accuracy_far_from_origin(sizes["acc_n"], sizes["acc_d"])
        row.update(res)

    run.case("accuracy", {"what": "float32 far from the origin"}, acc)


# ----------------------------------------------------------------------------- 1: losses
def bench_losses(run: Run, sizes: dict):
    d = sizes["d"]
    for n in sizes["loss_n"]:
        for dtype in DTYPES:
            x, y = regression_data(n, d)
            xb, lab = blob_data(n, d)
            onehot = np.eye(3)[lab]
            mlkr = dict(
                loss="MLKR", c=1, exps=True, L0=0.5 * np.eye(d),
                ours=lambda b: lambda L, x, y: mj.losses.mlkr_loss(L, x, y, block_size=b),
                dense=dense_mlkr, data=_as(dtype, x, y), dense_data=_as(dtype, x, y),
            )
            nca = dict(
                loss="NCA", c=3, exps=True, L0=0.5 * np.eye(d),
                ours=lambda b: lambda L, x, c: mj.losses.nca_loss(
                    L, x, c, num_classes=3, block_size=b),
                dense=dense_nca, data=[jnp.asarray(xb, dtype), jnp.asarray(lab)],
                dense_data=_as(dtype, xb, onehot),
            )
            cases = [mlkr, nca]
            if n <= sizes["lmnn_max_n"]:
                tn = mj.losses.lmnn_target_neighbors(xb, lab, 3)
                tnj = jnp.asarray(tn, jnp.int32)
                cases.append(dict(
                    loss="LMNN", c=0, exps=False, L0=np.eye(d),
                    ours=lambda b, tnj=tnj: lambda L, x, c: mj.losses.lmnn_loss(
                        L, x, c, target_neighbors=tnj, push_weight=0.5, margin=1.0,
                        block_size=b),
                    dense=lambda L, x, c, t: dense_lmnn(L, x, c, t),
                    data=[jnp.asarray(xb, dtype), jnp.asarray(lab)],
                    dense_data=[jnp.asarray(xb, dtype), jnp.asarray(lab), tnj],
                ))
            for spec in cases:
                row = {"loss": spec["loss"], "dtype": dtype, "n": n, "d": d, "k": d}
                spec["with_auto"] = spec["loss"] == "MLKR" and n >= sizes["auto_min_n"]
                run.case("losses", row, functools.partial(_loss_case, run, spec, n, d, dtype),
                         cost_key=("loss", spec["loss"], dtype), n=n)


def _loss_case(run: Run, spec: dict, n: int, d: int, dtype: str, row: dict):
    L = jnp.asarray(spec["L0"], dtype)
    k = d
    flops = 6 * n * n * k + 2 * n * n * spec["c"]
    exps = n * n if spec["exps"] else 0
    row["floor FLOP"] = flops
    row["floor exps"] = exps
    mm_rate, exp_rate = _rate(run, dtype, "matmul"), _rate(run, dtype, "exp")
    if mm_rate and (exp_rate or not exps):
        row["floor_s"] = flops / mm_rate + (exps / exp_rate if exps else 0.0)
    big = _big_block(n, dtype, run.args.block_gib)
    variants = [("big", big)]
    same = _resolved_block("auto", n, dtype, spec["loss"], k) == big
    if spec["with_auto"] and not same:
        variants.insert(0, ("auto", "auto"))
    results = {}
    for tag, b in variants:
        f = jax.value_and_grad(spec["ours"](b))
        med, comp, reps, out = _timed(run, f, L, *spec["data"])
        results[tag] = (float(out[0]), np.asarray(out[1], np.float64))
        row[f"{tag}_block"] = _resolved_block(b, n, dtype, spec["loss"], k)
        row[f"{tag}_s"] = med
        row[f"{tag}_compile_s"] = comp.compile_s
        row[f"{tag}_temp_gib"] = comp.temp_bytes / GIB
        row[f"{tag}_runs"] = reps
        row["work_s"] = row.get("work_s", 0.0) + med * (reps + 1)
        del comp, out
    if spec["with_auto"] and same:  # "auto" resolves to the same blocks: one program
        row.update(auto_block=row["big_block"], auto_s=row["big_s"])
    best = min(row[f"{t}_s"] for t, _ in variants)
    row["best_s"] = best
    if "floor_s" in row:
        row["best/floor"] = best / row["floor_s"]
    # the dense autodiff twin on the same device. Its (n, n) arrays (distances, softmax,
    # their cotangent; LMNN: the (n, k, n) hinges) bound its memory from below: when even
    # that does not fit, it is not compiled (XLA's autotuner would allocate them).
    itemsize = np.dtype(dtype).itemsize
    at_least = (3 if spec["exps"] else 5) * n * n * itemsize
    if at_least > 0.9 * run.mem_limit:
        row["dense"] = f"out of memory (needs > {at_least / GIB:.0f} GiB)"
        return
    f = jax.value_and_grad(spec["dense"])
    try:
        comp = _timing.compile_jit(f, L, *spec["dense_data"])
    except Exception as err:
        row["dense"] = _error_text(err)
        return
    row["dense_temp_gib"] = comp.temp_bytes / GIB
    row["dense_compile_s"] = comp.compile_s
    if comp.temp_bytes > 0.9 * run.mem_limit:
        row["dense"] = f"out of memory (needs {comp.temp_bytes / GIB:.0f} GiB)"
        return
    try:
        med, times, out = _timing.median_time(
            comp.fn, L, *spec["dense_data"], repeats=run.args.repeats,
            max_total_s=run.args.max_time_per_case)
    except Exception as err:
        row["dense"] = _error_text(err)
        return
    row["dense"] = "ok"
    row["dense_s"] = med
    row["work_s"] += med * (len(times) + 1)
    row["dense/best"] = med / best
    ref_v, ref_g = float(out[0]), np.asarray(out[1], np.float64)
    tag = variants[-1][0]
    row["rel_loss_diff"] = abs(results[tag][0] - ref_v) / max(abs(ref_v), 1e-300)
    row["rel_grad_diff"] = _rel(results[tag][1], ref_g)


def _big_block(n: int, dtype: str, gib: float):
    bsf = getattr(mj.losses, "block_size_for", None)
    if bsf is None:  # pragma: no cover - API without the helper
        return "auto"
    return int(bsf(n, int(gib * GIB), dtype))


def _resolved_block(b, n, dtype, loss, k):
    """Rows per block that ``b`` means; ``"auto"`` as documented in ``docs/scaling.md``.

    ``"auto"`` is ``block_size_for(n, 32 MiB)`` with a floor of 128 rows (MLKR, NCA);
    LMNN's automatic rule differs and is reported as ``"auto"``.
    """
    if b != "auto":
        return int(b)
    bsf = getattr(mj.losses, "block_size_for", None)
    if loss == "LMNN" or bsf is None:
        return "auto"
    rows = int(bsf(n, 32 * 2**20, dtype))
    return rows if rows >= n else min(max(rows, 128), n)


# ----------------------------------------------------------------------------- 2: fit
def bench_fit(run: Run, sizes: dict):
    d = sizes["d"]
    for n in sizes["fit_n"]:
        for dtype in sizes["fit_dtypes"]:
            row = {"dtype": dtype, "n": n, "d": d, "max_iter": sizes["fit_iter"]}
            run.case("fit", row, functools.partial(_fit_case, n, d, dtype, sizes["fit_iter"]),
                     cost_key=("fit", dtype), n=n)


def _fit_case(n: int, d: int, dtype: str, max_iter: int, row: dict):
    x, y = regression_data(n, d)
    x, y = _as(dtype, x, y)
    L0 = jnp.asarray(0.5 * np.eye(d), dtype)
    for tag in ("first", "second"):
        t = time.perf_counter()
        res = mj.fit(mj.losses.mlkr_loss, L0, x, y, max_iter=max_iter)
        jax.block_until_ready(res.params)
        row[f"{tag}_s"] = time.perf_counter() - t
    row["iterations"] = int(res.num_iter)
    row["converged"] = bool(res.converged)
    row["initial_loss"] = float(res.loss_history[0])
    row["final_loss"] = float(res.loss_history[-1])
    row["ms_per_iter"] = 1e3 * row["second_s"] / max(res.num_iter, 1)
    row["work_s"] = 2 * row["second_s"]


# ----------------------------------------------------------------------------- 3: distances
DIST_CASES = (
    ("D(X)", "x", mj.pairwise_sq_euclidean, expansion_euclidean, (0,)),
    ("D(A)", "L and x", mj.pairwise_sq_transformed, expansion_transformed, (1, 0)),
    ("D(M)", "M and x", mj.pairwise_sq_mahalanobis, expansion_mahalanobis, (1, 0)),
)


def bench_distances(run: Run, sizes: dict):
    # small to large; each size in float32, then float64 (on GPUs float32 compiles slower:
    # XLA autotunes its matrix products)
    for d in sizes["dist_d"]:
        for n in sizes["dist_n"]:
            for dtype in sizes["dist_dtypes"]:
                for name, wrt, closed, expansion, argnums in DIST_CASES:
                    row = {"distance": name, "wrt": wrt, "dtype": dtype, "n": n, "d": d}
                    run.case("distances", row,
                             functools.partial(_dist_case, run, name, closed, expansion,
                                               argnums, n, d, dtype),
                             cost_key=("dist", name, dtype, d), n=n)


def _dist_args(name: str, n: int, d: int, dtype: str):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, d)), dtype)
    if name == "D(X)":
        return (x,)
    b = rng.standard_normal((d, d)) / np.sqrt(d)
    if name == "D(M)":
        return x, jnp.asarray(np.eye(d) + b @ b.T, dtype)
    return x, jnp.asarray(np.eye(d) + 0.1 * b, dtype)


def _dist_case(run, name, closed, expansion, argnums, n, d, dtype, row):
    args = _dist_args(name, n, d, dtype)
    grads = {}
    for tag, dist in (("closed", closed), ("autodiff", expansion)):
        f = jax.grad(lambda *a, dist=dist: jnp.sum(jnp.sin(dist(*a))), argnums=argnums)
        med, comp, reps, out = _timed(run, f, *args)
        row[f"{tag}_s"] = med
        row[f"{tag}_compile_s"] = comp.compile_s
        row[f"{tag}_temp_gib"] = comp.temp_bytes / GIB
        grads[tag] = [np.asarray(g, np.float64) for g in out]
        row["work_s"] = row.get("work_s", 0.0) + med * (reps + 1)
        del comp, out
    row["autodiff/closed"] = row["autodiff_s"] / row["closed_s"]
    row["rel_grad_diff"] = max(_rel(a, b) for a, b in zip(grads["closed"], grads["autodiff"]))


# ----------------------------------------------------------------------------- output
def _ms(s):
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "—"
    return f"{1e3 * s:.3g}" if s < 1 else f"{1e3 * s:,.0f}"


def _g(v, fmt=".3g"):
    return "—" if v is None else format(v, fmt)


def _table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _size(data: dict, key: str):
    return data.get("settings", {}).get("sizes", {}).get(key, "?")


def _status_cells(r, ncells):
    return [r["status"]] + [""] * (ncells - 1)


def _md_header(data: dict) -> list:
    env = data["env"]
    md = ["# metricjax on one device: losses, fits, distance rules, float32 accuracy", ""]
    md += [f"- date: {env['date']}",
           f"- device: {env['device_kind']} ({env['backend']} backend, "
           f"{env['device_count']} device(s); all timings on the first)",
           f"- JAX: {env['jax']} (jaxlib {env['jaxlib']}), metricjax {env['metricjax']}, "
           f"Python {env['python']}",
           f"- CPU: {env['cpu_model']} ({env['cpu_count']} cores)",
           f"- command: `{env['command']}`",
           f"- XLA_FLAGS: `{env['XLA_FLAGS']}`, XLA_PYTHON_CLIENT_PREALLOCATE: "
           f"`{env['XLA_PYTHON_CLIENT_PREALLOCATE']}`",
           f"- total time: {env['total_s']} s (budget {data['settings']['budget_s']} s)"]
    if env.get("jaxtyping_stub"):
        md.append("- jaxtyping not installed: the benchmark used a do-nothing stand-in")
    if env.get("stopped"):
        md.append(f"- **stopped early**: {env['stopped']}")
    md += ["", "Times are medians of several runs after a warm-up, jit-compiled, each run "
           "ended by `jax.block_until_ready`; ms = milliseconds, compile times excluded "
           "unless stated. Ratios compare two code paths in the same run on the same device.",
           ""]
    return md


def _md_rates(data: dict) -> list:
    md = []
    rows = []
    for r in data["rates"]:
        if r.get("status") != "ok":
            rows.append([r["dtype"], r["kind"], r["status"], "", ""])
            continue
        scale = 1e12 if r["unit"] == "FLOP/s" else 1e9
        unit = "TFLOP/s" if r["unit"] == "FLOP/s" else "G elements/s"
        rows.append([r["dtype"], r["what"], r["size"], f"{r['rate'] / scale:.3g} {unit}",
                     _ms(r["ms"] / 1e3)])
    md += [_table(["dtype", "kernel", "size", "rate", "ms"], rows)]
    return md


def _md_accuracy(data: dict) -> list:
    md = []
    for r in data["accuracy"]:
        if r.get("status") != "ok":
            md += [r["status"], ""]
            continue
        md += [f"n = {r['n']}, d = {r['d']}. Distances: largest off-diagonal relative error "
               "against the float64 NumPy difference form of the same float32 points "
               "(the diagonal is exactly 0 when `diag` is 0). MLKR (`L = 0.3 (I + 0.1 B)`, "
               f"float64 loss {r['mlkr_loss_value']:.6g}): float32 loss and gradient "
               "against float64, gradient error relative to its largest entry.", ""]
        rows = [[f"metricjax `{k}`", f"{r[k]:.2e}", f"diag max {r[k + '_diag']:.1g}"]
                for k in ("D(X)", "D(M)", "D(A)")]
        rows += [["metricjax `mlkr_loss`, float32", f"loss {r['mlkr_loss']:.2e}",
                  f"gradient {r['mlkr_grad']:.2e}"],
                 ["dense jnp twin, default matmul precision, float32",
                  f"loss {r['default_precision_loss']:.2e}",
                  f"gradient {r['default_precision_grad']:.2e}"],
                 ["float64 twin, forward matmul operands rounded to TF32 (emulated)",
                  f"loss {r['emulated_tf32_loss']:.2e}",
                  f"gradient {r['emulated_tf32_grad']:.2e}"]]
        md += [_table(["computation", "max relative error", ""], rows)]
    return md


def _md_losses(data: dict) -> list:
    md = [f"d = k = {_size(data, 'd')} (square L). "
          "`auto`: metricjax with the default `block_size=\"auto\"`; `big`: "
           f"`block_size=block_size_for(n, {data['settings']['block_gib']:g} GiB)` (rows per "
           "block in brackets); `dense`: `jax.value_and_grad` of a dense jnp twin of the same "
           "loss (centred expansion, `Precision.HIGHEST`), out of memory when its (n, n) arrays "
           "alone or XLA's temporary buffers exceed 90% of the device memory. `floor`: n² exps at the better measured "
           "exp rate + (6 n² k + 2 n² c) FLOP at the measured matmul rate (distance matmul 2n²k, "
           "gradient 4n²k, softmax-weighted values 2n²c; c = 1 MLKR, 3 NCA; LMNN: 6n²k FLOP "
           "only). `rel. diff`: metricjax (`big`) vs the dense twin, loss / gradient "
           "(relative to the largest entry). Temp: XLA temporary buffers, GiB.", ""]
    head = ["loss", "dtype", "n", "auto ms", "big ms", "dense ms", "dense / best",
            "floor ms", "best / floor", "temp GiB big / dense", "rel. diff loss / grad"]
    rows = []
    for r in data["losses"]:
        cells = [r["loss"], r["dtype"], f"{r['n']:,}"]
        if r.get("status") != "ok":
            rows.append(cells + _status_cells(r, len(head) - 3))
            continue
        auto = f"{_ms(r['auto_s'])} [{r['auto_block']}]" if "auto_s" in r else "—"
        big = f"{_ms(r['big_s'])} [{r['big_block']}]"
        dense = _ms(r["dense_s"]) if "dense_s" in r else r.get("dense", "—")
        ratio = f"{r['dense/best']:.1f}x" if "dense/best" in r else "—"
        floor = _ms(r.get("floor_s"))
        bf = f"{r['best/floor']:.1f}" if "best/floor" in r else "—"
        dense_temp = f"{r['dense_temp_gib']:.3g}" if "dense_temp_gib" in r else "—"
        temp = f"{r['big_temp_gib']:.2g} / {dense_temp}"
        diff = (f"{r['rel_loss_diff']:.0e} / {r['rel_grad_diff']:.0e}"
                if "rel_grad_diff" in r else "—")
        rows.append(cells + [auto, big, dense, ratio, floor, bf, temp, diff])
    md += [_table(head, rows)]
    return md


def _md_fit(data: dict) -> list:
    md = [f"d = {_size(data, 'd')}, regression data `y = sin(x w) + noise`. "
          "`first`: the first call, compilation included; `second`: the same call again "
           "(the compiled loop is cached), i.e. without compilation.", ""]
    head = ["dtype", "n", "max_iter", "first s (with compile)", "second s", "iterations",
            "ms / iteration", "converged", "loss: initial → final"]
    rows = []
    for r in data["fit"]:
        cells = [r["dtype"], f"{r['n']:,}", r["max_iter"]]
        if r.get("status") != "ok":
            rows.append(cells + _status_cells(r, len(head) - 3))
            continue
        rows.append(cells + [f"{r['first_s']:.2f}", f"{r['second_s']:.2f}", r["iterations"],
                             f"{r['ms_per_iter']:.3g}", r["converged"],
                             f"{r['initial_loss']:.5g} → {r['final_loss']:.5g}"])
    md += [_table(head, rows)]
    return md


def _md_distances(data: dict) -> list:
    md = ["`closed`: through `mj.pairwise_sq_*` (closed-form rules); `autodiff`: `jax.grad` "
           "of the same centred expansion written in jnp (`xc = x - mean`, "
           "`D = q_i + q_j - 2 xc xcᵀ`, `Precision.HIGHEST`). `rel. grad diff`: largest "
           "difference relative to the largest entry, over all gradients.", ""]
    head = ["D", "grad wrt", "dtype", "n", "d", "closed ms", "autodiff ms",
            "autodiff / closed", "temp GiB closed / autodiff", "rel. grad diff"]
    rows = []
    for r in data["distances"]:
        cells = [r["distance"], r["wrt"], r["dtype"], f"{r['n']:,}", r["d"]]
        if r.get("status") != "ok":
            rows.append(cells + _status_cells(r, len(head) - 5))
            continue
        rows.append(cells + [_ms(r["closed_s"]), _ms(r["autodiff_s"]),
                             f"{r['autodiff/closed']:.2f}x",
                             f"{r['closed_temp_gib']:.3g} / {r['autodiff_temp_gib']:.3g}",
                             f"{r['rel_grad_diff']:.0e}"])
    md += [_table(head, rows)]
    return md


MD_SECTIONS = (
    ("## Device limits (measured)", _md_rates),
    ("## float32 far from the origin (offset 1e4, unit spread)", _md_accuracy),
    ("## One loss + gradient (`jax.value_and_grad` with respect to L)", _md_losses),
    ("## Whole fit: `mj.fit(mlkr_loss, 0.5 I, x, y, max_iter=...)` (L-BFGS)", _md_fit),
    ("## Distance rules: `jax.grad` of `sum(sin(D))`", _md_distances),
)


def render(data: dict) -> str:
    """``gpu.md`` from the collected rows; a table that fails to render says so."""
    md = _md_header(data)
    for title, fn in MD_SECTIONS:
        md += [title, ""]
        try:
            md += fn(data)
        except Exception as err:  # a malformed row must not lose the other tables
            md += [f"(this table could not be rendered: {type(err).__name__}: {err})", ""]
    return "\n".join(md)


def env_info(argv) -> dict:
    env = _timing.env_header()
    dev = jax.devices()[0]
    try:
        import jaxlib

        jaxlib_version = jaxlib.__version__
    except Exception:  # pragma: no cover
        jaxlib_version = "?"
    env.update(
        device_kind=dev.device_kind, backend=jax.default_backend(),
        device_count=jax.device_count(), jaxlib=jaxlib_version,
        metricjax=getattr(mj, "__version__", "?"), cpu_model=_timing.cpu_model(),
        command=shlex.join(["python", *argv]),
        XLA_PYTHON_CLIENT_PREALLOCATE=os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "(unset)"),
        jaxtyping_stub=_JAXTYPING_STUB,
    )
    return env


def _watchdog(run: Run, deadline_s: float):
    """Write what was measured and exit the process once ``deadline_s`` has passed."""
    def watch():
        while run.elapsed() < deadline_s:
            time.sleep(0.5)
        run.stopped = (f"watchdog after {deadline_s:.0f} s, during "
                       f"{run.current or 'output'}; later cases were not run")
        with run.write_lock:  # the main thread cannot start another write
            try:
                print(run.write(), flush=True)
            finally:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


SECTIONS = {"rates": bench_rates, "accuracy": bench_accuracy, "losses": bench_losses,
            "fit": bench_fit, "distances": bench_distances}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test on any CPU)")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS, help="folder for gpu.md/gpu.json")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds after which no new case starts (default 250; 50 with --quick)")
    p.add_argument("--grace", type=float, default=25.0,
                   help="the watchdog writes the results and exits at budget + grace seconds")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case (at most)")
    p.add_argument("--max-time-per-case", type=float, default=1.0,
                   help="seconds of timed runs per case; slow cases get fewer runs (>= 3)")
    p.add_argument("--block-gib", type=float, default=2.0,
                   help="block temporaries of the 'big' loss variant, GiB")
    p.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failing cases")
    args = p.parse_args(argv)
    if args.budget is None:
        args.budget = 50.0 if args.quick else 250.0
    sizes = quick_sizes() if args.quick else full_sizes()
    args.sizes = sizes
    jax.config.update("jax_enable_x64", True)  # float64 cases; every array has a dtype

    run = Run(args, env_info([sys.argv[0], *argv]))
    _watchdog(run, args.budget + args.grace)
    print(f"jax {jax.__version__} on {run.env['device_kind']} ({run.env['backend']}); "
          f"budget {args.budget:.0f} s", flush=True)
    # the rates come first: the loss floors need them
    wanted = set(args.sections) | ({"rates"} if "losses" in args.sections else set())
    for name in SECTIONS:
        if name in wanted:
            SECTIONS[name](run, sizes)
    # held until the process ends: a watchdog that fires now either finishes its write
    # first (and exits) or waits here and dies with the process; released, it could be
    # cut off mid-write by the interpreter's exit (a truncated gpu.md)
    run.write_lock.acquire()
    md = run.write()
    print()
    print(md)
    print(f"wrote {args.out / 'gpu.md'} and {args.out / 'gpu.json'}", flush=True)


if __name__ == "__main__":
    main()
