"""metricjax.constraints draws exactly metric-learn 0.7.0's constraints, and fixes its crashes."""

import warnings

import numpy as np
import pytest
from _typecheck import unchecked

from benchmarks._reference_libs import metric_learn_compat
from metricjax.constraints import (
    Constraints,
    default_n_constraints,
    wrap_pairs,
    wrap_quadruplets,
)

ml = metric_learn_compat()
import metric_learn.constraints as mlc  # noqa: E402  (after the compatibility shim)
import metric_learn.itml as ml_itml  # noqa: E402
import metric_learn.lsml as ml_lsml  # noqa: E402


def label_sets():
    """Balanced, imbalanced, many small classes, with unknown (-1, -3) labels, large n."""
    rng = np.random.RandomState(0)
    yield "balanced", np.repeat(np.arange(3), 20)
    yield "imbalanced", np.r_[np.zeros(50, int), np.ones(5, int), np.full(2, 7)]
    yield "many_small", rng.randint(0, 40, size=90)
    partial = rng.randint(0, 4, size=70)
    partial[rng.rand(70) < 0.3] = -1
    partial[:3] = -3
    yield "partial", partial
    yield "large", rng.randint(0, 6, size=1500)


LABELS = dict(label_sets())
SEEDS = [0, 1, 42, 2024]


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def assert_same(got, ref):
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.dtype.kind == "i"
        np.testing.assert_array_equal(g, r)


# ----------------------------------------------------------------------------------
# positive / negative pairs
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LABELS))
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("same_length", [False, True])
def test_pairs_identical_to_metric_learn(name, seed, same_length):
    y = LABELS[name]
    for n_constraints in (1, 17, 3 * len(y)):
        ref = quiet(
            mlc.Constraints(y).positive_negative_pairs,
            n_constraints,
            same_length=same_length,
            random_state=seed,
        )
        got = quiet(
            Constraints(y).positive_negative_pairs,
            n_constraints,
            same_length=same_length,
            random_state=seed,
        )
        assert_same(got, ref)


def test_pairs_random_state_object_advances_identically():
    y = LABELS["partial"]
    rs_ref, rs_got = np.random.RandomState(5), np.random.RandomState(5)
    for _ in range(3):  # the same generator, reused: same draws each time
        ref = mlc.Constraints(y).positive_negative_pairs(30, random_state=rs_ref)
        got = Constraints(y).positive_negative_pairs(30, random_state=rs_got)
        assert_same(got, ref)
    assert rs_ref.randint(10**9) == rs_got.randint(10**9)


def test_pairs_are_valid():
    y = LABELS["partial"]
    a, b, c, d = Constraints(y).positive_negative_pairs(200, random_state=0)
    assert np.all(y[a] == y[b]) and np.all(a != b)
    assert np.all(y[c] != y[d])
    assert np.all(y[np.r_[a, b, c, d]] >= 0)
    assert len(set(zip(a, b))) == len(a) and len(set(zip(c, d))) == len(c)


def test_pairs_too_few_warns_like_metric_learn():
    y = np.array([0, 0, 1, 1, 1])  # 8 ordered positive and 12 negative pairs exist
    with warnings.catch_warnings(record=True) as ref_w:
        warnings.simplefilter("always")
        ref = mlc.Constraints(y).positive_negative_pairs(20, random_state=0)
    with warnings.catch_warnings(record=True) as got_w:
        warnings.simplefilter("always")
        got = Constraints(y).positive_negative_pairs(20, random_state=0)
    assert_same(got, ref)
    assert [str(w.message)[:36] for w in got_w] == [str(w.message)[:36] for w in ref_w]
    assert "Only generated 8 positive constraints (requested n_constraints=20)" in str(
        got_w[0].message
    )
    assert "Only generated 12 negative" in str(got_w[1].message)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.arange(5), "every labelled class in `partial_labels` has a single point"),
        (np.zeros(5, int), "all labelled points in `partial_labels` are in one class"),
        (np.full(5, -1), "`partial_labels` has no known label"),
    ],
)
def test_pairs_impossible_metric_learn_crashes(y, match):
    with pytest.raises(ValueError, match="not enough values to unpack|high <= 0"):
        quiet(mlc.Constraints(y).positive_negative_pairs, 3, random_state=0)
    with pytest.raises(ValueError, match=match):
        quiet(Constraints(y).positive_negative_pairs, 3, random_state=0)


def test_pairs_bad_count():
    c = Constraints(np.repeat([0, 1], 5))
    with pytest.raises(ValueError, match="not enough values to unpack"):
        mlc.Constraints(np.repeat([0, 1], 5)).positive_negative_pairs(0, random_state=0)
    with pytest.raises(ValueError, match="`n_constraints` must be at least 1"):
        c.positive_negative_pairs(0)
    with pytest.raises(TypeError, match="`n_constraints` must be an int"):
        unchecked(Constraints.positive_negative_pairs)(c, 2.5)
    with pytest.raises(TypeError, match="needs `n_constraints`"):
        c.positive_negative_pairs()
    with pytest.raises(ValueError, match="`random_state` must be None, an int"):
        c.positive_negative_pairs(3, random_state="seed")


def test_num_constraints_deprecated_spelling_is_honoured():
    """metric-learn warns about ``num_constraints``, then ignores its value."""
    y = np.repeat([0, 1], 10)
    with pytest.warns(FutureWarning):
        ref = mlc.Constraints(y).positive_negative_pairs(5, random_state=0, num_constraints=8)
    assert len(ref[0]) == 5  # metric-learn drew n_constraints=5, not 8
    with pytest.warns(FutureWarning, match='"num_constraints" parameter has been renamed'):
        got = Constraints(y).positive_negative_pairs(random_state=0, num_constraints=8)
    assert_same(got, mlc.Constraints(y).positive_negative_pairs(8, random_state=0))
    with pytest.raises(ValueError, match="both `n_constraints`=5 and its deprecated spelling"):
        with pytest.warns(FutureWarning):
            Constraints(y).positive_negative_pairs(5, num_constraints=8)


# ----------------------------------------------------------------------------------
# quadruplets (LSML_Supervised) and wrapped pairs (ITML/SDML/MMC_Supervised)
# ----------------------------------------------------------------------------------
def capture_fit(monkeypatch, cls):
    seen = {}

    def fake_fit(self, *args, **kwargs):
        seen["args"] = args
        return self

    monkeypatch.setattr(cls, "_fit", fake_fit)
    return seen


@pytest.mark.parametrize("n_constraints", [None, 40])
def test_quadruplets_are_what_lsml_supervised_fits(monkeypatch, n_constraints):
    x = np.random.RandomState(0).randn(60, 3)
    y = LABELS["balanced"]
    seen = capture_fit(monkeypatch, ml_lsml._BaseLSML)
    ml.LSML_Supervised(n_constraints=n_constraints, random_state=7).fit(x, y)
    quads = Constraints(y).quadruplets(n_constraints, random_state=7)
    np.testing.assert_array_equal(wrap_quadruplets(x, quads), seen["args"][0])
    expected = 20 * 3**2 if n_constraints is None else n_constraints
    assert len(quads[0]) <= expected and default_n_constraints(y) == 180


def test_wrap_pairs_is_what_itml_supervised_fits(monkeypatch):
    x = np.random.RandomState(1).randn(70, 2)
    y = LABELS["partial"]
    seen = capture_fit(monkeypatch, ml_itml._BaseITML)
    quiet(ml.ITML_Supervised(random_state=3).fit, x, y)  # warns: 566 of 720 positive pairs
    pos_neg = quiet(
        Constraints(y).positive_negative_pairs, default_n_constraints(y), random_state=3
    )
    pairs, labels = wrap_pairs(x, pos_neg)
    np.testing.assert_array_equal(pairs, seen["args"][0])
    np.testing.assert_array_equal(labels, seen["args"][1])
    ref_pairs, ref_labels = mlc.wrap_pairs(
        x, mlc.Constraints(y).positive_negative_pairs(50, random_state=0)
    )
    got_pairs, got_labels = wrap_pairs(
        x, Constraints(y).positive_negative_pairs(50, random_state=0)
    )
    np.testing.assert_array_equal(got_pairs, ref_pairs)
    np.testing.assert_array_equal(got_labels, ref_labels)


def test_wrap_bad_input():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="tuple of 4 index arrays"):
        wrap_pairs(x, ([0], [1]))
    with pytest.raises(ValueError, match="same length"):
        wrap_quadruplets(x, ([0], [1], [2], [3, 0]))
    with pytest.raises(ValueError, match="1-D integer index arrays"):
        wrap_pairs(x, ([0.5], [1], [2], [3]))


# ----------------------------------------------------------------------------------
# chunks (RCA_Supervised)
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LABELS))
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("chunk_size", [1, 2, 3])
def test_chunks_identical_to_metric_learn(name, seed, chunk_size):
    y = LABELS[name]
    known = y[y >= 0]
    n_max = sum(np.sum(known == c) // chunk_size for c in np.unique(known))
    for n_chunks in (0, 1, min(9, n_max), n_max):
        ref = mlc.Constraints(y).chunks(n_chunks=n_chunks, chunk_size=chunk_size, random_state=seed)
        got = Constraints(y).chunks(n_chunks, chunk_size=chunk_size, random_state=seed)
        assert got.dtype.kind == "i"
        np.testing.assert_array_equal(got, ref)
        for j in range(n_chunks):  # each chunklet: chunk_size points of one known class
            members = y[got == j]
            assert len(members) == chunk_size and len(set(members)) == 1 and members[0] >= 0


def test_chunks_too_many_is_an_error_like_metric_learn():
    y = np.repeat([0, 1], [5, 3])  # at most 2 + 1 chunks of 2
    with pytest.raises(ValueError, match="maximum number of chunks is 3"):
        mlc.Constraints(y).chunks(n_chunks=4, chunk_size=2)
    with pytest.raises(ValueError) as ours:
        Constraints(y).chunks(4, chunk_size=2)
    with pytest.raises(ValueError) as theirs:
        mlc.Constraints(y).chunks(n_chunks=4, chunk_size=2)
    assert str(ours.value) == str(theirs.value)  # metric-learn's message, word for word
    with pytest.raises(ZeroDivisionError):
        mlc.Constraints(y).chunks(n_chunks=1, chunk_size=0)
    with pytest.raises(ValueError, match="`chunk_size` must be at least 1"):
        Constraints(y).chunks(1, chunk_size=0)
    with pytest.raises(ValueError, match="`n_chunks` must be at least 0"):
        Constraints(y).chunks(-1)


def test_num_chunks_deprecated_spelling():
    y = LABELS["balanced"]
    with pytest.warns(FutureWarning):
        ref = mlc.Constraints(y).chunks(num_chunks=7, random_state=0)
    with pytest.warns(FutureWarning, match='"num_chunks" parameter has been renamed'):
        got = Constraints(y).chunks(num_chunks=7, random_state=0)
    np.testing.assert_array_equal(got, ref)
    assert got.max() == 6


def test_chunks_class_choice_is_biased_like_metric_learn():
    """``randint(0, n_classes - 1)`` never picks the last remaining class early."""
    y = np.repeat([0, 1], 20)
    for seed in SEEDS:
        got = Constraints(y).chunks(10, chunk_size=2, random_state=seed)
        np.testing.assert_array_equal(got, mlc.Constraints(y).chunks(10, random_state=seed))
        assert set(y[got >= 0]) == {0}  # 10 chunks, all from class 0


# ----------------------------------------------------------------------------------
# k-NN triplets (SCML_Supervised)
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["balanced", "imbalanced", "many_small"])
@pytest.mark.parametrize(("k_genuine", "k_impostor"), [(1, 1), (2, 3), (4, 10)])
def test_knn_triplets_identical_to_metric_learn(name, k_genuine, k_impostor):
    y = LABELS[name]
    if name == "many_small":  # metric-learn crashes on one-point classes (tested below)
        y = y[np.isin(y, np.flatnonzero(np.bincount(y) >= 2))]
    x = np.random.RandomState(len(y)).randn(len(y), 3)
    x[1] = x[0]  # a duplicate: ties must break the same way
    ref = quiet(mlc.Constraints(y).generate_knntriplets, x, k_genuine, k_impostor)
    got = quiet(Constraints(y).generate_knntriplets, x, k_genuine, k_impostor)
    np.testing.assert_array_equal(got, ref)
    assert np.all(y[got[:, 0]] == y[got[:, 1]]) and np.all(y[got[:, 0]] != y[got[:, 2]])


def test_knn_triplets_warn_like_metric_learn():
    y = LABELS["imbalanced"]
    x = np.random.RandomState(0).randn(len(y), 2)
    with pytest.warns(UserWarning, match="The class 7 has 2 elements, which is not sufficient"):
        Constraints(y).generate_knntriplets(x, 3, 2)
    with pytest.warns(UserWarning, match="The class 0 has 7 elements of other classes"):
        Constraints(y).generate_knntriplets(x, 1, 8)
    # word for word, as metric-learn's own tests compare them
    for k_genuine, k_impostor in [(3, 2), (1, 8), (5, 20)]:
        texts = []
        for constraints in (mlc.Constraints(y), Constraints(y)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                constraints.generate_knntriplets(x, k_genuine, k_impostor)
            texts.append([str(w.message) for w in caught if "sufficient" in str(w.message)])
        assert texts[0] and texts[1] == texts[0]


def test_knn_triplets_with_unknown_labels_index_the_given_x():
    """metric-learn returns indices into the labelled subset: wrong rows of X."""
    y = LABELS["partial"]
    x = np.random.RandomState(2).randn(len(y), 3)
    ref = mlc.Constraints(y).generate_knntriplets(x, 2, 2)
    got = Constraints(y).generate_knntriplets(x, 2, 2)
    known = np.flatnonzero(y >= 0)
    np.testing.assert_array_equal(got, known[ref])
    assert np.all(y[got[:, 0]] == y[got[:, 1]]) and np.all(y[got[:, 0]] != y[got[:, 2]])
    assert np.all(y[got] >= 0)
    assert not np.all(y[ref[:, 0]] == y[ref[:, 1]])  # metric-learn's rows: wrong classes


def test_knn_triplets_one_point_class_metric_learn_crashes():
    y = np.r_[np.repeat([0, 1, 2], 5), 9]
    x = np.random.RandomState(3).randn(len(y), 2)
    with pytest.raises(ValueError, match="Expected n_neighbors > 0"):
        quiet(mlc.Constraints(y).generate_knntriplets, x, 2, 2)
    with pytest.warns(UserWarning, match="The class 9 has 1 elements"):
        got = Constraints(y).generate_knntriplets(x, 2, 2)
    assert not np.isin(15, got[:, 0]) and len(got) == 15 * 2 * 2
    ref = mlc.Constraints(y[:15]).generate_knntriplets(x[:15], 2, 2)
    assert {tuple(t) for t in ref[:, :2]} == {tuple(t) for t in got[:, :2]}  # same genuines


def test_knn_triplets_bad_input():
    y = np.repeat([0, 1], 4)
    x = np.zeros((8, 2))
    with pytest.raises(ValueError, match="at least two classes"):
        Constraints(np.zeros(8, int)).generate_knntriplets(x, 1, 1)
    with pytest.raises(ValueError, match=r"`X` must have shape \(n, d\) with n=8"):
        Constraints(y).generate_knntriplets(x[:5], 1, 1)
    with pytest.raises(ValueError, match="`k_genuine` must be at least 1"):
        Constraints(y).generate_knntriplets(x, 0, 1)
    with pytest.raises(ValueError, match="`X` contains NaN"):
        Constraints(y).generate_knntriplets(np.full((8, 2), np.nan), 1, 1)


# ----------------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------------
def test_labels_validation():
    assert Constraints([0.0, 1.0, -1.0]).partial_labels.tolist() == [0, 1, -1]
    assert Constraints([True, False]).partial_labels.tolist() == [1, 0]
    assert mlc.Constraints([0.5, 1.7]).partial_labels.tolist() == [0, 1]  # silently truncated
    with pytest.raises(ValueError, match="`partial_labels` must hold integer class labels"):
        Constraints([0.5, 1.7])
    with pytest.raises(TypeError, match="got dtype <U1"):
        Constraints(["a", "b"])
    with pytest.raises(ValueError, match="must be 1-D"):
        Constraints(np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="contains NaN"):
        Constraints([0.0, np.nan])
