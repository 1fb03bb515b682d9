r"""Constraints from (partially) labelled data: pairs, quadruplets, chunklets, triplets.

A host-side NumPy port of ``metric_learn.constraints`` (metric-learn 0.7.0), the
bookkeeping that the supervised versions of the weakly supervised learners run before
fitting: ITML/SDML/MMC draw positive and negative pairs, LSML builds quadruplets from
them, RCA draws chunklets and SCML takes k-nearest-neighbour triplets.

The draws are **identical** to metric-learn's for the same ``random_state`` (an int or
a ``numpy.random.RandomState``, passed through ``sklearn.utils.check_random_state``):
the same random-number calls are made in the same order, only vectorised where
metric-learn loops in Python. :meth:`Constraints.positive_negative_pairs` costs
:math:`O(m \log n)` for ``m`` constraints over ``n`` labelled points instead of
metric-learn's :math:`O(m n)`.

Where metric-learn 0.7.0 crashes or is wrong this module differs, on purpose:

- a request that cannot give a single pair (every class has one point, or there is one
  class) raises a ``ValueError`` naming the reason; metric-learn fails with
  ``not enough values to unpack``;
- the deprecated ``num_constraints`` spelling is honoured (metric-learn warns, then
  silently draws ``n_constraints`` pairs instead);
- :meth:`Constraints.generate_knntriplets` returns indices into the ``X`` it was given
  (metric-learn returns indices into the labelled subset, which point to the wrong rows
  as soon as a label is ``-1``), skips classes with one point instead of crashing, and
  refuses a single class;
- non-integer labels are refused (metric-learn truncates ``0.5`` to ``0``).

Known quirk kept for identical draws: :meth:`Constraints.chunks` picks the class of
each chunk with ``randint(0, n_classes - 1)``, so while two or more classes still have
points left the *last* remaining class is never picked (its points are only used once
the others are exhausted). The chunks are valid (same class, disjoint), just not drawn
uniformly over classes.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from metricjax import _checks
from metricjax.exceptions import InvalidParameterError

__all__ = [
    "Constraints",
    "default_n_constraints",
    "wrap_pairs",
    "wrap_quadruplets",
]

# Passes over the data that ``_pairs`` makes to find distinct pairs (metric-learn's value).
_PAIRS_MAX_ITER = 10


# ----------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------
def _int_labels(labels, name: str) -> np.ndarray:
    """``labels`` as a 1-D int64 array; integer-valued floats and booleans are accepted."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D with one label per point, got shape {arr.shape}")
    if arr.dtype == np.bool_ or arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise ValueError(
                f"`{name}` must hold integer class labels (negative = unknown); got non-integer "
                "values such as "
                f"{arr[arr != np.round(arr)][0]!r}. Encode other labels first, e.g. with "
                "np.unique(labels, return_inverse=True)"
            )
        return arr.astype(np.int64)
    raise TypeError(
        f"`{name}` must hold integer class labels (negative = unknown), got dtype {arr.dtype}. "
        "Encode other labels first, e.g. with np.unique(labels, return_inverse=True)"
    )


def _count(value, name: str, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum`` (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"`{name}` must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}")
    return int(value)


def _check_random_state(random_state):
    from sklearn.utils import check_random_state

    try:
        return check_random_state(random_state)
    except ValueError as err:
        raise ValueError(
            f"`random_state` must be None, an int or a numpy.random.RandomState: {err}"
        ) from err


def _deprecated_alias(new, old, new_name: str, old_name: str):
    """Resolve metric-learn's deprecated spelling ``old_name`` of ``new_name``."""
    if isinstance(old, str) and old == "deprecated":
        return new
    warnings.warn(
        f'"{old_name}" parameter has been renamed to "{new_name}"; use "{new_name}" '
        "(metric-learn deprecated it in 0.6.3)",
        FutureWarning,
        stacklevel=3,
    )
    if new is not None and new != old:
        raise ValueError(
            f"got both `{new_name}`={new!r} and its deprecated spelling `{old_name}`={old!r}; "
            f"pass only `{new_name}`"
        )
    return old


# ----------------------------------------------------------------------------------
# the constraint generator
# ----------------------------------------------------------------------------------
class Constraints:
    """Build constraints from labelled data (metric-learn's ``Constraints``).

    Args:
        partial_labels: integer class labels, shape ``(n,)``; a negative label (``-1``)
            marks a point whose class is unknown: it takes part in no constraint.

    Attributes:
        partial_labels: the labels as an int64 array, shape ``(n,)``.

    Raises:
        ValueError: ``partial_labels`` is not 1-D, holds NaN or non-integer values.
        TypeError: ``partial_labels`` is not numeric.

    References:
        W. de Vazelhes, C. J. Carey, Y. Tang, N. Vauquier, A. Bellet, `metric-learn: Metric
        Learning Algorithms in Python <https://jmlr.org/papers/v21/19-678.html>`_, JMLR 2020.
    """

    def __init__(self, partial_labels):
        self.partial_labels = _int_labels(partial_labels, "partial_labels")

    # ------------------------------------------------------------------ pairs
    def positive_negative_pairs(
        self,
        n_constraints: int | np.integer | None = None,
        *,
        same_length: bool = False,
        random_state=None,
        num_constraints="deprecated",
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Random positive (same class) and negative (different classes) pairs.

        For each of ``n_constraints`` draws a labelled point ``a`` is drawn uniformly,
        then ``b`` uniformly among the other points of its class (positive) or among
        the points of the other classes (negative). Ordered pairs are kept distinct;
        up to 10 passes are made to reach ``n_constraints`` of them, then a warning
        says how many were found. Positive pairs are drawn first, then negative pairs,
        from the same generator.

        Args:
            n_constraints: number of positive and of negative pairs, ``>= 1``.
            same_length: if True, truncate the longer of the two lists so that both
                have the same length.
            random_state: None, an int seed or a ``numpy.random.RandomState``.
            num_constraints: deprecated spelling of ``n_constraints`` (FutureWarning).

        Returns:
            ``(a, b, c, d)``, int64 index arrays into the rows of the data: ``(a[i], b[i])``
            are positive pairs, ``(c[i], d[i])`` negative pairs.

        Raises:
            ValueError: ``n_constraints < 1``; no point is labelled; no positive pair exists
                (every class has a single point) or no negative pair exists (one class).
        """
        n_constraints = _deprecated_alias(
            n_constraints, num_constraints, "n_constraints", "num_constraints"
        )
        if n_constraints is None:
            raise TypeError("positive_negative_pairs() needs `n_constraints`")
        n_constraints = _count(n_constraints, "n_constraints", 1)
        self.n_constraints = n_constraints
        random_state = _check_random_state(random_state)
        a, b = self._pairs(n_constraints, same_label=True, random_state=random_state)
        c, d = self._pairs(n_constraints, same_label=False, random_state=random_state)
        if same_length and len(a) != len(c):
            n = min(len(a), len(c))
            return a[:n], b[:n], c[:n], d[:n]
        return a, b, c, d

    def _pairs(self, n_constraints: int, *, same_label: bool, random_state):
        r"""``n_constraints`` distinct ordered pairs, drawn like metric-learn's ``_pairs``.

        metric-learn draws all anchors ``a`` of a pass with one ``randint`` call, then
        for each anchor in turn one ``choice`` among its candidates ``b`` (skipped when
        there is none). ``RandomState.choice(arr)`` is ``arr[randint(0, len(arr))]``,
        and a vector ``randint(0, highs)`` makes exactly the scalar calls in order, so
        one vector call gives the same draws. The ``j``-th candidate is found without
        building the candidate list: with the members of the anchor's class sorted as
        :math:`p_0 < p_1 < \dots`, the ``j``-th *other* member is :math:`p_{j + [j \ge r]}`
        (``r`` the anchor's rank), and the ``j``-th non-member is
        :math:`j + \#\{t : p_t - t \le j\}`. Pairs go into a Python set in the same
        order as metric-learn's, so ``list(set)`` gives the same order too.
        """
        known_idx = np.flatnonzero(self.partial_labels >= 0)
        known = self.partial_labels[known_idx]
        n = len(known)
        kind = "positive" if same_label else "negative"
        if n == 0:
            raise ValueError(
                f"cannot draw {kind} pairs: `partial_labels` has no known label (all negative)"
            )
        classes, cls, counts = np.unique(known, return_inverse=True, return_counts=True)
        if same_label and counts.max() < 2:
            raise ValueError(
                "cannot draw positive pairs: every labelled class in `partial_labels` has a "
                "single point"
            )
        if not same_label and len(classes) < 2:
            raise ValueError(
                "cannot draw negative pairs: all labelled points in `partial_labels` are in "
                f"one class ({classes[0]})"
            )
        order = np.argsort(cls, kind="stable")  # positions grouped by class, ascending
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[cls[order]]
        # p_t - t per class, shifted by class so that one searchsorted serves all classes
        stride = n + 1
        shifted = order - rank[order] + cls[order] * stride

        ab: set = set()
        it = 0
        while it < _PAIRS_MAX_ITER and len(ab) < n_constraints:
            nc = n_constraints - len(ab)
            aidx = random_state.randint(n, size=nc)
            c = cls[aidx]
            n_cand = counts[c] - 1 if same_label else n - counts[c]
            keep = n_cand > 0
            aidx, c = aidx[keep], c[keep]
            j = random_state.randint(0, n_cand[keep])
            if same_label:
                jj = j + (j >= rank[aidx])
                bidx = order[starts[c] + jj]
            else:
                below = np.searchsorted(shifted, j + c * stride, side="right") - starts[c]
                bidx = j + below
            ab.update(zip(aidx.tolist(), bidx.tolist()))
            it += 1
        if len(ab) < n_constraints:
            warnings.warn(
                f"Only generated {len(ab)} {kind} constraints (requested n_constraints="
                f"{n_constraints}): there are not that many distinct {kind} pairs to draw",
                stacklevel=3,
            )
        kept = list(ab)[:n_constraints]
        flat = itertools.chain.from_iterable(kept)
        pairs = np.fromiter(flat, dtype=np.int64, count=2 * len(kept)).reshape(-1, 2)
        return known_idx[pairs[:, 0]], known_idx[pairs[:, 1]]

    def quadruplets(
        self, n_constraints: int | np.integer | None = None, *, random_state=None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The quadruplets LSML_Supervised learns from: positive and negative pairs side by side.

        Each quadruplet ``(a, b, c, d)`` says that ``(a, b)`` (same class) should be
        closer than ``(c, d)`` (different classes). metric-learn's ``LSML_Supervised.fit``
        draws them as ``positive_negative_pairs(n_constraints, same_length=True)``, with
        ``n_constraints = 20 * n_classes**2`` by default.

        Args:
            n_constraints: number of quadruplets to draw (fewer with a warning when there
                are not enough distinct pairs); ``None`` means
                :func:`default_n_constraints` of the labels.
            random_state: None, an int seed or a ``numpy.random.RandomState``.

        Returns:
            ``(a, b, c, d)``, int64 index arrays of equal length; ``X[np.column_stack(
            (a, b, c, d))]`` (see :func:`wrap_quadruplets`) is LSML's ``(m, 4, d)`` input.

        References:
            E. Y. Liu, Z. Guo, X. Zhang, V. Jojic, W. Wang, `Metric Learning from
            Relative Comparisons by Minimizing Squared Residual
            <https://doi.org/10.1109/ICDM.2012.38>`_, ICDM 2012.
        """
        if n_constraints is None:
            n_constraints = default_n_constraints(self.partial_labels)
        return self.positive_negative_pairs(
            n_constraints, same_length=True, random_state=random_state
        )

    # ------------------------------------------------------------------ chunks
    def chunks(
        self,
        n_chunks: int | np.integer = 100,
        *,
        chunk_size: int | np.integer = 2,
        random_state=None,
        num_chunks="deprecated",
    ) -> np.ndarray:
        """Disjoint chunklets of ``chunk_size`` same-class points (for RCA).

        Repeatedly picks a class that still has points (see the module note on which),
        then ``chunk_size`` of its unused points without replacement, until ``n_chunks``
        chunklets exist. Same draws as metric-learn for the same ``random_state``.

        Args:
            n_chunks: number of chunklets, ``>= 0``.
            chunk_size: points per chunklet, ``>= 1``.
            random_state: None, an int seed or a ``numpy.random.RandomState``.
            num_chunks: deprecated spelling of ``n_chunks`` (FutureWarning).

        Returns:
            Chunk ids, int64, shape ``(n,)``: ``-1`` for a point in no chunklet, else
            the chunklet ``0 .. n_chunks - 1`` it belongs to.

        Raises:
            ValueError: the classes do not hold ``n_chunks`` disjoint chunklets of
                ``chunk_size`` points (the message gives the maximum).

        References:
            A. Bar-Hillel, T. Hertz, N. Shental, D. Weinshall, `Learning a Mahalanobis
            Metric from Equivalence Constraints <https://jmlr.org/papers/v6/bar-hillel05a.html>`_,
            JMLR 2005.
        """
        if not (isinstance(num_chunks, str) and num_chunks == "deprecated"):
            n_chunks = _deprecated_alias(None, num_chunks, "n_chunks", "num_chunks")
        n_chunks = _count(n_chunks, "n_chunks", 0)
        chunk_size = _count(chunk_size, "chunk_size", 1)
        random_state = _check_random_state(random_state)
        labels = self.partial_labels
        chunks = -np.ones_like(labels, dtype=np.int64)
        uniq, lookup = np.unique(labels, return_inverse=True)
        lookup = lookup.reshape(-1)
        # Python sets of numpy ints, built as metric-learn builds them: the draws index
        # ``list(set)``, whose order depends on the set's history.
        all_inds = [set(np.where(lookup == c)[0]) for c in range(len(uniq)) if uniq[c] >= 0]
        max_chunks = int(sum(len(s) // chunk_size for s in all_inds))
        if max_chunks < n_chunks:
            raise ValueError(  # metric-learn's message
                f"Not enough possible chunks of {chunk_size} elements in each class to form "
                f"expected {n_chunks} chunks - maximum number of chunks is {max_chunks}"
            )
        idx = 0
        while idx < n_chunks and all_inds:
            c = 0 if len(all_inds) == 1 else random_state.randint(0, high=len(all_inds) - 1)
            inds = all_inds[c]
            if len(inds) < chunk_size:
                del all_inds[c]
                continue
            ii = random_state.choice(list(inds), chunk_size, replace=False)
            inds.difference_update(ii)
            chunks[ii] = idx
            idx += 1
        return chunks

    # ------------------------------------------------------------------ triplets
    def generate_knntriplets(self, X, k_genuine: int | np.integer, k_impostor: int | np.integer) -> np.ndarray:
        """Triplets ``(a, b, c)``: ``b`` a same-class and ``c`` an other-class near neighbour of ``a``.

        For every labelled point ``a``, all combinations of one of its ``k_genuine``
        nearest neighbours in its class and one of its ``k_impostor`` nearest neighbours
        in the other classes (Euclidean, scikit-learn's ``NearestNeighbors`` as in
        metric-learn, so ties break the same way). A class too small for
        ``k_genuine`` (or with too few other points for ``k_impostor``) uses fewer,
        with a warning; a class with one point gives no triplet. The warning is
        metric-learn's, but the number of genuine neighbours it announces is the number
        used (the class's size minus one), where metric-learn's text says one more.

        Args:
            X: points, shape ``(n, d)`` (rows align with ``partial_labels``).
            k_genuine: same-class neighbours per point, ``>= 1``.
            k_impostor: other-class neighbours per point, ``>= 1``.

        Returns:
            Triplets, int array of shape ``(m, 3)``, indices into the rows of ``X``;
            ordered by class, then anchor, then genuine neighbour, then impostor.

        Raises:
            ValueError: ``X`` has the wrong shape or non-finite values, fewer than two
                labelled classes, or ``k_genuine``/``k_impostor`` not an int or below 1
                (a ``ValueError``, as metric-learn's ``SCML_Supervised`` raises).

        References:
            G. Shi, Y. Wu, J. Liu, S. Wan, W. Wang, T. Lu, `Sparse Compositional Metric
            Learning <https://arxiv.org/abs/1404.4105>`_, AAAI 2014.
        """
        from sklearn.neighbors import NearestNeighbors

        # ValueError with metric-learn's words for a non-integer (its SCML_Supervised's check)
        k_genuine = _checks.integer(k_genuine, "k_genuine")
        k_impostor = _checks.integer(k_impostor, "k_impostor")
        X = np.asarray(X)
        n = len(self.partial_labels)
        if X.ndim != 2 or X.shape[0] != n:
            raise ValueError(
                f"`X` must have shape (n, d) with n={n} rows (one per label), got {X.shape}"
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("`X` contains NaN or inf")
        known_idx = np.flatnonzero(self.partial_labels >= 0)
        known = self.partial_labels[known_idx]
        Xk = X[known_idx]
        labels, labels_count = np.unique(known, return_counts=True)
        if len(labels) < 2:
            raise ValueError(
                "generate_knntriplets needs labelled points of at least two classes in "
                f"`partial_labels`, got {len(labels)}"
            )
        n_known = len(known)
        k_gen = np.minimum(k_genuine, labels_count - 1)
        k_imp = np.minimum(k_impostor, n_known - labels_count)
        for i, count in enumerate(labels_count):
            if k_gen[i] < k_genuine:
                warnings.warn(
                    # metric-learn's text, word for word (its own tests compare it): the
                    # neighbourhood asked for counted with the point itself (k_genuine + 1),
                    # and its trailing newline
                    f"The class {labels[i]} has {count} elements, which is not sufficient to "
                    f"generate {k_genuine + 1} genuine neighbors as specified by k_genuine. "
                    f"Will generate {k_gen[i]} genuine neighbors instead.\n",
                    stacklevel=2,
                )
            if k_imp[i] < k_impostor:
                warnings.warn(
                    f"The class {labels[i]} has {k_imp[i]} elements of other classes, which is "
                    f"not sufficient to generate {k_impostor} impostor neighbors as specified "
                    f"by k_impostor. Will generate {k_imp[i]} impostor neighbors instead.\n",
                    stacklevel=2,
                )
        neigh = NearestNeighbors()
        blocks = []
        for i, label in enumerate(labels):
            kg, ki = int(k_gen[i]), int(k_imp[i])
            if kg == 0:  # a one-point class: no genuine neighbour, no triplet
                continue
            gen_mask = known == label
            gen_indx = np.flatnonzero(gen_mask)
            imp_indx = np.flatnonzero(~gen_mask)
            gen_neigh = gen_indx[neigh.fit(Xk[gen_indx]).kneighbors(n_neighbors=kg)[1]]
            imp_neigh = imp_indx[
                neigh.fit(Xk[imp_indx]).kneighbors(Xk[gen_indx], n_neighbors=ki)[1]
            ]
            # anchor-major, then genuine, then impostor (metric-learn's ``comb`` order)
            m = len(gen_indx)
            blocks.append(
                np.column_stack(
                    (
                        np.repeat(gen_indx, kg * ki),
                        np.repeat(gen_neigh.reshape(-1), ki),
                        np.broadcast_to(imp_neigh[:, None, :], (m, kg, ki)).reshape(-1),
                    )
                )
            )
        if not blocks:
            return np.empty((0, 3), dtype=np.intp)
        return known_idx[np.concatenate(blocks)].astype(np.intp)


# ----------------------------------------------------------------------------------
# module functions
# ----------------------------------------------------------------------------------
def default_n_constraints(labels) -> int:
    """``20 * n_classes**2``: the number of constraints metric-learn's supervised learners draw.

    ITML_Supervised, SDML_Supervised, MMC_Supervised and LSML_Supervised use it when
    ``n_constraints=None``; ``n_classes`` counts the distinct values of ``labels``,
    an unknown label ``-1`` included (as metric-learn does).
    """
    return 20 * len(np.unique(np.asarray(labels))) ** 2


def _index_arrays(constraints, n_expected: int, name: str):
    if len(constraints) != n_expected:
        raise ValueError(
            f"`{name}` must be a tuple of {n_expected} index arrays, got {len(constraints)}"
        )
    arrays = [np.asarray(c) for c in constraints]
    for a in arrays:
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"`{name}` must hold 1-D integer index arrays")
    return arrays


def wrap_pairs(X, constraints) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of points and their ``+1``/``-1`` labels from ``(a, b, c, d)`` index arrays.

    Args:
        X: points, shape ``(n, d)``.
        constraints: ``(a, b, c, d)`` from :meth:`Constraints.positive_negative_pairs`.

    Returns:
        ``(pairs, y)``: ``pairs`` of shape ``(p + q, 2, d)``, the ``p`` positive pairs
        ``(X[a], X[b])`` then the ``q`` negative pairs ``(X[c], X[d])``; ``y`` of shape
        ``(p + q,)``, ``1`` for positive and ``-1`` for negative pairs.
    """
    a, b, c, d = _index_arrays(constraints, 4, "constraints")
    if len(a) != len(b) or len(c) != len(d):
        raise ValueError("`constraints`: a and b (and c and d) must have the same length")
    idx = np.vstack((np.column_stack((a, b)), np.column_stack((c, d))))
    y = np.concatenate([np.ones_like(a), -np.ones_like(c)])
    return np.asarray(X)[idx], y


def wrap_quadruplets(X, constraints) -> np.ndarray:
    """Quadruplets of points ``X[np.column_stack((a, b, c, d))]``, shape ``(m, 4, d)``.

    What LSML_Supervised feeds LSML: ``(a, b, c, d)`` from
    :meth:`Constraints.quadruplets` (positive pair ``(a, b)`` should be closer than the
    negative pair ``(c, d)``).
    """
    arrays = _index_arrays(constraints, 4, "constraints")
    if len({len(a) for a in arrays}) != 1:
        raise ValueError("`constraints`: a, b, c and d must have the same length")
    return np.asarray(X)[np.column_stack(arrays)]
