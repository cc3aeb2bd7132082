"""The first UMAP of 50,000 gradients: its time in a fresh process, and its quality against the old layout.

The gradients are those ``benchmarks/ui_scale.py`` makes the dashboard compute: 50,000
samples of 100 Gaussian classes x 128 features (10% of the labels flipped), the default MLP
trained 5 epochs, its last layer's closed-form gradients (1,700 coordinates, projected to 256
for layouts). Each layout runs in a **new Python process**, as the first UMAP after a
restart does (timed from the call, UMAP's import included; torch and ogdash are loaded
before, as in the app):

- ``new``: ``ogdash.engine.layout2d`` today (50 principal components, UMAP fitted on a
  random 5,000 with scikit-learn's neighbours, the others placed among their nearest fitted
  samples, numba's compiled code kept on disk);
- ``old``: the layout before (UMAP fitted on a random 10,000 of the 256 coordinates, the
  others placed by UMAP's ``transform``), kept here as the reference.

``--cold`` also runs each with an empty numba cache (``NUMBA_CACHE_DIR``), the very first
UMAP on a machine. Quality, on 2,000 random samples against all 50,000: kNN preservation
(the share of each sample's 10 nearest neighbours in gradient space that are among its 10
nearest on the plot) and scikit-learn's trustworthiness (10 neighbours, on 5,000 random
samples).

    python benchmarks/layout.py [--n 50000] [--cold]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gradient_matrix(n: int, folder: Path) -> Path:
    """The (n, 256) matrix the dashboard lays out, written to ``folder``; models and gradients via the disk cache."""
    from ogdash.core.cache import DiskCache
    from ogdash.data.dataset import make_dataset
    from ogdash.engine.layout2d import _matrix
    from ogdash.models.zoo import ModelSpec
    from ogdash.pipeline import gradients, train_model

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (100, 128)).astype(np.float32)
    y_true = rng.integers(0, 100, n)
    X = centres[y_true] + rng.normal(0, 0.8, (n, 128)).astype(np.float32)
    y = y_true.copy()
    flip = rng.random(n) < 0.1
    y[flip] = (y[flip] + rng.integers(1, 100, int(flip.sum()))) % 100
    train = make_dataset("layout", X, y, y_true=y_true)
    cache = DiskCache()
    g = gradients(train_model(ModelSpec("mlp", epochs=5), train, 0, cache), train, cache=cache)
    path = folder / "G.npy"
    np.save(path, _matrix(g))
    return path


def old_layout(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """The layout before: UMAP fitted on a seeded random 10,000, the others placed by its ``transform``."""
    import umap

    from ogdash.engine.layout2d import umap_subset

    fit_on = umap_subset(len(X), seed, 10_000)
    reducer = umap.UMAP(n_components=2, n_neighbors=15, random_state=seed, n_jobs=1, n_epochs=200).fit(X[fit_on])
    out = np.empty((len(X), 2))
    out[fit_on] = reducer.embedding_
    rest = np.setdiff1d(np.arange(len(X)), fit_on)
    for start in range(0, len(rest), 5_000):
        part = rest[start:start + 5_000]
        out[part] = reducer.transform(X[part])
    return out


def child(which: str, matrix: str, out: str) -> None:
    """Run one layout in this (fresh) process and save its coordinates and seconds: from the call on, UMAP's import
    included (the app has torch and ogdash loaded already, not UMAP)."""
    from ogdash.engine.layout2d import layout_2d

    X = np.load(matrix)
    t = time.perf_counter()
    coords = old_layout(X) if which == "old" else layout_2d(X, "umap")[0]
    np.savez(out, coords=coords, seconds=time.perf_counter() - t)


def knn_preservation(X: np.ndarray, Y: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    from sklearn.neighbors import NearestNeighbors

    a = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X[queries], return_distance=False)[:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y[queries], return_distance=False)[:, 1:]
    return float(np.mean([len(set(p) & set(q)) / k for p, q in zip(a, b)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--cold", action="store_true", help="also run each with an empty numba cache")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(*args.child)
    from sklearn.manifold import trustworthiness

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        matrix = gradient_matrix(args.n, folder)
        X = np.load(matrix)
        rng = np.random.default_rng(1)
        queries = rng.choice(len(X), 2_000, replace=False)
        sub = rng.choice(len(X), 5_000, replace=False)
        runs = [("new", False), ("old", False)] + ([("new", True), ("old", True)] if args.cold else [])
        print(f"{args.n:,} gradients of {X.shape[1]} coordinates; each layout in a new process "
              f"({os.cpu_count()} cores)\n")
        print("| layout | numba cache | seconds | kNN preservation (10) | trustworthiness (10) | load average |")
        print("|---|---|---|---|---|---|")
        for which, cold in runs:
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            if cold:
                env["NUMBA_CACHE_DIR"] = str(folder / f"numba_{which}")
            out = folder / f"{which}_{cold}.npz"
            subprocess.run([sys.executable, __file__, "--child", which, str(matrix), str(out)], env=env, check=True,
                           stderr=subprocess.DEVNULL)
            r = np.load(out)
            Y = r["coords"]
            print(f"| {which} | {'empty' if cold else 'warm'} | {float(r['seconds']):.1f} | "
                  f"{knn_preservation(X, Y, queries):.3f} | {trustworthiness(X[sub], Y[sub], n_neighbors=10):.3f} | "
                  f"{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
