"""Run a script in a fresh Python with ``count`` forced CPU devices; return its last JSON line.

``XLA_FLAGS=--xla_force_host_platform_device_count`` must be set before JAX starts,
hence the subprocess.
"""

import json
import os
import subprocess
import sys


def run_on_cpu_devices(script: str, count: int = 4, timeout: float = 600) -> dict:
    env = dict(os.environ)
    flag = f"--xla_force_host_platform_device_count={count}"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
