r"""Bases of the weakly supervised learners: pairs, triplets and quadruplets (metric-learn's API).

Weak supervision gives relations between points rather than labels:

* **pairs** ``(n_pairs, 2, d)`` with ``y`` in {-1, +1} (similar / dissimilar):
  :class:`PairsLearner` (ITML, SDML, MMC). ``decision_function`` is the pair score
  :math:`-\lVert L(a - b)\rVert`, ``predict`` compares the distance with
  ``threshold_`` (``+1`` when :math:`\lVert L(a - b)\rVert \le` ``threshold_``), and
  ``fit`` calibrates ``threshold_`` on the training pairs
  (:meth:`PairsLearner.calibrate_threshold`);
* **triplets** ``(n, 3, d)``, the first point closer to the second than to the third:
  :class:`TripletsLearner` (SCML);
* **quadruplets** ``(n, 4, d)``, the pair ``(a, b)`` more similar than ``(c, d)``:
  :class:`QuadrupletsLearner` (LSML).

Tuples may also be given as integer indices ``(n, k)`` into a ``preprocessor`` (an array
of points). :class:`SupervisedTuplesLearner` is the base of the ``*_Supervised``
versions: ``fit(X, y)`` draws constraints from class labels with
:mod:`metricjax.constraints` (the same draws as metric-learn 0.7.0 for the same
``random_state``) and fits the weakly supervised algorithm on them.

Subclasses implement ``_fit_tuples(tuples, y, **fit_args)``, returning the fitted
attributes as a dict (``components_`` at least, usually from :func:`fit_solver`); the
bases define ``fit`` (one docstring each), validate the input, keep a failed fit from
changing the estimator, and set the attributes. A subclass overrides ``fit`` only to
add an argument (ITML's ``bounds``).
"""

import numbers

import jax
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve
from sklearn.utils.validation import check_is_fitted

from metricjax import _checks
from metricjax._checks import check_pairs
from metricjax.constraints import Constraints, default_n_constraints, wrap_pairs
from metricjax.estimators._base import (
    MahalanobisLearner,
    PointsTransformer,
    constraint_labels,
    pair_distances,
    restore_on_failure,
)
from metricjax.solvers import components_from_metric

_STRATEGIES = ("accuracy", "f_beta", "max_tpr", "max_tnr")


# docstring entries shared by the tuples learners (see metricjax.estimators._base.class_doc)
def tuples_args(args: str, tuples: str, index_shape: str, random_for: str) -> str:
    """A tuples learner's ``Args:`` entries ``args``, then its ``preprocessor`` and ``random_state``."""
    return (
        args
        + f"""
        preprocessor: ``None``, an array of points ({tuples} may then be given as
            ``{index_shape}`` indices into it) or a callable from indices to points.
        random_state: seed or ``numpy.random.RandomState`` for {random_for}."""
    )


COMPONENTS_ATTR = r"""
        components_: :math:`L` with :math:`M = L^\top L`, shape ``(n_features,
            n_features)``, in the fitted dtype."""

N_FEATURES_ATTR = """
        n_features_in_: number of features seen during ``fit``."""

THRESHOLD_ATTR = """
        threshold_: distance below which :meth:`predict` says similar."""

NUM_CONSTRAINTS_ARG = """
        num_constraints: metric-learn's deprecated name of ``n_constraints``: if
            given, used instead of it (``FutureWarning``)."""

#: ``n_constraints`` and ``num_constraints`` of ITML_Supervised, MMC_Supervised, SDML_Supervised
SUPERVISED_PAIRS_ARGS = (
    """
        n_constraints: number of similar and of dissimilar pairs to draw; ``None``
            means ``20 * n_classes**2``."""
    + NUM_CONSTRAINTS_ARG
)

CONVERGENCE_THRESHOLD_ARG = """
        convergence_threshold: metric-learn's deprecated name of ``tol``: if given,
            used instead of it (``FutureWarning``)."""


def pairs_example(name: str) -> str:
    """The ``Examples:`` section of the pairs learner ``name``: fit and predict four pairs."""
    return f"""
        >>> import numpy as np
        >>> from metricjax.estimators import {name}
        >>> pairs = np.array([[[1.2, 7.5], [1.3, 1.5]], [[6.4, 2.6], [6.2, 9.7]],
        ...                   [[1.3, 4.5], [3.2, 4.6]], [[6.2, 5.5], [5.4, 5.4]]])
        >>> est = {name}(random_state=0).fit(pairs, [1, 1, -1, -1])
        >>> est.predict(pairs).tolist()
        [1, 1, -1, -1]"""


def supervised_example(name: str) -> str:
    """The ``Examples:`` section of the ``*_Supervised`` learner ``name``: fit on iris."""
    return f"""
        >>> from sklearn.datasets import load_iris
        >>> from metricjax.estimators import {name}
        >>> X, y = load_iris(return_X_y=True)
        >>> est = {name}(n_constraints=200, random_state=0).fit(X, y)
        >>> est.transform(X).shape
        (150, 4)"""


def solve_in_dtype(solver, tuples, *args, **kwargs):
    """Run ``solver(tuples, *args, **kwargs)`` in the dtype of ``tuples`` (float64 really 64-bit).

    Returns:
        ``(components, result)``: :math:`L` from the result's ``metric`` (metric-learn's
        ``components_from_metric``) as a NumPy array of the tuples' dtype, and the
        solver's result with NumPy leaves.
    """
    dtype = tuples.dtype
    with jax.enable_x64(dtype == np.float64):
        res = solver(tuples, *args, **kwargs)
        res = type(res)(*(np.asarray(leaf) for leaf in res))
    if not np.all(np.isfinite(res.metric)):  # pragma: no cover - guarded by the solvers
        raise FloatingPointError(f"{solver.__name__} produced a non-finite metric")
    if hasattr(res, "components"):  # SCML builds its own (possibly low-rank) L
        return np.asarray(res.components).astype(dtype, copy=False), res
    # M is symmetric in exact arithmetic; the rank-1 updates of float32 solvers drift
    # from it by rounding, more than components_from_metric's symmetry test allows
    metric = 0.5 * (res.metric + res.metric.T)
    return components_from_metric(metric).astype(dtype, copy=False), res


def fit_solver(estimator, fields, solver, tuples, *args, **kwargs) -> dict:
    """The fitted attributes of a tuples learner from one solver run (:func:`solve_in_dtype`).

    Args:
        estimator: the learner (its ``verbose`` prints the scalar attributes).
        fields: names of the solver result's fields to keep, each stored as the
            attribute ``field + "_"`` (0-d arrays as Python scalars).
        solver, tuples, args, kwargs: as in :func:`solve_in_dtype`.

    Returns:
        ``{"components_": L, field + "_": value, ...}``.
    """
    components, res = solve_in_dtype(solver, tuples, *args, **kwargs)
    fitted = {"components_": components}
    for field in fields:
        value = getattr(res, field)
        fitted[field + "_"] = value.item() if np.ndim(value) == 0 else value
    if estimator.verbose and not kwargs.get("verbose"):  # SCML's solver prints its own log
        scalars = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in fitted.items() if np.ndim(v) == 0)  # fmt: skip
        print(f"{type(estimator).__name__}: {scalars}")
    return fitted


class _TuplesLearner(ClassifierMixin, MahalanobisLearner):
    """Shared parts of the tuples learners: validation, atomic fit, tags."""

    _tuple_size = 2
    _tuple_name = "pairs"
    #: metric-learn's tuples learners are binary "classifiers" of tuples.
    classes_ = np.array([-1, 1])

    def _fit_and_set(self, tuples, y, fit_args, after=None):
        """Validate, fit, set the attributes and run ``after``; all or nothing."""
        with restore_on_failure(self):
            self._check_random_state()
            tuples = self._tuples(tuples, self._tuple_size, name=self._tuple_name, reset=True)
            y = self._labels_for_fit(y, len(tuples))
            fitted = self._fit_tuples(tuples, y, **fit_args)
            for name, value in fitted.items():
                setattr(self, name, value)
            if after is not None:
                after(tuples, y)
        return self

    def _labels_for_fit(self, y, n_tuples: int):
        return y

    def _fit_tuples(self, tuples, y, **fit_args):  # pragma: no cover - abstract
        raise NotImplementedError

    def _formed(self, tuples):
        check_is_fitted(self, "components_")
        return self._tuples(tuples, self._tuple_size, name=self._tuple_name)


# ----------------------------------------------------------------------------------
# pairs
# ----------------------------------------------------------------------------------
class PairsLearner(_TuplesLearner):
    r"""Base of the pairs learners (ITML, SDML, MMC): threshold, predict, score, calibration.

    A pair is predicted similar (``+1``) when its learned distance
    :math:`\lVert L(a - b)\rVert` is at most ``threshold_``, dissimilar (``-1``)
    otherwise. ``fit(pairs, y, calibration_params=None)`` calls
    :meth:`calibrate_threshold` on the training pairs (with ``calibration_params``).
    """

    def _check_labels(self, y, n_pairs: int, *, require_both: bool):
        _, y = check_pairs(np.zeros((n_pairs, 2, 1)), y, require_both=require_both)
        return np.asarray(y).astype(np.int64)

    def _labels_for_fit(self, y, n_tuples: int):
        return self._check_labels(y, n_tuples, require_both=True)

    def fit(self, pairs, y, calibration_params=None):
        """Learn the metric from pairs, then calibrate ``threshold_`` on them.

        Args:
            pairs: ``(n_pairs, 2, n_features)`` or ``(n_pairs, 2)`` indices into the
                ``preprocessor``.
            y: ``(n_pairs,)``, ``+1`` similar and ``-1`` dissimilar (both needed).
            calibration_params: keyword arguments of :meth:`calibrate_threshold`.

        Returns:
            ``self``.

        Raises:
            ValueError: bad pairs, labels or hyperparameters; the estimator is then
                left unchanged.
        """
        return self._fit_pairs(pairs, y, calibration_params)

    def _fit_pairs(self, pairs, y, calibration_params, **fit_args):
        calibration_params = {} if calibration_params is None else dict(calibration_params)
        self._validate_calibration_params(**calibration_params)

        def calibrate(valid_pairs, valid_y):
            # the training pairs and labels, validated by the fit: scored directly
            scores = -pair_distances(valid_pairs, self.components_)
            self._threshold_from_scores(scores, valid_y, **calibration_params)

        return self._fit_and_set(pairs, y, fit_args, after=calibrate)

    def decision_function(self, pairs):
        """Pair scores :math:`-\\lVert L(a - b)\\rVert` (high for similar pairs): ``pair_score``."""
        check_is_fitted(self, "components_")
        return self.pair_score(pairs)

    def predict(self, pairs):
        """``+1`` (similar) where the learned distance is ``<= threshold_``, else ``-1``.

        Args:
            pairs: ``(n_pairs, 2, n_features)``, or ``(n_pairs, 2)`` indices with a
                ``preprocessor``.

        Returns:
            Integer array of shape ``(n_pairs,)`` with values in {-1, +1}.

        Raises:
            AttributeError: no threshold was set (metric-learn's message).
        """
        check_is_fitted(self, "components_")
        if "threshold_" not in vars(self):
            raise AttributeError(
                "A threshold for this estimator has not been set, call its set_threshold "
                "or calibrate_threshold method."
            )
        return 2 * (-self.decision_function(pairs) <= self.threshold_) - 1

    def score(self, pairs, y):
        """Area under the ROC curve of :meth:`decision_function` (metric-learn's ``score``).

        Independent of ``threshold_``; for the accuracy of :meth:`predict` use
        ``sklearn.metrics.accuracy_score(y, est.predict(pairs))``.

        Args:
            pairs: ``(n_pairs, 2, n_features)``, or ``(n_pairs, 2)`` indices.
            y: labels in {-1, +1}, shape ``(n_pairs,)`` (both classes present); {0, 1}
                (1 = similar) too, as metric-learn's ``roc_auc_score`` takes them.

        Returns:
            The ROC AUC, a float in [0, 1].
        """
        scores = self.decision_function(pairs)
        labels = np.asarray(y) if isinstance(y, (list, tuple, np.ndarray)) else None
        if (
            labels is not None
            and labels.dtype.kind in "biuf"
            and labels.size
            and np.all(np.isin(labels, (0, 1)))
            and np.any(labels == 0)
        ):
            y = np.where(labels == 1, 1, -1)  # 0 = dissimilar
        y = self._check_labels(y, len(scores), require_both=True)
        return float(roc_auc_score(y, scores))

    def set_threshold(self, threshold):
        """Set ``threshold_`` (a distance): pairs closer than it are predicted similar.

        Args:
            threshold: a real number (a NumPy scalar or one-element array too; a bool is
                0 or 1, as metric-learn takes it).

        Returns:
            ``self``.
        """
        check_is_fitted(self, "components_")
        if not isinstance(threshold, (numbers.Real, np.ndarray)):
            raise ValueError(
                f"Parameter threshold must be a real number. Got {type(threshold)} instead."
            )
        try:
            self.threshold_ = float(threshold)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"Parameter threshold must be a real number. Got {type(threshold)} instead."
            ) from err
        return self

    @staticmethod
    def _validate_calibration_params(strategy="accuracy", min_rate=None, beta=1.0):
        if strategy not in _STRATEGIES:
            raise ValueError(
                'Strategy can either be "accuracy", "f_beta" or "max_tpr" or "max_tnr". '
                f'Got "{strategy}" instead.'
            )
        if strategy in ("max_tpr", "max_tnr"):
            if (
                min_rate is None
                or isinstance(min_rate, bool)
                or not isinstance(min_rate, (int, float))
                or not 0 <= min_rate <= 1
            ):
                raise ValueError(
                    f"Parameter min_rate must be a number in[0, 1]. Got {min_rate} instead."
                )
        if strategy == "f_beta":
            if beta is None or isinstance(beta, bool) or not isinstance(beta, (int, float)):
                raise ValueError(f"Parameter beta must be a real number. Got {type(beta)} instead.")

    def calibrate_threshold(
        self, pairs_valid, y_valid, strategy="accuracy", min_rate=None, beta=1.0
    ):
        r"""Choose ``threshold_`` maximising a score on validation pairs (metric-learn's rule).

        The candidate thresholds are the validation scores; ``threshold_`` is minus the
        lowest accepted score (a distance):

        * ``"accuracy"``: maximise the accuracy; rejecting every pair is a candidate too
          (threshold :math:`-(\max s + 1)`); ties go to the higher threshold on the
          score (the first maximum in decreasing score order).
        * ``"f_beta"``: maximise :math:`F_\beta = (1 + \beta^2) PR / (\beta^2 P + R)` over
          ``sklearn.metrics.precision_recall_curve`` (NaN counts as 0).
        * ``"max_tpr"``: the highest true positive rate with a true negative rate
          ``>= min_rate`` (``sklearn.metrics.roc_curve``).
        * ``"max_tnr"``: the highest true negative rate with a true positive rate
          ``>= min_rate``.

        Args:
            pairs_valid: ``(n_pairs, 2, n_features)`` or ``(n_pairs, 2)`` indices.
            y_valid: labels in {-1, +1}, shape ``(n_pairs,)``.
            strategy: ``"accuracy"``, ``"f_beta"``, ``"max_tpr"`` or ``"max_tnr"``.
            min_rate: number in [0, 1], required by ``"max_tpr"`` and ``"max_tnr"``.
            beta: :math:`\beta` of ``"f_beta"``.

        Returns:
            ``self``.

        References:
            M. H. Zweig, G. Campbell, *Receiver-operating characteristic (ROC) plots: a
            fundamental evaluation tool in clinical medicine*, Clinical Chemistry, 1993.
            The rules are metric-learn 0.7.0's ``_PairsClassifierMixin.calibrate_threshold``.
        """
        check_is_fitted(self, "components_")
        self._validate_calibration_params(strategy, min_rate, beta)
        scores = self.decision_function(pairs_valid)
        y_valid = self._check_labels(y_valid, len(scores), require_both=False)
        return self._threshold_from_scores(scores, y_valid, strategy, min_rate, beta)

    def _threshold_from_scores(self, scores, y_valid, strategy="accuracy", min_rate=None, beta=1.0):
        """:meth:`calibrate_threshold`'s rule on validated scores and ``{-1, +1}`` labels."""
        if strategy == "accuracy":
            # metric-learn's rule: the pairs sorted by decreasing score, the split that
            # accepts the first j of them (j = 0: a candidate above the best score) and
            # maximises true positives among them plus true negatives after them. That
            # count is n_negatives + (y_1 + ... + y_j) for labels in {-1, +1}: one
            # cumulative sum, the same split (the first maximum) as metric-learn's two
            order = np.argsort(scores)[::-1]
            gain = np.cumsum(y_valid[order], dtype=np.int64)
            j = int(np.argmax(np.concatenate([[0], gain])))
            best = scores[order[0]] + 1 if j == 0 else scores[order[j - 1]]
            self.threshold_ = float(-best)
            return self
        if strategy == "f_beta":
            precision, recall, thresholds = precision_recall_curve(y_valid, scores, pos_label=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                f_beta = (1 + beta**2) * (precision * recall) / (beta**2 * precision + recall)
            f_beta[np.isnan(f_beta)] = 0.0
            self.threshold_ = float(-thresholds[np.argmax(f_beta)])
            return self
        fpr, tpr, thresholds = roc_curve(y_valid, scores, pos_label=1)
        if strategy == "max_tpr":
            indices = np.where(1 - fpr >= min_rate)[0]
            imax = np.argmax(tpr[indices])
        else:
            indices = np.where(tpr >= min_rate)[0]
            imax = np.argmax(1 - fpr[indices])
        imax_valid = indices[imax]
        if indices[imax] == len(thresholds):  # pragma: no cover - metric-learn's branch
            self.threshold_ = float(-(thresholds[imax_valid] - 1))
        else:
            self.threshold_ = float(-thresholds[imax_valid])
        return self


# ----------------------------------------------------------------------------------
# triplets and quadruplets
# ----------------------------------------------------------------------------------
class TripletsLearner(_TuplesLearner):
    r"""Base of the triplets learners (SCML): ``(a, b, c)`` with ``a`` closer to ``b`` than to ``c``.

    ``decision_function`` is :math:`\lVert L(a - c)\rVert - \lVert L(a - b)\rVert`,
    ``predict`` its sign as ``+1``/``-1`` (``-1`` on ties), ``score`` the fraction
    predicted ``+1``.
    """

    _tuple_size = 3
    _tuple_name = "triplets"

    def fit(self, triplets):
        """Learn the metric from triplets.

        Args:
            triplets: ``(n, 3, n_features)`` or ``(n, 3)`` indices into the
                ``preprocessor``: the first point closer to the second than to the third.

        Returns:
            ``self``.
        """
        return self._fit_and_set(triplets, None, {})

    def decision_function(self, triplets):
        """Distance to the third point minus distance to the second, shape ``(n_triplets,)``."""
        t = self._formed(triplets)
        return self.pair_distance(t[:, [0, 2]]) - self.pair_distance(t[:, :2])

    def predict(self, triplets):
        """``+1`` where the triplet is in the right order, ``-1`` otherwise."""
        return 2 * (self.decision_function(triplets) > 0) - 1

    def score(self, triplets, y=None):
        """Fraction of triplets in the right order (``y`` is ignored)."""
        return float(self.predict(triplets).mean() / 2 + 0.5)


class QuadrupletsLearner(_TuplesLearner):
    r"""Base of the quadruplets learners (LSML): ``(a, b, c, d)``, pair ``(a, b)`` closer than ``(c, d)``.

    ``decision_function`` is :math:`\lVert L(c - d)\rVert - \lVert L(a - b)\rVert`,
    ``predict`` its sign (``0`` on exact ties, as metric-learn's ``np.sign``),
    ``score`` :math:`\mathrm{mean}(\mathrm{predict})/2 + 1/2`.
    """

    _tuple_size = 4
    _tuple_name = "quadruplets"

    def fit(self, quadruplets, weights=None):
        """Learn the metric from quadruplets.

        Args:
            quadruplets: ``(n, 4, n_features)`` or ``(n, 4)`` indices into the
                ``preprocessor``: pair ``(a, b)`` more similar than ``(c, d)``.
            weights: non-negative weights ``(n,)``; ``None``: uniform.

        Returns:
            ``self``.
        """
        return self._fit_and_set(quadruplets, None, {"weights": weights})

    def decision_function(self, quadruplets):
        """Distance of the second pair minus distance of the first, shape ``(n,)``."""
        q = self._formed(quadruplets)
        return self.pair_distance(q[:, 2:]) - self.pair_distance(q[:, :2])

    def predict(self, quadruplets):
        """Sign of :meth:`decision_function`: ``+1`` in the right order, ``-1`` otherwise."""
        return np.sign(self.decision_function(quadruplets))

    def score(self, quadruplets, y=None):
        """Fraction of quadruplets in the right order (``y`` is ignored)."""
        return float(self.predict(quadruplets).mean() / 2 + 0.5)


# ----------------------------------------------------------------------------------
# supervised versions: constraints drawn from class labels
# ----------------------------------------------------------------------------------
class SupervisedTuplesLearner(PointsTransformer):
    """Base of the ``*_Supervised`` learners: ``fit(X, y)`` from class labels.

    Subclasses may override ``_draw(X, labels, n_constraints, random_state)``, which
    returns the tuples, their labels (or ``None``) and extra keyword arguments of
    ``_fit_tuples`` (by default: positive then negative pairs), and define
    ``_fit_tuples`` (shared with the weakly supervised learner through a common base).
    metric-learn's deprecated ``num_constraints`` is honoured (``FutureWarning``).
    """

    _needs_y = True

    def fit(self, X, y):
        """Draw constraints from the class labels and learn the metric on them.

        Args:
            X: points ``(n_samples, n_features)`` (or 1-D indices with a
                ``preprocessor``).
            y: class labels ``(n_samples,)`` (at least 2 classes). A negative
                integer label marks an unlabelled point (metric-learn's
                convention): it draws no constraint, with a ``UserWarning``.

        Returns:
            ``self``.

        Raises:
            ValueError: bad points, labels or hyperparameters; the estimator is then
                left unchanged.
        """
        return self._supervised_fit(X, y)

    def _n_constraints(self, labels) -> int:
        n = self._renamed("n_constraints", "num_constraints")
        if n is None:
            return default_n_constraints(labels)
        if not (_checks.is_int(n) and n >= 1):
            raise _checks.wrong_type_or_value(_checks.is_int(n))(
                f"`n_constraints` must be a positive int or None, got {n!r}"
            )
        return int(n)

    def _draw(self, X, labels, n_constraints, random_state):
        """Positive then negative pairs, as ITML/SDML/MMC_Supervised draw them."""
        pos_neg = Constraints(labels).positive_negative_pairs(
            n_constraints, random_state=random_state
        )
        pairs, y = wrap_pairs(X, pos_neg)
        return pairs, y, {}

    def _supervised_fit(self, X, y, **fit_args):
        with restore_on_failure(self):
            self._check_random_state()
            X, y = self._points(X, y, reset=True, ensure_min_samples=2)
            labels = constraint_labels(y, type(self).__name__)
            n_constraints = self._n_constraints(labels)
            tuples, tuple_y, more = self._draw(X, labels, n_constraints, self.random_state)
            tuples = np.asarray(tuples, dtype=X.dtype)
            fitted = self._fit_tuples(tuples, tuple_y, **fit_args, **more)
            for name, value in fitted.items():
                setattr(self, name, value)
        return self
