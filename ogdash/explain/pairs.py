"""Where the flags fall between classes: counts of flagged samples by given class and suggested class.

Like cleanlab's confident joint, restricted to the flags: cell (g, s) counts the flagged samples given
class g whose suggested label (from a model that never saw their label) is s; the diagonal holds flags whose
suggestion agrees with the given label. A reviewer filters the gallery by a cell to see one kind of mistake.
"""
from __future__ import annotations

import numpy as np


def flag_pairs(given, suggested, flags, n_classes: int) -> np.ndarray:
    """(C, C) int64: flagged samples by given class (rows) and suggested class (columns)."""
    given, suggested = np.asarray(given, dtype=np.int64), np.asarray(suggested, dtype=np.int64)
    flags = np.asarray(flags, dtype=bool)
    cells = given[flags] * n_classes + suggested[flags]
    return np.bincount(cells, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def top_pairs(matrix, limit: int | None = None) -> list[tuple[int, int, int]]:
    """The non-empty cells of ``flag_pairs`` as (given, suggested, count), most flags first (ties: by class)."""
    matrix = np.asarray(matrix)
    g, s = np.nonzero(matrix)
    counts = matrix[g, s]
    order = np.lexsort((s, g, -counts))
    if limit is not None:
        order = order[:limit]
    return [(int(g[i]), int(s[i]), int(counts[i])) for i in order]
