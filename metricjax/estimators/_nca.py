"""NCA estimator: Neighbourhood Components Analysis (Goldberger et al., 2004)."""

import functools

import jax
import numpy as np

from metricjax.estimators._base import (
    BATCH_ARGS,
    COMMON_ARGS,
    COMMON_ATTRS,
    CONTINUE_ARGS,
    SoftNeighbourLearner,
    check_block_size,
    check_mesh,
    class_doc,
    knn_example,
)
from metricjax.losses import nca_loss, sharded_nca_loss


@functools.cache
def _nca_objective(block_size, num_classes: int, mesh=None):
    """One loss object per configuration, so refits reuse the compiled loop."""
    if mesh is not None:
        return functools.partial(
            sharded_nca_loss, num_classes=num_classes, block_size=block_size, mesh=mesh
        )
    return functools.partial(nca_loss, num_classes=num_classes, block_size=block_size)


def _weighted_nca(transform, x, labels, sample_weight, *, num_classes, block_size, mesh=None):
    """:func:`metricjax.losses.nca_loss` (or its row-sharded version on ``mesh``) with
    the sample weights as a data argument."""
    if mesh is not None:
        return sharded_nca_loss(transform, x, labels, num_classes=num_classes,
                                sample_weight=sample_weight, block_size=block_size,
                                mesh=mesh)  # fmt: skip
    return nca_loss(transform, x, labels, num_classes=num_classes, sample_weight=sample_weight,
                    block_size=block_size)  # fmt: skip


@functools.cache
def _weighted_nca_objective(block_size, num_classes: int, mesh=None):
    """One weighted loss object per configuration (refits reuse the compiled loop)."""
    return functools.partial(_weighted_nca, num_classes=num_classes, block_size=block_size,
                             mesh=mesh)  # fmt: skip


class NCA(SoftNeighbourLearner):
    __doc__ = class_doc(
        r"""Neighbourhood Components Analysis (NCA).

    Learns :math:`L` maximising the expected number of points correctly classified
    by a stochastic nearest-neighbour rule in the embedding
    (:func:`metricjax.losses.nca_loss`):

    .. math::
        \ell(L) = -\sum_i \sum_{j:\, c_j = c_i} p_{ij}, \qquad
        p_{ij} = \frac{\exp(-\lVert Lx_i - Lx_j\rVert^2)}
                      {\sum_{l \ne i} \exp(-\lVert Lx_i - Lx_l\rVert^2)}, \quad p_{ii} = 0.

    A transformer like metric-learn's ``NCA``: use :meth:`transform` (or
    :meth:`get_metric`) with a nearest-neighbour classifier.""",
        args=COMMON_ARGS + BATCH_ARGS + CONTINUE_ARGS,
        attrs=COMMON_ATTRS + "        classes_: the class labels, sorted.",
        references="""
        J. Goldberger, S. Roweis, G. Hinton and R. Salakhutdinov, `Neighbourhood
        Components Analysis <https://papers.nips.cc/paper/2566>`_, NIPS 2004.""",
        examples=knn_example("NCA", "NCA(n_components=2, random_state=0)", "(150, 2)"),
    )

    _unit_free_init = True  # unit-bandwidth softmax: start at median distance 1
    _min_classes = 1  # one class: a constant loss, the initial map is returned
    _log_sign = -1.0  # the verbose log prints metric-learn's objective, -loss

    def _constant_loss(self, codes, sample_weight=None) -> bool:
        """One class, or no two points of one class (every neighbour term is 0).

        A point of weight :math:`s > 1` stands for :math:`s` copies, neighbours of each
        other: its class has two points.
        """
        if sample_weight is not None and np.any(sample_weight > 1):
            return int(codes.max()) == 0
        return int(codes.max()) == 0 or int(np.bincount(codes).max()) < 2

    def _loss_grad_lbfgs(self, transformation, X, same_class_mask, sign=1.0):
        """scikit-learn's private ``NeighborhoodComponentsAnalysis._loss_grad_lbfgs``:
        ``(sign * sum_i p_i, sign * gradient.ravel())`` at the flattened map
        ``transformation``, the classes given by the ``(n, n)`` same-class mask.

        For code (and scikit-learn's own NCA tests) written against it; computed in
        float64 by :func:`metricjax.losses.nca_loss`, whose value is ``-sum_i p_i``.
        """
        X = np.asarray(X, np.float64)
        mask = np.asarray(same_class_mask, bool)
        if mask.shape != (X.shape[0], X.shape[0]):
            raise ValueError(
                f"`same_class_mask` must have shape (n, n) = ({X.shape[0]}, {X.shape[0]}), "
                f"got {mask.shape}"
            )
        codes = np.unique(np.argmax(mask, axis=1), return_inverse=True)[1].astype(np.int32)
        L = np.asarray(transformation, np.float64).reshape(-1, X.shape[1])
        with jax.enable_x64(True):
            loss, grad = jax.value_and_grad(nca_loss)(
                L, X, codes, num_classes=int(codes.max()) + 1
            )
            loss, grad = -float(loss), -np.asarray(grad, np.float64)
        if hasattr(self, "n_iter_"):
            self.n_iter_ += 1
        return sign * loss, sign * grad.ravel()

    def _objective(self, X, codes, classes, sample_weight=None):
        block_size, num_classes = check_block_size(self.block_size), int(codes.max()) + 1
        mesh = check_mesh(self.mesh)
        if sample_weight is None:
            return _nca_objective(block_size, num_classes, mesh), (codes,), {}
        loss = _weighted_nca_objective(block_size, num_classes, mesh)
        return loss, (codes, sample_weight.astype(X.dtype)), {}
