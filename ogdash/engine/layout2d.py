"""2-D layouts of gradient space for plotting: raw (when 2-D), PCA, or UMAP.

PCA goes through the (dim x dim) covariance, so 50,000 gradients take well under a second.
UMAP on tens of thousands of points takes minutes on a small machine: above ``UMAP_FIT_MAX``
samples it is fitted on a seeded random subset and the other samples are placed by the fitted
model's ``transform``, so every sample still gets a position. ``cached_layout`` keeps a
layout on disk, so a restart does not compute it again.
"""
from __future__ import annotations

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress, report
from ogdash.engine.gradients import GradientSet, project

LAYOUTS = ("pca", "umap")
# Layouts run on at most this many coordinates; wider gradients are projected first.
MAX_LAYOUT_DIM = 1024
# UMAP is fitted on at most this many samples; the others are placed by its transform.
UMAP_FIT_MAX = 10_000
TRANSFORM_CHUNK = 5_000


def _matrix(G) -> np.ndarray:
    if isinstance(G, GradientSet):
        if not G.projected and G.dim > MAX_LAYOUT_DIM:
            G = project(G, 256, seed=0)
        return np.asarray(G.matrix(), dtype=np.float32)
    return np.asarray(G, dtype=np.float32)


def umap_subset(n: int, seed: int = 0, limit: int = UMAP_FIT_MAX) -> np.ndarray | None:
    """Sorted positions UMAP is fitted on (a seeded random ``limit`` of ``n``), or None when it takes them all."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _pca(X: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    from sklearn.decomposition import PCA

    # the covariance's eigenvectors: one (dim x dim) matrix, whatever the number of samples
    solver = "covariance_eigh" if X.shape[0] > 2 * X.shape[1] else "auto"
    pca = PCA(n_components=2, random_state=seed, svd_solver=solver).fit(X)
    var = pca.explained_variance_ratio_
    return pca.transform(X), f"PCA of the gradients (PC1 {var[0]:.0%}, PC2 {var[1]:.0%} of variance)"


def _umap(X: np.ndarray, seed: int, progress: Progress) -> tuple[np.ndarray, str]:
    import umap

    fit_on = umap_subset(len(X), seed)
    fit_X = X if fit_on is None else X[fit_on]
    n_neighbors = int(min(15, max(2, len(fit_X) - 1)))
    report(progress, 0.05, f"fitting UMAP on {len(fit_X):,} samples")
    # 200 epochs, what UMAP itself takes above 10,000 samples (it takes 500 at or below)
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed, n_jobs=1,
                        n_epochs=None if fit_on is None else 200).fit(fit_X)
    if fit_on is None:
        return reducer.embedding_.astype(np.float64), "UMAP of the gradients"
    out = np.empty((len(X), 2))
    out[fit_on] = reducer.embedding_
    rest = np.setdiff1d(np.arange(len(X)), fit_on)
    for start in range(0, len(rest), TRANSFORM_CHUNK):
        end = min(start + TRANSFORM_CHUNK, len(rest))
        report(progress, 0.5 + 0.5 * start / len(rest), f"placing samples {start:,}–{end:,} of {len(rest):,} others")
        part = rest[start:start + TRANSFORM_CHUNK]
        out[part] = reducer.transform(X[part])
    return out, f"UMAP of the gradients (fitted on a random {len(fit_on):,} of {len(X):,}, the others placed by it)"


def layout_2d(G, method: str = "pca", seed: int = 0, progress: Progress = None) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and a description of what the axes are.

    A gradient that is already 2-D is returned as is (the paper's Figure 1 D/H). ``progress(fraction,
    message)``, if given, hears how far a UMAP has got.
    """
    if method not in LAYOUTS:
        raise OgdashError(f"unknown layout {method!r}; choose one of {LAYOUTS}.")
    X = _matrix(G)
    if X.shape[1] == 2:
        return X.astype(np.float64), "raw gradient coordinates"
    if X.shape[1] < 2 or len(X) < 2:
        raise OgdashError("a layout needs at least two samples and two gradient coordinates.")
    if method == "pca":
        return _pca(X, seed)
    out = _umap(X, seed, progress)
    report(progress, 1.0, "done")
    return out


def cached_layout(G, method: str, cache, key: str, seed: int = 0, progress: Progress = None) -> tuple[np.ndarray, str]:
    """``layout_2d`` behind the disk cache ``cache`` (``ogdash.core.cache.DiskCache``) under ``key``, which must
    name the gradients (their data, weights and layer); the method and seed are added to it."""
    from ogdash.core.cache import cache_key

    entry = cache_key(key, method, seed)
    hit = cache.load("layouts", entry, mmap=False)
    if hit is not None and "coords" in hit and "axis" in hit:
        return np.asarray(hit["coords"], dtype=np.float64), str(hit["axis"])
    coords, axis = layout_2d(G, method, seed, progress)
    cache.save("layouts", entry, {"coords": coords, "axis": axis})
    return coords, axis
