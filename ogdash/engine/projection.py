"""Seeded sparse random projection of gradient matrices, applied chunk by chunk.

The matrix is scikit-learn's ``SparseRandomProjection`` (Achlioptas / Li et al.
sparse Johnson-Lindenstrauss), fixed by (input dim, output dim, seed), so every
chunk and every process projects with the same matrix.
"""
from __future__ import annotations

import numpy as np
from sklearn.random_projection import SparseRandomProjection

from ogdash.core.errors import OgdashError


class SparseProjector:
    """Projects (m, d_in) rows to (m, d_out); same seed, same matrix."""

    def __init__(self, d_in: int, d_out: int, seed: int = 0):
        if d_out < 1:
            raise OgdashError(f"projection dimension must be at least 1; got {d_out}.")
        self.d_in, self.d_out, self.seed = int(d_in), int(d_out), int(seed)
        self._rp = SparseRandomProjection(n_components=self.d_out, random_state=self.seed, dense_output=True)
        self._rp.fit(np.zeros((1, self.d_in), dtype=np.float32))

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """Project rows (n, d_in) to (n, d_out)."""
        if rows.shape[1] != self.d_in:
            raise OgdashError(f"expected {self.d_in} gradient coordinates, got {rows.shape[1]}.")
        if self.d_out >= self.d_in:
            return rows.astype(np.float32)  # nothing to reduce
        return np.asarray(self._rp.transform(rows), dtype=np.float32)


class TensorSketch:
    """Projects outer products ``e ⊗ a`` to ``d_out`` coordinates without ever forming them.

    It is the CountSketch of the full vector ``vec(e ⊗ a)`` whose hash is
    ``(h1(k) + h2(j)) mod d_out`` with sign ``s1(k)·s2(j)`` (Pham & Pagh, 2013):
    CountSketch ``e`` and ``a`` separately, multiply their FFTs, transform back.
    Cost per sample O(K + H + d_out log d_out) instead of O(K·H·d_out).
    It is linear, so it equals a fixed sparse ±1 matrix applied to the
    materialised gradients (``as_matrix`` builds it, for tests), and inner
    products are preserved in expectation; the distortion of a squared norm
    has a relative standard deviation of roughly ``sqrt(3 / d_out)`` (measured in
    ``tests/test_projection.py`` against a dense sparse-random projection).
    """

    def __init__(self, d_e: int, d_a: int, d_out: int, seed: int = 0):
        if d_out < 1:
            raise OgdashError(f"projection dimension must be at least 1; got {d_out}.")
        rng = np.random.default_rng(seed)
        self.d_e, self.d_a, self.d_out = int(d_e), int(d_a), int(d_out)
        self.h1, self.h2 = rng.integers(0, d_out, d_e), rng.integers(0, d_out, d_a)
        self.s1 = rng.choice([-1.0, 1.0], d_e).astype(np.float32)
        self.s2 = rng.choice([-1.0, 1.0], d_a).astype(np.float32)

        self.C1, self.C2 = self._countsketch_matrix(self.h1, self.s1, d_out), self._countsketch_matrix(self.h2, self.s2, d_out)

    @staticmethod
    def _countsketch_matrix(h: np.ndarray, s: np.ndarray, d: int) -> np.ndarray:
        # dense ±1/0 matrix: a BLAS product beats sparse kernels at these widths
        C = np.zeros((len(h), d), dtype=np.float32)
        C[np.arange(len(h)), h] = s
        return C

    def transform_factors(self, e: np.ndarray, a: np.ndarray, chunk_size: int = 8192) -> np.ndarray:
        """Sketch of ``e_i ⊗ a_i`` for every row i; shape (n, d_out), float32."""
        if e.shape[1] != self.d_e or a.shape[1] != self.d_a:
            raise OgdashError(f"expected factors of width {self.d_e} and {self.d_a}, got {e.shape[1]} and {a.shape[1]}.")
        from scipy import fft

        out = np.empty((len(e), self.d_out), dtype=np.float32)
        for s in range(0, len(e), chunk_size):
            f1 = fft.rfft(np.asarray(e[s:s + chunk_size], dtype=np.float32) @ self.C1, axis=1, workers=-1)
            f2 = fft.rfft(np.asarray(a[s:s + chunk_size], dtype=np.float32) @ self.C2, axis=1, workers=-1)
            out[s:s + chunk_size] = fft.irfft(f1 * f2, n=self.d_out, axis=1, workers=-1)
        return out

    def as_matrix(self) -> np.ndarray:
        """The equivalent dense (d_e·d_a, d_out) matrix, rows in ``vec(e ⊗ a)`` order (e-major)."""
        rows = (self.h1[:, None] + self.h2[None, :]) % self.d_out
        signs = self.s1[:, None] * self.s2[None, :]
        M = np.zeros((self.d_e * self.d_a, self.d_out), dtype=np.float64)
        M[np.arange(self.d_e * self.d_a), rows.ravel()] = signs.ravel()
        return M
