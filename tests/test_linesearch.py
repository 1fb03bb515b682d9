"""The L-BFGS of ``mj.fit``: optax's zoom line search with one loss evaluation per step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import metricjax as mj
from metricjax import _linesearch
from metricjax._train import named_optimizer
from metricjax.losses import mlkr_loss


def _problem(n=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x[:, 0] + 0.3 * x[:, 1] ** 2 + 0.1 * rng.normal(size=n)
    return jnp.asarray(x), jnp.asarray(y)


def _ridge(L, x, y):
    return mlkr_loss(L, x, y) + 0.1 * jnp.sum(L**2)


def test_same_iterates_as_optax_lbfgs(x64):
    """Operation for operation optax's line search: the same iterations and iterates."""
    x, y = _problem()
    rosen = lambda p: jnp.sum(100 * (p[1:] - p[:-1] ** 2) ** 2 + (1 - p[:-1]) ** 2)
    cases = [(_ridge, 0.5 * jnp.eye(4), (x, y)), (rosen, jnp.full(5, -1.2), ())]
    for loss, p0, args in cases:
        ours = mj.fit(loss, p0, *args, optimizer=_linesearch.lbfgs(), max_iter=200)
        ref = mj.fit(loss, p0, *args, optimizer=optax.lbfgs(), max_iter=200)
        assert ours.num_iter == ref.num_iter and ours.converged == ref.converged
        np.testing.assert_allclose(ours.params, ref.params, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.loss_history, ref.loss_history, rtol=1e-10)
    assert named_optimizer("lbfgs") is named_optimizer("lbfgs")


def test_the_line_search_compiles_the_loss_once(x64):
    """optax's zoom evaluates the loss in both branches of a cond (two compiled copies in
    the line search, three in the fit); ours in one place (two in the fit)."""
    x, y = _problem()

    def copies(opt):
        fit = jax.jit(lambda L: mj.fit(_ridge, L, x, y, optimizer=opt, max_iter=50).params)
        return fit.lower(jnp.eye(4)).compile().as_text().count("exponential(")

    assert copies(optax.lbfgs()) == 3
    assert copies(_linesearch.lbfgs()) == 2


def test_an_unknown_optax_layout_falls_back_to_its_own_step():
    step = lambda state, **kw: state
    assert _linesearch._one_evaluation(step) is step


def test_large_parameters_keep_the_conditionals_and_the_iterates(x64):
    """Above ``_SELECT_MAX_SIZE`` elements the step runs one branch (``lax.cond``); below,
    both and a select. Either way optax's iterates, and the select form has no cond."""
    size = _linesearch._SELECT_MAX_SIZE + 1
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.uniform(0.5, 2.0, size))
    t = jnp.asarray(rng.normal(size=size))
    loss = lambda p, w, t: jnp.sum(w * (p - t) ** 2 + 0.1 * jnp.cos(p))
    for n in (size, 50):
        args = (w[:n], t[:n])
        ours = mj.fit(loss, jnp.zeros(n), *args, optimizer=_linesearch.lbfgs(), max_iter=30)
        ref = mj.fit(loss, jnp.zeros(n), *args, optimizer=optax.lbfgs(), max_iter=30)
        assert ours.num_iter == ref.num_iter
        np.testing.assert_allclose(ours.params, ref.params, rtol=1e-10, atol=1e-12)
        fit = jax.jit(lambda p, *a: mj.fit(loss, p, *a, optimizer=_linesearch.lbfgs(),
                                           max_iter=30).params)  # fmt: skip
        conds = fit.lower(jnp.zeros(n), *args).as_text().count("stablehlo.case")
        # the linesearch's two conds, when present; optax's lbfgs has none of its own
        assert (conds >= 2) if n == size else (conds == 0)
