"""2-D layouts of gradient space for plotting: raw (when 2-D), PCA, or UMAP."""
from __future__ import annotations

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.engine.gradients import GradientSet, project

LAYOUTS = ("pca", "umap")
# Layouts run on at most this many coordinates; wider gradients are projected first.
MAX_LAYOUT_DIM = 1024


def _matrix(G) -> np.ndarray:
    if isinstance(G, GradientSet):
        if not G.projected and G.dim > MAX_LAYOUT_DIM:
            G = project(G, 256, seed=0)
        return np.asarray(G.matrix(), dtype=np.float32)
    return np.asarray(G, dtype=np.float32)


def layout_2d(G, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and a description of what the axes are.

    A gradient that is already 2-D is returned as is (the paper's Figure 1 D/H).
    """
    X = _matrix(G)
    if X.shape[1] == 2:
        return X.astype(np.float64), "raw gradient coordinates"
    if method == "pca":
        from sklearn.decomposition import PCA

        if X.shape[1] < 2 or len(X) < 2:
            raise OgdashError("a layout needs at least two samples and two gradient coordinates.")
        pca = PCA(n_components=2, random_state=seed).fit(X)
        var = pca.explained_variance_ratio_
        return pca.transform(X), f"PCA of the gradients (PC1 {var[0]:.0%}, PC2 {var[1]:.0%} of variance)"
    if method == "umap":
        import umap

        n_neighbors = int(min(15, max(2, len(X) - 1)))
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed, n_jobs=1)
        return reducer.fit_transform(X).astype(np.float64), "UMAP of the gradients"
    raise OgdashError(f"unknown layout {method!r}; choose one of {LAYOUTS}.")
