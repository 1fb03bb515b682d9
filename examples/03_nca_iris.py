"""NCA on scikit-learn's wine data (or iris): k-nearest-neighbour accuracy in the learned space.

Neighbourhood Components Analysis (Goldberger et al., 2004) learns a linear map ``L``
that maximises the expected leave-one-out accuracy of a stochastic nearest-neighbour
classifier. Here ``mj.fit`` minimises ``metricjax.losses.nca_loss`` (minus the
expected number of correctly classified training points) with L-BFGS, for

* a full-rank map (``L`` is ``d x d``, started at the identity), and
* a 2-D projection (``n_components = 2``, started at the top two principal directions),

and a 3-nearest-neighbour classifier (scikit-learn's ``KNeighborsClassifier``) is
scored on the test set in each space, next to the Euclidean space, the 2-D PCA
projection and scikit-learn's own ``NeighborhoodComponentsAnalysis``.

Figure (``03_nca.png``): training curves, the test set in the 2-D NCA projection,
and in the 2-D PCA projection for comparison.

Run from the repository root::

    python examples/03_nca_iris.py                    # wine, 13 features, 3 classes
    python examples/03_nca_iris.py --dataset iris     # iris, 4 features, 3 classes
    python examples/03_nca_iris.py --max-iter 20 --out /tmp/nca
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_iris, load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import metricjax as mj  # noqa: E402
from metricjax.losses import nca_loss  # noqa: E402

DATASETS = {"wine": load_wine, "iris": load_iris}
K_NEIGHBOURS = 3


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-iter", type=int, default=200, help="L-BFGS iterations per fit")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="folder for the figure (created if missing)",
    )
    p.add_argument("--dataset", choices=sorted(DATASETS), default="wine")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument(
        "--no-sklearn",
        action="store_true",
        help="skip scikit-learn's NeighborhoodComponentsAnalysis",
    )
    return p.parse_args()


def knn_accuracy(transform, x_tr, y_tr, x_te, y_te):
    """Test accuracy of a 3-NN classifier on ``x @ transform.T``."""
    a = np.asarray(transform, np.float64)
    knn = KNeighborsClassifier(n_neighbors=K_NEIGHBOURS).fit(x_tr @ a.T, y_tr)
    return float(knn.score(x_te @ a.T, y_te))


def fit_nca(l0, x, y, num_classes, max_iter):
    """NCA with the functional API. Under ``jit`` the loss needs ``num_classes``."""
    loss = functools.partial(nca_loss, num_classes=num_classes)
    t0 = time.perf_counter()
    res = mj.fit(
        loss, l0, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32), max_iter=max_iter
    )
    res.params.block_until_ready()
    return res, time.perf_counter() - t0


def fit_sklearn(n_components, x, y, max_iter, seed):
    t0 = time.perf_counter()
    nca = NeighborhoodComponentsAnalysis(
        n_components=n_components, max_iter=max_iter, random_state=seed
    ).fit(x, y)
    return nca, time.perf_counter() - t0


@dataclass
class Row:
    label: str
    acc: float
    iters: int | None = None
    converged: bool | None = None
    expected: float | None = None  # NCA objective: expected LOO accuracy on train
    seconds: float | None = None


def print_table(rows):
    def cell(v, fmt, width):
        return f"{'':>{width}}" if v is None else f"{v:>{width}{fmt}}"

    print(
        f"{'method':<30} {'test acc':>8} {'iters':>6} {'converged':>9} "
        f"{'train E[correct]':>16} {'fit s':>6}"
    )
    for r in rows:
        print(
            f"{r.label:<30} {r.acc:>8.3f} {cell(r.iters, 'd', 6)} "
            f"{cell(None if r.converged is None else str(r.converged), 's', 9)} "
            f"{cell(r.expected, '.3f', 16)} {cell(r.seconds, '.1f', 6)}"
        )
    print(
        "train E[correct]: NCA's objective, the expected leave-one-out accuracy on the "
        "training set;\nfit s: metricjax times include the compilation of the training loop"
    )


def main():
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = DATASETS[args.dataset]()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.data, data.target, test_size=0.3, random_state=args.seed, stratify=data.target
    )
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    n, d = x_tr.shape
    num_classes = len(data.target_names)
    print(
        f"{args.dataset}: {n} train / {x_te.shape[0]} test points, {d} standardised "
        f"features, {num_classes} classes; {K_NEIGHBOURS}-NN test accuracy\n"
    )

    _, _, vt = np.linalg.svd(x_tr - x_tr.mean(axis=0), full_matrices=False)
    pca2 = vt[:2]
    starts = {"full": jnp.eye(d, dtype=jnp.float32), "2-D": jnp.asarray(pca2, jnp.float32)}
    fits = {
        name: fit_nca(l0, x_tr, y_tr, num_classes, args.max_iter) for name, l0 in starts.items()
    }

    acc = functools.partial(knn_accuracy, x_tr=x_tr, y_tr=y_tr, x_te=x_te, y_te=y_te)
    rows = [Row(f"Euclidean ({d}-D)", acc(np.eye(d))), Row("PCA, 2-D", acc(pca2))]
    for name, (res, secs) in fits.items():
        shape = f"full {d} x {d}" if name == "full" else "2-D"
        rows.append(
            Row(f"metricjax NCA, {shape}", acc(res.params), res.num_iter, res.converged,
                -float(res.loss_history[-1]) / n, secs)
        )  # fmt: skip
    if not args.no_sklearn:
        for k in (None, 2):
            sk, secs = fit_sklearn(k, x_tr, y_tr, args.max_iter, args.seed)
            # the NCA objective at scikit-learn's solution, for comparison
            loss = nca_loss(jnp.asarray(sk.components_, jnp.float32), x_tr.astype(np.float32), y_tr)
            rows.append(
                Row(f"scikit-learn NCA, {'full' if k is None else '2-D'}", acc(sk.components_),
                    sk.n_iter_, None, -float(loss) / n, secs)
            )  # fmt: skip
    print_table(rows)
    acc_nca = next(r.acc for r in rows if r.label == "metricjax NCA, 2-D")
    print(
        f"\n2-D NCA: {acc_nca:.3f} test accuracy vs {rows[0].acc:.3f} Euclidean in {d}-D "
        f"and {rows[1].acc:.3f} for 2-D PCA"
    )

    path = args.out / "03_nca.png"
    plot(fits, pca2, x_tr, y_tr, x_te, y_te, data.target_names, rows, path)
    print(f"saved figure: {path}")
    print(f"total time: {time.perf_counter() - T_START:.1f} s (imports and compilation included)")


def plot(fits, pca2, x_tr, y_tr, x_te, y_te, class_names, rows, path):
    n = x_tr.shape[0]
    acc = {r.label: r.acc for r in rows}
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.5))
    for name, (res, _) in fits.items():
        ax[0].plot(-np.asarray(res.loss_history) / n, marker=".", label=f"NCA {name}")
    ax[0].set_xlabel("L-BFGS iteration")
    ax[0].set_ylabel("expected LOO accuracy on train (= -loss / n)")
    ax[0].set_title("Training curve")
    ax[0].legend()
    ax[0].grid(alpha=0.3)

    nca = np.asarray(fits["2-D"][0].params, np.float64)
    panels = [
        (ax[1], nca, f"2-D NCA (3-NN test acc {acc['metricjax NCA, 2-D']:.3f})"),
        (ax[2], pca2, f"2-D PCA (3-NN test acc {acc['PCA, 2-D']:.3f})"),
    ]
    for a, transform, title in panels:
        z_tr, z_te = x_tr @ transform.T, x_te @ transform.T
        for c, name in enumerate(class_names):
            a.scatter(*z_tr[y_tr == c].T, s=14, color=f"C{c}", alpha=0.25, lw=0)
            a.scatter(*z_te[y_te == c].T, s=26, color=f"C{c}", edgecolor="k", lw=0.5, label=name)
        a.set_title(f"{title}\ntest points edged, training points faint", fontsize=10)
        a.set_xlabel("component 1")
        a.set_ylabel("component 2")
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
