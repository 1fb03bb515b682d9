"""What machine a benchmark ran on, and the NumPy reference process: no JAX imported.

* :func:`cpu_model`, :func:`blas_info`: the CPU model and the BLAS kernels loaded in
  this process (threadpoolctl), for every results header;
* :func:`run_reference`: ``script --reference SPEC`` in a child process whose
  environment lacks ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (they can force a
  slower kernel on a current NumPy), so references run at their best speed; the child
  prints one JSON line, returned as a dict.

The reference processes import this module too, so it must not import JAX.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys

UNSET_FOR_REFERENCE = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def cpu_model() -> str:
    """The ``model name`` of ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_info() -> list[dict]:
    """The BLAS/OpenMP libraries loaded in this process (threadpoolctl), or ``[]``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "num_threads")
    return [{k: d.get(k) for k in keys} for d in threadpool_info()]


def run_reference(spec, script: str) -> dict:
    """``script --reference SPEC`` in a child process without the OpenBLAS overrides."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET_FOR_REFERENCE}
    proc = subprocess.run(
        [sys.executable, script, "--reference", json.dumps(spec)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"metric-learn reference failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
