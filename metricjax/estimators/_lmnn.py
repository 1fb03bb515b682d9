"""LMNN estimator: Large Margin Nearest Neighbor (Weinberger & Saul, 2009)."""

import functools
import warnings

import numpy as np

from metricjax.estimators._base import (
    COMMON_ARGS,
    COMMON_ATTRS,
    SupervisedLearner,
    check_block_size,
    check_int,
    check_mesh,
    check_real,
    class_doc,
    knn_example,
)
from metricjax.losses import lmnn_loss, lmnn_target_neighbors, sharded_lmnn_loss


class LMNN(SupervisedLearner):
    __doc__ = class_doc(
        r"""Large Margin Nearest Neighbor metric learning (LMNN).

    Learns :math:`L` pulling every point's target neighbours (its ``n_neighbors``
    nearest same-class points in the input space, fixed during the fit) close and
    pushing differently labelled points ("impostors") out by a margin
    (:func:`metricjax.losses.lmnn_loss`):

    .. math::
        \ell(L) = (1 - \mu) \sum_i \sum_{j \in N_i} D_{ij}
        + \mu \sum_i \sum_{j \in N_i} \sum_{l:\, c_l \ne c_i}
          \bigl[\, m + D_{ij} - D_{il} \,\bigr]_+ ,
        \qquad D_{ij} = \lVert Lx_i - Lx_j \rVert^2.

    A transformer like metric-learn's ``LMNN``. The loss is piecewise smooth (a
    hinge, with subgradient 0 at the kink); the default L-BFGS is used as for the
    smooth losses.

    **Small classes.** Every point needs ``n_neighbors`` other points of its class.
    If the smallest class has ``m <= n_neighbors`` members, the fit uses
    ``m - 1`` target neighbours (with a ``UserWarning``) and records the value used
    in ``n_neighbors_``. A class with a single member has no target neighbour at
    all and is refused (``ValueError``).""",
        args=COMMON_ARGS
        + r"""        n_neighbors: number of target neighbours :math:`k` per point.
        push_weight: :math:`\mu \in [0, 1]`, weight of the impostor (push) term;
            ``1 - push_weight`` weighs the pull term (metric-learn's
            ``regularization`` is ``1 - push_weight``).
        margin: :math:`m \ge 0`, the margin of the hinge.
        block_size: rows processed at a time by the loss (see
            :func:`metricjax.losses.lmnn_loss`).
        mesh: ``None`` (one device) or a 1-D ``jax.sharding.Mesh``: the loss is
            row-sharded over its devices (:func:`metricjax.losses.sharded_lmnn_loss`);
            same fit up to rounding.
        regularization: metric-learn's name for the weight of the *pull* term:
            if given, ``push_weight = 1 - regularization`` (the same objective as
            metric-learn's ``LMNN`` with that ``regularization``).
        convergence_tol: metric-learn's relative objective-change tolerance; if
            given, used as ``tol``.
        k: metric-learn's deprecated name of ``n_neighbors`` (``FutureWarning``).
        learn_rate: accepted for metric-learn compatibility, not used: the default
            L-BFGS chooses its step lengths by line search (``FutureWarning``; pass
            ``optimizer=optax.sgd(learn_rate)`` for metric-learn's fixed-step descent).
        min_iter: accepted for metric-learn compatibility, not used: the fit stops by
            ``tol`` (``FutureWarning``).""",
        attrs=COMMON_ATTRS
        + r"""        classes_: the class labels, sorted.
        n_neighbors_: the number of target neighbours actually used.
        target_neighbors_: ``(n_samples, n_neighbors_)`` indices of the target
            neighbours of the training points.""",
        references="""
        K. Q. Weinberger and L. K. Saul, `Distance Metric Learning for Large Margin
        Nearest Neighbor Classification <https://jmlr.org/papers/v10/weinberger09a.html>`_,
        JMLR 10, 2009.""",
        examples=knn_example("LMNN", "LMNN(n_neighbors=3, max_iter=200)"),
    )

    def __init__(
        self,
        n_components=None,
        *,
        init="auto",
        n_neighbors=3,
        push_weight=0.5,
        margin=1.0,
        max_iter=1000,
        tol=None,
        optimizer=None,
        random_state=None,
        verbose=False,
        block_size="auto",
        preprocessor=None,
        regularization=None,
        convergence_tol=None,
        k=None,
        learn_rate=None,
        min_iter=None,
        mesh=None,
    ):
        self._set_params(locals())

    def _tol(self) -> float:
        if self.convergence_tol is not None:  # metric-learn's name
            return check_real(self.convergence_tol, "convergence_tol", 0.0)
        return super()._tol()

    def _neighbours_and_push(self):
        """``(n_neighbors, push_weight)`` after metric-learn's argument names (and warnings)."""
        n_neighbors, push_weight = self.n_neighbors, self.push_weight
        if self.k is not None and not (isinstance(self.k, str) and self.k == "deprecated"):
            warnings.warn(
                f"`k` is deprecated (as in metric-learn); using n_neighbors={self.k!r}",
                FutureWarning,
                stacklevel=5,
            )
            n_neighbors = self.k
        if self.regularization is not None:
            push_weight = 1.0 - check_real(self.regularization, "regularization", 0.0, 1.0)
        for name, instead in (
            ("learn_rate", "the L-BFGS line search chooses step lengths (pass "
             "optimizer=optax.sgd(learn_rate) for fixed steps)"),
            ("min_iter", "the fit stops by `tol` or `max_iter`"),
        ):  # fmt: skip
            if getattr(self, name) is not None:
                warnings.warn(
                    f"`{name}` (metric-learn) is not used by metricjax's LMNN: {instead}",
                    FutureWarning,
                    stacklevel=5,
                )
        return n_neighbors, push_weight

    def _objective(self, X, codes, classes):
        n_neighbors, push_weight = self._neighbours_and_push()
        k = check_int(n_neighbors, "n_neighbors", 1)
        push_weight = check_real(push_weight, "push_weight", 0.0, 1.0)
        margin = check_real(self.margin, "margin", 0.0)
        counts = np.bincount(codes)
        smallest = int(counts.min())
        if smallest < 2:
            label = classes[int(np.argmin(counts))]
            label = label.item() if hasattr(label, "item") else label
            raise ValueError(
                f"LMNN needs at least 2 samples in every class (each point needs a target "
                f"neighbour of its own class), but class {label!r} has 1 sample"
            )
        if k > smallest - 1:
            warnings.warn(
                f"n_neighbors={k} is too large for the smallest class ({smallest} samples); "
                f"using n_neighbors={smallest - 1}",
                UserWarning,
                stacklevel=4,
            )
            k = smallest - 1
        tn = np.asarray(lmnn_target_neighbors(X, codes, k), dtype=np.int32)
        loss = _lmnn_objective(
            check_block_size(self.block_size), margin, push_weight, check_mesh(self.mesh)
        )
        return loss, (codes, tn), {"n_neighbors_": k, "target_neighbors_": tn}


def _lmnn_with_targets(
    transform, x, codes, target_neighbors, *, push_weight, margin, block_size, mesh=None
):
    """:func:`metricjax.losses.lmnn_loss` (row-sharded over ``mesh`` if given) with the target neighbours as a data argument."""
    if mesh is not None:
        return sharded_lmnn_loss(
            transform, x, codes, target_neighbors=target_neighbors, push_weight=push_weight,
            margin=margin, block_size=block_size, mesh=mesh,
        )
    return lmnn_loss(
        transform,
        x,
        codes,
        target_neighbors=target_neighbors,
        push_weight=push_weight,
        margin=margin,
        block_size=block_size,
    )


@functools.cache
def _lmnn_objective(block_size, margin: float, push_weight: float, mesh=None):
    """One loss object per configuration, so refits reuse the compiled loop."""
    return functools.partial(
        _lmnn_with_targets, push_weight=push_weight, margin=margin, block_size=block_size,
        mesh=mesh,
    )
