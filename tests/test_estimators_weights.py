"""``fit(X, y, sample_weight=None)`` of MLKR, NCA and LMNN (issue 14).

Weight 0 is exactly the sample removed (the fit equals the fit on the other samples).
MLKR, NCA and LMNN take weights as scikit-learn defines them, counts of copies: an
integer weight ``c`` is the sample repeated ``c`` times, for the whole fit and for every
data-dependent step of it (weighted median distance, SST, PCA / LDA, LMNN's target
neighbours, the loss), each checked against the repeated samples.
"""

import jax
import numpy as np
import pytest
from _estimator_data import classification, no_convergence_warnings, regression
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

import metricjax as mj
from metricjax.estimators import LMNN, MLKR, NCA
from metricjax.estimators._base import (
    _median,
    median_sq_distance,
    weighted_lda,
    weighted_median,
    weighted_pca,
)
from metricjax.estimators._mlkr import ridge_weight
from metricjax.losses import kernel_regression, mlkr_ridge_loss

CASES = [
    (MLKR, {}),
    (MLKR, {"n_components": 2, "alpha": 0.1}),  # init="auto" -> weighted PCA
    (NCA, {"n_components": 2}),  # init="auto" -> weighted LDA (3 classes)
    (NCA, {"n_components": 3, "init": "pca"}),
    (LMNN, {}),
    (LMNN, {"n_components": 2}),  # weighted LDA; targets among the copies (§12)
]
IDS = ["MLKR", "MLKR-pca", "NCA-lda", "NCA-pca", "LMNN", "LMNN-lda"]


def _data(cls):
    return regression() if cls is MLKR else classification()


def _weights(n, seed=1):
    w = np.random.default_rng(seed).integers(1, 4, size=n).astype(float)
    w[::6] = 0.0
    return w


@pytest.mark.slow  # whole fits
@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_zero_weight_is_the_sample_removed(cls, kw):
    x, y = _data(cls)
    w = np.ones(len(x))
    w[::5] = 0.0
    weighted = cls(**kw).fit(x, y, sample_weight=w)
    subset = cls(**kw).fit(x[w > 0], y[w > 0])
    np.testing.assert_allclose(weighted.components_, subset.components_, rtol=1e-8, atol=1e-12)
    assert weighted.n_iter_ == subset.n_iter_
    # and with unequal weights on the others: zeros still change nothing
    w2 = _weights(len(x))
    a = cls(**kw).fit(x, y, sample_weight=w2)
    b = cls(**kw).fit(x[w2 > 0], y[w2 > 0], sample_weight=w2[w2 > 0])
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-8, atol=1e-12)


@pytest.mark.slow  # whole fits
@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_integer_weights_are_the_samples_repeated(cls, kw):
    """A weight of ``c`` is the sample ``c`` times (scikit-learn's meaning).

    The whole fit (initial map, ridge weight, LMNN's target neighbours, loss,
    iterations) equals the fit on the repeated samples; weights of 1 are no weights.
    """
    x, y = _data(cls)
    if cls is LMNN and "n_components" in kw:
        # from one explicit start: weighted_lda and scikit-learn's LDA of the repeated
        # rows agree to ~1e-8 only (test_weighted_steps_equal_the_repeated_samples), and LMNN's hinge kinks carry that to
        # ~1e-3 in the map after 20 L-BFGS steps
        kw = {**kw, "init": np.random.default_rng(5).normal(size=(2, x.shape[1]))}
    plain = cls(**kw).fit(x, y)
    np.testing.assert_array_equal(
        cls(**kw).fit(x, y, sample_weight=np.ones(len(x))).components_, plain.components_
    )
    w = _weights(len(x))
    rep = np.repeat(np.arange(len(x)), w.astype(int))
    a = cls(**kw).fit(x, y, sample_weight=w)
    b = cls(**kw).fit(x[rep], y[rep])
    _equal_up_to_row_signs(a.components_, b.components_)
    assert a.n_iter_ == b.n_iter_
    assert not np.allclose(a.components_, plain.components_, rtol=1e-3)  # they change the fit
    # all weights 3: every sample three times, not the unweighted fit
    three = cls(**kw).fit(x, y, sample_weight=np.full(len(x), 3.0)).components_
    _equal_up_to_row_signs(three, cls(**kw).fit(np.repeat(x, 3, 0), np.repeat(y, 3)).components_)


def _equal_up_to_row_signs(a, b, rtol=1e-6):
    """Equal maps up to the sign of each row: the repeated samples' LDA init is
    scikit-learn's (its own signs), the weighted one ``weighted_lda``'s; the losses are
    even in each row of ``L``."""
    signs = np.sign(np.sum(a * b, axis=1))[:, None]
    np.testing.assert_allclose(a, signs * b, rtol=rtol, atol=1e-9)


def _lmnn_copy_case(seed, k=3):
    """Three classes, integer weights 1-3; class 2 has exactly ``k`` copies (a point of
    weight 2 and one of weight 1), so its points are their own last target."""
    r = np.random.default_rng(seed)
    x = r.normal(size=(14, 3))
    y = np.array([0] * 6 + [1] * 6 + [2] * 2)
    w = r.integers(1, 4, size=14).astype(float)
    w[12:] = [2.0, 1.0]
    return x, y, w, k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lmnn_copy_model_is_the_repeated_points(seed):
    """LMNN's weighted loss (copy_target_neighbors + lmnn_pairs_loss) and its gradient
    equal lmnn_loss on the repeated points with their own target neighbours (float64)."""
    from metricjax.losses import lmnn_loss, lmnn_target_neighbors
    from metricjax.losses._lmnn import copy_target_neighbors, lmnn_pairs_loss

    x, y, w, k = _lmnn_copy_case(seed)
    rep = np.repeat(np.arange(len(x)), w.astype(int))
    L = np.random.default_rng(seed + 10).normal(size=(3, 3))
    with jax.enable_x64(True):
        tn, a = copy_target_neighbors(x, y, w, k)
        mine = jax.value_and_grad(lmnn_pairs_loss)(
            L, x, y, tn, a, w, push_weight=0.5, margin=1.0, block_size="auto"
        )
        tn_rep = lmnn_target_neighbors(x[rep], y[rep], k)
        ref = jax.value_and_grad(lmnn_loss)(L, x[rep], y[rep], target_neighbors=tn_rep)
    assert float(mine[0]) == pytest.approx(float(ref[0]), rel=1e-12)
    np.testing.assert_allclose(mine[1], ref[1], rtol=1e-10, atol=1e-12)
    # every point has k target copies: sum_j a_ij = s_i k
    np.testing.assert_allclose(a.sum(axis=1), w * k)


def test_lmnn_copies_of_a_weight():
    """ceil(s) copies of weight s / ceil(s); rounding noise above an integer adds no copy."""
    from metricjax.losses._lmnn import copies_of

    q, omega = copies_of(np.array([1 + 1e-12, 2 - 1e-12, 2 + 1e-12, 0.5, 2.5, 1.2]))
    np.testing.assert_array_equal(q, [1, 2, 2, 1, 3, 2])
    np.testing.assert_allclose(omega, [1, 1, 1, 0.5, 2.5 / 3, 0.6], rtol=1e-11)


def test_lmnn_weights_up_to_one_are_the_loss_weights():
    """Weights in (0, 1] are one copy each: the pairs weigh s_i s_j, the hinges s_i s_j s_l,
    over the k distinct nearest classmates: lmnn_loss's ``sample_weight``."""
    from metricjax.losses import lmnn_loss, lmnn_target_neighbors
    from metricjax.losses._lmnn import copy_target_neighbors, lmnn_pairs_loss

    x, y = classification()
    w = np.random.default_rng(3).uniform(0.05, 1.0, size=len(x))
    codes = np.unique(y, return_inverse=True)[1]
    L = np.eye(x.shape[1]) * 0.7
    with jax.enable_x64(True):
        tn, a = copy_target_neighbors(x, codes, w, 3)
        mine = lmnn_pairs_loss(L, x, codes, tn, a, w, push_weight=0.5, margin=1.0,
                               block_size="auto")  # fmt: skip
        ref = lmnn_loss(L, x, codes, target_neighbors=lmnn_target_neighbors(x, codes, 3),
                        sample_weight=w)  # fmt: skip
    assert np.all(a[:, 0] == 0)  # no copies of its own
    assert float(mine) == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.slow  # whole fits
def test_integer_weights_mlkr_objective_and_predict():
    """The fitted objective is the weighted loss; predict weighs each training kernel."""
    x, y = regression()
    w = _weights(len(x))
    model = MLKR().fit(x, y, sample_weight=w)
    keep = w > 0
    s = w[keep]  # counts of copies, kept as given
    np.testing.assert_array_equal(model.sample_weight_train_, s)
    with jax.enable_x64(True):
        loss = mlkr_ridge_loss(model.components_, x[keep], y[keep], model.ridge_weight_,
                               sample_weight=s)  # fmt: skip
        # a kernel weighted by an integer = that training point repeated
        rep = np.repeat(np.arange(len(x)), w.astype(int))
        ref = kernel_regression(model.components_, x[rep], y[rep], x[:7])
    assert float(loss) == pytest.approx(model.loss_history_[-1], rel=1e-10)
    np.testing.assert_allclose(model.predict(x[:7]), ref, rtol=1e-10)
    assert model.score(x, y) > 0.8


def test_weighted_steps_equal_the_repeated_samples():
    """Weighted SST, median, PCA and LDA against the same step on repeated samples."""
    x, labels = classification()
    y = regression()[1]
    w = _weights(len(x))[:] + 1.0  # all positive integers
    rep = np.repeat(np.arange(len(x)), w.astype(int))
    # SST (the ridge weight divided by the median): the repeated targets' sum of squares
    sst = ridge_weight(x, y, 1.0, 1, w) / median_sq_distance(x, w)
    assert sst == pytest.approx(np.sum((y[rep] - y[rep].mean()) ** 2), rel=1e-12)
    # the weighted median squared distance = that of the repeated rows (whose copies
    # are pairs at distance 0)
    assert median_sq_distance(x, w) == pytest.approx(median_sq_distance(x[rep]), rel=1e-12)
    assert median_sq_distance(x, np.full(len(x), 3.0)) == pytest.approx(
        median_sq_distance(np.repeat(x, 3, 0)), rel=1e-12
    )
    # weighted median = median of the repeated values (odd and even totals)
    rng = np.random.default_rng(0)
    for total in (0, 1):
        v = rng.normal(size=30)
        iw = rng.integers(1, 4, size=30)
        iw[0] += (int(iw.sum()) + total) % 2
        assert weighted_median(v, iw) == pytest.approx(np.median(np.repeat(v, iw)), abs=1e-15)
    # PCA of the repeated rows (sklearn's signs)
    np.testing.assert_allclose(
        weighted_pca(x, w, 3), PCA(n_components=3).fit(x[rep]).components_, rtol=1e-8, atol=1e-10
    )
    # LDA: the discriminant subspace of the repeated rows
    ours = weighted_lda(x, labels, w, 2)
    ref = LinearDiscriminantAnalysis(n_components=2).fit(x[rep], labels[rep]).scalings_[:, :2].T

    def projector(a):
        q = np.linalg.qr(a.T)[0]
        return q @ q.T

    np.testing.assert_allclose(projector(ours), projector(ref), atol=1e-8)


@pytest.mark.slow  # whole fits
def test_minibatch_zero_weights_equal_the_subset():
    x, y = regression()
    w = np.ones(len(x))
    w[1::4] = 0.0
    kw = {"batch_size": 16, "max_iter": 20, "random_state": 0}
    a = MLKR(**kw).fit(x, y, sample_weight=w).components_
    b = MLKR(**kw).fit(x[w > 0], y[w > 0]).components_
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    w2 = _weights(len(x))
    assert np.all(np.isfinite(NCA(**kw).fit(*classification(), sample_weight=w2).components_))


@pytest.mark.parametrize(
    ("weight", "exc", "match"),
    [
        (np.ones(59), ValueError, r"`sample_weight` must have shape \(n_samples,\) = \(60,\)"),
        (np.ones((60, 1)), ValueError, r"`sample_weight` must have shape"),
        (np.r_[-1.0, np.ones(59)], ValueError, r"`sample_weight` must be >= 0"),
        (np.r_[np.nan, np.ones(59)], ValueError, r"`sample_weight` contains NaN"),
        (np.r_[np.inf, np.ones(59)], ValueError, r"`sample_weight` contains NaN or inf"),
        (np.zeros(60), ValueError, r"`sample_weight` is zero for every sample"),
        (np.r_[1.0, np.zeros(59)], ValueError, r"`sample_weight` is zero for all samples but one"),
        (np.array(["a"] * 60), TypeError, r"`sample_weight` must be an array of real numbers"),
        (np.ones(60) * 1j, ValueError, r"`sample_weight` has a complex dtype"),
    ],
    ids=["short", "2d", "negative", "nan", "inf", "all-zero", "one-positive", "strings", "complex"],
)
@pytest.mark.parametrize("cls", [MLKR, NCA, LMNN])
def test_bad_sample_weight_names_it_and_changes_nothing(cls, weight, exc, match):
    x, y = _data(cls)
    model = cls()
    with pytest.raises(exc, match=match):
        model.fit(x, y, sample_weight=weight)
    assert not hasattr(model, "components_") and not hasattr(model, "n_features_in_")


@pytest.mark.slow  # whole fits
@pytest.mark.parametrize("cls", [MLKR, NCA, LMNN])
def test_unequal_weights_with_a_mesh_fit_as_without(cls):
    """The row-sharded losses take the sample weights (split with the rows)."""
    x, y = _data(cls)
    w = _weights(len(x))
    with no_convergence_warnings():
        a = cls(mesh=mj.row_mesh(), max_iter=15).fit(x, y, sample_weight=w)
        b = cls(max_iter=15).fit(x, y, sample_weight=w)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-6, atol=1e-9)


@pytest.mark.slow  # whole fits
def test_lmnn_unequal_weights_use_the_full_loss():
    x, y = classification()
    w = _weights(len(x))
    a = LMNN(impostor_refresh=5).fit(x, y, sample_weight=w)
    b = LMNN().fit(x, y, sample_weight=w)
    np.testing.assert_array_equal(a.components_, b.components_)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 11, 1000, 1001])
def test_median_is_numpys_median(m):
    """``_median`` (one partition) returns ``np.median``'s number, ties and both parities."""
    rng = np.random.default_rng(m)
    for scale in (1.0, 1e6):
        v = rng.normal(size=m) * scale
        for values in (v, np.round(v / scale * 3)):
            assert _median(values) == np.median(values)


def test_median_sq_distance_uses_at_most_1000_rows_and_plain_distances():
    """Every ``ceil(n / 1000)``-th row; the distances as squared differences."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 3)) + 1e6  # far from the origin: no cancellation
    sub = x[::2] - 1e6
    d = ((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1)[np.triu_indices(len(sub), 1)]
    np.testing.assert_allclose(median_sq_distance(x), np.median(d), rtol=1e-9)
