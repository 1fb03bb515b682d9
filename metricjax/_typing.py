"""Array annotations of the public API (jaxtyping), checked at test time.

Shapes are named as in the docstrings: ``n`` / ``m`` points, ``d`` input features,
``k`` embedding dimension. Inputs are ``ArrayLike`` (JAX or NumPy arrays, scalars)
of any real dtype — the functions promote integers and refuse complex input
themselves, with messages that name the argument — and outputs are ``jax.Array``.
The test suite runs with jaxtyping's import hook and beartype, so every annotated
call in the tests is checked against these shapes (``pyproject.toml``, ``tests/``).
"""

from collections.abc import Sequence
from typing import Any

from jaxtyping import Array, ArrayLike, Float, Int, Shaped

#: ``(n, d)`` points, one per row.
Points = Shaped[ArrayLike, "n d"]
#: ``(m, d)`` second set of points.
OtherPoints = Shaped[ArrayLike, "m d"]
#: ``(d, d)`` Mahalanobis matrix ``M``.
Metric = Shaped[ArrayLike, "d d"]
#: ``(k, d)`` linear map ``L`` (``M = L^T L``).
Transform = Shaped[ArrayLike, "k d"]
#: ``(n, m)`` pairwise distances.
Pairwise = Float[Array, "n m"]
#: a scalar loss.
Scalar = Float[Array, ""]
#: ``(n,)`` or ``(n, c)`` regression targets.
Targets = Shaped[ArrayLike, " n *c"]
#: ``(n,)`` class labels: an array, or on the host any sequence of hashable values.
Labels = Shaped[ArrayLike, " n"] | Sequence[Any]
#: ``(n,)`` sample weights (0: the point is left out, e.g. of a cross-validation fold).
SampleWeight = Shaped[ArrayLike, " n"]
#: ``(n, k_t)`` target-neighbour indices (LMNN).
TargetNeighbors = Int[ArrayLike, "n k_t"]
#: data an estimator accepts: NumPy or JAX arrays, lists, pandas frames (validated
#: by scikit-learn's ``check_array``).
DataLike = Any
#: a pytree of parameters.
PyTree = Any

__all__ = [
    "Array",
    "ArrayLike",
    "DataLike",
    "Float",
    "Int",
    "Labels",
    "Metric",
    "OtherPoints",
    "Pairwise",
    "Points",
    "PyTree",
    "Scalar",
    "Shaped",
    "TargetNeighbors",
    "Targets",
    "Transform",
]
