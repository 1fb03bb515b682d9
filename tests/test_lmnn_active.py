"""LMNN's impostor active set: the search, the exact pair-list loss, its gradient, memory."""

import functools
import os

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metricjax.losses import (
    LMNNImpostors,
    _lmnn_active,
    lmnn_impostors,
    lmnn_loss,
    lmnn_target_neighbors,
)

RTOL = 1e-10


def _data(n=40, d=4, kl=3, n_classes=3, seed=0, scale=0.7):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    L = scale * rng.standard_normal((kl, d))
    return L, x, labels


def _full_and_active(L, x, labels, tn, imp, push_weight=0.5, margin=1.0):
    """``(loss, dL, dx)`` of the full loss and of the loss on ``imp``."""
    out = []
    for s in (None, imp):
        f = lambda L, x, s=s: lmnn_loss(
            L, x, labels, target_neighbors=tn, push_weight=push_weight, margin=margin, impostors=s
        )
        v, (gl, gx) = jax.value_and_grad(f, argnums=(0, 1))(L, x)
        out.append((float(v), np.asarray(gl), np.asarray(gx)))
    return out


def _assert_same(full, act, rtol=RTOL):
    np.testing.assert_allclose(act[0], full[0], rtol=rtol)
    for a, b in zip(act[1:], full[1:]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def np_pairs(L, x, labels, tn, radius_extra):
    """Brute force: all (i, l), c_l != c_i, D_il <= max_j D_ij + margin + slack."""
    z = x @ L.T
    dist = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    radius = np.take_along_axis(dist, tn, axis=1).max(axis=1) + radius_extra
    keep = (labels[:, None] != labels[None, :]) & (dist <= radius[:, None])
    return set(zip(*np.nonzero(keep)))


def _pairs(s: LMNNImpostors):
    m = np.asarray(s.mask)
    return set(zip(np.asarray(s.anchors)[m].tolist(), np.asarray(s.impostors)[m].tolist()))


# ----------------------------------------------------------------- the search
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("slack", [0.0, 0.7])
@pytest.mark.parametrize("block_size", ["auto", 7])
def test_search_matches_bruteforce(slack, block_size):
    L, x, labels = _data(n=53, seed=3)
    tn = lmnn_target_neighbors(x, labels, 3)
    s = lmnn_impostors(L, x, labels, target_neighbors=tn, margin=1.0, slack=slack,
                       block_size=block_size)  # fmt: skip
    want = np_pairs(L, x, labels, tn, 1.0 + slack)
    assert _pairs(s) == want
    assert int(s.count) == len(want) and s.anchors.shape == (1024,)  # 826 pairs, next power of 2
    assert s.anchors.dtype == jnp.int32 and s.mask.dtype == jnp.bool_
    a = np.asarray(s.anchors)
    assert np.all(np.diff(a) >= 0)  # sorted by anchor, padding included


def _boundary(L, x, tn, pairs, radius_extra):
    """Relative gap ``(D_il - r_i) / (q_i + q_l + r_i)`` of each pair (centred embedding)."""
    z = (x - x.mean(0)) @ L.T
    q = (z**2).sum(1)
    r = ((z[:, None, :] - z[tn]) ** 2).sum(-1).max(1) + radius_extra
    a, l = (np.array(v, int) for v in zip(*pairs))
    return (((z[a] - z[l]) ** 2).sum(1) - r[a]) / (q[a] + q[l] + r[a])


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("shift", [0.0, 1e6])  # far from the origin: centred first
def test_float64_search_runs_in_float32_and_misses_no_pair(shift):
    """A float64 set is searched in float32 with an allowance that covers the cast and
    the float32 products: it holds every pair of the float64 brute force, and any extra
    pair lies within that allowance of the radius."""
    L, x, labels = _data(n=300, d=6, kl=4, seed=5, scale=1.3)
    x = x + shift
    tn = lmnn_target_neighbors(x, labels, 3)
    z = jnp.asarray((x - x.mean(0)) @ L.T)
    assert _lmnn_active._search_dtype(z) == jnp.float32
    got = _pairs(lmnn_impostors(L, x, labels, target_neighbors=tn, slack=0.3))
    want = np_pairs(L, x - x.mean(0), labels, tn, 1.3)
    assert want <= got
    extra = got - want
    if extra:
        assert np.all(_boundary(L, x, tn, extra, 1.3) <= _lmnn_active._search_eps(jnp.float32, 4))


@pytest.mark.usefixtures("x64")
def test_float64_search_keeps_pairs_on_the_radius():
    """Pairs 1e-14 (relative) inside the radius, far below float32's resolution: the
    float32 search keeps every one (without its allowance about half would be lost)."""
    L, x, labels = _data(n=100, d=5, kl=5, seed=7)
    tn = lmnn_target_neighbors(x, labels, 3)
    z = (x - x.mean(0)) @ L.T
    dist = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    radius = np.take_along_axis(dist, tn, axis=1).max(axis=1)
    rng = np.random.default_rng(0)
    for i in rng.choice(100, size=24, replace=False):
        far = np.flatnonzero((labels != labels[i]) & (dist[i] > radius[i] + 0.1))
        l = far[0]
        slack = dist[i, l] - radius[i] + 1e-14 * dist[i, l]  # l is just inside the radius
        s = lmnn_impostors(L, x, labels, target_neighbors=tn, margin=0.0, slack=slack)
        assert (int(i), int(l)) in _pairs(s), (i, l)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("scale", [1e-12, 1e17])
def test_float64_search_stays_float64_outside_float32s_range(scale):
    """Squared norms float32 cannot hold with room (below 1e-20 or above 1e30): the
    search stays in float64 and matches the brute force exactly."""
    L, x, labels = _data(n=120, d=4, kl=3, seed=2)
    L = L * scale
    tn = lmnn_target_neighbors(x, labels, 3)
    z = jnp.asarray((x - x.mean(0)) @ L.T)
    assert _lmnn_active._search_dtype(z) == jnp.float64
    extra = 0.5 * scale**2
    got = _pairs(lmnn_impostors(L, x, labels, target_neighbors=tn, margin=extra))
    assert got == np_pairs(L, x - x.mean(0), labels, tn, extra)


@pytest.mark.usefixtures("x64")
def test_a_set_closed_over_in_jit():
    """A set captured as a constant by a jitted function (not passed as an argument):
    its index check runs on the host, nothing is staged into the trace."""
    L, x, labels = _data(n=60, seed=4)
    tn = lmnn_target_neighbors(x, labels, 3)
    s = lmnn_impostors(L, x, labels, target_neighbors=tn)
    xj, lj, tj = jnp.asarray(x), jnp.asarray(labels), jnp.asarray(tn)
    f = lambda L: lmnn_loss(L, xj, lj, target_neighbors=tj, impostors=s)
    got = jax.jit(jax.value_and_grad(f))(jnp.asarray(L))
    want = jax.value_and_grad(f)(jnp.asarray(L))
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL)
    np.testing.assert_allclose(got[1], want[1], rtol=RTOL, atol=1e-12)


def test_a_set_with_indices_out_of_range_is_refused():
    L, x, labels = _data(n=30, seed=1)
    s = lmnn_impostors(L, x, labels, n_neighbors=3)
    for bad in (s._replace(impostors=s.impostors.at[0].set(30)),
                s._replace(anchors=s.anchors.at[0].set(-1))):  # fmt: skip
        with pytest.raises(ValueError, match=r"must lie in \[0, 30\)"):
            lmnn_loss(L, x, labels, n_neighbors=3, impostors=bad)


@pytest.mark.usefixtures("x64")
def test_capacity_power_of_two_and_explicit():
    L, x, labels = _data(n=120, seed=1, scale=1.5)
    tn = lmnn_target_neighbors(x, labels, 3)
    s = lmnn_impostors(L, x, labels, target_neighbors=tn)
    c = int(s.count)
    cap = s.anchors.shape[0]
    assert cap >= c and cap & (cap - 1) == 0 and (cap == 256 or cap < 2 * c)
    s2 = lmnn_impostors(L, x, labels, target_neighbors=tn, capacity=c + 3)
    assert s2.anchors.shape == (c + 3,) and _pairs(s2) == _pairs(s)
    with pytest.raises(ValueError, match="capacity"):
        lmnn_impostors(L, x, labels, target_neighbors=tn, capacity=c - 1)
    assert lmnn_impostors(L, x, labels, target_neighbors=tn, max_pairs=c - 1) is None
    assert lmnn_impostors(L, x, labels, target_neighbors=tn, max_pairs=c) is not None


# ----------------------------------------------------------------- fresh set == full loss
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("push_weight, margin, slack", [(0.5, 1.0, 0.0), (0.8, 0.3, 0.5), (1.0, 2.0, 0.0)])
def test_fresh_set_gives_the_full_loss_and_gradient(n_classes, push_weight, margin, slack):
    L, x, labels = _data(n=60, n_classes=n_classes, seed=n_classes)
    tn = lmnn_target_neighbors(x, labels, 3)
    imp = lmnn_impostors(L, x, labels, target_neighbors=tn, margin=margin, slack=slack)
    full, act = _full_and_active(L, x, labels, tn, imp, push_weight, margin)
    assert full[0] > (1 - push_weight) * 0  # a real push term is present
    _assert_same(full, act)


@pytest.mark.usefixtures("x64")
def test_fresh_set_with_ties_and_coincident_points():
    # integer grid: many equal distances; duplicated points with equal and other labels.
    # 64 points: the centring mean is a dyadic rational, so every distance is exact in
    # both the expansion (full loss) and the difference form (active set) and the
    # hinges at exact ties switch identically.
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, (64, 3)).astype(np.float64)
    x[10] = x[11]
    x[20] = x[21] = x[22]
    labels = np.arange(64) % 4
    labels[11] = (labels[10] + 1) % 4  # a coincident impostor (D_il = 0)
    labels[21] = labels[20]  # a coincident target neighbour
    L = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    tn = lmnn_target_neighbors(x, labels, 2)
    imp = lmnn_impostors(L, x, labels, target_neighbors=tn)
    assert (10, 11) in _pairs(imp) and (11, 10) in _pairs(imp)
    full, act = _full_and_active(L, x, labels, tn, imp)
    _assert_same(full, act)


def test_float32_active_set_close_to_float64_full():
    L, x, labels = _data(n=60, seed=2)
    tn = lmnn_target_neighbors(x, labels, 3)
    L32, x32 = L.astype(np.float32), x.astype(np.float32)
    imp = lmnn_impostors(L32, x32, labels, target_neighbors=tn)
    v32, g32 = jax.value_and_grad(
        lambda L: lmnn_loss(L, x32, labels, target_neighbors=tn, impostors=imp)
    )(jnp.asarray(L32))
    assert v32.dtype == jnp.float32 and g32.dtype == jnp.float32
    with jax.enable_x64(True):
        v64, g64 = jax.value_and_grad(lambda L: lmnn_loss(L, x, labels, target_neighbors=tn))(L)
    np.testing.assert_allclose(float(v32), float(v64), rtol=2e-6)
    np.testing.assert_allclose(np.asarray(g32), np.asarray(g64), rtol=1e-4, atol=1e-4 * np.abs(g64).max())


@pytest.mark.usefixtures("x64")
def test_stale_set_is_a_lower_bound_and_misses_new_impostors():
    L, x, labels = _data(n=60, seed=4)
    tn = lmnn_target_neighbors(x, labels, 3)
    imp = lmnn_impostors(L, x, labels, target_neighbors=tn)  # searched at L
    strictly_lower = 0
    for t, scale in enumerate((0.2, 0.5, 0.9, 1.3, 3.0)):
        L1 = scale * L + 0.3 * np.random.default_rng(t).standard_normal(L.shape)
        full = float(lmnn_loss(L1, x, labels, target_neighbors=tn))
        stale = float(lmnn_loss(L1, x, labels, target_neighbors=tn, impostors=imp))
        fresh = lmnn_impostors(L1, x, labels, target_neighbors=tn)
        assert stale <= full * (1 + 1e-12)
        np.testing.assert_allclose(
            float(lmnn_loss(L1, x, labels, target_neighbors=tn, impostors=fresh)), full, rtol=RTOL
        )
        strictly_lower += stale < full * (1 - 1e-6)
    assert strictly_lower >= 1  # the bound is not trivially an equality


# ----------------------------------------------------------------- closed form vs autodiff
def plain_active(L, x, tn, anchors, impostors, mask, push_weight, margin):
    """The pair-list loss in plain jnp (autodiff reference), exact differences."""
    z = x @ L.T
    d_ij = jnp.sum((z[:, None, :] - z[tn]) ** 2, axis=-1)
    d_il = jnp.sum((z[anchors] - z[impostors]) ** 2, axis=-1)
    h = margin + d_ij[anchors] - d_il[:, None]
    hinge = jnp.where((h > 0) & mask[:, None], h, 0.0)
    return (1 - push_weight) * jnp.sum(d_ij) + push_weight * jnp.sum(hinge)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("push_weight, margin", [(0.5, 1.0), (0.9, 0.4)])
def test_closed_form_gradient_matches_autodiff(push_weight, margin):
    L, x, labels = _data(n=50, seed=7)
    tn = lmnn_target_neighbors(x, labels, 3)
    # a stale set (searched elsewhere) too: the pair-list loss is exact on any list
    for at in (L, 0.6 * L):
        s = lmnn_impostors(at, x, labels, target_neighbors=tn, margin=margin, slack=0.3)
        args = (jnp.asarray(tn), s.anchors, s.impostors, s.mask, push_weight, margin)
        ours = jax.value_and_grad(
            lambda L, x: lmnn_loss(L, x, labels, target_neighbors=tn, push_weight=push_weight,
                                   margin=margin, impostors=s),  # noqa: B023  # fmt: skip
            argnums=(0, 1),
        )(L, x)
        ref = jax.value_and_grad(plain_active, argnums=(0, 1))(L, x, *args)
        np.testing.assert_allclose(float(ours[0]), float(ref[0]), rtol=RTOL)
        for a, b in zip(ours[1], ref[1]):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * np.abs(b).max())


@pytest.mark.usefixtures("x64")
def test_jit_with_the_set_as_data_one_compilation_per_capacity():
    L, x, labels = _data(n=40, seed=8)
    tn = lmnn_target_neighbors(x, labels, 3)
    traces = []

    @jax.jit
    def f(L, x, codes, tn, s):
        traces.append(1)
        return jax.value_and_grad(lmnn_loss)(L, x, codes, target_neighbors=tn, impostors=s)

    codes = jnp.asarray(labels, jnp.int32)
    for scale in (1.0, 0.9):
        s = lmnn_impostors(scale * L, x, labels, target_neighbors=tn, capacity=1024)
        v, g = f(scale * L, x, codes, tn, s)
        np.testing.assert_allclose(
            float(v), float(lmnn_loss(scale * L, x, labels, target_neighbors=tn)), rtol=RTOL
        )
    assert len(traces) == 1


# ----------------------------------------------------------------- property test
@st.composite
def _problems(draw):
    n, d, k = draw(st.sampled_from([(9, 2, 1), (12, 3, 2)]))
    el = st.floats(-3, 3, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)
    x = draw(hnp.arrays(np.float64, (n, d), elements=el))
    L = draw(hnp.arrays(np.float64, (k, d), elements=st.floats(-2, 2, width=64)))
    labels = np.arange(n) % 3
    margin = draw(st.sampled_from([0.5, 1.0]))
    return L, x, labels, margin


@given(_problems())
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_fresh_set_equals_full(problem):
    L, x, labels, margin = problem
    with jax.enable_x64(True):
        tn = lmnn_target_neighbors(x, labels, 2)
        imp = lmnn_impostors(L, x, labels, target_neighbors=tn, margin=margin, capacity=256)
        full, act = _full_and_active(L, x, labels, tn, imp, 0.5, margin)
        scale = max(1.0, abs(full[0]))
        np.testing.assert_allclose(act[0], full[0], rtol=RTOL, atol=RTOL * scale)


# ----------------------------------------------------------------- memory: O(n b) search, O(p) loss
def _temp_bytes(fn, *args):
    mem = jax.jit(fn).lower(*args).compile().memory_analysis()
    if mem is None or getattr(mem, "temp_size_in_bytes", None) is None:
        pytest.skip("memory_analysis() is not available on this backend")
    return mem.temp_size_in_bytes


def test_memory_at_n_50000_is_linear_in_n():
    """The search block and the pair-list loss at n = 50,000 (compiled only, not run)."""
    n, d, k, kt = 50_000, 10, 10, 3
    b = _lmnn_active.search_block_rows("auto", n, 4)
    assert b < n and 6 * b * n * 4 <= 2 * 32 * 2**20  # the engine's 32 MiB rule
    z = jax.ShapeDtypeStruct((n, k), jnp.float32)
    ints = jax.ShapeDtypeStruct((n,), jnp.int32)
    tns = jax.ShapeDtypeStruct((n, kt), jnp.int32)
    eps = _lmnn_active._search_eps(jnp.float32, k)
    search = functools.partial(_lmnn_active._search_block.__wrapped__, b=b, eps=eps)
    temp = _temp_bytes(search, z, jax.ShapeDtypeStruct((n,), jnp.float32), ints, tns,
                       jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.float32))  # fmt: skip
    assert temp <= 8 * b * n * 4, (temp, b)  # O(b n), never n^2 (10 GB here)
    p = 2**20
    pairs = jax.ShapeDtypeStruct((p,), jnp.int32)
    loss = jax.value_and_grad(
        lambda L, x, tn, a, l, m: _lmnn_active.active_loss(L, x, tn, a, l, m, 0.5, 1.0)
    )
    temp = _temp_bytes(loss, jax.ShapeDtypeStruct((k, d), jnp.float32),
                       jax.ShapeDtypeStruct((n, d), jnp.float32), tns, pairs, pairs,
                       jax.ShapeDtypeStruct((p,), jnp.bool_))  # fmt: skip
    per_pair = 4 * (3 * (d + k) + 2 * kt + 4) + 9
    assert temp <= 2 * (p * per_pair + n * 4 * (4 * d + 4 * k * kt)), temp


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("METRICJAX_LARGE_TESTS") != "1",
    reason="about 2 minutes on 2 cores: set METRICJAX_LARGE_TESTS=1 (the compiled-memory "
    "tests above check the n = 50,000 memory bound in every run)",
)
def test_search_runs_at_n_50000():
    rng = np.random.default_rng(0)
    n, d = 50_000, 5
    labels = np.arange(n) % 5
    x = rng.standard_normal((n, d)).astype(np.float32) * 0.3 + 3 * labels[:, None]
    L = np.eye(d, dtype=np.float32)
    tn = lmnn_target_neighbors(x, labels, 3)
    s = lmnn_impostors(L, x, labels, target_neighbors=tn, max_pairs=10**7)
    assert s is not None and int(s.count) < 10**7
    v = lmnn_loss(L, x, labels, target_neighbors=tn, impostors=s)
    np.testing.assert_allclose(float(v), float(lmnn_loss(L, x, labels, target_neighbors=tn)), rtol=1e-4)


# ----------------------------------------------------------------- errors
def test_errors(as_user):
    L, x, labels = _data(n=20)
    tn = lmnn_target_neighbors(x, labels, 2)
    with pytest.raises(ValueError, match="slack"):
        lmnn_impostors(L, x, labels, target_neighbors=tn, slack=-1.0)
    with pytest.raises(ValueError, match="margin"):
        lmnn_impostors(L, x, labels, target_neighbors=tn, margin=-1.0)
    with pytest.raises(ValueError, match="capacity"):
        lmnn_impostors(L, x, labels, target_neighbors=tn, capacity=0)
    with pytest.raises(ValueError, match="max_pairs"):
        lmnn_impostors(L, x, labels, target_neighbors=tn, max_pairs=-1)
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda L: lmnn_impostors(L, x, labels, target_neighbors=tn))(L)
    s = lmnn_impostors(L, x, labels, target_neighbors=tn)
    with pytest.raises(TypeError, match="impostors"):
        lmnn_loss(L, x, labels, target_neighbors=tn, impostors=(s.anchors, s.impostors))
    with pytest.raises(ValueError, match="impostors"):
        lmnn_loss(L, x[:12], labels[:12], n_neighbors=1, impostors=s)  # indices past n = 12
    with pytest.raises(TypeError, match="mask"):
        lmnn_loss(L, x, labels, target_neighbors=tn, impostors=s._replace(mask=s.anchors))
