"""Numerical verdicts on the printed formulas of the seed documents (/work/shared/seeds/).

Both seeds use the COLUMN convention: ``X`` is ``(d, n)``, one observation per column,
``D_ij = (x_i - x_j)^T M (x_i - x_j)`` with ``x_i = X[:, i]``. Every printed formula is
implemented literally in that convention (single-entry matrices ``E``, all-ones ``J``,
Kronecker deltas) and compared with ``jax.jacfwd`` of the plain maths in the same
convention, in float64. The asker's own attempt in seed 001 uses the ROW convention
(``X`` is ``(n, d)``) and is checked in that convention.

``pytest tests/test_seeds.py -s`` prints the table of maximum absolute errors.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metricjax as mj

pytestmark = pytest.mark.usefixtures("x64")

MATCH = {"rtol": 1e-10, "atol": 1e-12}
# (d, n, k): fewer/equal/more points than features; k < d and k > d
SHAPES = [(3, 5, 2), (4, 4, 6), (5, 3, 3)]


def delta(a, b):
    """Kronecker delta."""
    return 1.0 if a == b else 0.0


def single_entry(shape, i, j):
    """``E_ij``: zeros except a one at ``(i, j)``."""
    e = np.zeros(shape)
    e[i, j] = 1.0
    return e


def sym(a):
    """``Sym(A) = (A + A^T) / 2``."""
    return 0.5 * (a + a.T)


def data(d, n, k, seed=0):
    rng = np.random.default_rng(seed + 100 * d + 10 * n + k)
    x_col = rng.standard_normal((d, n))  # column convention
    metric = rng.standard_normal((d, d))  # any square M (the seed's M is unconstrained)
    a = rng.standard_normal((k, d))
    return x_col, metric, a


# ----------------------------------------------------------------------------- plain maths
def col_diff(x):
    """``diff[m, i, j] = X_mi - X_mj`` for column-convention ``X`` (d, n)."""
    return x[:, :, None] - x[:, None, :]


def col_sq_euclidean(x):
    return jnp.sum(col_diff(x) ** 2, axis=0)


def col_sq_mahalanobis(x, metric):
    diff = col_diff(x)
    return jnp.einsum("mij,mp,pij->ij", diff, metric, diff)


def col_sq_transformed(x, a):
    return jnp.sum(jnp.einsum("km,mij->kij", a, col_diff(x)) ** 2, axis=0)


def row_sq_euclidean(x):
    """Row convention, the asker's ``D_ij = sum_d (X_id - X_jd)^2`` with ``X`` (n, d)."""
    return jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)


@functools.cache
def _jacfwd(fn, argnum):
    return jax.jit(jax.jacfwd(fn, argnums=argnum))


def autodiff_dd_dx_col(x):
    """``[i, j, k, l] = dD_ij / dX_kl``, ``X`` (d, n)."""
    return np.asarray(_jacfwd(col_sq_euclidean, 0)(x))


def autodiff_dd_dm_col(x, metric):
    """``[i, j, k, l] = dD_ij / dM_kl``."""
    return np.asarray(_jacfwd(col_sq_mahalanobis, 1)(x, metric))


def autodiff_dd_da_col(x, a):
    """``[i, j, k, l] = dD_ij / dA_kl``."""
    return np.asarray(_jacfwd(col_sq_transformed, 1)(x, a))


def autodiff_dd_dx_row(x_row):
    """``[i, j, k, l] = dD_ij / dX_kl``, ``X`` (n, d)."""
    return np.asarray(_jacfwd(row_sq_euclidean, 0)(x_row))


# ----------------------------------------------------------------------------- seed 000
def seed000_value(x, metric):
    """``2B = 2 Sym(J^T (X o Y) - X^T Y)`` with ``Y = M X``, ``J = X / X`` (all ones)."""
    j = x / x  # the seed's definition of J; the data have no zeros
    y = metric @ x
    return 2 * sym(j.T @ (x * y) - x.T @ y)


def seed000_db_dm(x):
    """``dB/dM_ij = Sym(J^T (X o (E_ij X)) - X^T E_ij X)``; returns ``[i, j] -> (n, n)``."""
    d, n = x.shape
    j = x / x
    out = np.zeros((d, d, n, n))
    for i in range(d):
        for jj in range(d):
            e = single_entry((d, d), i, jj)
            out[i, jj] = sym(j.T @ (x * (e @ x)) - x.T @ e @ x)
    return out


def seed000_db_da(x, a):
    """``dB/dA_ij = 2 Sym(J^T ((A X) o (E_ij X)) - X^T A^T E_ij X)``; ``[i, j] -> (n, n)``.

    ``J`` is all ones with the shape of ``A X`` (k, n): the seed defines ``J = X / X``,
    which has that shape only when k == d; ``J^T`` just sums the k rows.
    """
    k, d = a.shape
    n = x.shape[1]
    ones = np.ones((k, n))
    out = np.zeros((k, d, n, n))
    for i in range(k):
        for jj in range(d):
            e = single_entry((k, d), i, jj)
            out[i, jj] = 2 * sym(ones.T @ ((a @ x) * (e @ x)) - x.T @ a.T @ e @ x)
    return out


# ----------------------------------------------------------------------------- seed 001
def seed001_value(x):
    """``D = (X o X)^T J + J^T (X o X) - 2 X^T X``."""
    j = np.ones_like(x)
    return (x * x).T @ j + j.T @ (x * x) - 2 * x.T @ x


def seed001_matrix_form(x):
    """``dD/dX_kl = 2(X o E_kl)^T J + 2 J^T (X o E_kl) - 2 E_lk X - 2 X^T E_kl``.

    Returns ``[i, j, k, l]`` (the (i, j) entry of the n x n matrix for X_kl).
    """
    d, n = x.shape
    j = np.ones_like(x)
    out = np.zeros((n, n, d, n))
    for k in range(d):
        for l in range(n):
            e_kl = single_entry((d, n), k, l)
            e_lk = e_kl.T
            out[:, :, k, l] = (
                2 * (x * e_kl).T @ j + 2 * j.T @ (x * e_kl) - 2 * e_lk @ x - (2 * x.T @ e_kl)
            )
    return out


def seed001_component_printed(x):
    """Printed: ``dD_ij/dX_kl = 2 d_ik X_il + 2 d_lj X_kj - 2 d_il X_kj - 2 d_lj X_ki``.

    ``i, j, l`` index observations (columns), ``k`` a feature (row). ``X_il`` is only
    read where ``d_ik`` is nonzero, i.e. where ``i = k`` is a valid row index.
    """
    d, n = x.shape
    out = np.zeros((n, n, d, n))
    for i in range(n):
        for j in range(n):
            for k in range(d):
                for l in range(n):
                    first = 2 * delta(i, k) * x[i, l] if i == k else 0.0
                    out[i, j, k, l] = (
                        first
                        + 2 * delta(l, j) * x[k, j]
                        - 2 * delta(i, l) * x[k, j]
                        - 2 * delta(l, j) * x[k, i]
                    )
    return out


def seed001_component_hadamard_tensor(x):
    """Printed, summation-convention form with the cube tensor ``H``.

    ``2 H_ikq X_ql 1_j + 2 X_kq H_qlj 1_i - 2 d_il X_kj - 2 d_lj X_ki``
    (``H_abc = 1`` iff ``a = b = c``; one ``H`` per index-range combination).
    """
    d, n = x.shape

    def cube(p, q, r):
        h = np.zeros((p, q, r))
        for s in range(min(p, q, r)):
            h[s, s, s] = 1.0
        return h

    one, eye_n = np.ones(n), np.eye(n)
    return (
        2 * np.einsum("ikq,ql,j->ijkl", cube(n, d, d), x, one)
        + 2 * np.einsum("kq,qlj,i->ijkl", x, cube(n, n, n), one)
        - 2 * np.einsum("il,kj->ijkl", eye_n, x)
        - 2 * np.einsum("lj,ki->ijkl", eye_n, x)
    )


def seed001_component_corrected(x):
    """Corrected: ``dD_ij/dX_kl = 2 d_il X_ki + 2 d_lj X_kj - 2 d_il X_kj - 2 d_lj X_ki``
    ``= 2 (d_il - d_jl)(X_ki - X_kj)``."""
    one, eye = np.ones(x.shape[1]), np.eye(x.shape[1])
    return (
        2 * np.einsum("il,ki,j->ijkl", eye, x, one)
        + 2 * np.einsum("lj,kj,i->ijkl", eye, x, one)
        - 2 * np.einsum("il,kj->ijkl", eye, x)
        - 2 * np.einsum("lj,ki->ijkl", eye, x)
    )


def seed001_asker_row_final(x_row):
    """The asker's row-convention result ``4 X_kl - 2 (X_jl d_ik + X_il d_jk)``."""
    n, d = x_row.shape
    out = np.zeros((n, n, n, d))
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for l in range(d):
                    out[i, j, k, l] = 4 * x_row[k, l] - 2 * (
                        x_row[j, l] * delta(i, k) + x_row[i, l] * delta(j, k)
                    )
    return out


def seed001_asker_row_line3(x_row):
    """The asker's third line ``2 sum_d (X_id d_ik - X_jd d_ik - X_id d_jk + X_jd d_jk) d_dl``
    (correct; the next line drops the ``d_ik`` of ``X_id d_ik``)."""
    n, d = x_row.shape
    out = np.zeros((n, n, n, d))
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for l in range(d):
                    out[i, j, k, l] = 2 * sum(
                        (
                            x_row[i, m] * delta(i, k)
                            - x_row[j, m] * delta(i, k)
                            - x_row[i, m] * delta(j, k)
                            + x_row[j, m] * delta(j, k)
                        )
                        * delta(m, l)
                        for m in range(d)
                    )
    return out


def row_correct(x_row):
    """``dD_ij/dX_kl = 2 (d_ik - d_jk)(X_il - X_jl)`` (row convention)."""
    eye = np.eye(x_row.shape[0])
    dlt = eye[:, None, :] - eye[None, :, :]  # [i, j, k]
    diff = x_row[:, None, :] - x_row[None, :, :]  # [i, j, l]
    return 2 * dlt[..., None] * diff[:, :, None, :]


# ----------------------------------------------------------------------------- verdicts
def seed_errors(d, n, k):
    """``{label: (max abs error, claimed correct by us?)}`` for one data set."""
    x, metric, a = data(d, n, k)
    x_row = x.T
    j_x = autodiff_dd_dx_col(x)
    j_m = autodiff_dd_dm_col(x, metric)
    j_a = autodiff_dd_da_col(x, a)
    j_row = autodiff_dd_dx_row(x_row)
    d_m = np.asarray(col_sq_mahalanobis(x, metric))
    d_x = np.asarray(col_sq_euclidean(x))

    def err(got, want):
        return float(np.max(np.abs(np.asarray(got) - np.asarray(want))))

    # seed tensors are [param_i, param_j, a, b] = dB_ab / dparam_ij; B = D / 2
    return {
        "000 value 2B = 2Sym(J^T(XoY) - X^T Y)": (err(seed000_value(x, metric), d_m), True),
        "000 dB/dM_ij = Sym(J^T(Xo(E_ij X)) - X^T E_ij X)": (
            err(seed000_db_dm(x).transpose(2, 3, 0, 1), j_m / 2),
            True,
        ),
        "000 dB/dA_ij = 2Sym(J^T((AX)o(E_ij X)) - X^T A^T E_ij X)": (
            err(seed000_db_da(x, a).transpose(2, 3, 0, 1), j_a / 2),
            True,
        ),
        "001 value D = (XoX)^T J + J^T(XoX) - 2X^T X": (err(seed001_value(x), d_x), True),
        "001 dD/dX_kl matrix form": (err(seed001_matrix_form(x), j_x), True),
        "001 dD_ij/dX_kl printed component (2d_ik X_il + ...)": (
            err(seed001_component_printed(x), j_x),
            False,
        ),
        "001 dD_ij/dX_kl printed H-tensor form": (
            err(seed001_component_hadamard_tensor(x), j_x),
            False,
        ),
        "001 dD_ij/dX_kl corrected (2d_il X_ki + ...)": (
            err(seed001_component_corrected(x), j_x),
            True,
        ),
        "001 asker (rows) 4X_kl - 2(X_jl d_ik + X_il d_jk)": (
            err(seed001_asker_row_final(x_row), j_row),
            False,
        ),
        "001 asker (rows) line 3, before the slip": (
            err(seed001_asker_row_line3(x_row), j_row),
            True,
        ),
        "rows: 2(d_ik - d_jk)(X_il - X_jl)": (err(row_correct(x_row), j_row), True),
    }


@functools.cache
def _errors(d, n, k):
    return seed_errors(d, n, k)


LABELS = list(seed_errors(3, 5, 2))


@pytest.mark.parametrize("d,n,k", SHAPES)
@pytest.mark.parametrize("label", LABELS)
def test_seed_formula_verdict(label, d, n, k):
    error, correct = _errors(d, n, k)[label]
    if correct:
        assert error < 1e-10, f"{label}: max abs error {error:.3g}"
    else:
        print(f"\n{label} [d={d}, n={n}]: max abs error {error:.3g} (formula is wrong)")
        assert error > 0.5, f"{label} unexpectedly matches (max abs error {error:.3g})"


@pytest.mark.parametrize("d,n,k", SHAPES)
def test_matching_formulas_match_to_rtol(d, n, k):
    """The correct formulas also pass the relative tolerance used everywhere else."""
    x, metric, a = data(d, n, k)
    np.testing.assert_allclose(seed001_matrix_form(x), autodiff_dd_dx_col(x), **MATCH)
    np.testing.assert_allclose(seed001_component_corrected(x), autodiff_dd_dx_col(x), **MATCH)
    np.testing.assert_allclose(
        seed000_db_dm(x).transpose(2, 3, 0, 1), autodiff_dd_dm_col(x, metric) / 2, **MATCH
    )
    np.testing.assert_allclose(
        seed000_db_da(x, a).transpose(2, 3, 0, 1), autodiff_dd_da_col(x, a) / 2, **MATCH
    )
    np.testing.assert_allclose(row_correct(x.T), autodiff_dd_dx_row(x.T), **MATCH)


def test_printed_component_formula_differs_only_in_first_term():
    """Replacing the first term 2 d_ik X_il by 2 d_il X_ki repairs the printed formula."""
    x, _, _ = data(3, 5, 2)
    d, n = x.shape
    fix = np.zeros((n, n, d, n))
    for i in range(n):
        for k in range(d):
            for l in range(n):
                wrong_first = 2 * x[i, l] if i == k else 0.0
                fix[i, :, k, l] = 2 * delta(i, l) * x[k, i] - wrong_first
    np.testing.assert_allclose(seed001_component_printed(x) + fix, autodiff_dd_dx_col(x), **MATCH)


WRT_X = jax.jit(mj.jacobians.wrt_x)
WRT_METRIC = jax.jit(mj.jacobians.wrt_metric)
WRT_TRANSFORM = jax.jit(mj.jacobians.wrt_transform)


# ----------------------------------------------------------------------------- conventions
@pytest.mark.parametrize("d,n,k", SHAPES)
def test_row_column_mapping(d, n, k):
    """``J_col[i, j, k, l] = dD_ij/dX_kl`` (X (d, n)) equals ``wrt_x(X^T)[i, j, l, k]``."""
    x, metric, a = data(d, n, k)
    j_col = autodiff_dd_dx_col(x)
    j_row = np.asarray(WRT_X(x.T))
    np.testing.assert_allclose(j_col, j_row.transpose(0, 1, 3, 2), **MATCH)
    # M and A are the same matrices in both conventions: no transpose of their indices
    np.testing.assert_allclose(autodiff_dd_dm_col(x, metric), WRT_METRIC(x.T), **MATCH)
    np.testing.assert_allclose(autodiff_dd_da_col(x, a), WRT_TRANSFORM(x.T, a), **MATCH)
    # so the seed's component gradients are metricjax's Jacobians, halved (B = D / 2)
    np.testing.assert_allclose(
        2 * seed000_db_dm(x),
        np.asarray(WRT_METRIC(x.T)).transpose(2, 3, 0, 1),
        **MATCH,
    )
    np.testing.assert_allclose(
        2 * seed000_db_da(x, a),
        np.asarray(WRT_TRANSFORM(x.T, a)).transpose(2, 3, 0, 1),
        **MATCH,
    )
    np.testing.assert_allclose(
        seed001_component_corrected(x),
        np.asarray(WRT_X(x.T)).transpose(0, 1, 3, 2),
        **MATCH,
    )


def test_print_seed_error_table():
    """``pytest tests/test_seeds.py -s -k table`` prints the numbers for docs/derivations.md."""
    shapes = [(3, 5, 2), (4, 4, 6)]
    rows = {label: [_errors(*s)[label] for s in shapes] for label in LABELS}
    width = max(map(len, LABELS))
    head = "  ".join(f"d={d},n={n},k={k}".rjust(13) for d, n, k in shapes)
    lines = ["", "Seed formulas vs jax.jacfwd (float64, X ~ N(0,1)): max abs error", ""]
    lines.append(f"{'formula'.ljust(width)}  {head}  verdict")
    for label, cells in rows.items():
        nums = "  ".join(f"{e:13.3e}" for e, _ in cells)
        verdict = "correct" if cells[0][1] else "WRONG"
        lines.append(f"{label.ljust(width)}  {nums}  {verdict}")
    print("\n".join(lines))
    for cells in rows.values():
        for e, correct in cells:
            assert (e < 1e-10) if correct else (e > 0.5)
