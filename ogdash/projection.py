"""Seeded sparse random projection of gradient matrices, applied chunk by chunk.

The matrix is scikit-learn's ``SparseRandomProjection`` (Achlioptas / Li et al.
sparse Johnson-Lindenstrauss), fixed by (input dim, output dim, seed), so every
chunk and every process projects with the same matrix.
"""
from __future__ import annotations

import numpy as np
from sklearn.random_projection import SparseRandomProjection

from ogdash.errors import OgdashError


class SparseProjector:
    """Projects (m, d_in) rows to (m, d_out); same seed, same matrix."""

    def __init__(self, d_in: int, d_out: int, seed: int = 0):
        if d_out < 1:
            raise OgdashError(f"projection dimension must be at least 1; got {d_out}.")
        self.d_in, self.d_out, self.seed = int(d_in), int(d_out), int(seed)
        self._rp = SparseRandomProjection(n_components=self.d_out, random_state=self.seed, dense_output=True)
        self._rp.fit(np.zeros((1, self.d_in), dtype=np.float32))

    def transform(self, rows: np.ndarray) -> np.ndarray:
        if rows.shape[1] != self.d_in:
            raise OgdashError(f"expected {self.d_in} gradient coordinates, got {rows.shape[1]}.")
        if self.d_out >= self.d_in:
            return rows.astype(np.float32)  # nothing to reduce
        return np.asarray(self._rp.transform(rows), dtype=np.float32)
