"""2-D layouts of gradient space for plotting: raw (when 2-D), PCA, or UMAP.

PCA goes through the (dim x dim) covariance, so 50,000 gradients take well under a second.

UMAP on tens of thousands of points took 60-78 s the first time in a process on this 2-core
machine, most of it numba compiling UMAP's code (its ``transform`` alone compiled for minutes
under load) rather than computing. So the layout (1) reduces the gradients to ``UMAP_DIMS``
principal components first, (2) fits UMAP on a seeded random ``UMAP_FIT_MAX`` of them with
a neighbour graph computed by scikit-learn (no numba), all on one thread, (3) places every other sample at the
distance-weighted mean of its ``PLACE_NEIGHBOURS`` nearest fitted samples' positions instead
of ``transform``, and (4) asks numba to cache UMAP's compiled code on disk
(``_cache_umap_compiles``), so only the first process ever compiles it. At 50,000 samples
its kNN preservation and trustworthiness match the old layout's within a few hundredths
(``benchmarks/layout.py``). ``cached_layout`` keeps a layout on disk, so a restart does not
compute it again.
"""
from __future__ import annotations

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress, report
from ogdash.engine.gradients import GradientSet, project

LAYOUTS = ("pca", "umap")
# Layouts run on at most this many coordinates; wider gradients are projected first.
MAX_LAYOUT_DIM = 1024
# UMAP is fitted on at most this many samples; the others are placed by their fitted neighbours.
UMAP_FIT_MAX = 5_000
UMAP_DIMS = 50  # principal components UMAP and the placement work on
UMAP_NEIGHBOURS = 15
PLACE_NEIGHBOURS = 10
PLACE_CHUNK = 5_000


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


def _cache_umap_compiles() -> None:
    """Let numba keep UMAP's compiled functions on disk (UMAP compiles them without ``cache=True``), so a new
    process loads them in a second or two instead of compiling for tens of seconds. A numba without this
    method, or a function it cannot cache, just compiles as before."""
    import umap.layouts
    import umap.spectral
    import umap.umap_
    import umap.utils

    for module in (umap.umap_, umap.layouts, umap.spectral, umap.utils):
        for f in vars(module).values():
            if callable(getattr(f, "enable_caching", None)) and type(getattr(f, "_cache", None)).__name__ == "NullCache":
                try:
                    f.enable_caching()
                except Exception:  # noqa: BLE001 - an optimisation only: never fail a layout over it
                    pass


def _principal(X: np.ndarray, k: int) -> np.ndarray:
    """X (n, d) on its first ``k`` principal components (as it is when d <= k)."""
    if X.shape[1] <= k:
        return X
    Xc = X - X.mean(0)
    values, vectors = np.linalg.eigh((Xc.T @ Xc).astype(np.float64))  # (d x d): cheap whatever n is
    return (Xc @ vectors[:, ::-1][:, :k].astype(np.float32)).astype(np.float32)


def _umap(X: np.ndarray, seed: int, progress: Progress) -> tuple[np.ndarray, str]:
    from ogdash.core.threads import one_thread

    with one_thread():  # small BLAS calls and numba's serial loops: a second spinning thread only slows them
        return _umap_steps(X, seed, progress)


def _umap_steps(X: np.ndarray, seed: int, progress: Progress) -> tuple[np.ndarray, str]:
    import warnings

    import umap
    from sklearn.neighbors import NearestNeighbors

    _cache_umap_compiles()
    X = _principal(X, UMAP_DIMS)
    fit_on = umap_subset(len(X), seed)
    fit_X = X if fit_on is None else X[fit_on]
    k = int(min(UMAP_NEIGHBOURS, max(2, len(fit_X) - 1)))
    report(progress, 0.05, f"finding the neighbours of {len(fit_X):,} samples")
    dist, idx = NearestNeighbors(n_neighbors=k).fit(fit_X).kneighbors(fit_X)
    report(progress, 0.2, f"fitting UMAP on {len(fit_X):,} samples")
    # 200 epochs, what UMAP itself takes above 10,000 samples (it takes 500 at or below)
    with warnings.catch_warnings():  # "n_jobs overridden by random_state": one thread is what we ask for
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(n_components=2, n_neighbors=k, random_state=seed, n_jobs=1, n_epochs=200,
                            precomputed_knn=(idx, dist, None)).fit(fit_X)
    if fit_on is None:
        return reducer.embedding_.astype(np.float64), "UMAP of the gradients"
    out = np.empty((len(X), 2))
    out[fit_on] = reducer.embedding_
    rest = np.setdiff1d(np.arange(len(X)), fit_on)
    index = NearestNeighbors(n_neighbors=PLACE_NEIGHBOURS).fit(fit_X)
    for start in range(0, len(rest), PLACE_CHUNK):
        end = min(start + PLACE_CHUNK, len(rest))
        report(progress, 0.6 + 0.4 * start / len(rest), f"placing samples {start:,}–{end:,} of {len(rest):,} others")
        part = rest[start:end]
        d, near = index.kneighbors(X[part])
        w = 1.0 / np.maximum(d, 1e-6)  # the nearest fitted samples count most
        out[part] = np.einsum("nk,nkc->nc", w, reducer.embedding_[near]) / w.sum(1, keepdims=True)
    return out, (f"UMAP of the gradients (fitted on a random {len(fit_on):,} of {len(X):,}, each other sample "
                 "placed among its nearest fitted ones)")


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
