"""metricjax._host: the fast member differences equal NumPy's direct form bitwise."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricjax._host import member_difference


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 40),
    k=st.integers(2, 4),
    d=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_member_difference_equals_the_direct_form(n, k, d, seed, data):
    i = data.draw(st.integers(0, k - 1))
    j = data.draw(st.integers(0, k - 1))
    # values of mixed magnitudes: rounding of the difference is what must match
    t = np.random.default_rng(seed).standard_normal((n, k, d)) * 10.0 ** np.arange(-3, 3).repeat(
        -(-n * k * d // 6)
    )[: n * k * d].reshape(n, k, d)
    got = member_difference(t, i, j)
    assert got.shape == (n, d) and got.dtype == t.dtype
    np.testing.assert_array_equal(got, t[:, i] - t[:, j])
    np.testing.assert_array_equal(
        member_difference(t, i, j, np.float32), (t[:, i] - t[:, j]).astype(np.float32)
    )


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_member_difference_of_non_contiguous_tuples(layout):
    base = np.random.default_rng(0).standard_normal((30, 3, 5))
    t = np.asfortranarray(base) if layout == "fortran" else np.repeat(base, 2, axis=0)[::2]
    np.testing.assert_array_equal(member_difference(t, 2, 0), t[:, 2] - t[:, 0])
    # the strided result goes to BLAS as it is (its row stride may change the blocking,
    # so the product's rounding, not its value); the symmetric product stays symmetric
    u = member_difference(t, 0, 1)
    gram = u.T @ u
    np.testing.assert_array_equal(gram, gram.T)
    uc = np.ascontiguousarray(u)
    np.testing.assert_allclose(gram, uc.T @ uc, rtol=0, atol=1e-13 * np.abs(gram).max())
