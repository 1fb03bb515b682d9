"""Small timing helpers shared by the benchmarks.

* :func:`compile_jit` jit-compiles ahead of time and reports the compile time and
  XLA's temporary-buffer size (``memory_analysis().temp_size_in_bytes``), so a
  caller can decide *before running* whether a configuration fits in memory.
* :func:`median_time` warms up, then takes the median of ``k`` runs, each ended by
  ``jax.block_until_ready`` (JAX dispatches asynchronously).
* :func:`interleaved_medians` does the same for several functions run in turns, so
  that load on a shared machine hits them alike.
* :func:`env_header` records what the numbers depend on (CPU model, BLAS kernel).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax

# cpu_model and blas_info live in _machine (no JAX there: the reference processes use
# them); re-exported here. _timing is imported as ``benchmarks._timing`` or as
# ``_timing`` with the script folder on sys.path.
try:
    from ._machine import blas_info, cpu_model  # noqa: F401
except ImportError:
    from _machine import blas_info, cpu_model  # noqa: F401

GIB = 2**30
MIB = 2**20


@dataclass
class Compiled:
    fn: Callable
    compile_s: float  # trace + lower + XLA compile
    temp_bytes: int  # XLA temporary buffers (excludes arguments and outputs)


def compile_jit(f: Callable, *args) -> Compiled:
    """``jax.jit(f)`` compiled for ``args``, with its compile time and temp memory."""
    t0 = time.perf_counter()
    compiled = jax.jit(f).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    stats = compiled.memory_analysis()
    temp = -1 if stats is None else int(stats.temp_size_in_bytes)
    return Compiled(compiled, compile_s, temp)


def median_time(
    fn: Callable, *args, repeats: int = 5, warmup: int = 1, max_total_s: float | None = None
) -> tuple[float, list[float], object]:
    """Median wall time of ``fn(*args)`` over ``repeats`` runs after ``warmup`` runs.

    With ``max_total_s``, slow functions get fewer repeats (at least 3) so that the
    timed runs take about that long. Returns ``(median, all_times, last_output)``.
    """
    out = None
    t_warm = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        t_warm = time.perf_counter() - t0
    if max_total_s is not None and t_warm > 0:
        repeats = min(repeats, max(3, int(max_total_s / t_warm)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def interleaved_medians(
    fns: dict, *args, repeats: int = 5, max_total_s: float | None = None
) -> tuple[dict, dict, dict]:
    """Median wall time of each ``fns[name](*args)``, the functions run in turns.

    One warm-up round, then ``repeats`` rounds that each run every function once,
    ended by ``jax.block_until_ready``. With ``max_total_s``, slow rounds mean fewer
    of them (at least 3). Returns ``(medians, all_times, last_outputs)`` keyed by name.
    """
    outs, times = {}, {name: [] for name in fns}
    t0 = time.perf_counter()
    for name, fn in fns.items():
        outs[name] = jax.block_until_ready(fn(*args))
    t_round = time.perf_counter() - t0
    if max_total_s is not None and t_round > 0:
        repeats = min(repeats, max(3, int(max_total_s / t_round)))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outs[name] = jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, times, outs


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (a shared machine's timings vary with them)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def env_header() -> dict:
    """Date, versions, devices, CPU model and count, BLAS and ``GLIBC_TUNABLES`` (it changes malloc)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "jax": jax.__version__,
        "jaxlib": _jaxlib_version(),
        "devices": [str(dev) for dev in jax.devices()],
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "(unset)"),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "(unset)"),
        "blas": blas_info(),
    }


def env_markdown() -> str:
    """:func:`env_header` as the Markdown list that opens a results file."""
    return "\n".join(f"- {key}: {value}" for key, value in env_header().items())


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return "?"
