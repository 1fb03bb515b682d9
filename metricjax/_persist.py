r"""Save and restore learned parameters and optimizer state (to resume a fit).

The format is one NumPy ``.npz`` file: every array leaf of ``params`` and of
``opt_state`` is stored under its own name (``params/0``, ``params/1``, ...,
``opt_state/0``, ...) with its exact dtype and shape, next to a JSON header
(``__metricjax__``) that records the tree structures, the leaf dtypes and the
user's metadata.

Why ``.npz`` and not orbax: orbax-checkpoint is a heavy dependency (tensorstore,
asyncio machinery) built for sharded, asynchronous, multi-host checkpoints of large
models. The parameters here are a few small matrices (plus an optimizer state of
the same size), so a single file that NumPy alone reads is enough, portable and
inspectable (``numpy.load(path)`` lists every array; the header is plain JSON).
It is also safe: loading never unpickles (``allow_pickle=False``) and never
imports code named in the file.

Tree structures: containers made only of ``dict`` (string keys), ``list``, ``tuple``
and ``None`` are rebuilt from the header. Anything else (optax's ``NamedTuple``
states, ``nnx.State``, dataclasses) is rebuilt from a template passed as ``like``
(e.g. ``optimizer.init(params)``): its structure must equal the saved one, and the
saved arrays replace its leaves.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["save_state", "load_state", "SavedState"]

_HEADER = "__metricjax__"
_FORMAT = "metricjax-state"
_VERSION = 1
_PARTS = ("params", "opt_state")


class SavedState(NamedTuple):
    """What :func:`load_state` returns.

    Attributes:
        params: the parameters, as saved.
        opt_state: the optimizer state (``None`` if none was saved).
        meta: the metadata keyword arguments given to :func:`save_state` (a dict).
    """

    params: Any
    opt_state: Any
    meta: dict


# ----------------------------------------------------------------------------------
# tree structure <-> JSON, for plain containers
# ----------------------------------------------------------------------------------
class _Leaf:
    """Marker for a leaf position in a plain-container skeleton."""


def _skeleton(tree):
    """JSON description of a tree of dict/list/tuple/None, or ``None`` if it has others."""
    if tree is None:
        return {"t": "none"}
    if isinstance(tree, dict) and type(tree) is dict:
        if not all(isinstance(k, str) for k in tree):
            return None
        items = {}
        for k in sorted(tree):  # jax flattens dicts in sorted key order
            sub = _skeleton(tree[k])
            if sub is None:
                return None
            items[k] = sub
        return {"t": "dict", "items": items, "order": list(tree)}
    if type(tree) in (list, tuple):
        subs = [_skeleton(v) for v in tree]
        if any(s is None for s in subs):
            return None
        return {"t": type(tree).__name__, "items": subs}
    if _is_leaf(tree):
        return {"t": "leaf"}
    return None


def _is_leaf(x) -> bool:
    leaves = jax.tree.leaves(x)
    return len(leaves) == 1 and leaves[0] is x


def _from_skeleton(sk, leaves):
    t = sk["t"]
    if t == "none":
        return None
    if t == "leaf":
        return next(leaves)
    if t == "dict":
        built = {k: _from_skeleton(sk["items"][k], leaves) for k in sorted(sk["items"])}
        return {k: built[k] for k in sk.get("order", built)}
    items = [_from_skeleton(v, leaves) for v in sk["items"]]
    return items if t == "list" else tuple(items)


# ----------------------------------------------------------------------------------
# leaves <-> NumPy arrays
# ----------------------------------------------------------------------------------
def _leaf_to_numpy(leaf, where: str):
    """``(array to store, leaf record)``; the record keeps the exact dtype."""
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(leaf))
        return data, {"kind": "key", "impl": str(jax.random.key_impl(leaf))}
    try:
        arr = np.asarray(leaf)
    except Exception as err:
        raise TypeError(f"{where}: cannot store a leaf of type {type(leaf).__name__}") from err
    if arr.dtype.kind not in "biufc":
        if arr.dtype.kind == "V" and arr.dtype.names is None and arr.dtype.itemsize in (1, 2):
            # ml_dtypes (bfloat16, float8_*): store the raw bits, keep the name
            bits = arr.view(np.dtype(f"uint{8 * arr.dtype.itemsize}"))
            return bits, {"kind": "bits", "dtype": arr.dtype.name}
        raise TypeError(
            f"{where}: cannot store a leaf of dtype {arr.dtype} ({type(leaf).__name__}); "
            "leaves must be numeric arrays or scalars"
        )
    return arr, {"kind": "array", "dtype": arr.dtype.str}


def _leaf_from_numpy(arr, rec):
    if rec["kind"] == "key":
        return jax.random.wrap_key_data(jnp.asarray(arr), impl=rec["impl"])
    if rec["kind"] == "bits":
        return arr.view(jnp.dtype(rec["dtype"]))
    return arr


def _json_default(obj):
    if isinstance(obj, (np.generic, np.ndarray)) or (
        isinstance(obj, jax.Array) and obj.dtype.kind in "biuf"
    ):
        return np.asarray(obj).tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(
        f"metadata values must be JSON-serialisable (numbers, strings, lists, dicts, "
        f"NumPy arrays), got {type(obj).__name__}"
    )


# ----------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------
def save_state(path, params, opt_state=None, **meta) -> Path:
    r"""Save parameters (and optionally an optimizer state) to a ``.npz`` file.

    Every array leaf is stored with its exact dtype and shape (``float64`` stays
    ``float64``, the ``int32`` step counters of optax stay ``int32``; JAX PRNG keys
    and ``bfloat16`` are supported). The tree structures go into a JSON header. The
    file is written to a temporary name and renamed, so an interrupted save never
    leaves a truncated file behind (the previous checkpoint, if any, survives).

    Args:
        path: file to write (``str`` or ``os.PathLike``), used as given (no suffix is
            added; ``.npz`` is the natural one). Parent folders must exist.
        params: a pytree of arrays, e.g. ``FitResult.params`` or ``nnx.state(model)``.
        opt_state: an optax state to resume from, e.g. ``FitResult.opt_state``;
            ``None`` saves none.
        **meta: JSON-serialisable metadata stored in the header (iteration counts,
            hyperparameters, a loss history, ...); NumPy values become lists.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        TypeError: a leaf that is not numeric, or metadata that is not serialisable.
        FileNotFoundError: the folder of ``path`` does not exist (named in the message).

    Examples:
        >>> import jax.numpy as jnp, optax, metricjax as mj, tempfile, os
        >>> opt = optax.adam(1e-2)
        >>> L = jnp.eye(2)
        >>> path = os.path.join(tempfile.mkdtemp(), "fit.npz")
        >>> _ = mj.save_state(path, L, opt.init(L), num_iter=0)
        >>> state = mj.load_state(path, like=opt.init(L))
        >>> state.params.tolist(), state.meta
        ([[1.0, 0.0], [0.0, 1.0]], {'num_iter': 0})
    """
    path = Path(os.fspath(path))
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {"format": _FORMAT, "version": _VERSION}
    for name, tree in zip(_PARTS, (params, opt_state)):
        if tree is None and name == "opt_state":
            header[name] = None
            continue
        leaves, treedef = jax.tree.flatten(tree)
        records = []
        for i, leaf in enumerate(leaves):
            arr, rec = _leaf_to_numpy(leaf, f"{name} leaf {i}")
            rec["shape"] = list(arr.shape)
            arrays[f"{name}/{i}"] = arr
            records.append(rec)
        header[name] = {
            "treedef": str(treedef),
            "skeleton": _skeleton(tree),
            "leaves": records,
        }
    header["meta"] = meta
    text = json.dumps(header, default=_json_default)
    arrays[_HEADER] = np.array(text)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot save to {os.fspath(path)!r}: the folder {os.fspath(folder)!r} does not exist "
            "(create it first, e.g. with os.makedirs)"
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load_state(path, like=None, *, params_like=None) -> SavedState:
    r"""Load what :func:`save_state` wrote, e.g. to resume a fit.

    Arrays come back as NumPy arrays with their saved dtypes (JAX converts them on
    first use; with JAX's default 32-bit mode a saved ``float64`` array becomes
    ``float32`` at that point, as any NumPy input does). PRNG keys come back as JAX
    key arrays.

    Args:
        path: the file written by :func:`save_state`.
        like: template of the optimizer state, e.g. ``optimizer.init(params)`` with
            the same optimizer: its tree structure must equal the saved one and its
            leaves are replaced by the saved arrays. Needed when the state has
            structure other than dicts, lists and tuples (every optax state).
        params_like: template of the parameters, needed only when they are not a
            plain array or a dict/list/tuple of arrays (e.g. ``nnx.state(model)``).

    Returns:
        :class:`SavedState` ``(params, opt_state, meta)``; resume with
        ``metricjax.fit(loss, state.params, ..., optimizer=optimizer,
        opt_state=state.opt_state)``.

    Raises:
        ValueError: the file is not a metricjax state file, the template's structure
            or leaf shapes differ from the saved ones, or a template is needed.
        FileNotFoundError: no file at ``path``.
    """
    path = Path(os.fspath(path))
    with np.load(path, allow_pickle=False) as data:
        if _HEADER not in data.files:
            raise ValueError(f"{path} is not a metricjax state file (no {_HEADER!r} entry)")
        header = json.loads(str(data[_HEADER]))
        if header.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a metricjax state file")
        if int(header.get("version", 0)) > _VERSION:
            raise ValueError(
                f"{path} was written by a newer metricjax (format version "
                f"{header['version']} > {_VERSION}); upgrade metricjax to read it"
            )
        trees = {}
        for name, template in zip(_PARTS, (params_like, like)):
            rec = header[name]
            if rec is None:
                if template is not None:
                    raise ValueError(f"{path} holds no {name}, but a template was given for it")
                trees[name] = None
                continue
            leaves = [_leaf_from_numpy(data[f"{name}/{i}"], r) for i, r in enumerate(rec["leaves"])]
            trees[name] = _rebuild(name, rec, leaves, template, path)
    return SavedState(trees["params"], trees["opt_state"], header.get("meta", {}))


def _rebuild(name: str, rec, leaves, template, path):
    arg = "like" if name == "opt_state" else "params_like"
    if template is None:
        if rec["skeleton"] is None:
            raise ValueError(
                f"the {name} saved in {path} has a custom tree structure "
                f"({_short(rec['treedef'])}); pass a template as `{arg}=`"
                + (" (e.g. optimizer.init(params))" if name == "opt_state" else "")
            )
        return _from_skeleton(rec["skeleton"], iter(leaves))
    t_leaves, t_def = jax.tree.flatten(template)
    if str(t_def) != rec["treedef"] or len(t_leaves) != len(leaves):
        raise ValueError(
            f"`{arg}` does not match the {name} saved in {path}:\n"
            f"  saved:    {_short(rec['treedef'])}\n"
            f"  template: {_short(str(t_def))}\n"
            "use the same optimizer (and parameter shapes) as the saved fit"
        )
    for i, (t, a) in enumerate(zip(t_leaves, leaves)):
        if tuple(np.shape(t)) != tuple(np.shape(a)) and not _is_key(t):
            raise ValueError(
                f"`{arg}` does not match the {name} saved in {path}: leaf {i} has shape "
                f"{tuple(np.shape(a))} in the file but {tuple(np.shape(t))} in the template"
            )
    return jax.tree.unflatten(t_def, leaves)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
