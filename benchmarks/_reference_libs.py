"""Reference libraries for the benchmarks: metric-learn and scikit-learn.

metric-learn 0.7.0 (its latest release) calls scikit-learn's ``check_array`` /
``check_X_y`` with ``force_all_finite``, a keyword scikit-learn 1.8 renamed to
``ensure_all_finite``; its ``fit`` then fails with ``TypeError``. For the benchmarks
only (never in the library) :func:`metric_learn_compat` wraps the two validators in
metric-learn's namespace to translate the keyword. Nothing else changes.

Its SDML has a second break: it passes ``cov_init`` to scikit-learn's
``graphical_lasso``, which dropped that keyword in 1.5, so ``SDML.fit`` always fails.
:func:`graphical_lasso_with_cov_init` is the call it means (scikit-learn's private
``_graphical_lasso`` still takes ``cov_init``); the tests and ``bench_weak.py`` put it
in place where they want metric-learn's SDML to run.
"""

from __future__ import annotations

import functools


def _translate(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "force_all_finite" in kwargs:
            kwargs["ensure_all_finite"] = kwargs.pop("force_all_finite")
        return fn(*args, **kwargs)

    return wrapper


@functools.cache
def metric_learn_compat():
    """Import metric-learn, patched to run on scikit-learn >= 1.8 (see module doc)."""
    import inspect

    import metric_learn
    import metric_learn._util as util
    from sklearn.utils import check_array

    if "force_all_finite" not in inspect.signature(check_array).parameters:
        util.check_array = _translate(util.check_array)
        util.check_X_y = _translate(util.check_X_y)
    return metric_learn


def graphical_lasso_with_cov_init(emp_cov, alpha, *, verbose=False, cov_init=None, **kw):
    """scikit-learn's graphical lasso as metric-learn 0.7 calls it: ``(covariance, precision)``."""
    from sklearn.covariance._graph_lasso import _graphical_lasso

    return _graphical_lasso(emp_cov, alpha, cov_init=cov_init, verbose=verbose, **kw)[:2]
