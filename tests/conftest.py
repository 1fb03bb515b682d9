"""Shared fixtures: PRNG key, float64 context, strict rank promotion; the fast/slow split."""

import os
import pathlib
import sys

# Tests compile thousands of small XLA programs: compile them at LLVM -O0 (about 20%
# less CPU per test file). XLA's HLO passes, fusion and float semantics are the same
# (no fast-math at any level), so the results are too; only the machine code is less
# optimised. Set before JAX creates its CPU client; subprocess tests inherit it.
# XLA's CPU fusion emitters are also switched off for the tests: the older elemental
# emitters generate the same fused computations with less compile work (about 25% less
# CPU over the suite; 40% on a Hessian through the custom VJPs).
# One LLVM module per program instead of several compiled in parallel: less work
# in total on a 2-core machine with two test workers (about 6%).
_OPTS = {
    "xla_backend_optimization_level": "0",
    "xla_cpu_use_fusion_emitters": "false",
    "xla_cpu_parallel_codegen_split_count": "1",
}
_flags = os.environ.get("XLA_FLAGS", "")
for _name, _value in _OPTS.items():
    if _name not in _flags:
        _flags = f"{_flags} --{_name}={_value}".strip()
os.environ["XLA_FLAGS"] = _flags

# One on-disk XLA compilation cache for the whole run, shared by the pytest-xdist
# workers and every subprocess the tests start (examples, notebook, multi-device
# scripts): a program compiled by one process is loaded, not recompiled, by the others.
# A fresh directory per run (made by the first process, inherited through the
# environment, removed at the end), so no run reuses another run's programs and the
# compile-time tests always compile. Set METRICJAX_TEST_XLA_CACHE to keep one yourself.
_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_OWN_CACHE = None
if _CACHE_ENV not in os.environ:
    import tempfile

    _OWN_CACHE = os.environ.get("METRICJAX_TEST_XLA_CACHE") or tempfile.mkdtemp(
        prefix="metricjax-tests-xla-"
    )
    os.environ[_CACHE_ENV] = _OWN_CACHE
    # every program, however small or quick to compile (the default caches only
    # those over one second)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# The same for Python's bytecode: where PYTHONDONTWRITEBYTECODE is set and the install
# did not byte-compile, every process of the run -- two pytest-xdist workers and each
# subprocess -- would compile jax, scipy, scikit-learn, the jaxtyping-instrumented
# package and the assertion-rewritten test modules from source again: about 9 of the
# 19 s that collecting the suite takes, and 5-7 s per subprocess that imports
# metricjax, scikit-learn and matplotlib (10-12 s instead of 4-5). Bytecode is written
# to a per-run folder beside the XLA cache (nothing lands in the source trees) and read
# back by every later process of the run.
if _OWN_CACHE is not None and os.environ.get("PYTHONDONTWRITEBYTECODE"):
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(_OWN_CACHE, "pycache"))
    sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]
    sys.dont_write_bytecode = False

import jax  # noqa: E402
import pytest  # noqa: E402

# The repository root, so tests can import the test-only reference shims of
# ``benchmarks/_reference_libs.py`` (metric-learn on current scikit-learn).
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Hidden broadcasting between arrays of different rank, and implicit promotion
# between dtypes (float32 with float64, ints with floats), fail loudly in the tests.
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def as_user():
    """Run the test as a user would: metricjax's annotations unchecked (see _typecheck.py).

    For tests of our own error messages, which the test-time type checker would
    otherwise pre-empt with its own.
    """
    from _typecheck import unchecked_calls

    with unchecked_calls():
        yield


@pytest.fixture
def standard_promotion():
    """JAX's standard dtype promotion, for tests that drive flax/optax code (not strict-clean)."""
    with jax.numpy_dtype_promotion("standard"):
        yield


# ----------------------------------------------------------------------------------
# The default run (`pytest`, i.e. `-m "not slow"`) is the quick loop of unit tests,
# closed-form-vs-autodiff checks and bad-input tables. Besides the tests marked
# `@pytest.mark.slow` in their files, these groups are slow (each test several seconds
# on 2 cores, or hundreds of them): they run with `-m ""` (CI and the README's command).
# ----------------------------------------------------------------------------------
_SLOW_FILES = {
    "test_bench_gpu.py",  # runs the GPU benchmark script at --quick size
    "test_distributed.py",  # two JAX processes
    "test_estimators_mesh.py",  # 4 forced CPU devices in a subprocess
    "test_mlkr_generalises.py",  # learned-metric quality on data sets
    "test_properties.py",  # hypothesis
    "test_seeds.py",  # reproducibility of whole fits across seeds
    "test_sweep.py",
    "test_train_traceable.py",  # whole fits under jit / vmap
    "test_weights.py",  # whole fits with sample weights
}
_SLOW_NAMES = (
    "test_sklearn_estimator_checks",  # scikit-learn's check_estimator, ~40 checks each
    "metric_learn",  # oracle comparisons with metric-learn 0.7 (its fits are slow)
    "four_devices",
    "_in_pipeline_and_grid_search",
    "second_order",
    "_knn_accuracy_",
    "_on_diabetes",
    "compiles_once",
    "compiled_once",
    "compiled_memory_grows",
    "pickle_round_trip",
    "nnx_model_state",
    "resume_default_lbfgs",
    "forward_mode_fails_as_documented",
    "half_precision",
    "bitwise_repeatable",
)


# ... and the tests measured at 1 s or more each (listed in slow_tests.txt).
_MEASURED = pathlib.Path(__file__).with_name("slow_tests.txt")
_SLOW_IDS = {
    line.strip()
    for line in _MEASURED.read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


# The longest tests (10 s to a minute each: subprocesses with several devices or
# processes, the notebook and the example scripts) run first, so that the two workers
# never wait at the end of a run for one of them to finish a long test.
_LONGEST = (
    "test_sharded.py::test_four_devices",
    "test_notebook.py::",
    "test_bench_gpu.py::",
    "test_estimators_mesh.py::",
    "test_distributed.py::",
    "test_sweep.py::",
    "test_examples.py::",
    "test_usability.py::test_forward_mode_fails_as_documented",
)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not any(s in item.nodeid for s in _LONGEST))  # stable
    slow = pytest.mark.slow
    for item in items:
        name = item.nodeid.split("::", 1)[-1]
        if (
            item.path.name in _SLOW_FILES
            or any(s in name for s in _SLOW_NAMES)
            or item.nodeid in _SLOW_IDS
        ):
            item.add_marker(slow)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``-n N`` schedules by work stealing: a worker that runs out of tests takes
    pending ones from the other, so both finish together (xdist's default sends fixed
    chunks and can leave one worker idle while the other runs a queue of long tests)."""
    if config.getvalue("dist") == "load":
        from xdist.scheduler import WorkStealingScheduling

        return WorkStealingScheduling(config, log)
    return None


def _exit_now():
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def pytest_unconfigure(config):
    if hasattr(config, "workerinput"):
        # A pytest-xdist worker has sent all its reports by now and only waits for the
        # controller to close it. Its normal exit -- JAX's atexit cleanup of a few
        # thousand compiled programs, then the interpreter's teardown -- took 4-15 s
        # while the controller waited for it. Exit at once instead: atexit runs the
        # handler registered last first, so this one runs before JAX's.
        import atexit

        atexit.register(_exit_now)
        return
    # the process that made the run's cache removes it (xdist workers inherit it)
    if _OWN_CACHE is not None and not os.environ.get("METRICJAX_TEST_XLA_CACHE"):
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
