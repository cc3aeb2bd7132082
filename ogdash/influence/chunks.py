"""Helpers shared by the influence baselines: gradient matrices read in float64 row chunks.

Gradient matrices may be numpy or torch, in any float dtype; all arithmetic is float64,
converted ``CHUNK_BYTES`` at a time, so a float32 matrix is never copied whole.
"""
from __future__ import annotations

import numpy as np

from ogdash.core import validate
from ogdash.core.errors import OgdashError

# Row chunks of gradient matrices are converted to float64 at most this many bytes at a time.
CHUNK_BYTES = 64 * 2**20


def to_float64(x) -> np.ndarray:
    """``x`` (numpy or torch) as a float64 numpy array."""
    if validate.is_torch(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def row_chunks(G):
    """Yield (start, float64 block of rows) so at most CHUNK_BYTES are converted at once."""
    n, p = G.shape
    step = max(1, int(CHUNK_BYTES // (8 * p)))
    for start in range(0, n, step):
        block = to_float64(G[start:start + step])
        if not np.all(np.isfinite(block)):
            raise OgdashError("Gradient matrix contains NaN or infinite values; check the model and the data.")
        yield start, block


def column_sum(G) -> np.ndarray:
    """Sum of the rows of G (n, p): a (p,) float64 vector."""
    total = np.zeros(G.shape[1])
    for _, block in row_chunks(G):
        total += block.sum(axis=0)
    return total


def rows_dot(G, w: np.ndarray) -> np.ndarray:
    """``G @ w`` (n,) in float64, one row chunk at a time."""
    out = np.empty(G.shape[0])
    for start, block in row_chunks(G):
        out[start:start + len(block)] = block @ w
    return out


def check_pair(G_train, G_ref):
    """(G_train, G_ref) checked: two gradient matrices of one width; ``G_ref`` None means ``G_train``."""
    G_train = validate.gradient_matrix(G_train, "G_train")
    G_ref = G_train if G_ref is None else validate.gradient_matrix(G_ref, "G_ref")
    if G_ref.shape[1] != G_train.shape[1]:
        raise OgdashError(
            f"G_train has {G_train.shape[1]} gradient columns but G_ref has {G_ref.shape[1]}; "
            "take both with the same parameters (layer choice and projection)."
        )
    return G_train, G_ref


def check_hessian(hessian, p: int) -> np.ndarray:
    """A (p, p) finite, symmetric Hessian as float64 (symmetrised exactly)."""
    H = to_float64(hessian)
    if H.shape != (p, p):
        raise OgdashError(f"hessian must be a ({p}, {p}) matrix to match {p} gradient columns, got shape {H.shape}.")
    if not np.all(np.isfinite(H)):
        raise OgdashError("hessian contains NaN or infinite values.")
    scale = max(np.abs(H).max(), np.finfo(float).tiny)
    if np.abs(H - H.T).max() > 1e-6 * scale:
        raise OgdashError("hessian must be symmetric; pass the Hessian of the summed training objective.")
    return (H + H.T) / 2.0

