"""Small timing helpers shared by the benchmarks.

* :func:`compile_jit` jit-compiles ahead of time and reports the compile time and
  XLA's temporary-buffer size (``memory_analysis().temp_size_in_bytes``), so a
  caller can decide *before running* whether a configuration fits in memory.
* :func:`median_time` warms up, then takes the median of ``k`` runs, each ended by
  ``jax.block_until_ready`` (JAX dispatches asynchronously).
* :func:`env_header` records what the numbers depend on.
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


def env_header() -> dict:
    """Date, versions, devices, CPU count and ``GLIBC_TUNABLES`` (it changes malloc)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax": jax.__version__,
        "devices": [str(dev) for dev in jax.devices()],
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "(unset)"),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "(unset)"),
    }
