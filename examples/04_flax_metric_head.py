"""A small network with a learnable metric head (flax.nnx) on scikit-learn's digits.

A two-layer MLP ``f`` maps the 64 pixels of an 8 x 8 digit to 32 features, and a
:class:`metricjax.nn.MahalanobisMetric` head learns a map ``L`` (``k x 32``) on top:
the learned squared distance is ``||L f(x) - L f(x')||^2``, computed by
``metricjax.pairwise_sq_transformed`` with its closed-form gradient. Network and
metric are trained together with optax (Adam) on mini-batches, under ``nnx.jit``,
with an NCA-style soft-neighbour loss: in each batch every point picks a neighbour
with probability ``p_ij ~ exp(-D_ij)`` (``j != i``), and the loss is minus the mean
log-probability of picking one of its own class,

    loss = -mean_i log sum_{j: c_j = c_i} p_ij.

A 3-nearest-neighbour classifier (scikit-learn) is then scored on the test set in the
learned ``k``-dimensional embedding ``L f(x)``, next to the raw pixels (64-D) and a
``k``-dimensional PCA of them.

Unless ``--dim 2`` is asked for, a second network with a 2-D head is trained as well,
to be looked at. Figure (``04_flax_metric_head.png``, drawn with ``metricjax.plot``):
the training losses per mini-batch, the test set in the 2-D PCA projection of the
pixels, and in the learned 2-D space.

Run from the repository root::

    python examples/04_flax_metric_head.py                   # 40 epochs, 8-D embedding
    python examples/04_flax_metric_head.py --dim 2           # a 2-D embedding
    python examples/04_flax_metric_head.py --max-iter 20 --out /tmp/head
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from metricjax.nn import MahalanobisMetric  # noqa: E402
from metricjax.plot import plot_embedding, plot_loss  # noqa: E402

K_NEIGHBOURS = 3


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40, help="passes over the training set")
    p.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help="cap on the optimizer steps (mini-batches) in total; default: no cap",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="folder for the figure (created if missing)",
    )
    p.add_argument("--dim", type=int, default=8, help="embedding dimension k (rows of L)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, init and batches")
    return p.parse_args()


class MetricNet(nnx.Module):
    """MLP feature extractor ``f`` followed by a Mahalanobis metric head ``L``."""

    def __init__(self, d_in: int, dim: int, *, hidden: int = 128, features: int = 32, rngs):
        self.hidden = nnx.Linear(d_in, hidden, rngs=rngs)
        self.features = nnx.Linear(hidden, features, rngs=rngs)
        self.head = MahalanobisMetric(features, dim, init="orthogonal", rngs=rngs)

    def f(self, x):
        return self.features(nnx.relu(self.hidden(x)))

    def __call__(self, x, y=None):
        """Squared learned distances ``||L f(x_i) - L f(y_j)||^2``, shape ``(n, m)``."""
        return self.head(self.f(x), None if y is None else self.f(y))

    def embed(self, x):
        """The embedding ``L f(x)``, shape ``(n, k)``."""
        return self.head.embed(self.f(x))


def soft_neighbour_loss(model, x, labels):
    """NCA-style loss on a batch: -mean_i log P(i picks a neighbour of its class)."""
    d = model(x)
    n = d.shape[0]
    eye = jnp.eye(n, dtype=bool)
    log_p = jax.nn.log_softmax(jnp.where(eye, -jnp.inf, -d), axis=1)
    same = (labels[:, None] == labels[None, :]) & ~eye
    log_hit = jax.nn.logsumexp(jnp.where(same, log_p, -jnp.inf), axis=1)
    valid = jnp.any(same, axis=1)  # points without a classmate in the batch are skipped
    return -jnp.sum(jnp.where(valid, log_hit, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


@nnx.jit
def train_step(model, optimizer, x, labels):
    loss, grads = nnx.value_and_grad(soft_neighbour_loss)(model, x, labels)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def embed(model, x):
    return model.embed(x)


def train(model, x, y, *, epochs, max_iter, batch_size, lr, seed):
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)
    rng = np.random.default_rng(seed)
    n_batches = max(1, x.shape[0] // batch_size)
    total = epochs * n_batches if max_iter is None else min(max_iter, epochs * n_batches)
    losses = []
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    while len(losses) < total:
        order = rng.permutation(x.shape[0])[: n_batches * batch_size].reshape(n_batches, -1)
        for idx in order:
            if len(losses) >= total:
                break
            losses.append(train_step(model, optimizer, x[idx], y[idx]))
        epoch = len(losses) // n_batches
        if epoch % 10 == 0 or len(losses) >= total:
            print(f"  step {len(losses):>4} (epoch {epoch:>2}): batch loss {float(losses[-1]):.4f}")
    return np.asarray(jax.device_get(losses), dtype=np.float64)


def knn_accuracy(z_tr, y_tr, z_te, y_te):
    knn = KNeighborsClassifier(n_neighbors=K_NEIGHBOURS).fit(z_tr, y_tr)
    return float(knn.score(z_te, y_te))


def main():
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        digits.data, digits.target, test_size=0.3, random_state=args.seed, stratify=digits.target
    )
    scaler = StandardScaler().fit(x_tr)
    s_tr, s_te = scaler.transform(x_tr), scaler.transform(x_te)
    k = args.dim
    print(
        f"digits: {x_tr.shape[0]} train / {x_te.shape[0]} test images, {x_tr.shape[1]} pixels, "
        f"10 classes; embedding dimension k = {k}\n"
    )

    # the k-D head for the accuracy table, and a 2-D head to look at (unless k = 2)
    dims = [k] if k == 2 else [k, 2]
    models, losses = {}, {}
    for dim in dims:
        print(f"training MLP 64 -> 128 -> 32 + MahalanobisMetric(32 -> {dim}) with Adam")
        t0 = time.perf_counter()
        models[dim] = MetricNet(x_tr.shape[1], dim, rngs=nnx.Rngs(args.seed))
        losses[dim] = train(
            models[dim], s_tr, y_tr, epochs=args.epochs, max_iter=args.max_iter,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        )  # fmt: skip
        secs = time.perf_counter() - t0
        print(f"  {losses[dim].size} steps in {secs:.1f} s (compilation included)\n")

    def embedding(dim, x):
        return np.asarray(embed(models[dim], jnp.asarray(x, jnp.float32)))

    rows = [(f"raw pixels ({x_tr.shape[1]}-D)", knn_accuracy(x_tr, y_tr, x_te, y_te))]
    acc = {}
    for dim in sorted(dims):
        pca = PCA(n_components=dim, random_state=args.seed).fit(x_tr)
        acc["pca", dim] = knn_accuracy(pca.transform(x_tr), y_tr, pca.transform(x_te), y_te)
        acc["head", dim] = knn_accuracy(embedding(dim, s_tr), y_tr, embedding(dim, s_te), y_te)
        rows += [(f"PCA of the pixels ({dim}-D)", acc["pca", dim]),
                 (f"learned metric head ({dim}-D)", acc["head", dim])]  # fmt: skip
    print(f"{'space':<32} {f'{K_NEIGHBOURS}-NN test acc':>14}")
    for label, a in rows:
        print(f"{label:<32} {a:>14.3f}")
    print(
        f"\nmetric head: {acc['head', k]:.3f} test accuracy in {k}-D vs {rows[0][1]:.3f} on "
        f"raw pixels ({x_tr.shape[1]}-D) and {acc['pca', k]:.3f} for {k}-D PCA"
    )

    path = args.out / "04_flax_metric_head.png"
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.8))
    plot_loss({f"{dim}-D head": losses[dim] for dim in dims}, ax=ax[0], yscale="log",
              title="Soft-neighbour loss per mini-batch", lw=1)  # fmt: skip
    ax[0].set_xlabel("Adam step")
    plot_embedding(x_te, y_te, ax=ax[1], s=12,
                   title=f"Test digits, 2-D PCA of the pixels (3-NN acc {acc['pca', 2]:.3f})")  # fmt: skip
    plot_embedding(s_te, y_te, transform=lambda x: embedding(2, x), ax=ax[2], s=12,
                   title=f"Test digits, learned 2-D space (3-NN acc {acc['head', 2]:.3f})")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved figure: {path}")
    print(f"total time: {time.perf_counter() - T_START:.1f} s (imports and compilation included)")


if __name__ == "__main__":
    main()
