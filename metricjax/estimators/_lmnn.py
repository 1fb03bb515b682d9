"""LMNN estimator: Large Margin Nearest Neighbor (Weinberger & Saul, 2009)."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from metricjax._train import fit as _fit
from metricjax._train import resolve_optimizer
from metricjax.estimators._base import (
    COMMON_ARGS,
    COMMON_ATTRS,
    CONTINUE_ARGS,
    SupervisedLearner,
    _LMNNLog,
    _log_arguments,
    check_block_size,
    check_int,
    check_mesh,
    check_real,
    class_doc,
    knn_example,
)
from metricjax.losses import (
    lmnn_impostors,
    lmnn_loss,
    lmnn_target_neighbors,
    sharded_lmnn_loss,
)
from metricjax.losses._lmnn import (
    copies_of,
    copy_target_neighbors,
    lmnn_pairs_loss,
    with_capacity,
)
from metricjax.losses._lmnn_active import PAIR_MEMORY, max_pairs_for
from metricjax.losses._sharded import sharded_lmnn_pairs_loss


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

    **Impostor active set** (opt-in with ``impostor_refresh``, used from 1000
    samples; Weinberger & Saul 2009, section 6.1). Off by default: on the 2-core
    CPUs measured so far its compilations (one per set capacity) and dropped
    chunks made whole fits slower than the full streaming loss, although one
    evaluation on a fresh set is about 4x faster at n = 5000
    (``benchmarks/results/lmnn.md``). Every ``impostor_refresh`` iterations the fit
    searches the pairs :math:`(i, l)` that can be active,
    :math:`D_{il} \le \max_j D_{ij} + m + s` with
    ``s = impostor_slack`` (:func:`metricjax.losses.lmnn_impostors`, streamed by row
    blocks), and in between minimises the exact loss on that set
    (``lmnn_loss(..., impostors=...)``): the same loss and gradient as the full sum
    whenever the set is fresh, at the cost of the listed pairs instead of all
    :math:`n^2`. The iterations between two searches run in one compiled loop. After
    each chunk the full loss is known exactly (a fresh set gives it); a chunk that
    made it go up (impostors came in that the old set did not list) is dropped and
    retried in shorter chunks, and a new set restarts the L-BFGS memory. At
    convergence the set is searched once more: if a pair outside it could be active,
    the fit goes on with the new set, so the result is a stationary point of the
    *full* loss (the last ``loss_history_`` entry is the full loss). A chunk whose set
    would hold more than ``max_impostors`` (or :math:`n^2 / 8`) pairs runs on the full
    streaming loss instead.

    **Small classes.** As in metric-learn, a point's target neighbours are the
    ``n_neighbors`` nearest members of its class, itself last where its class has
    exactly ``n_neighbors`` members (a class of one is its own target with
    ``n_neighbors=1``): such a target adds nothing to the pull term, and its hinge
    terms keep other classes at the margin. If the smallest class has
    ``m < n_neighbors`` members (metric-learn raises), the fit uses ``m`` target
    neighbours (with a ``UserWarning``) and records the value used in
    ``n_neighbors_``.""",
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
        impostor_refresh: iterations between two searches of the impostor active set;
            ``None`` (default) or 0: no active set, every iteration sums over all
            differently-labelled points (the full streaming loss). Fits of fewer than
            1000 samples always use the full loss (as fast there, fewer compilations),
            as do row-sharded fits (``mesh``).
        impostor_slack: :math:`s \ge 0`, extra squared radius of the search: pairs
            within :math:`s` of being impostors are kept, so that fewer are missed
            between searches.
        max_impostors: the most pairs an active set may hold (a memory budget);
            beyond it the fit uses the full streaming loss. ``"auto"``: the pairs
            whose working arrays fit 256 MiB.
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
            ``tol`` (``FutureWarning``)."""
        + CONTINUE_ARGS,
        attrs=COMMON_ATTRS
        + r"""        classes_: the class labels, sorted.
        n_neighbors_: the number of target neighbours actually used.
        target_neighbors_: ``(n_samples, n_neighbors_)`` indices of the target
            neighbours of the training points. Fitted with ``sample_weight``:
            ``(n_kept, n_neighbors_ + 1)`` target slots of the samples of positive
            weight (slot 0 the sample itself, for its own copies), weighted by
            ``target_weights_``.
        target_weights_: ``None`` without ``sample_weight``; with it,
            ``(n_kept, n_neighbors_ + 1)``, the slots' pair weights
            :math:`a_{ij} = s_i\, \omega_j\, m_{ij}` (0 on an unused slot),
            ``docs/derivations.md`` §15.""",
        references="""
        K. Q. Weinberger and L. K. Saul, `Distance Metric Learning for Large Margin
        Nearest Neighbor Classification <https://jmlr.org/papers/v10/weinberger09a.html>`_,
        JMLR 10, 2009.""",
        examples=knn_example("LMNN", "LMNN(n_neighbors=3, max_iter=200)"),
    )

    _log_class = _LMNNLog  # verbose: metric-learn's LMNN lines

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
        impostor_refresh=None,
        impostor_slack=0.5,
        max_impostors="auto",
        warm_start=False,
        callback=None,
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

    def _objective(self, X, codes, classes, sample_weight=None):
        n_neighbors, push_weight = self._neighbours_and_push()
        k = check_int(n_neighbors, "n_neighbors", 1)
        push_weight = check_real(push_weight, "push_weight", 0.0, 1.0)
        margin = check_real(self.margin, "margin", 0.0)
        # with weights, a sample of weight s counts ceil(s) copies (copy_target_neighbors)
        if sample_weight is None:
            smallest, unit = int(np.bincount(codes).min()), "samples"
        else:
            smallest = int(np.bincount(codes, weights=copies_of(sample_weight)[0]).min())
            unit = "copies: sample weights count copies"
        if k > smallest:  # metric-learn raises here
            warnings.warn(
                f"n_neighbors={k} is too large for the smallest class ({smallest} {unit}); "
                f"using n_neighbors={smallest}",
                UserWarning,
                stacklevel=4,
            )
            k = smallest
        self._active_settings()  # validated before any work
        block_size, mesh = check_block_size(self.block_size), check_mesh(self.mesh)
        if sample_weight is None:
            tn = np.asarray(lmnn_target_neighbors(X, codes, k), dtype=np.int32)
            fitted = {"n_neighbors_": k, "target_neighbors_": tn, "target_weights_": None}
            return _lmnn_objective(block_size, margin, push_weight, mesh), (codes, tn), fitted
        # the zero weights are dropped already; a weight counts copies of the sample:
        # its own copies are among its targets, and a neighbour's copies fill its slots
        tn, pair_weight = copy_target_neighbors(X, codes, sample_weight, k)
        fitted = {"n_neighbors_": k, "target_neighbors_": tn, "target_weights_": pair_weight}
        loss = _weighted_lmnn_objective(block_size, margin, push_weight, mesh)
        weights = (pair_weight.astype(X.dtype), np.asarray(sample_weight, X.dtype))
        return loss, (codes, tn, *weights), fitted

    def _active_settings(self):
        """``(refresh, slack, max_pairs)``: ``refresh`` is ``None`` without an active set."""
        refresh = self.impostor_refresh
        if refresh is not None:
            refresh = check_int(refresh, "impostor_refresh", 0) or None
        slack = check_real(self.impostor_slack, "impostor_slack", 0.0)
        max_pairs = self.max_impostors
        if not (isinstance(max_pairs, str) and max_pairs == "auto"):
            max_pairs = check_int(max_pairs, "max_impostors", 0)
        return refresh, slack, max_pairs

    def _minimise(self, loss, params, data, *, max_iter: int, tol: float, log=None):
        """:func:`metricjax.fit` in chunks of ``impostor_refresh`` iterations, one active set each."""
        refresh, slack, max_pairs = self._active_settings()
        kw = loss.keywords
        mu, margin = kw["push_weight"], kw["margin"]
        small = data[0].shape[0] < _ACTIVE_MIN_SAMPLES
        weighted = len(data) > 3  # (x, codes, tn, sample_weight): the full loss
        if refresh is None or small or kw.get("mesh") is not None or mu == 0 or weighted:
            return super()._minimise(loss, params, data, max_iter=max_iter, tol=tol, log=log)
        x, codes, tn = data
        if max_pairs == "auto":
            max_pairs = max_pairs_for(
                PAIR_MEMORY, x.shape[1], params.shape[0], tn.shape[1], x.dtype.itemsize
            )
        # beyond n^2 / 8 listed pairs the streaming full loss is the cheaper one
        max_pairs = min(max_pairs, x.shape[0] ** 2 // _DENSE_FRACTION)
        search = functools.partial(
            lmnn_impostors, x=x, labels=codes, target_neighbors=tn, margin=margin, slack=slack,
            max_pairs=max_pairs, block_size=kw["block_size"],
        )  # fmt: skip
        active = _lmnn_active_objective(margin, mu)
        fit = functools.partial(_fit, optimizer=self.optimizer, tol=tol, **_log_arguments(log))
        restart = functools.partial(_fresh_state, resolve_optimizer(self.optimizer, "lbfgs"))
        history, spent, length = [], 0, refresh
        opt_state = restart(params)
        final, converged, res = None, False, None
        active_set = search(params)
        while spent < max_iter:
            steps = min(length, max_iter - spent)
            if active_set is None:  # over budget: a chunk of the full (exact) loss
                res = fit(loss, params, *data, max_iter=steps, opt_state=opt_state)
                spent += res.num_iter
                history.append(res.loss_history[:-1])
                params, final = res.params, float(res.loss_history[-1])
                if res.converged:
                    converged = True
                    break
                active_set = search(params)
                opt_state = res.opt_state if active_set is None else restart(params)
                continue
            res = fit(active, params, *data, active_set, max_iter=steps, opt_state=opt_state)
            spent += res.num_iter
            start = float(res.loss_history[0])  # exact: the set was searched at params
            fresh = search(res.params)
            if fresh is not None:
                fresh = _resized(fresh, active_set)  # one shape: one compilation
            missed = fresh is None or _missed_impostors(
                active_set, fresh, res.params, x, tn, margin
            )
            if fresh is None:
                new = float(loss(res.params, *data))
            elif missed:
                new = float(active(res.params, *data, fresh))  # fresh set: the full loss
            else:
                new = float(res.loss_history[-1])  # the set held every active triplet
            if new > start and length > 1:
                # impostors came in within the chunk and the full loss went up: drop
                # the chunk, retry with shorter ones (the set is still fresh at params)
                length, opt_state = max(1, length // 2), restart(params)
                continue
            history.append(res.loss_history[:-1])
            params, final = res.params, new
            if not missed and res.converged:  # a stationary point of the full loss
                converged = True
                break
            length = min(refresh, 2 * length)
            # a new set is a new loss: L-BFGS restarts its curvature memory
            opt_state = restart(params) if missed else res.opt_state
            active_set = fresh
        if final is None:  # every chunk was dropped
            final = float(loss(params, *data))
        history.append(np.array([final], dtype=res.loss_history.dtype))
        hist = np.concatenate(history)
        return res._replace(
            params=params, loss_history=hist, num_iter=len(hist) - 1, converged=converged
        )

#: Below this many samples the fit uses the full loss: one dense block is then as fast
#: as the pair list, and it saves the compilations of the chunked loop.
_ACTIVE_MIN_SAMPLES = 1000
#: The fit uses the full streaming loss instead of an active set of more than
#: ``n^2 / _DENSE_FRACTION`` pairs: per pair, the pair list's gathers cost several times
#: the streaming pass (a rough break-even, not tuned).
_DENSE_FRACTION = 8


def _fresh_state(optimizer, params):
    """A new optimizer state with the dtypes of the fit loop's (one compiled loop for all chunks)."""
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts with floats
        state = optimizer.init(jnp.asarray(params))
    return jax.tree.map(lambda a: jax.lax.convert_element_type(a, jnp.result_type(a)), state)


def _resized(new, old):
    """``new`` with the capacity of ``old`` unless that is too small or 4x too large.

    Capacities change by powers of two, each a compilation of the fit loop (cached for
    later fits), so small changes of the number of pairs keep the old shape, and a
    growing set gets one doubling of headroom.
    """
    cap = old.anchors.shape[0]
    want = new.anchors.shape[0]
    if want > cap:
        return with_capacity(new, 2 * want)
    return new if 4 * want <= cap else with_capacity(new, cap)


def _missed_impostors(old, new, transform, x, tn, margin: float) -> bool:
    r"""Whether a pair of ``new`` missing from ``old`` can be active at ``transform``.

    Such a pair :math:`(i, l)` has :math:`D_{il} < m + \max_j D_{ij}` (exact differences,
    float64 on the host); without one, the loss on ``old`` equals the full loss.
    """
    n = x.shape[0]
    key = lambda s: np.asarray(s.anchors, np.int64)[np.asarray(s.mask)] * n + np.asarray(
        s.impostors, np.int64
    )[np.asarray(s.mask)]
    new_keys = key(new)
    extra = new_keys[~np.isin(new_keys, key(old), assume_unique=True)]
    if extra.size == 0:
        return False
    a, l = np.divmod(extra, n)
    z = np.asarray(x, np.float64) @ np.asarray(transform, np.float64).T
    d_il = np.sum((z[a] - z[l]) ** 2, axis=1)
    d_ij = np.max(np.sum((z[a][:, None, :] - z[np.asarray(tn)[a]]) ** 2, axis=2), axis=1)
    return bool(np.any(d_il < margin + d_ij))


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


def _weighted_lmnn(
    transform, x, codes, target_neighbors, pair_weight, sample_weight, *, push_weight, margin,
    block_size, mesh=None,
):  # fmt: skip
    """LMNN's loss (row-sharded over ``mesh`` if given) with the target slots, their pair
    weights and the sample weights of :func:`copy_target_neighbors` as data."""
    if mesh is None:
        return lmnn_pairs_loss(
            transform, x, codes, target_neighbors, pair_weight, sample_weight,
            push_weight=push_weight, margin=margin, block_size=block_size,
        )  # fmt: skip
    return sharded_lmnn_pairs_loss(
        transform, x, codes, target_neighbors, pair_weight, sample_weight, mesh=mesh,
        push_weight=push_weight, margin=margin, block_size=block_size,
    )  # fmt: skip


@functools.cache
def _weighted_lmnn_objective(block_size, margin: float, push_weight: float, mesh=None):
    """One weighted loss object per configuration, so refits reuse the compiled loop."""
    return functools.partial(
        _weighted_lmnn, push_weight=push_weight, margin=margin, block_size=block_size, mesh=mesh
    )


@functools.cache
def _lmnn_objective(block_size, margin: float, push_weight: float, mesh=None):
    """One loss object per configuration, so refits reuse the compiled loop."""
    return functools.partial(
        _lmnn_with_targets, push_weight=push_weight, margin=margin, block_size=block_size,
        mesh=mesh,
    )


def _lmnn_active_with_targets(transform, x, codes, target_neighbors, impostors, *, push_weight, margin):
    """:func:`metricjax.losses.lmnn_loss` on an impostor active set (a data argument)."""
    return lmnn_loss(
        transform, x, codes, target_neighbors=target_neighbors, push_weight=push_weight,
        margin=margin, impostors=impostors,
    )  # fmt: skip


@functools.cache
def _lmnn_active_objective(margin: float, push_weight: float):
    """One active-set loss object per configuration, so refits reuse the compiled loop."""
    return functools.partial(_lmnn_active_with_targets, push_weight=push_weight, margin=margin)
