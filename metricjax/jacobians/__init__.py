"""Full Jacobians of the distance matrices: closed form, or ``jacfwd`` / ``jacrev`` references.

``[i, j, k, l] = dD_ij / d(arg)_kl`` for ``arg`` in ``x``, ``metric``, ``transform``.
"""

from metricjax._jacobians import wrt_metric as wrt_metric
from metricjax._jacobians import wrt_transform as wrt_transform
from metricjax._jacobians import wrt_x as wrt_x

__all__ = ["wrt_x", "wrt_metric", "wrt_transform"]
