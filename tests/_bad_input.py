"""Shared pieces of the bad-input tables: data, row builders, runners.

Bad input gets a clear error, never a silent wrong answer. The policy is written down
in ``docs/input_policy.md``; its table of cases is split per module over the
``tests/test_<module>_bad_input.py`` files, which build their rows with
:meth:`Table.row` / :meth:`EstimatorTable.row` and run them with the checks below.
Every row names a call, the exception type and a regular expression that the message
must match; the regular expressions insist on the argument's name and on what was
expected. Rows marked ``jit`` are shape or dtype errors of the functional API: those
are raised while tracing, so the same call must also fail under ``jax.jit``. Value
problems (NaN/inf) pass through the functional API by design and are caught by
:func:`metricjax.check_finite` or by the estimators.

Not collected by pytest (leading underscore); the test files import it as a module.
"""

from __future__ import annotations

import functools
import warnings

import jax
import numpy as np
import pytest
from _typecheck import unchecked_calls

import metricjax as mj

# ----------------------------------------------------------------------------- data
N, D, K = 8, 3, 2
_rng = np.random.default_rng(0)
X = _rng.standard_normal((N, D)).astype(np.float32)
Y = _rng.standard_normal((5, D)).astype(np.float32)
METRIC = np.eye(D, dtype=np.float32)
L = _rng.standard_normal((K, D)).astype(np.float32)
T = _rng.standard_normal(N).astype(np.float32)  # regression targets
LAB = np.array([0, 0, 0, 0, 1, 1, 1, 1])
TN = np.array([[1], [2], [3], [0], [5], [6], [7], [4]])  # a valid target-neighbour table

# estimator data (drawn from the same generator, after the functional data)
XE = _rng.standard_normal((12, D))
YR = _rng.standard_normal(12)
YC = np.repeat([0, 1, 2], 4)


def f32(*shape):
    return np.ones(shape, np.float32)


NAN_X = X.copy()
NAN_X[2, 1] = np.nan
INF_X = X.copy()
INF_X[0, 0] = np.inf

SQUARED = (mj.pairwise_sq_euclidean, mj.pairwise_sq_mahalanobis, mj.pairwise_sq_transformed)
PLAIN = (mj.pairwise_euclidean, mj.pairwise_mahalanobis)


def param_of(fn):
    """The matrix argument of a distance function (``None`` for Euclidean)."""
    if fn in (mj.pairwise_sq_mahalanobis, mj.pairwise_mahalanobis):
        return METRIC
    if fn is mj.pairwise_sq_transformed:
        return L
    return None


def dist_args(fn, x, param=None, y=None):
    p = param_of(fn) if param is None else param
    return (x, y) if p is None else (x, p, y)


# ----------------------------------------------------------------------------- functional tables
#: the parameter names of a functional row, for ``pytest.mark.parametrize``
FUNCTIONAL_PARAMS = ("fn", "args", "kwargs", "exc", "match", "jit")
ONLY_JIT = "only"


class Table(list):
    """Rows (id, callable, args, kwargs, exception, message regex, jit) with jit = False
    (eager only), True (eager and under jax.jit) or ONLY_JIT (the problem exists only
    under tracing)."""

    def row(self, id_, fn, args, kwargs, exc, match, jit=False, marks=()):
        self.append(pytest.param(fn, args, kwargs, exc, match, jit, id=id_, marks=marks))

    @property
    def jitted(self):
        """The rows that must also fail under ``jax.jit``."""
        return [p for p in self if p.values[-1] is True]


def _jitted(fn, args, kwargs):
    return lambda: jax.jit(functools.partial(fn, **kwargs))(*args)


# The rows test the errors a user sees: run them without the test-time type checker
# (tests/_typecheck.py), which would otherwise refuse bad shapes before our checks do.
def check_bad_input(fn, args, kwargs, exc, match, jit):
    """The row raises ``exc`` with a message matching ``match`` (eagerly, or under jit for
    the rows whose problem only exists while tracing)."""
    call = _jitted(fn, args, kwargs) if jit == ONLY_JIT else (lambda: fn(*args, **kwargs))
    with unchecked_calls(), pytest.raises(exc, match=match):
        call()


def check_bad_input_under_jit(fn, args, kwargs, exc, match):
    """Shape and dtype errors are raised at trace time: the same error under ``jax.jit``."""
    with unchecked_calls(), pytest.raises(exc, match=match):
        _jitted(fn, args, kwargs)()


def functional_tests(table: Table):
    """The two tests of a functional table, for a test module to bind at its top level:
    every row (:func:`check_bad_input`), and the ``jit`` rows under ``jax.jit``
    (:func:`check_bad_input_under_jit`).

    ``test_functional_bad_input, test_functional_bad_input_under_jit = functional_tests(T)``
    """

    @pytest.mark.parametrize(FUNCTIONAL_PARAMS, table)
    def test_functional_bad_input(fn, args, kwargs, exc, match, jit):
        check_bad_input(fn, args, kwargs, exc, match, jit)

    @pytest.mark.parametrize(FUNCTIONAL_PARAMS, table.jitted)
    def test_functional_bad_input_under_jit(fn, args, kwargs, exc, match, jit):
        check_bad_input_under_jit(fn, args, kwargs, exc, match)

    return test_functional_bad_input, test_functional_bad_input_under_jit


# ----------------------------------------------------------------------------- estimator table
#: the parameter names of an estimator row, for ``pytest.mark.parametrize``
ESTIMATOR_PARAMS = ("name", "action", "exc", "match")


class EstimatorTable(list):
    """Rows (estimator name, action(cls, y) -> call, exception, regex), one per name."""

    def row(self, id_, names, action, exc, match, marks=()):
        for name in names:
            self.append(pytest.param(name, action, exc, match, id=f"{name}-{id_}", marks=marks))


def check_estimator_bad_input(cls, y, action, exc, match):
    with unchecked_calls(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc, match=match):
            action(cls, y)
