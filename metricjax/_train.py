"""Jit-compiled optax training loops for any differentiable loss.

The whole optimisation runs inside one ``jax.lax.while_loop`` (no Python loop of
jitted steps, no host round-trips), with a convergence test on the relative change
of the loss and on the gradient norm. For progress reporting the same compiled loop
is resumed in chunks, so a progress bar or callback costs one host sync per chunk,
not per step.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metricjax import _checks, _linesearch
from metricjax._typing import PyTree
from metricjax.exceptions import InvalidParameterError


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


def _traced(tree) -> bool:
    """Whether ``tree`` holds JAX tracers (the caller is inside ``jit``, ``vmap``, ...)."""
    return any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(tree))


def _under_a_transformation() -> bool:
    """Whether the caller runs under ``jax.jit`` / ``jax.vmap`` / ... even with concrete inputs.

    A loss may close over a traced value while the fit's own arguments are concrete
    (``jax.vmap(lambda a: fit(partial(loss, alpha=a), L0, x))``). JAX has no public
    test for this; without its internal trace state the answer is ``False`` and such
    a fit runs in the batched form (same results).
    """
    try:
        from jax._src import core
    except ImportError:  # pragma: no cover - a JAX without the module
        return False
    trace = getattr(getattr(core, "trace_ctx", None), "trace", None)
    eval_trace = getattr(core, "EvalTrace", None)
    return trace is not None and eval_trace is not None and not isinstance(trace, eval_trace)


#: How a traced fit runs under ``jax.vmap``: see :func:`fit`'s ``vmap_method``.
VMAP_METHODS = ("auto", "sequential", "batched")


def _check_vmap_method(vmap_method) -> str:
    """``"sequential"`` or ``"batched"``: ``"auto"`` is sequential on the CPU."""
    if not (isinstance(vmap_method, str) and vmap_method in VMAP_METHODS):
        raise ValueError(
            f"`vmap_method` must be one of {', '.join(map(repr, VMAP_METHODS))}, got "
            f"{vmap_method!r}"
        )
    if vmap_method == "auto":
        return "sequential" if jax.default_backend() == "cpu" else "batched"
    return vmap_method


def _tracing(tree) -> bool:
    """Whether a fit is traced: traced inputs, or a caller under a transformation."""
    return _traced(tree) or _under_a_transformation()


def _call(fn: Callable, method: str, tracing: bool, *args):
    """``fn(*args)``; under a transformation with ``method == "sequential"``, through
    :func:`_member_by_member` (a ``jax.vmap`` of it runs one member at a time)."""
    if tracing and method == "sequential":
        return _member_by_member(fn, *args)
    return fn(*args)


def _member_by_member(fn: Callable, *args):
    """``fn(*args)``, such that ``jax.vmap`` of it runs the batch members one after another.

    Under ``jax.vmap`` the call becomes a ``lax.map`` over the members
    (``jax.custom_batching.sequential_vmap``): one compiled loop whose body is the
    unbatched computation, so every member does exactly its own work (a fit its own
    iterations) and gives the unbatched result. Everything ``fn`` closes over (e.g. a
    loss that closes over a traced hyperparameter) is first made an explicit argument
    through its jaxpr, so a batched closure is mapped like a batched argument.
    Without ``vmap`` it is ``fn(*args)``.
    """
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)

    @jax.custom_batching.sequential_vmap
    def run(consts, leaves):
        return jax.core.eval_jaxpr(closed.jaxpr, consts, *leaves)

    out = run(list(closed.consts), jax.tree.leaves(args))
    return jax.tree.unflatten(jax.tree.structure(out_shape), out)


def _refuse_host_features(what: str, verbose, callback) -> None:
    raise ValueError(
        f"{what} is being traced (inside jax.jit, jax.vmap, ...), where the progress bar "
        f"(verbose={verbose!r}) and the callback ({'set' if callback is not None else 'None'}) "
        "cannot run: they need host values after each chunk of iterations. Pass "
        "verbose=False and callback=None to trace the fit, or call it outside the transformation"
    )


class _Carry(NamedTuple):
    params: Any
    opt_state: Any
    it: jax.Array
    loss: jax.Array
    grad: Any
    history: jax.Array
    converged: jax.Array


def _optax_promotion():
    """Standard dtype promotion around optax's own code.

    optax mixes its integer step counts with float arrays, which JAX's
    ``jax_numpy_dtype_promotion="strict"`` mode refuses; users (and our tests) who turn
    strict promotion on can still train. The losses themselves are strict-clean.
    """
    return jax.numpy_dtype_promotion("standard")


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
        # After an update, a line search's state holds the loss and gradient at the
        # new parameters, which it evaluated there. optax's value_and_grad_from_state
        # would re-evaluate them in a lax.cond branch when that value is not finite;
        # here a non-finite value refuses the step and stops the loop anyway (see
        # step), with the same outputs. Reading the state directly leaves that
        # branch out of the program: about 15% less compilation per fit, and no
        # second loss evaluation per iteration under vmap, where a cond with a
        # batched predicate runs both of its branches.
        if _has_linesearch_value(state):
            return optax.tree.get(state, "value"), optax.tree.get(state, "grad")
        return jax.value_and_grad(loss_fn)(params, *args)

    def init(params, *args, opt_state=None):
        with _optax_promotion():
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
        with _optax_promotion():
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


# ----------------------------------------------------------------------------------
# optimizers, settings and compilation: shared by fit and fit_minibatch
# ----------------------------------------------------------------------------------
#: First-order optax optimizers accepted by name, created with this learning rate.
NAMED_LEARNING_RATE = 1e-2
_FIRST_ORDER = ("adam", "adamw", "adabelief", "adagrad", "lion", "nadam", "rmsprop", "sgd", "yogi")


@functools.cache
def named_optimizer(name: str) -> optax.GradientTransformation:
    """The optax optimizer called ``name``: ``"lbfgs"`` or a first-order one.

    First-order optimizers get ``learning_rate=1e-2``
    (:data:`NAMED_LEARNING_RATE`); build ``optax.adam(...)`` yourself for other
    settings. One instance per name, so fits with the same name share compiled loops.
    """
    if name == "lbfgs":  # optax.lbfgs(), its line search compiling the loss once
        return _linesearch.lbfgs()
    if name in _FIRST_ORDER:
        return getattr(optax, name)(NAMED_LEARNING_RATE)
    raise ValueError(
        f"unknown optimizer name {name!r}; use one of {('lbfgs', *_FIRST_ORDER)} or pass an "
        "optax.GradientTransformation"
    )


def resolve_optimizer(optimizer, default: str) -> optax.GradientTransformation:
    """``optimizer`` as an optax transformation: ``None`` → ``default``, a name → :func:`named_optimizer`."""
    if optimizer is None:
        return named_optimizer(default)
    if isinstance(optimizer, str):
        return named_optimizer(optimizer)
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            "`optimizer` must be None, an optax.GradientTransformation (with init and update) "
            f"or the name of one such as 'lbfgs' or 'adam', got {type(optimizer).__name__}"
        )
    return optimizer


def _check_settings(max_iter, tol, gtol) -> None:
    _checks.count(max_iter, "max_iter")
    _checks.tolerance(tol, "tol")
    _checks.tolerance(gtol, "gtol")


def _float_params(params):
    """``params`` as JAX arrays of a floating dtype (NumPy float64 becomes JAX's default float).

    Casting here, before optax sees the parameters, avoids optax's "explicitly requested
    dtype float64 ... truncated" warnings when 64-bit mode is off.
    """
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("`params` is empty: there is nothing to optimise")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"`params` must be floating point (got a leaf of dtype "
                f"{jnp.result_type(leaf)}); pass e.g. jnp.asarray(params, jnp.float32)"
            )
    # host data goes in with device_put: jnp.asarray of a NumPy array compiles a small
    # program of its own on the first call
    return jax.tree.map(
        lambda a: jax.device_put(a) if isinstance(a, (np.ndarray, np.generic)) else jnp.asarray(a),
        params,
    )


def _history_capacity(max_iter: int) -> int:
    """Length of the loss-history buffer: ``max_iter`` rounded up to a power of 2 (>= 1024).

    The loop stops at ``max_iter`` (a traced argument), so every ``max_iter`` up to the
    capacity shares one compiled program.
    """
    return max(1024, 1 << (int(max_iter) - 1).bit_length())


# Small problems on the CPU: compiling the loop (L-BFGS with its zoom line search)
# takes about a second while the whole optimisation runs in milliseconds, so those
# are compiled with cheaper XLA settings (2-3x faster compilation, iterations about
# 2x slower; results differ from the default settings by rounding only).
# "Small": n**2 * (d + k) up to this bound, for an (n, d) first data array and a
# (k, d) parameter.
_FAST_COMPILE_MAX_WORK = 2**21
_FAST_COMPILE_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}


@functools.cache
def _fast_compile_options() -> tuple:
    """The options of :data:`_FAST_COMPILE_OPTIONS` this XLA accepts (probed once).

    One probe program with all of them; only if XLA refuses it, one per option.
    """

    def accepted(options: dict) -> bool:
        try:
            probe = jax.jit(lambda a: a + 1, compiler_options=options)
            probe.lower(np.zeros((), np.float32)).compile()
        except Exception:  # an XLA without one of these debug options
            return False
        return True

    if accepted(_FAST_COMPILE_OPTIONS):
        return tuple(sorted(_FAST_COMPILE_OPTIONS.items()))
    ok = {k: v for k, v in _FAST_COMPILE_OPTIONS.items() if accepted({k: v})}
    return tuple(sorted(ok.items()))


def _compile_options(params, args) -> tuple:
    """XLA options for this problem: the quick-compile set for small CPU problems."""
    if jax.default_backend() != "cpu" or not args:
        return ()
    x = jax.tree.leaves(args[0])
    if len(x) != 1 or np.ndim(x[0]) != 2:
        return ()
    n, d = np.shape(x[0])
    k = max((np.shape(p)[0] for p in jax.tree.leaves(params) if np.ndim(p) == 2), default=d)
    return _fast_compile_options() if n * n * (d + k) <= _FAST_COMPILE_MAX_WORK else ()


def _build_fit_loop(loss_fn, optimizer, capacity: int, tol: float, gtol: float, options: tuple):
    """``(init, run, oneshot)`` jitted with ``options``; ``oneshot = run ∘ init`` in one program."""
    init, run = make_loop(loss_fn, optimizer, max_iter=capacity, tol=tol, gtol=gtol)

    def oneshot(params, opt_state, stop_at, *args):
        return run(init(params, *args, opt_state=opt_state), stop_at, *args)

    def chunk(carry, stop_at, *args):
        return run(carry, stop_at, *args)

    def start(params, opt_state, *args):
        return init(params, *args, opt_state=opt_state)

    opts = dict(options) if options else None
    return tuple(jax.jit(f, compiler_options=opts) for f in (start, chunk, oneshot))


_cached_fit_loop = functools.lru_cache(maxsize=64)(_build_fit_loop)


def _fit_loop(loss_fn, optimizer, capacity, tol, gtol, options):
    """:func:`_build_fit_loop`, cached on (loss, optimizer, settings) so refits skip compilation."""
    try:
        return _cached_fit_loop(loss_fn, optimizer, capacity, float(tol), float(gtol), options)
    except TypeError:  # an unhashable loss or optimizer: build (and compile) afresh
        return _build_fit_loop(loss_fn, optimizer, capacity, tol, gtol, options)


# ----------------------------------------------------------------------------------
# the one host-side driver: progress bar, callback, early stop
# ----------------------------------------------------------------------------------
def _progress(total: int, desc: str = "fit"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=True, dynamic_ncols=True)


def _run_chunked(advance, carry, total: int, *, chunk_size, verbose, callback, stopped, loss_of):
    """Advance ``carry`` in chunks of compiled iterations, reporting after each.

    ``advance(carry, stop_at)`` runs the compiled loop up to iteration ``stop_at``;
    ``stopped(carry)`` says whether the loop ended by itself (convergence or a
    non-finite step) and ``loss_of(carry)`` gives the loss to report. After each
    chunk the progress bar (``verbose``) moves on and ``callback(iteration, loss,
    params)`` runs; its ``True`` stops the fit. On an early stop the bar is closed at
    the iterations done, marked "converged" (or "stopped"), never left mid-way.
    """
    chunk = int(chunk_size) if chunk_size else max(1, total // 100)
    bar = _progress(total) if verbose else None
    done = 0
    try:
        while done < total and not stopped(carry):
            carry = advance(carry, min(done + chunk, total))
            it = int(carry.it)
            loss = loss_of(carry)
            if bar is not None:
                bar.update(it - done)
                bar.set_postfix(loss=f"{loss:.6g}")
            done = it
            if callback is not None and callback(it, loss, carry.params) is True:
                break
    finally:
        if bar is not None:
            if done < total:  # converged, stopped by the callback, or a bad step
                word = "converged" if stopped(carry) else "stopped"
                bar.total = done
                bar.set_description(f"fit ({word})")
                bar.refresh()
            bar.close()
    return carry


# ----------------------------------------------------------------------------------
# full-batch fit
# ----------------------------------------------------------------------------------
def fit(
    loss_fn: Callable[..., jax.Array],
    params: PyTree,
    *args: PyTree,
    optimizer: optax.GradientTransformation | str | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    gtol: float = 1e-7,
    opt_state: PyTree = None,
    callback: Callable[[int, float, Any], Any] | None = None,
    verbose: bool = False,
    chunk_size: int | None = None,
    vmap_method: str = "auto",
) -> FitResult:
    r"""Minimise ``loss_fn(params, *args)`` with an optax optimizer in a compiled loop.

    The loop stops after ``max_iter`` updates, or when the relative change of the
    loss falls below ``tol``, :math:`|f_{k} - f_{k+1}| \le \mathrm{tol}\cdot
    \max(|f_k|, |f_{k+1}|, 1)`, or the gradient norm below ``gtol``. A step that
    makes the loss non-finite is rejected and ends the loop.

    Args:
        loss_fn: scalar loss, differentiable in its first argument (a pytree).
        params: initial parameters (floating point; NumPy arrays are converted to JAX's
            float type first).
        *args: extra arguments of ``loss_fn`` (data); passed as jit arguments.
        optimizer: any ``optax.GradientTransformation``, or the name of one:
            ``"lbfgs"`` (the default, the right choice for these smooth full-batch
            problems) or a first-order optimizer (``"adam"``, ``"sgd"``, ``"adamw"``,
            ... with learning rate ``1e-2``). Line-search optimizers get ``value``,
            ``grad`` and ``value_fn``.
        max_iter: maximum number of updates.
        tol: relative loss-change tolerance.
        gtol: gradient-norm tolerance.
        opt_state: optimizer state to resume from (e.g. ``FitResult.opt_state``).
        callback: ``callback(iteration, loss, params)`` called on the host after each
            chunk of iterations; returning ``True`` stops the fit.
        verbose: show a ``tqdm`` progress bar (terminal or notebook); on convergence it
            closes at the iterations done, marked "converged".
        chunk_size: iterations per compiled chunk when reporting progress
            (default ``max(1, max_iter // 100)``).
        vmap_method: how ``jax.vmap`` of the fit runs its members (see **Inside jit
            and vmap**): ``"sequential"``, one after another in one compiled loop;
            ``"batched"``, all together in one batched ``while_loop``; ``"auto"``
            (default), sequential on the CPU and batched on accelerators.

    The compiled loop is cached per ``(loss_fn, optimizer, tol, gtol)`` and
    ``max_iter`` rounded up to a power of two (and, as usual with ``jax.jit``, per
    argument shape and dtype), so a second fit of the same problem does not compile
    again. Pass the same function and optimizer objects to benefit (a fresh
    ``functools.partial`` or ``optax.adam(...)`` each call is a new key; names such as
    ``"adam"`` always are the same object). Keyword arguments of the loss go in with
    ``functools.partial``, e.g. ``functools.partial(nca_loss, num_classes=3)``. Small
    problems on the CPU are compiled with cheaper XLA settings (same results up to
    rounding).

    **Inside jit and vmap.** Without ``verbose`` and ``callback`` the fit is
    traceable: ``jax.jit`` of a function that calls it compiles, and ``jax.vmap``
    over the initial parameters, a traced hyperparameter of the loss (an extra
    argument in ``*args``, or a value the loss closes over) or the data (e.g.
    ``sample_weight`` vectors of cross-validation folds) runs all members in one
    compiled program. Each member stops when *it* converges, so member ``i`` equals
    the sequential fit ``i``: same iterations, same parameters up to rounding. With
    ``vmap_method="sequential"`` the program maps the one-member fit over the batch
    (``jax.custom_batching.sequential_vmap``): every member does only its own
    iterations, the fastest form on a CPU, where batching the members' arithmetic
    gains nothing (measured on 2 cores: 16 MLKR fits at n = 1000 ran 5x faster
    than in the batched form once compiled, 2.5-3x compilation included,
    ``benchmarks/results/sweep.md``). With ``"batched"`` the members
    step together in one batched ``while_loop``, which runs until the slowest
    member has converged (a finished member's carry is kept unchanged, but still
    computed): the form for an accelerator that runs the batch side by side. Under
    a trace the :class:`FitResult` fields are arrays:
    ``loss_history`` has length ``max_iter + 1``, NaN after ``num_iter + 1`` entries;
    the initial-loss check is not made (look at ``loss_history[..., 0]``).

    Returns:
        :class:`FitResult`.

    Raises:
        FloatingPointError: the loss at the initial parameters is not finite.
        ValueError: ``verbose`` or ``callback`` while the fit is traced.

    Examples:
        >>> import jax.numpy as jnp, metricjax as mj
        >>> res = mj.fit(lambda w, t: jnp.sum((w - t) ** 2), jnp.zeros(3), jnp.ones(3))
        >>> bool(res.converged), res.params.round(4).tolist()
        (True, [1.0, 1.0, 1.0])
    """
    _check_settings(max_iter, tol, gtol)
    method = _check_vmap_method(vmap_method)
    params = _float_params(params)
    optimizer = resolve_optimizer(optimizer, "lbfgs")
    max_iter = int(max_iter)
    capacity = _history_capacity(max_iter)
    traced = _tracing((params, args, opt_state))
    # compiler options are for a top-level jit only: none when the fit is traced
    options = () if traced else _compile_options(params, args)
    start, chunk, oneshot = _fit_loop(loss_fn, optimizer, capacity, tol, gtol, options)
    if callback is None and not verbose:
        carry = _call(oneshot, method, traced, params, opt_state, np.int32(max_iter), *args)
        if _traced(carry):  # inside jit / vmap: the arrays themselves, no host reads
            return FitResult(
                carry.params,
                carry.history[: max_iter + 1],
                carry.it,
                carry.converged,
                optax.tree.norm(carry.grad),
                carry.opt_state,
            )
    else:
        carry = start(params, opt_state, *args)
        if _traced(carry):
            _refuse_host_features("fit", verbose, callback)
        _check_initial_loss(np.asarray(carry.loss))
        carry = _run_chunked(
            lambda c, stop: chunk(c, np.int32(stop), *args),
            carry,
            max_iter,
            chunk_size=chunk_size,
            verbose=verbose,
            callback=callback,
            stopped=lambda c: bool(c.converged),
            loss_of=lambda c: float(c.loss),
        )
    # the results are read on the host with NumPy: eager JAX operations here would
    # each compile a small program on a first fit (about 0.4 s in all)
    history, grad, n_iter, converged = jax.device_get(
        (carry.history, carry.grad, carry.it, carry.converged)
    )
    _check_initial_loss(history[0])  # (the chunked run checked it before starting too)
    n_iter = int(n_iter)
    hist = np.asarray(history[: n_iter + 1])
    return FitResult(carry.params, hist, n_iter, bool(converged), _host_norm(grad), carry.opt_state)


def _host_norm(tree) -> float:
    """The Euclidean norm of a pytree of host arrays (``optax.tree.norm``, in NumPy)."""
    return float(np.sqrt(sum(np.sum(np.abs(np.asarray(a, np.float64)) ** 2) for a in jax.tree.leaves(tree))))


def _check_initial_loss(loss: float | np.floating | np.ndarray) -> None:
    if not np.isfinite(loss):
        raise FloatingPointError(f"the initial loss is not finite ({float(loss)})")


# ----------------------------------------------------------------------------------
# mini-batch training
# ----------------------------------------------------------------------------------
class MinibatchResult(NamedTuple):
    """Outcome of :func:`fit_minibatch`.

    Attributes:
        params: the learned parameters.
        loss_history: the batch loss at each step (before its update); length
            ``num_steps``. Batch losses are on random subsets: noisy, and on the
            scale of a batch.
        eval_steps: steps at which the full-data loss was evaluated (``0``,
            ``eval_every``, ``2 eval_every``, ... and ``num_steps``); empty without
            ``eval_every``.
        eval_history: the full-data loss at ``eval_steps``.
        num_steps: number of updates performed.
        opt_state: final optimizer state.
        key: PRNG key to continue sampling from (pass it as ``key`` to resume).
    """

    params: Any
    loss_history: np.ndarray
    eval_steps: np.ndarray
    eval_history: np.ndarray
    num_steps: int
    opt_state: Any
    key: Any


class _MBCarry(NamedTuple):
    params: Any
    opt_state: Any
    it: jax.Array
    key: jax.Array
    perm: jax.Array
    history: jax.Array
    evals: jax.Array
    stopped: jax.Array


def _num_rows(data) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("fit_minibatch needs at least one data array to sample rows from")
    n = int(np.shape(leaves[0])[0]) if np.ndim(leaves[0]) else 0
    for a in leaves:
        if np.ndim(a) == 0 or np.shape(a)[0] != n:
            raise ValueError(
                "every data array of fit_minibatch must have the rows (axis 0) of the first, "
                f"got shapes {[np.shape(b) for b in leaves]}"
            )
    return n


def _num_evals(num_steps: int, eval_every: int) -> int:
    return -(-num_steps // eval_every) + 1 if eval_every else 0


def make_minibatch_loop(
    loss_fn: Callable[..., jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    num_steps: int,
    eval_every: int = 0,
):
    """Build ``(init, run)`` for :func:`fit_minibatch`; ``run`` is one jitted ``while_loop``.

    ``run(carry, stop_at, *data)`` advances up to step ``stop_at`` (traced, so chunked
    and one-shot runs share one compilation).
    """
    opt = optax.with_extra_args_support(optimizer)
    n_eval = _num_evals(num_steps, eval_every)

    def init(params, key, *data, opt_state=None):
        n = _num_rows(data)
        with _optax_promotion():
            state = opt.init(params) if opt_state is None else opt_state
        dt = jnp.result_type(jax.eval_shape(loss_fn, params, *data))
        carry = _MBCarry(
            params,
            state,
            jnp.zeros((), jnp.int32),
            key,
            jnp.arange(n, dtype=jnp.int32),
            jnp.full((num_steps,), jnp.nan, dt),
            jnp.full((n_eval,), jnp.nan, dt),
            jnp.zeros((), bool),
        )
        # strip weak types so the carry run() returns has the same types: one compilation
        return jax.tree.map(lambda a: jax.lax.convert_element_type(a, jnp.result_type(a)), carry)

    def batch_of(carry: _MBCarry, data, n: int):
        """This step's rows: a slice of the epoch's permutation (reshuffled per epoch)."""
        if batch_size >= n:  # the whole data set, in its order: full-batch steps
            return carry.key, carry.perm, data
        per_epoch = n // batch_size
        pos = carry.it % per_epoch

        def reshuffle(key):
            key, sub = jax.random.split(key)
            return key, jax.random.permutation(sub, n).astype(jnp.int32)

        key, perm = jax.lax.cond(
            pos == 0, reshuffle, lambda key: (key, carry.perm), carry.key
        )
        idx = jax.lax.dynamic_slice_in_dim(perm, pos * batch_size, batch_size)
        batch = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
        return key, perm, batch

    def step(carry: _MBCarry, data, n: int):
        evals = carry.evals
        if eval_every:
            slot = carry.it // eval_every
            evals = jax.lax.cond(
                carry.it % eval_every == 0,
                lambda e: e.at[slot].set(loss_fn(carry.params, *data)),
                lambda e: e,
                evals,
            )
        key, perm, batch = batch_of(carry, data, n)
        value, grad = jax.value_and_grad(loss_fn)(carry.params, *batch)
        value_fn = lambda p: loss_fn(p, *batch)
        with _optax_promotion():
            updates, state = opt.update(
                grad, carry.opt_state, carry.params, value=value, grad=grad, value_fn=value_fn
            )
            params = optax.apply_updates(carry.params, updates)
        # a non-finite batch loss or step stops the loop, keeping the last good point
        bad = ~(jnp.isfinite(value) & jnp.isfinite(optax.tree.norm(updates)))
        keep = lambda new, old: jnp.where(bad, old, new)
        params = jax.tree.map(keep, params, carry.params)
        state = jax.tree.map(keep, state, carry.opt_state)
        hist = carry.history.at[carry.it].set(value)
        return _MBCarry(params, state, carry.it + 1, key, perm, hist, evals, bad)

    @jax.jit
    def run(carry: _MBCarry, stop_at, *data):
        n = _num_rows(data)

        def cond(c):
            return (c.it < stop_at) & (c.it < num_steps) & ~c.stopped

        out = jax.lax.while_loop(cond, lambda c: step(c, data, n), carry)
        if eval_every:
            last = n_eval - 1
            final = (out.it == num_steps) & jnp.isnan(out.evals[last])
            evals = jax.lax.cond(
                final,
                lambda e: e.at[last].set(loss_fn(out.params, *data)),
                lambda e: e,
                out.evals,
            )
            out = out._replace(evals=evals)
        return out

    return init, run


@functools.lru_cache(maxsize=32)
def _cached_minibatch_loop(loss_fn, optimizer, batch_size, num_steps, eval_every):
    return make_minibatch_loop(
        loss_fn, optimizer, batch_size=batch_size, num_steps=num_steps, eval_every=eval_every
    )


def _check_count(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"`{name}` must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"`{name}` must be >= {low}, got {value}")
    return int(value)


def fit_minibatch(
    loss_fn: Callable[..., jax.Array],
    params: PyTree,
    *data: PyTree,
    batch_size: int,
    key,
    optimizer: optax.GradientTransformation | str | None = None,
    num_steps: int = 1000,
    eval_every: int = 0,
    opt_state=None,
    callback: Callable[[int, float, Any], Any] | None = None,
    verbose: bool = False,
    chunk_size: int | None = None,
    vmap_method: str = "auto",
) -> MinibatchResult:
    r"""Stochastic optimisation of ``loss_fn(params, *data)`` over random row subsets.

    Each step evaluates the loss and its gradient on ``batch_size`` rows of the data
    (every array in ``data`` is indexed along axis 0 with the same rows) and applies
    one optimizer update. Rows are drawn without replacement: each epoch is a fresh
    random permutation of the ``n`` rows cut into ``n // batch_size`` batches (the
    remainder is left out of that epoch). For MLKR and NCA the batch loss is the
    leave-one-out loss *within the batch*: a step costs ``O(batch_size^2)`` instead of
    ``O(n^2)``, at the price of a noisy, slightly biased gradient (each point sees
    ``batch_size - 1`` neighbours instead of ``n - 1``; see ``docs/scaling.md``).

    The whole run is one compiled ``jax.lax.while_loop``, the PRNG key in its carry
    (no host round-trip per step); with a ``callback`` or ``verbose`` it is resumed in
    chunks, one host sync per chunk. There is no convergence test: it runs
    ``num_steps`` updates (or stops at a non-finite batch loss, keeping the last
    finite parameters).

    Args:
        loss_fn: scalar loss ``loss_fn(params, *data)``, differentiable in ``params``.
        params: initial parameters (a pytree).
        *data: arrays sharing their first dimension ``n`` (the rows sampled).
            Other arguments of the loss go in with ``functools.partial``.
        batch_size: rows per step. ``batch_size >= n``: every step uses all the data,
            in its order (plain full-batch steps with ``optimizer``).
        key: ``jax.random`` key (the same key gives the same run).
        optimizer: an ``optax.GradientTransformation`` or the name of one (see
            :func:`fit`); default ``"adam"`` (``optax.adam(1e-2)``).
        num_steps: number of updates.
        eval_every: if positive, also evaluate the full-data loss every that many
            steps and at the end (``O(n^2)`` each for MLKR/NCA; inside the loop).
        opt_state: optimizer state to resume from.
        callback: ``callback(step, batch_loss, params)`` on the host after each chunk;
            returning ``True`` stops.
        verbose: show a ``tqdm`` progress bar.
        chunk_size: steps per chunk with ``callback`` / ``verbose`` (default
            ``max(1, num_steps // 100)``).
        vmap_method: ``"sequential"``, ``"batched"`` or ``"auto"`` (default:
            sequential on the CPU), as in :func:`fit`.

    Without ``callback`` and ``verbose`` it is traceable like :func:`fit` (``jax.jit``,
    ``jax.vmap`` over parameters, keys, data or loss arguments); under a trace the
    result's fields are arrays of their full length (``num_steps`` losses, every
    evaluation slot, NaN where a stopped run did not reach).

    Returns:
        :class:`MinibatchResult`.

    The compiled loop is cached per ``(loss_fn, optimizer, batch_size, num_steps,
    eval_every)`` and data shape, like :func:`fit`.

    Examples:
        >>> import jax, jax.numpy as jnp, optax, metricjax as mj
        >>> x = jnp.arange(100.0)[:, None]
        >>> loss = lambda w, x: jnp.mean((x - w) ** 2)
        >>> res = mj.fit_minibatch(loss, jnp.zeros(1), x, batch_size=10,
        ...                        key=jax.random.key(0), optimizer=optax.adam(0.5),
        ...                        num_steps=2000)
        >>> bool(abs(float(res.params[0]) - 49.5) < 5)
        True
    """
    batch_size = _check_count(batch_size, "batch_size", 1)
    num_steps = _check_count(num_steps, "num_steps", 1)
    eval_every = _check_count(eval_every, "eval_every", 0)
    _num_rows(data)  # validates the rows of the data
    method = _check_vmap_method(vmap_method)
    optimizer = resolve_optimizer(optimizer, "adam")
    params = _float_params(params)
    try:
        init, run = _cached_minibatch_loop(loss_fn, optimizer, batch_size, num_steps, eval_every)
    except TypeError:  # an unhashable loss or optimizer
        init, run = make_minibatch_loop(
            loss_fn, optimizer, batch_size=batch_size, num_steps=num_steps, eval_every=eval_every
        )
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    if callback is None and not verbose:
        oneshot = lambda p, k, s, stop, *d: run(init(p, k, *d, opt_state=s), stop, *d)
        args = (params, key, opt_state, np.int32(num_steps), *data)
        carry = _call(oneshot, method, _tracing(args), *args)
        if _traced(carry):  # inside jit / vmap: the arrays themselves, no host reads
            ev_steps = np.asarray(
                [*range(0, num_steps, eval_every), num_steps] if eval_every else [], np.int64
            )
            return MinibatchResult(
                carry.params, carry.history, ev_steps, carry.evals, carry.it, carry.opt_state,
                carry.key,
            )
    else:
        carry = init(params, key, *data, opt_state=opt_state)
        if _traced(carry):
            _refuse_host_features("fit_minibatch", verbose, callback)
        carry = _run_chunked(
            lambda c, stop: run(c, np.int32(stop), *data),
            carry,
            num_steps,
            chunk_size=chunk_size,
            verbose=verbose,
            callback=callback,
            stopped=lambda c: bool(c.stopped),
            loss_of=lambda c: float(np.asarray(c.history)[int(c.it) - 1]),
        )
    steps = int(carry.it)
    hist = np.asarray(carry.history)[:steps]
    if eval_every:
        ev_steps = np.asarray([*range(0, num_steps, eval_every), num_steps])
        ev = np.asarray(carry.evals)
        keep = ev_steps <= steps
        ev_steps, ev = ev_steps[keep], ev[keep]
        if steps < num_steps:  # stopped early: drop the unfilled final slot
            filled = ~np.isnan(ev)
            ev_steps, ev = ev_steps[filled], ev[filled]
    else:
        ev_steps, ev = np.zeros(0, np.int64), np.zeros(0, hist.dtype)
    return MinibatchResult(carry.params, hist, ev_steps, ev, steps, carry.opt_state, carry.key)
