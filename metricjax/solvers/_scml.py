r"""SCML solver: stochastic composite dual averaging (AdaGrad scaling) over basis weights.

Shi, Bellet & Sha (AAAI 2014), as metric-learn 0.7's ``_BaseSCML._fit``, in one
compiled ``jax.lax.scan``; plus the basis builders (``"triplet_diffs"`` and, for
labelled data, ``"lda"``), which run once on the host.
"""

# ruff: noqa: F722  (jaxtyping shape strings such as "d d" are not forward references)

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from metricjax import _checks
from metricjax._host import member_difference
from metricjax._rules import mm
from metricjax.exceptions import InvalidParameterError
from metricjax.losses._pairs import check_tuples, sq_mahalanobis_rows
from metricjax.losses._scml import (
    basis_metric,
    check_beta,
    hinge,
    scml_objective,
    triplet_differences,
)
from metricjax.solvers._prior import _random_state, components_from_metric

# metric-learn's slack that keeps the AdaGrad denominator away from zero
_DELTA = 1e-3
# precompute the (n, K) distance differences when they take at most this many bytes
_PRECOMPUTE_BYTES = 512 * 2**20


class SCMLResult(NamedTuple):
    """Outcome of :func:`scml_solve`.

    Attributes:
        weights: the learned non-negative basis weights :math:`w`, ``(K,)`` (the best
            iterate among the ``output_iter`` checkpoints, as metric-learn).
        basis: the basis :math:`B`, ``(K, d)``.
        metric: :math:`M = B^\\top \\mathrm{diag}(w) B`, ``(d, d)``.
        n_iter: number of stochastic updates performed (``output_iter`` times the number
            of checkpoints).
        objective: the SCML objective at ``weights`` (:func:`metricjax.losses.scml_loss`).
        components: a transform ``L`` with :math:`L^\\top L = M` as metric-learn builds
            it: :math:`\\mathrm{diag}(\\sqrt{w_A}) B_A` over the active bases :math:`A`
            when fewer than ``d`` are active (a low-rank ``(|A|, d)`` map; a
            ``UserWarning`` says so, metric-learn's), else
            ``components_from_metric(M)`` (``(d, d)``); a NumPy array.
    """

    weights: Array
    basis: Array
    metric: Array
    n_iter: int
    objective: float
    components: np.ndarray


def _check_n_basis(n_basis, default: int, how: str) -> int:
    if n_basis is None:
        warnings.warn(
            f"As no value for `n_basis` was selected, the number of basis will be set to "
            f"n_basis= {default} ({how})",
            stacklevel=3,
        )
        return default
    return _checks.integer(n_basis, "n_basis")


# ----------------------------------------------------------------------------------
# basis builders (host, float64 NumPy: they run once)
# ----------------------------------------------------------------------------------
def scml_triplet_diffs_basis(triplets, *, n_basis=None, random_state=None) -> np.ndarray:
    r"""SCML's ``"triplet_diffs"`` basis, built exactly as metric-learn 0.7 builds it.

    Repeatedly draws ``d`` triplets without replacement (``random_state.choice``), forms
    :math:`S = \sum (a - b)(a - b)^\top - \sum (a - c)(a - c)^\top` over them, computes
    ``lam, V = eigh(S^T S)`` and appends the rows ``V[lam > 0]`` to the basis, until
    ``n_basis`` rows are collected (``_generate_bases_dist_diff``: same draws, same
    numbers; tested equal).

    **What this really is.** metric-learn's docstring says "the eigenvectors with positive
    eigenvalue", but ``V[mask]`` selects *rows* of the eigenvector matrix, and ``eigh``
    returns eigenvectors as *columns*; the rows of an orthogonal matrix are an orthonormal
    basis of :math:`\mathbb{R}^d` too, but not eigenvectors of :math:`S`
    (``tests/test_scml.py`` shows it). We keep metric-learn's construction on purpose:
    with the true eigenvectors (``V[:, mask].T``) the SCML objective reached on iris,
    wine and breast-cancer triplets was *worse* in 27 of 36 runs (e.g. 1.4-2.0 instead
    of 0.07-0.12 on 300 wine triplets): successive draws give nearly the same leading
    eigenvectors, a less diverse basis. The one change: where metric-learn loops forever
    on triplets whose differences give no positive eigenvalue, this raises ``ValueError``
    after 100 empty draws.

    Args:
        triplets: ``(n, 3, d)`` triplets; needs ``n >= d``.
        n_basis: number of basis vectors :math:`K`; ``None``: ``80 d`` (with a warning, as
            metric-learn).
        random_state: ``None``, an int seed or a ``numpy.random.RandomState``.

    Returns:
        The basis :math:`B`, a float64 NumPy array ``(K, d)`` with unit-norm rows.

    Raises:
        ValueError: ``d`` larger than the number of triplets, bad ``n_basis``, or triplets
            whose differences are all zero.
    """
    t = np.asarray(check_tuples(triplets, "triplets", 3), dtype=np.float64)
    n, _, d = t.shape
    k = _check_n_basis(n_basis, 80 * d, "80 * n_features")
    if d > n:
        raise ValueError(  # metric-learn's message, word for word
            f"Number of features ({d}) is greater than the number of triplets({n}).\n"
            "Consider using dimensionality reduction or using another basis generation scheme."
        )
    pos, neg = member_difference(t, 0, 1), member_difference(t, 0, 2)
    if not (np.any(pos) or np.any(neg)):
        raise ValueError("`triplets` are degenerate: every a - b and a - c is zero")
    rng = _random_state(random_state)
    rows, have, empty = [], 0, 0
    while have < k:
        sel = rng.choice(n, size=d, replace=False)
        p, q = pos[sel], neg[sel]
        diff_sum = p.T.dot(p) - q.T.dot(q)
        lam, v = np.linalg.eigh(diff_sum.T.dot(diff_sum))
        keep = lam > 0
        if not keep.any():
            empty += 1
            if empty > 100:
                raise ValueError(
                    "`triplets` are too degenerate for the 'triplet_diffs' basis: 100 draws "
                    "gave no non-zero eigenvalue; pass an explicit `basis`"
                )
            continue
        rows.append(v[keep])  # rows of V, as metric-learn (see the docstring)
        have += int(keep.sum())
    return np.concatenate(rows, axis=0)[:k]


def scml_lda_basis(x, labels, *, n_basis=None, random_state=None) -> np.ndarray:
    r"""SCML_Supervised's ``"lda"`` basis: local LDA directions around k-means centres.

    metric-learn's ``_generate_bases_LDA``: k-means (``n_clusters = ceil(K / (2 r))``,
    :math:`r = \min(C - 1, d)` directions per LDA) on ``x``; for each centre and each of two
    scales (10 and 20 neighbours per class, 20 and 50 when ``d > 50``), the nearest points of
    every class; the normalised LDA scalings of each such neighbourhood become basis rows.
    Needs scikit-learn (host-side, runs once).

    Args:
        x: points ``(n, d)``.
        labels: class labels ``(n,)``, at least two classes.
        n_basis: :math:`K`; ``None``: :math:`\min(20 d, 2 n r - 1)` (with a warning).
        random_state: seed or ``numpy.random.RandomState`` for k-means.

    Returns:
        Basis :math:`B`, float64 NumPy array ``(K, d)``.

    Raises:
        ValueError: fewer than two classes, ``n_basis >= 2 n r`` (not enough samples).
    """
    from sklearn.cluster import KMeans
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import normalize

    x = np.asarray(_checks.points(x, "x"), dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("`x` contains NaN or inf")
    y = np.asarray(labels)
    if y.shape != (x.shape[0],):
        raise ValueError(f"`labels` must have shape ({x.shape[0]},), got {y.shape}")
    classes, class_count = np.unique(y, return_counts=True)
    n_class, d = len(classes), x.shape[1]
    if n_class < 2:
        raise ValueError("`labels` must hold at least two classes for the 'lda' basis")
    num_eig = min(n_class - 1, d)
    k = _check_n_basis(n_basis, min(20 * d, x.shape[0] * 2 * num_eig - 1), "'lda' default")
    if k >= x.shape[0] * 2 * num_eig:
        # metric-learn's text word for word, its missing space included (docs/input_policy.md)
        raise ValueError(
            f"Not enough samples to generate {k} LDA bases, n_basisshould be smaller than "
            f"{x.shape[0] * 2 * num_eig}"
        )
    if k < n_class:
        warnings.warn(
            "The number of basis is less than the number of classes, which may lead to "
            "poor discriminative performance.",
            stacklevel=2,
        )
    n_clusters = int(np.ceil(k / (2 * num_eig)))
    # metric-learn's elkan; for one cluster scikit-learn runs lloyd anyway (with a warning)
    algorithm = "elkan" if n_clusters > 1 else "lloyd"
    centres = (
        KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state, algorithm=algorithm)
        .fit(x)
        .cluster_centers_
    )
    scales = [20, 50] if d > 50 else [10, 20]
    k_class = np.vstack([np.minimum(class_count, scales[0]), np.minimum(class_count, scales[1])])
    idx_set = [np.zeros((n_clusters, int(k_class[s].sum())), dtype=np.int64) for s in range(2)]
    starts = np.hstack([np.zeros((2, 1), np.int64), k_class]).cumsum(axis=1)
    for c in range(n_class):
        sel = np.flatnonzero(y == classes[c])
        nb = NearestNeighbors().fit(x[sel])
        neighbours = nb.kneighbors(centres, n_neighbors=int(k_class[-1, c]), return_distance=False)
        for s in range(2):
            kk = int(k_class[s, c])
            idx_set[s][:, starts[s, c] : starts[s, c + 1]] = sel[neighbours[:, :kk]]
    basis = np.zeros((k, d))
    bounds = np.hstack(
        [np.vstack([0, n_clusters * num_eig]), np.full((2, n_clusters), num_eig)]
    ).cumsum(axis=1)
    lda = LinearDiscriminantAnalysis()
    for s in range(2):
        for c in range(n_clusters):
            lda.fit(x[idx_set[s][c]], y[idx_set[s][c]])
            start, finish = int(bounds[s, c]), int(bounds[s, c + 1])
            if start >= k:
                break
            scalings = lda.scalings_.T
            if scalings.shape[0] == 0:  # no discriminant direction here (e.g. the same
                continue  # points under every label): these basis rows stay 0
            rows = normalize(scalings)[: min(finish, k) - start]
            basis[start : start + rows.shape[0]] = rows
    return basis


# ----------------------------------------------------------------------------------
# the compiled dual-averaging loop
# ----------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("output_iter", "precompute", "count_active"))
def _scml_loop(
    triplets, basis, idx, beta, gamma, *, output_iter: int, precompute: bool,
    count_active: bool = False,
):  # fmt: skip
    diff = triplet_differences(triplets)
    n = diff.shape[0] // 2
    k = basis.shape[0]
    dt = diff.dtype
    bs = idx.shape[-1]

    if precompute:
        zu, zv = mm(diff[:n], basis.T), mm(diff[n:], basis.T)
        dd = zu * zu - zv * zv  # (n, K): basis-wise distance differences per triplet

        def batch_dd(rows):
            return dd[rows]
    else:

        def batch_dd(rows):
            zu, zv = mm(diff[rows], basis.T), mm(diff[n + rows], basis.T)
            return zu * zu - zv * zv

    def step(carry, rows):
        w, avg, ada, t = carry
        ddb = batch_dd(rows)  # (bs, K)
        # tiny products as fused multiply-and-reduce (a dot call costs more at this size)
        _, active = hinge(1 + jnp.sum(ddb * w[None, :], axis=1))
        g = jnp.sum(jnp.where(active[:, None], ddb, 0), axis=0) / bs  # batch hinge subgradient
        tf = t.astype(dt)
        avg = (tf * avg + g) / (tf + 1)
        ada = jnp.sqrt(ada * ada + g * g)
        # dual averaging with the l1 prox and w >= 0 (metric-learn's closed form)
        w = -(tf + 1) / (gamma * (_DELTA + ada)) * jnp.minimum(avg + beta, 0)
        return (w, avg, ada, t + 1), None

    def chunk(carry, rows):
        state, best_obj, best_w = carry
        state, _ = jax.lax.scan(step, state, rows, unroll=4)
        obj = scml_objective(state[0], diff, basis, beta)
        better = obj < best_obj
        out = (state, jnp.where(better, obj, best_obj), jnp.where(better, state[0], best_w))
        if not count_active:
            return out, obj
        # the verbose log's number of triplets with positive slack (metric-learn's num_imp)
        dist = sq_mahalanobis_rows(diff, basis_metric(state[0], basis))
        return out, (obj, jnp.sum(1 + dist[:n] - dist[n:] > 0))

    zeros = jnp.zeros((k,), dt)
    init = ((zeros, zeros, zeros, jnp.zeros((), jnp.int32)), jnp.asarray(jnp.inf, dt), zeros)
    chunks = idx.reshape(-1, output_iter, bs)
    (_, best_obj, best_w), history = jax.lax.scan(chunk, init, chunks)
    return best_w, best_obj, basis_metric(best_w, basis), history


def scml_solve(
    triplets: Float[ArrayLike, "n 3 d"],
    *,
    beta: float = 1e-5,
    basis="triplet_diffs",
    n_basis: int | None = None,
    gamma: float = 5e-3,
    max_iter: int = 10000,
    output_iter: int = 500,
    batch_size: int = 10,
    random_state=None,
    verbose: bool | str = False,
) -> SCMLResult:
    r"""Fit SCML: sparse non-negative weights of rank-one bases from triplet constraints.

    Minimises (:func:`metricjax.losses.scml_loss`)

    .. math::
        f(w) = \beta \sum_k w_k + \frac1n \sum_i \bigl[1 + d_M(a_i, b_i) - d_M(a_i, c_i)\bigr]_+,
        \qquad M = B^\top \mathrm{diag}(w) B, \; w \ge 0,

    by metric-learn's stochastic composite dual averaging: at step :math:`t` (0-based) a
    mini-batch of ``batch_size`` triplets (drawn with replacement), its hinge subgradient
    :math:`g_t`, the running mean :math:`\bar g_t`, the AdaGrad norm
    :math:`h_t = \sqrt{\sum_{s \le t} g_s^2}` and

    .. math::
        w_{t+1} = -\frac{t + 1}{\gamma(\delta + h_t)} \min(\bar g_t + \beta, 0),
        \qquad \delta = 10^{-3}.

    Every ``output_iter`` steps the full objective is evaluated and the best iterate is
    kept. The mini-batch indices are drawn on the host with NumPy,
    ``RandomState.randint(0, n, (max_iter, batch_size))`` from ``random_state``, exactly
    as metric-learn, so with the same basis and seed both follow the same iterates (tested
    to rounding); the updates run in one compiled ``jax.lax.scan``. The basis-wise distance
    differences :math:`(b_k^\top u_i)^2 - (b_k^\top v_i)^2` are precomputed (``(n, K)``)
    when that is cheaper than computing them per batch and fits in 512 MiB. The
    ``max_iter % output_iter`` trailing steps cannot change the result and are skipped.

    **Differences from metric-learn 0.7** (shown in ``tests/test_scml.py``): an explicit
    ``basis`` array works (metric-learn's ``SCML(basis=array).fit`` raises
    ``ValueError: The truth value of an array ... is ambiguous``); degenerate triplets
    raise instead of looping forever in the basis builder. With ``"triplet_diffs"`` and an
    int seed, the basis and the mini-batches are metric-learn's, and so is the result
    (to rounding).

    **Sensitivity to rounding (float32).** The iterates depend discontinuously on the
    data: one triplet's hinge turning on or off in one mini-batch changes every later
    step, and :math:`(t + 1)/\gamma` amplifies the difference. Perturbing the triplets by
    a relative :math:`10^{-7}` (the size of float32 rounding) and refitting *in float64*
    moved the objective on 300 wine triplets from 2.59 to 3.79 (seed 0) and from 2.57 to
    3.52 (seed 5), while the float32 fit with seed 5 landed on 3.52 as well. So a float32
    fit can end at a different objective than the float64 one, better or worse (on the
    1,000- and 5,000-triplet speed sets of ``benchmarks/bench_weak.py``, seeds 0-4:
    float32 worse in 4 runs, better in 2, equal in 4): the algorithm's spread, not an
    accumulated float32 error. Pass float64 triplets (with ``jax_enable_x64``) to follow
    metric-learn's iterates; compare seeds, not precisions (``tests/test_scml.py``).

    Args:
        triplets: ``(n, 3, d)``; row ``(a, b, c)``: :math:`a` should be closer to :math:`b`
            than to :math:`c`.
        beta: :math:`\ell_1` weight.
        basis: ``"triplet_diffs"`` (built by :func:`scml_triplet_diffs_basis`) or an array
            ``(K, d)`` (e.g. from :func:`scml_lda_basis`).
        n_basis: :math:`K` for ``"triplet_diffs"`` (``None``: ``80 d``, with a warning);
            must match an array basis if given.
        gamma: learning-rate parameter :math:`\gamma > 0`.
        max_iter: number of stochastic steps.
        output_iter: steps between objective evaluations (``<= max_iter``).
        batch_size: triplets per step.
        random_state: ``None``, an int seed or a ``numpy.random.RandomState``: the basis
            draws, then the mini-batch draws (a fresh generator for each from an int seed,
            as metric-learn).
        verbose: print metric-learn's log once the compiled loop is done: ``[SCML] iter
            500\t obj 0.569946\t num_imp 2`` per checkpoint (the objective and the
            number of triplets with positive slack), then ``max iteration reached.``; a
            string replaces ``SCML`` as the name.

    Returns:
        :class:`SCMLResult` (arrays in the dtype of ``triplets``: float32, or float64 under
        ``jax.enable_x64``).

    Raises:
        ValueError: wrong shapes, NaN/inf, a non-integer or non-positive ``max_iter``,
            ``output_iter`` or ``batch_size``, ``output_iter > max_iter``, ``gamma <= 0``,
            ``beta < 0``, an unknown ``basis`` string or a basis of the wrong width.

    References:
        Y. Shi, A. Bellet and F. Sha, `Sparse Compositional Metric Learning
        <https://arxiv.org/abs/1404.4105>`_, AAAI 2014.
    """
    t = check_tuples(triplets, "triplets", 3)
    n, _, d = np.shape(t)
    max_iter = _checks.integer(max_iter, "max_iter")
    output_iter = _checks.integer(output_iter, "output_iter")
    batch_size = _checks.integer(batch_size, "batch_size")
    if output_iter > max_iter:
        raise ValueError("The value of output_iter must be equal or smaller than max_iter.")
    b = check_beta(beta)
    try:
        g = float(gamma)
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(f"`gamma` must be a positive number, got {gamma!r}") from err
    if isinstance(gamma, bool) or not (math.isfinite(g) and g > 0):
        raise ValueError(f"`gamma` must be a positive finite number, got {gamma!r}")

    if isinstance(basis, str):
        if basis == "triplet_diffs":
            basis_arr = scml_triplet_diffs_basis(t, n_basis=n_basis, random_state=random_state)
        elif basis == "lda":
            raise ValueError(
                "basis='lda' needs class labels: build it with scml_lda_basis(x, labels) and "
                "pass the array as `basis`"
            )
        else:
            raise ValueError(
                f"`basis` must be 'triplet_diffs' or an array of shape (n_basis, {d}), got "
                f"{basis!r}"
            )
    else:
        basis_arr = _checks._asarray(basis, "basis")
        if np.ndim(basis_arr) != 2 or np.shape(basis_arr)[0] < 1:
            raise ValueError(
                f"`basis` must be an array of shape (n_basis, {d}), got {np.shape(basis_arr)}"
            )
        if np.shape(basis_arr)[1] != d:  # metric-learn's message
            raise ValueError(
                f"The dimensionality ({np.shape(basis_arr)[1]}) of the provided bases must "
                f"match the dimensionality of the data ({d})."
            )
        if not np.all(np.isfinite(np.asarray(basis_arr))):
            raise ValueError("`basis` contains NaN or inf")
        if n_basis is not None and _checks.integer(n_basis, "n_basis") != np.shape(basis_arr)[0]:
            raise ValueError(
                f"`n_basis`={n_basis} does not match the {np.shape(basis_arr)[0]} rows of `basis`"
            )

    rng = _random_state(random_state)
    idx = rng.randint(low=0, high=n, size=(max_iter, batch_size))
    n_chunks = max_iter // output_iter
    idx = np.asarray(idx[: n_chunks * output_iter], np.int32)

    dt = _checks.float_dtype(t)
    k = np.shape(basis_arr)[0]
    precompute = n <= max_iter * batch_size and n * k * jnp.dtype(dt).itemsize <= _PRECOMPUTE_BYTES
    # NumPy arguments: the compiled loop transfers them itself (a jnp.asarray per array
    # would cost a dispatch of its own each, about 0.1 ms on a CPU)
    w, obj, metric, history = _scml_loop(
        np.asarray(t, dt),
        np.asarray(basis_arr, dt),
        idx,
        np.asarray(b, dt),
        np.asarray(g, dt),
        output_iter=output_iter,
        precompute=bool(precompute),
        count_active=bool(verbose),
    )
    if verbose:  # metric-learn's log, printed once the compiled loop is done
        name = verbose if isinstance(verbose, str) else "SCML"
        for c, (o, a) in enumerate(zip(*jax.device_get(history))):
            print(f"[{name}] iter {(c + 1) * output_iter}\t obj {o:.6f}\t num_imp {int(a)}")
        print("max iteration reached.")
    w_host = np.asarray(w, dtype=np.float64)
    active = w_host > 0
    b_host = np.asarray(basis_arr, dtype=np.float64)
    if active.sum() < d:
        # metric-learn's warning; for the zero metric (metric-learn returns it too, a map
        # to 0 dimensions) it says what that means and what to change
        zero = (
            " Every basis weight is 0: the learned metric is zero (every distance 0); "
            "try a smaller `beta`, more iterations, other `basis` rows or more triplets."
            if not active.any()
            else ""
        )
        warnings.warn(
            "The number of bases with nonzero weight is less than the number of features of "
            "the input, in consequence the learned transformation reduces the dimension to "
            f"{int(active.sum())}.{zero}",
            UserWarning,
            stacklevel=2,
        )
        components = np.sqrt(w_host[active])[:, None] * b_host[active]
    else:
        m_host = b_host.T @ (w_host[:, None] * b_host)
        components = components_from_metric(0.5 * (m_host + m_host.T))
    return SCMLResult(
        w, jnp.asarray(basis_arr, dt), metric, n_chunks * output_iter, float(obj), components
    )
