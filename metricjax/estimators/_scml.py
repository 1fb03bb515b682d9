r"""SCML estimators: Sparse Compositional Metric Learning (Shi et al., 2014)."""

from metricjax.constraints import Constraints
from metricjax.estimators import _tuples
from metricjax.estimators._base import class_doc
from metricjax.estimators._tuples import SupervisedTuplesLearner, TripletsLearner, fit_solver
from metricjax.solvers import scml_lda_basis, scml_solve

_SCML_ARGS = _tuples.tuples_args(
    r"""
        beta: :math:`\ell_1` weight on the basis weights. Default 1e-5.
        n_basis: number :math:`K` of rank-one bases; ``None``: metric-learn's default
            (with a warning).
        gamma: learning-rate parameter :math:`\gamma > 0`. Default 5e-3.
        max_iter: number of stochastic steps. Default 10000.
        output_iter: steps between objective evaluations (the best checkpoint is
            kept). Default 500.
        batch_size: triplets per step. Default 10.
        verbose: print metric-learn's log: the objective and the number of triplets
            with positive slack at each checkpoint, then ``max iteration reached.``""",
    "triplets",
    "(n, 3)",
    "the basis and the\n            mini-batches (metric-learn's draws)",
)

_SCML_ATTRS = (
    r"""
        components_: :math:`L` with :math:`L^\top L = M = B^\top \mathrm{diag}(w) B`:
            ``(n_active, n_features)`` when fewer than ``n_features`` bases are active,
            else ``(n_features, n_features)`` (metric-learn's rule).
        weights_: the learned basis weights :math:`w`, ``(K,)``.
        basis_: the basis :math:`B`, ``(K, n_features)``.
        objective_: the SCML objective at ``weights_``.
        n_iter_: number of stochastic steps performed."""
    + _tuples.N_FEATURES_ATTR
)

_REFERENCES = r"""
        Y. Shi, A. Bellet, F. Sha, `Sparse Compositional Metric Learning
        <https://arxiv.org/abs/1404.4105>`_, AAAI 2014."""


class _BaseSCML:
    """The solver call shared by :class:`SCML` and :class:`SCML_Supervised`."""

    #: The named bases ``basis`` may take (metric-learn's attribute of the same name).
    _authorized_basis = ("triplet_diffs",)

    def _check_basis(self):
        """A named ``basis`` must be one of :attr:`_authorized_basis` (metric-learn's message)."""
        basis = self.basis
        if isinstance(basis, str) and basis not in self._authorized_basis:
            if basis == "lda":  # SCML: the solver says how to build an LDA basis
                return
            raise ValueError(
                "`basis` must be one of the options '{}' or an array of shape "
                "(n_basis, n_features).".format("', '".join(self._authorized_basis))
            )

    def _fit_tuples(self, triplets, y=None, *, basis=None):
        if basis is None:
            self._check_basis()
        return fit_solver(
            self, ("weights", "basis", "objective", "n_iter"), scml_solve, triplets,
            beta=self.beta, basis=self.basis if basis is None else basis,
            n_basis=self.n_basis, gamma=self.gamma, max_iter=self.max_iter,
            output_iter=self.output_iter, batch_size=self.batch_size,
            random_state=self.random_state,
            verbose=type(self).__name__ if self.verbose else False,
        )  # fmt: skip


class SCML(_BaseSCML, TripletsLearner):
    __doc__ = class_doc(
        r"""Sparse Compositional Metric Learning (SCML) from triplets.

    Each triplet ``(a, b, c)`` says that ``a`` is closer to ``b`` than to ``c``. SCML
    learns sparse non-negative weights :math:`w` of rank-one bases,
    :math:`M = B^\top \mathrm{diag}(w) B`, minimising :math:`\beta \lVert w\rVert_1`
    plus the mean hinge :math:`[1 + d_M(a, b) - d_M(a, c)]_+`
    (:func:`metricjax.solvers.scml_solve`: metric-learn 0.7.0's stochastic composite
    dual averaging, same mini-batches, in a compiled ``lax.scan``).
    ``decision_function``, ``predict`` and ``score`` are metric-learn's.""",
        args=r"""
        basis: ``"triplet_diffs"`` (default; bases from differences of points of the
            triplets) or an array ``(n_basis, n_features)``."""
        + _SCML_ARGS,
        attrs=_SCML_ATTRS,
        references=_REFERENCES,
    )

    def __init__(
        self,
        beta=1e-5,
        basis="triplet_diffs",
        n_basis=None,
        gamma=5e-3,
        max_iter=10000,
        output_iter=500,
        batch_size=10,
        verbose=False,
        preprocessor=None,
        random_state=None,
    ):
        self._set_params(locals())


class SCML_Supervised(_BaseSCML, SupervisedTuplesLearner):
    __doc__ = class_doc(
        r"""SCML from class labels: k-NN triplets, as metric-learn's ``SCML_Supervised``.

    ``fit(X, y)`` builds the triplets (each point, one of its ``k_genuine`` nearest
    neighbours of its class, one of its ``k_impostor`` nearest neighbours of other
    classes; :meth:`metricjax.constraints.Constraints.generate_knntriplets`) and, with
    ``basis="lda"``, metric-learn's local-LDA basis
    (:func:`metricjax.solvers.scml_lda_basis`), then fits :class:`SCML`.""",
        args=r"""
        k_genuine: same-class neighbours per point. Default 3.
        k_impostor: other-class neighbours per point. Default 10.
        basis: ``"lda"`` (default), ``"triplet_diffs"`` or an array
            ``(n_basis, n_features)``."""
        + _SCML_ARGS,
        attrs=_SCML_ATTRS,
        references=_REFERENCES,
    )

    _authorized_basis = ("triplet_diffs", "lda")

    def __init__(
        self,
        k_genuine=3,
        k_impostor=10,
        beta=1e-5,
        basis="lda",
        n_basis=None,
        gamma=5e-3,
        max_iter=10000,
        output_iter=500,
        batch_size=10,
        verbose=False,
        preprocessor=None,
        random_state=None,
    ):
        self._set_params(locals())

    def _n_constraints(self, labels):
        return None  # SCML draws no random constraints: all k-NN triplets

    def _draw(self, X, labels, n_constraints, random_state):
        self._check_basis()  # before the triplets are drawn
        more = {}
        if isinstance(self.basis, str) and self.basis == "lda":
            more["basis"] = scml_lda_basis(
                X, labels, n_basis=self.n_basis, random_state=random_state
            )
        idx = Constraints(labels).generate_knntriplets(X, self.k_genuine, self.k_impostor)
        return X[idx], None, more
