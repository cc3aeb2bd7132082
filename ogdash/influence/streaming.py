"""Test x train influence over gradients too many to hold: stored as unit rows in float16 plus each row's norm,
read memory-mapped a chunk of rows at a time.

A gradient row ``g_i = norm_i * unit_i``. Storing the unit row in float16 keeps 3 significant digits of every
coordinate whatever the gradient's scale (a raw float16 gradient would underflow below 6e-8), and the norm in
float32 keeps the scale. 100,000 rows of 8,192 coordinates weigh 1.6 GB on disk and are never all in memory.

Every function returns a (m, n) matrix, row t = test prompt t, column j = training example j, **higher = more
influential** (as ``ogdash.influence.matrices``, whose TracIn and DataInf these equal on small inputs):

- :func:`tracin_rows`: ``g_t . g_j``;
- :func:`datainf_rows`: DataInf's ``g_t^T (H_l + lam_l I)^{-1} g_j`` per block, summed, in three passes over the
  training rows (``T = G g_t``, ``w = G^T (T / (lam + s))``, ``G w``) instead of the n x n Gram matrix;
- :func:`cosine_rows`: ``unit_t . unit_j``, the similarity LESS (Xia et al. 2024) ranks training data by.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ogdash.core.errors import OgdashError

CHUNK_BYTES = 64 * 2**20  # float32 bytes of training rows converted at once


@dataclass(eq=False)
class RowStore:
    """Gradient rows as ``unit`` (n, d) float16 (memory-mapped or not) and ``norm`` (n,) float32."""

    unit: np.ndarray
    norm: np.ndarray
    _dense: np.ndarray | None = None  # float32 rows kept in memory (keep_in_memory), read instead of the map

    def __post_init__(self):
        if self.unit.ndim != 2 or self.norm.shape != (self.unit.shape[0],):
            raise OgdashError(f"a gradient store needs unit rows (n, d) and n norms; got {self.unit.shape} and "
                              f"{self.norm.shape}.")

    @classmethod
    def from_dense(cls, G) -> "RowStore":
        """Split dense rows (n, d) into float16 unit rows and float32 norms (a zero row stays zero)."""
        G = np.asarray(G, dtype=np.float32)
        norm = np.linalg.norm(G, axis=1).astype(np.float32)
        unit = (G / np.where(norm > 0, norm, 1.0)[:, None]).astype(np.float16)
        return cls(unit, norm)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.unit.shape)

    def __len__(self) -> int:
        return self.unit.shape[0]

    def keep_in_memory(self, max_bytes: int) -> bool:
        """Hold the float32 rows in memory when they take at most ``max_bytes`` (repeated queries then multiply
        in memory instead of converting float16 pages every time); returns whether they are held."""
        n, d = self.shape
        if self._dense is None and n * d * 4 <= max_bytes:
            self._dense = np.concatenate([b for _, b in self.chunks(unit=True)]) if n else np.zeros((0, d), np.float32)
        return self._dense is not None

    def rows(self, start: int, stop: int, unit: bool = False) -> np.ndarray:
        """Rows ``start:stop`` as float32 (scaled by their norms unless ``unit``)."""
        if self._dense is not None:
            block = self._dense[start:stop]
            return block if unit else block * self.norm[start:stop, None]
        block = np.asarray(self.unit[start:stop], dtype=np.float32)
        return block if unit else block * self.norm[start:stop, None]

    def take(self, idx, unit: bool = False) -> np.ndarray:
        """The rows ``idx`` (sorted reads are fastest on a memory map) as float32."""
        idx = np.asarray(idx, dtype=np.int64)
        block = np.asarray(self.unit[idx], dtype=np.float32)
        return block if unit else block * self.norm[idx, None]

    def chunks(self, unit: bool = False):
        """Yield (start, float32 rows) over the whole store, ``CHUNK_BYTES`` at a time."""
        n, d = self.shape
        step = max(1, CHUNK_BYTES // (4 * max(d, 1)))
        for start in range(0, n, step):
            yield start, self.rows(start, min(n, start + step), unit)


def _test(B, d: int) -> np.ndarray:
    B = np.asarray(B, dtype=np.float32)
    if B.ndim == 1:
        B = B[None]
    if B.ndim != 2 or B.shape[1] != d or len(B) == 0:
        raise OgdashError(f"test gradients must be (m, {d}) with m >= 1; got {B.shape}.")
    return B


def tracin_rows(store: RowStore, B) -> np.ndarray:
    """Gradient Tracing (last checkpoint): ``B @ G.T`` (m, n), higher = more influential."""
    B = _test(B, store.shape[1])
    out = np.empty((len(B), len(store)), dtype=np.float64)
    for start, block in store.chunks():
        out[:, start:start + len(block)] = B @ block.T
    return out


def cosine_rows(store: RowStore, B) -> np.ndarray:
    """Cosine similarity of each test gradient with each training gradient (m, n), LESS's ranking."""
    B = _test(B, store.shape[1])
    Bn = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-30)
    out = np.empty((len(B), len(store)), dtype=np.float64)
    for start, block in store.chunks(unit=True):
        out[:, start:start + len(block)] = Bn @ block.T
    return out


@dataclass(frozen=True)
class DataInfStats:
    """Per-block squared norms of the training rows (n, L) and DataInf's damping per block (L,)."""

    blocks: tuple[tuple[int, int], ...]
    sq: np.ndarray
    lam: np.ndarray


def datainf_stats(store: RowStore, blocks: Sequence[tuple[str, int, int]] | None = None, damping=None
                  ) -> DataInfStats:
    """What DataInf needs from the training rows once, for any number of later queries.

    ``damping`` None = DataInf's default, ``lam_l = 0.1 * mean_i(|g_il|^2) / d_l``.
    """
    n, d = store.shape
    spans = tuple((int(lo), int(hi)) for _, lo, hi in blocks) if blocks else ((0, d),)
    sq = np.empty((n, len(spans)))
    for start, block in store.chunks():
        for b, (lo, hi) in enumerate(spans):
            part = block[:, lo:hi]
            sq[start:start + len(block), b] = np.einsum("ij,ij->i", part, part)
    if damping is None:
        lam = 0.1 * sq.mean(axis=0) / np.array([hi - lo for lo, hi in spans], dtype=np.float64)
    else:
        lam = np.broadcast_to(np.asarray(damping, dtype=np.float64), (len(spans),)).copy()
    if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise OgdashError("DataInf damping is 0 for a block whose gradients are all zero; choose other layers or "
                          "pass damping > 0.")
    return DataInfStats(spans, sq, lam)


def datainf_rows(store: RowStore, B, stats: DataInfStats | None = None) -> np.ndarray:
    """DataInf influence (m, n), higher = more influential; equals ``matrices.datainf_matrix``.

    Per block l: ``(n T_tj - g_j . w_t) / (n lam_l)`` with ``T = B G^T`` and
    ``w_t = sum_i T_ti g_i / (lam_l + s_i)``: three passes over the training rows.
    """
    stats = stats or datainf_stats(store)
    B = _test(B, store.shape[1])
    n, L = len(store), len(stats.blocks)
    T = [np.empty((len(B), n)) for _ in range(L)]
    for start, block in store.chunks():
        for b, (lo, hi) in enumerate(stats.blocks):
            T[b][:, start:start + len(block)] = B[:, lo:hi] @ block[:, lo:hi].T
    W = [np.zeros((hi - lo, len(B))) for lo, hi in stats.blocks]
    coef = [T[b] / (stats.lam[b] + stats.sq[:, b])[None, :] for b in range(L)]
    for start, block in store.chunks():
        for b, (lo, hi) in enumerate(stats.blocks):
            W[b] += block[:, lo:hi].T @ coef[b][:, start:start + len(block)].T
    out = np.zeros((len(B), n))
    for start, block in store.chunks():
        stop = start + len(block)
        for b, (lo, hi) in enumerate(stats.blocks):
            gw = (block[:, lo:hi] @ W[b]).T  # (m, chunk)
            out[:, start:stop] += (n * T[b][:, start:stop] - gw) / (n * stats.lam[b])
    return out
