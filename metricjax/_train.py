"""Jit-compiled optax training loops for any differentiable loss.

The whole optimisation runs inside one ``jax.lax.while_loop`` (no Python loop of
jitted steps, no host round-trips), with a convergence test on the relative change
of the loss and on the gradient norm. For progress reporting the same compiled loop
is resumed in chunks, so a progress bar or callback costs one host sync per chunk,
not per step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class FitResult(NamedTuple):
    """Outcome of :func:`fit`.

    Attributes:
        params: the learned parameters (same tree structure as the initial ones).
        loss_history: losses at the start of each iteration, then the final loss;
            length ``num_iter + 1``.
        num_iter: number of optimizer updates performed.
        converged: whether the tolerance test stopped the loop before ``max_iter``.
        grad_norm: gradient norm at the final parameters.
        opt_state: final optimizer state (to resume a fit).
    """

    params: Any
    loss_history: np.ndarray
    num_iter: int
    converged: bool
    grad_norm: float
    opt_state: Any


class _Carry(NamedTuple):
    params: Any
    opt_state: Any
    it: jax.Array
    loss: jax.Array
    grad: Any
    history: jax.Array
    converged: jax.Array


def _has_linesearch_value(opt_state) -> bool:
    try:
        return optax.tree.get(opt_state, "value") is not None
    except (ValueError, KeyError):
        return False


def make_loop(
    loss_fn: Callable[..., jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    max_iter: int,
    tol: float,
    gtol: float,
):
    """Build ``(init, run)``: ``run(carry, stop_at, *args)`` advances up to ``stop_at``.

    ``run`` is one jitted ``while_loop``; ``stop_at`` is traced, so chunked and
    one-shot runs share a single compilation.
    """
    opt = optax.with_extra_args_support(optimizer)

    def value_and_grad(params, state, *args):
        if _has_linesearch_value(state):
            return optax.value_and_grad_from_state(loss_fn)(params, *args, state=state)
        return jax.value_and_grad(loss_fn)(params, *args)

    def init(params, *args, opt_state=None):
        state = opt.init(params) if opt_state is None else opt_state
        loss, grad = jax.value_and_grad(loss_fn)(params, *args)
        hist = jnp.full((max_iter + 1,), jnp.nan, dtype=jnp.result_type(loss))
        carry = _Carry(params, state, jnp.zeros((), jnp.int32), loss, grad, hist,
                       jnp.zeros((), bool))
        # Strip weak types (optimizer states hold Python scalars) so that the carry
        # that run() returns has the same types as this one: one compilation only.
        return jax.tree.map(lambda a: jax.lax.convert_element_type(a, jnp.result_type(a)), carry)

    def step(carry: _Carry, args):
        params, state = carry.params, carry.opt_state
        # Loss and gradient at the current point were computed at the end of the
        # previous step (or by init): one evaluation per step for any optimizer.
        value, grad = carry.loss, carry.grad
        value_fn = lambda p: loss_fn(p, *args)
        updates, state = opt.update(
            grad, state, params, value=value, grad=grad, value_fn=value_fn
        )
        params = optax.apply_updates(params, updates)
        # Loss and gradient at the new point (taken from the line search when it
        # stored them, so L-BFGS does not evaluate the loss twice).
        new_value, new_grad = value_and_grad(params, state, *args)
        hist = carry.history.at[carry.it].set(value)
        scale = jnp.maximum(jnp.maximum(jnp.abs(value), jnp.abs(new_value)), 1.0)
        small_change = jnp.abs(value - new_value) <= tol * scale
        small_grad = optax.tree.norm(new_grad) <= gtol
        # A step that made the loss non-finite is refused and stops the loop.
        bad = ~jnp.isfinite(new_value)
        keep = lambda new, old: jnp.where(bad, old, new)
        params = jax.tree.map(keep, params, carry.params)
        new_grad = jax.tree.map(keep, new_grad, grad)
        new_value = jnp.where(bad, value, new_value)
        converged = (small_change | small_grad) & ~bad
        return _Carry(params, state, carry.it + 1, new_value, new_grad, hist, converged | bad)

    @jax.jit
    def run(carry: _Carry, stop_at, *args):
        def cond(c):
            return (c.it < stop_at) & ~c.converged

        out = jax.lax.while_loop(cond, lambda c: step(c, args), carry)
        return out._replace(history=out.history.at[out.it].set(out.loss))

    return init, run


@functools.cache
def _default_optimizer() -> optax.GradientTransformation:
    # One shared instance, so that fits with the default optimizer share compiled loops.
    return optax.lbfgs()


@functools.lru_cache(maxsize=64)
def _cached_loop(loss_fn, optimizer, max_iter: int, tol: float, gtol: float):
    return make_loop(loss_fn, optimizer, max_iter=max_iter, tol=tol, gtol=gtol)


def _loop(loss_fn, optimizer, max_iter: int, tol: float, gtol: float):
    """``make_loop``, cached on (loss, optimizer, settings) so refits skip compilation."""
    try:
        return _cached_loop(loss_fn, optimizer, max_iter, float(tol), float(gtol))
    except TypeError:  # an unhashable loss or optimizer: build a fresh loop
        return make_loop(loss_fn, optimizer, max_iter=max_iter, tol=tol, gtol=gtol)


def fit(
    loss_fn: Callable[..., jax.Array],
    params,
    *args,
    optimizer: optax.GradientTransformation | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    gtol: float = 1e-7,
    opt_state=None,
    callback: Callable[[int, float, Any], Any] | None = None,
    verbose: bool = False,
    chunk_size: int | None = None,
) -> FitResult:
    r"""Minimise ``loss_fn(params, *args)`` with an optax optimizer in a compiled loop.

    The loop stops after ``max_iter`` updates, or when the relative change of the
    loss falls below ``tol``, :math:`|f_{k} - f_{k+1}| \le \mathrm{tol}\cdot
    \max(|f_k|, |f_{k+1}|, 1)`, or the gradient norm below ``gtol``. A step that
    makes the loss non-finite is rejected and ends the loop.

    Args:
        loss_fn: scalar loss, differentiable in its first argument (a pytree).
        params: initial parameters.
        *args: extra arguments of ``loss_fn`` (data); passed as jit arguments.
        optimizer: any ``optax.GradientTransformation``; default ``optax.lbfgs()``
            (the right choice for these smooth full-batch problems). Line-search
            optimizers get ``value``, ``grad`` and ``value_fn``.
        max_iter: maximum number of updates.
        tol: relative loss-change tolerance.
        gtol: gradient-norm tolerance.
        opt_state: optimizer state to resume from (e.g. ``FitResult.opt_state``).
        callback: ``callback(iteration, loss, params)`` called on the host after each
            chunk of iterations; returning ``True`` stops the fit.
        verbose: show a ``tqdm`` progress bar (terminal or notebook).
        chunk_size: iterations per compiled chunk when reporting progress
            (default ``max(1, max_iter // 100)``).

    The compiled loop is cached per ``(loss_fn, optimizer, max_iter, tol, gtol)``
    (and, as usual with ``jax.jit``, per argument shape and dtype), so a second fit
    of the same problem does not compile again. Pass the same function and optimizer
    objects to benefit (a fresh ``functools.partial`` or ``optax.adam(...)`` each
    call is a new key). Keyword arguments of the loss go in with
    ``functools.partial``, e.g. ``functools.partial(nca_loss, num_classes=3)``.

    Returns:
        :class:`FitResult`.

    Examples:
        >>> import jax.numpy as jnp, metricjax as mj
        >>> res = mj.fit(lambda w, t: jnp.sum((w - t) ** 2), jnp.zeros(3), jnp.ones(3))
        >>> bool(res.converged), res.params.round(4).tolist()
        (True, [1.0, 1.0, 1.0])
    """
    if int(max_iter) < 1:
        raise ValueError(f"`max_iter` must be >= 1, got {max_iter}")
    if not (tol >= 0 and gtol >= 0):
        raise ValueError(f"`tol` and `gtol` must be >= 0, got {tol}, {gtol}")
    optimizer = _default_optimizer() if optimizer is None else optimizer
    init, run = _loop(loss_fn, optimizer, int(max_iter), tol, gtol)
    carry = init(params, *args, opt_state=opt_state)
    if not bool(jnp.isfinite(carry.loss)):
        raise FloatingPointError(f"the initial loss is not finite ({float(carry.loss)})")
    if callback is None and not verbose:
        carry = run(carry, jnp.int32(max_iter), *args)
    else:
        chunk = int(chunk_size) if chunk_size else max(1, int(max_iter) // 100)
        bar = _progress(max_iter) if verbose else None
        done = 0
        while done < max_iter and not bool(carry.converged):
            carry = run(carry, jnp.int32(min(done + chunk, max_iter)), *args)
            it = int(carry.it)
            if bar is not None:
                bar.update(it - done)
                bar.set_postfix(loss=f"{float(carry.loss):.6g}")
            done = it
            if callback is not None and callback(it, float(carry.loss), carry.params) is True:
                break
        if bar is not None:
            bar.close()
    n_iter = int(carry.it)
    hist = np.asarray(carry.history[: n_iter + 1])
    gnorm = float(optax.tree.norm(carry.grad))
    return FitResult(carry.params, hist, n_iter, bool(carry.converged), gnorm, carry.opt_state)


def _progress(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit", unit="it", leave=False, dynamic_ncols=True)
