"""Nearest neighbours of a few query samples among the samples of chosen classes, by cosine similarity.

The rows are the model's feature space (the last layer's inputs, the gradient's second factor) or gradient
rows; they may be memory-mapped from the disk cache. Only the rows of the classes searched are read, ``chunk``
rows at a time and never copied whole: a page of queries costs a matrix product over those classes' rows.
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


def class_index(labels) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): row positions sorted by label (ascending within a class) and, for class c, its rows
    ``order[starts[c]:starts[c + 1]]``. Built once per labels; ``nearest_in_classes`` then reads only the rows of
    the classes it searches (a page of 12 cards at a million rows and 100 classes: about 24 classes' rows, not
    every row)."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels))]) if len(labels) else np.zeros(1, np.int64)
    return order, starts


def nearest_in_classes(rows, labels, queries, classes, k: int = 3, norms=None,
                       chunk: int = CHUNK, index=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows most similar to each query among the rows labelled with each of its classes.

    rows: (n, d) the space; labels: (n,) class index of each row; queries: (m,) positions of the query rows;
    classes: (m, J) for query i, the classes to search (-1: none); norms: ``row_norms(rows)`` if known;
    index: ``class_index(labels)`` if known. Only the searched classes' rows are read, ``chunk`` at a time.
    Returns (positions, similarity), each (m, J, k): positions of the neighbours, most similar first, -1 where
    a class has fewer than ``k`` other rows; cosine similarity (nan where none). A query is never its own
    neighbour.
    """
    queries = np.asarray(queries, dtype=np.int64).reshape(-1)
    classes = np.asarray(classes, dtype=np.int64)
    classes = classes.reshape(len(queries), classes.shape[-1] if classes.ndim > 1 else -1)
    m, J = classes.shape
    best_s = np.full((m, J, k), -np.inf, dtype=np.float32)
    best_p = np.full((m, J, k), -1, dtype=np.int64)
    if m == 0 or k == 0:
        return best_p, np.full(best_s.shape, np.nan, dtype=np.float32)
    order, starts = class_index(labels) if index is None else index
    norms = row_norms(rows, chunk) if norms is None else np.asarray(norms, dtype=np.float32)
    safe = np.maximum(norms, 1e-12)  # an all-zero row is similar to nothing (similarity 0)
    Q = np.asarray(rows[queries], dtype=np.float32).reshape(m, -1) / safe[queries, None]
    for c in np.unique(classes[classes >= 0]):
        if c >= len(starts) - 1:
            continue  # a class no row has
        members = order[starts[c]:starts[c + 1]]
        qi, qj = np.nonzero(classes == c)  # the (query, slot) pairs that search class c
        for a in range(0, len(members), chunk):
            pos = members[a:a + chunk]
            block = np.asarray(rows[pos], dtype=np.float32).reshape(len(pos), -1)
            S = (Q[qi] @ block.T) / safe[None, pos]  # (pairs, rows of this chunk)
            S[queries[qi][:, None] == pos[None, :]] = -np.inf  # never its own neighbour
            kk = min(k, len(pos))
            idx = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
            all_s = np.concatenate([best_s[qi, qj], np.take_along_axis(S, idx, axis=1)], axis=1)
            all_p = np.concatenate([best_p[qi, qj], pos[idx]], axis=1)
            top = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
            best_s[qi, qj] = np.take_along_axis(all_s, top, axis=1)
            best_p[qi, qj] = np.take_along_axis(all_p, top, axis=1)
    none = ~np.isfinite(best_s)
    best_p[none] = -1
    return best_p, np.where(none, np.nan, best_s).astype(np.float32)
