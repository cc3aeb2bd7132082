"""Nearest neighbours of a few query samples among the samples of chosen classes, by cosine similarity.

The rows are the model's feature space (the last layer's inputs, the gradient's second factor) or gradient
rows; they may be memory-mapped from the disk cache. They are read ``chunk`` rows at a time and never copied
whole, so 50,000 x 512 rows cost one pass of matrix products for a page of queries.
"""
from __future__ import annotations

import numpy as np

CHUNK = 8192


def row_norms(rows, chunk: int = CHUNK) -> np.ndarray:
    """(n,) Euclidean norms of ``rows`` (n, d), read in chunks."""
    n = len(rows)
    out = np.empty(n, dtype=np.float32)
    for a in range(0, n, chunk):
        block = np.asarray(rows[a:a + chunk], dtype=np.float32).reshape(min(chunk, n - a), -1)
        out[a:a + chunk] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def nearest_in_classes(rows, labels, queries, classes, k: int = 3, norms=None,
                       chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows most similar to each query among the rows labelled with each of its classes.

    rows: (n, d) the space; labels: (n,) class index of each row; queries: (m,) positions of the query rows;
    classes: (m, J) for query i, the classes to search (-1: none); norms: ``row_norms(rows)`` if known.
    Returns (positions, similarity), each (m, J, k): positions of the neighbours, most similar first, -1 where
    a class has fewer than ``k`` other rows; cosine similarity (nan where none). A query is never its own
    neighbour.
    """
    labels = np.asarray(labels)
    queries = np.asarray(queries, dtype=np.int64).reshape(-1)
    classes = np.asarray(classes, dtype=np.int64)
    classes = classes.reshape(len(queries), classes.shape[-1] if classes.ndim > 1 else -1)
    m, J = classes.shape
    n = len(rows)
    best_s = np.full((m, J, k), -np.inf, dtype=np.float32)
    best_p = np.full((m, J, k), -1, dtype=np.int64)
    if m == 0 or k == 0:
        return best_p, np.full(best_s.shape, np.nan, dtype=np.float32)
    norms = row_norms(rows, chunk) if norms is None else np.asarray(norms, dtype=np.float32)
    safe = np.maximum(norms, 1e-12)  # an all-zero row is similar to nothing (similarity 0)
    Q = np.asarray(rows[queries], dtype=np.float32).reshape(m, -1) / safe[queries, None]
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        block = np.asarray(rows[a:b], dtype=np.float32).reshape(b - a, -1)
        S = (Q @ block.T) / safe[None, a:b]  # (m, b - a)
        own = (queries >= a) & (queries < b)
        S[np.flatnonzero(own), queries[own] - a] = -np.inf
        lab = labels[a:b]
        for j in range(J):
            Sj = np.where(lab[None, :] == classes[:, j, None], S, -np.inf)
            kk = min(k, b - a)
            idx = np.argpartition(-Sj, kk - 1, axis=1)[:, :kk]
            cand_s = np.take_along_axis(Sj, idx, axis=1)
            all_s = np.concatenate([best_s[:, j], cand_s], axis=1)
            all_p = np.concatenate([best_p[:, j], idx + a], axis=1)
            top = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
            best_s[:, j] = np.take_along_axis(all_s, top, axis=1)
            best_p[:, j] = np.take_along_axis(all_p, top, axis=1)
    none = ~np.isfinite(best_s)
    best_p[none] = -1
    return best_p, np.where(none, np.nan, best_s).astype(np.float32)
