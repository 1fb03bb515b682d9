r"""NCA: Neighbourhood Components Analysis (Goldberger et al., 2004)."""

import operator

import jax
import jax.numpy as jnp
import numpy as np

from metricjax import _checks
from metricjax._typing import Labels, Points, SampleWeight, Scalar, Transform
from metricjax.losses import _engine as sn


def _neg_match(a, u):
    return -jnp.sum(a * u, axis=-1)


# the one-hot labels are constants: no cotangent
_nca_jit = sn.soft_neighbour_loss(_neg_match, values_are_targets=False)


def encode_labels(labels, num_classes: int | None = None):
    """One-hot encoding of ``labels`` (any hashable values on the host; ints under jit)."""
    if isinstance(labels, jax.core.Tracer):
        if num_classes is None:
            raise ValueError(
                "under jit, pass `num_classes` and integer labels in [0, num_classes) "
                "(inside mj.fit / mj.fit_minibatch, which trace the loss: bind it, e.g. "
                "functools.partial(nca_loss, num_classes=C))"
            )
        if labels.dtype == jnp.bool_:  # two classes, False = 0 and True = 1, as outside jit
            labels = labels.astype(jnp.int32)
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(f"`labels` must be integers under jit, got dtype {labels.dtype}")
        # a label outside [0, num_classes) cannot raise here: its row is NaN, so the loss
        # and its gradient are NaN (one_hot alone would give a zero row, a wrong loss)
        valid = (labels >= 0) & (labels < num_classes)
        return jnp.where(valid[:, None], jax.nn.one_hot(labels, num_classes), jnp.nan)
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"`labels` must have shape (n,), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("`labels` contains NaN or inf")
    if arr.dtype.kind == "O":
        raise TypeError("`labels` must be integers, strings or floats, not objects")
    _, codes = np.unique(arr, return_inverse=True)
    found = int(codes.max()) + 1
    if num_classes is None:
        return jax.nn.one_hot(jnp.asarray(codes.reshape(-1)), found)
    try:
        if isinstance(num_classes, bool):
            raise TypeError
        num_classes = operator.index(num_classes)
    except TypeError:
        raise TypeError(f"`num_classes` must be an int or None, got {num_classes!r}") from None
    if num_classes < found:
        # one_hot would silently encode the extra classes as all-zero rows
        raise ValueError(f"`labels` has {found} distinct classes but `num_classes`={num_classes}")
    return jax.nn.one_hot(jnp.asarray(codes.reshape(-1)), int(num_classes))


def nca_loss(
    transform: Transform,
    x: Points,
    labels: Labels,
    *,
    num_classes: int | None = None,
    sample_weight: SampleWeight | None = None,
    block_size: int | str | None = "auto",
) -> Scalar:
    r"""NCA loss: minus the expected number of correctly classified points.

    .. math::
        \ell(L) = -\sum_i \sum_{j:\, c_j = c_i} p_{ij}, \qquad
        p_{ij} = \frac{\exp(-\lVert L x_i - L x_j\rVert^2)}{\sum_{l \ne i} \exp(-\lVert L x_i - L x_l\rVert^2)},
        \quad p_{ii} = 0

    (scikit-learn's ``NeighborhoodComponentsAnalysis`` objective, with its sign).
    Closed-form gradient in a ``jax.custom_vjp``: with :math:`P_i = \sum_{j: c_j = c_i} p_{ij}`,
    :math:`G_{ij} = \partial \ell/\partial D_{ij} = p_{ij}([c_j = c_i] - P_i)` and
    :math:`\nabla_L \ell = 2 L X^\top(\mathrm{diag}(H1) - H)X`, :math:`H = G + G^\top`
    (see ``docs/derivations.md``), computed block by block with the loss.

    **Differentiation.** As :func:`metricjax.losses.mlkr_loss`: reverse mode and
    ``jax.hessian`` use the closed-form gradient; forward mode (``jax.jvp``,
    ``jax.jacfwd``) is not supported (a ``jax.custom_vjp`` rule).

    Args:
        transform: :math:`L`, shape ``(k, d)``.
        x: inputs, shape ``(n, d)``, ``n >= 2``.
        labels: class labels, shape ``(n,)``. Any values on the host; under ``jit``
            integers in ``[0, num_classes)`` together with ``num_classes``: a traced
            label outside that range cannot raise, so it makes the loss and its
            gradient NaN (the same labels outside ``jit`` are encoded by their distinct
            values and give the loss).
        num_classes: number of classes (needed under ``jit`` only).
        sample_weight: weights :math:`s_i \ge 0`, shape ``(n,)`` (``None``: all 1):
            :math:`\ell = -\sum_i s_i P_i` with :math:`p_{ij} \propto s_j \exp(-D_{ij})`
            and :math:`p_{ii} \propto \max(s_i - 1, 0)` (the other copies of point
            :math:`i`, at distance 0): an integer weight is the point repeated. Weight
            0 is exactly a dropped point. Not differentiated.
        block_size: rows processed at a time (see :func:`metricjax.losses.mlkr_loss`).

    Returns:
        Scalar loss (between ``-n`` and 0), in the floating dtype of the inputs
        (float32 for float16 or bfloat16 input, which is computed in float32). With a
        single class every :math:`P_i = 1`: the loss is the constant ``-n`` and its
        gradient is 0 (the estimator :class:`metricjax.NCA` refuses such labels).

    References:
        J. Goldberger, S. Roweis, G. Hinton, R. Salakhutdinov, `Neighbourhood Components
        Analysis <https://papers.nips.cc/paper/2566>`_, NIPS 2004.
    """
    transform, x, onehot = _prepare(transform, x, labels, num_classes)
    b = sn.resolve_block_size(block_size, x.shape[0], x.dtype.itemsize)
    w = _checks.sample_weight(sample_weight, x.shape[0], x.dtype)
    return _nca_jit(transform, x, onehot, w, b)


def _prepare(transform, x, labels, num_classes):
    """Checked ``(transform, x, one-hot labels)`` in the computation dtype."""
    x = _checks.points(x, "x")
    transform = _checks.transform_matrix(transform, x.shape[1])
    if np.shape(labels) != (np.shape(x)[0],):
        raise ValueError(f"`labels` must have shape ({np.shape(x)[0]},), got {np.shape(labels)}")
    if np.shape(x)[0] < 2:
        raise ValueError(f"NCA needs at least 2 samples, got n={np.shape(x)[0]}")
    dt = _checks.compute_dtype(x, transform)  # half precision is computed in float32
    onehot = jax.lax.stop_gradient(encode_labels(labels, num_classes).astype(dt))
    return jnp.asarray(transform, dt), jnp.asarray(x, dt), onehot
