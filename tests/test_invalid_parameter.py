"""Hyperparameters of the wrong type raise ``InvalidParameterError`` (a ``ValueError`` and a
``TypeError``, as scikit-learn's), before any work and leaving a fitted estimator as it was;
``random_state`` is checked up front even where the fit does not draw from it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris

import metricjax as mj
from metricjax.exceptions import InvalidParameterError

X, Y = load_iris(return_X_y=True)
X, Y = X[::3], Y[::3]
_RNG = np.random.default_rng(0)
PAIRS = X[_RNG.integers(0, len(X), (40, 2))]
PAIR_Y = np.where(np.arange(40) % 2 == 0, 1, -1)
TRIPLETS = X[_RNG.integers(0, len(X), (40, 3))]
QUADRUPLETS = X[_RNG.integers(0, len(X), (40, 4))]


def _fit(name, est):
    if name in ("ITML", "SDML", "MMC"):
        return est.fit(PAIRS, PAIR_Y)
    if name == "SCML":
        return est.fit(TRIPLETS)
    if name == "LSML":
        return est.fit(QUADRUPLETS)
    if name == "Covariance":
        return est.fit(X)
    return est.fit(X, Y)


# the wrong-type values of each hyperparameter that has a type to check
WRONG = {
    "max_iter": "a", "n_components": 1.5, "tol": "a", "gamma": "a", "balance_param": "a",
    "sparsity_param": "a", "k": "a", "n_constraints": "a", "batch_size": "a",
    "output_iter": "a", "n_basis": "a", "beta": "a", "max_proj": "a",
    "convergence_threshold": "a", "n_neighbors": "a", "regularization": "a",
    "push_weight": "a", "chunk_size": "a", "n_chunks": "a", "alpha": "a", "warm_start": "yes",
    "callback": 3, "random_state": "x", "block_size": 2.5, "k_genuine": "a", "k_impostor": "a",
    "alphas": "a",
}  # fmt: skip
ESTIMATORS = (
    "MLKR", "MLKRCV", "NCA", "LMNN", "ITML", "ITML_Supervised", "MMC", "MMC_Supervised",
    "LSML", "LSML_Supervised", "SCML", "SCML_Supervised", "SDML", "SDML_Supervised",
    "LFDA", "RCA", "RCA_Supervised",
)  # fmt: skip
# RCA_Supervised's defaults (100 chunks of 2) need more points than this subset of iris
SMALL_CHUNKS = {"RCA_Supervised": {"n_chunks": 10}}
CASES = [
    (name, param)
    for name in ESTIMATORS
    for param in sorted(getattr(mj, name)().get_params())
    if param in WRONG
]


def test_invalid_parameter_error_is_both_value_and_type_error():
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)


def test_every_estimator_has_cases():
    assert {name for name, _ in CASES} == set(ESTIMATORS)
    assert len(CASES) > 80


@pytest.mark.parametrize(("name", "param"), CASES)
def test_wrong_type_raises_invalid_parameter_error_naming_it(name, param, as_user):
    est = getattr(mj, name)(**{**SMALL_CHUNKS.get(name, {}), param: WRONG[param]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and n_basis warnings of some learners
        # metric-learn's deprecated spellings (a FutureWarning names the new one)
        renamed = {"convergence_threshold": "tol", "k": "n_neighbors" if name == "LMNN" else "k"}
        named = renamed.get(param, param)
        with pytest.raises(InvalidParameterError, match=named):
            _fit(name, est)


@pytest.mark.parametrize("name", ["NCA", "ITML", "LSML", "MLKR"])
def test_bad_random_state_is_refused_before_any_work(name, as_user):
    """NCA with init='identity', ITML and LSML with their default priors and MLKR with
    init='identity' never draw from ``random_state``; a bad one is refused all the same, as
    scikit-learn's and metric-learn's estimators do."""
    kw = {"init": "identity"} if name in ("NCA", "MLKR") else {}
    with pytest.raises(ValueError, match="random_state"):
        _fit(name, getattr(mj, name)(random_state="x", max_iter=2, **kw))
    with pytest.raises(InvalidParameterError):
        _fit(name, getattr(mj, name)(random_state=np.random.default_rng(0), max_iter=2, **kw))


def test_failed_fit_leaves_the_fitted_estimator_unchanged(as_user):
    est = mj.NCA(max_iter=50, tol=1e-3, init="identity").fit(X, Y)
    before = (est.components_.copy(), est.n_iter_, est.n_features_in_)
    est.set_params(max_iter="a")
    with pytest.raises(ValueError, match="max_iter"):
        est.fit(X, Y)
    np.testing.assert_array_equal(est.components_, before[0])
    assert (est.n_iter_, est.n_features_in_) == before[1:]


def test_counts_and_tolerances_take_concrete_scalar_arrays_not_traced_ones():
    """``ITML(tol=jnp.float32(1e-3))`` worked before the checks were unified (``float(tol)``);
    concrete 0-d NumPy / JAX arrays are numbers, traced ones and booleans are not."""
    import jax
    import jax.numpy as jnp

    from metricjax import _checks

    assert _checks.tolerance(jnp.float32(0.5)) == 0.5
    assert _checks.tolerance(np.array(2)) == 2.0
    assert _checks.count(jnp.array(3), "max_iter") == 3
    for bad in (np.array([1.0]), np.array(True), "1e-3"):
        with pytest.raises(InvalidParameterError, match="tol"):
            _checks.tolerance(bad)
    with pytest.raises(InvalidParameterError, match="max_iter"):
        jax.jit(lambda m: _checks.count(m, "max_iter"))(3)
