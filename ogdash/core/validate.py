"""Checks of the arrays that enter scoring: gradient matrices, labels, class probabilities.

Every check raises ``OgdashError`` with one sentence that names the problem and says
what to do, and returns the input in the form the caller computes with. Matrices may
be numpy or torch; torch is recognised by its module name, never imported here.
"""
from __future__ import annotations

import numpy as np

from ogdash.core.errors import OgdashError


def is_torch(x) -> bool:
    """Whether ``x`` is a torch tensor (recognised without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch"


def matrix(G, name: str = "gradients") -> np.ndarray:
    """A 2-D (n, p) array as float32 (copied only when the dtype differs).

    The detectors' check: anything array-like with two dimensions passes.
    """
    G = np.asarray(G, dtype=np.float32)
    if G.ndim != 2:
        raise OgdashError(f"{name} must be a 2-D (n, p) array; got shape {G.shape}.")
    return G


def gradient_matrix(G, name: str):
    """A gradient matrix (numpy or torch) checked without copying it: floating (or integer), 2-D, non-empty.

    The influence baselines' check; returns ``G`` itself (as a numpy array when it was array-like).
    """
    if is_torch(G):
        shape = tuple(G.shape)
        if not G.is_floating_point():
            raise OgdashError(f"{name} must hold floating-point gradients, got dtype {G.dtype}.")
    else:
        G = np.asarray(G)
        shape = G.shape
        if G.dtype.kind not in "fiu":
            raise OgdashError(f"{name} must hold floating-point gradients, got dtype {G.dtype}.")
    if len(shape) != 2:
        raise OgdashError(f"{name} must be a 2-D matrix (samples, parameters), got shape {shape}.")
    if shape[0] < 1 or shape[1] < 1:
        raise OgdashError(f"{name} must have at least one row and one column, got shape {shape}.")
    return G


def _whole(lab: np.ndarray) -> np.ndarray:
    """Floats that are all finite whole numbers become int64; anything else is returned as it is."""
    if lab.dtype.kind == "f" and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab)):
        return lab.astype(np.int64)
    return lab


def labels(labels, n: int) -> np.ndarray:
    """Given labels as int64, one per training sample: shape (n,), integers (or floats that are whole)."""
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n:
        raise OgdashError(f"labels must be one integer per training sample ({n}); got shape {lab.shape}.")
    lab = _whole(lab)
    if lab.dtype.kind not in "iu":
        raise OgdashError(f"labels must be integers; got dtype {lab.dtype}.")
    return lab.astype(np.int64)


def probs_and_labels(pred_probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, C), labels (n,) int64) checked together.

    Probabilities: C >= 2 columns, finite, in [0, 1], rows summing to 1 (within 1e-3); a float array
    keeps its dtype and is never copied (a memory-mapped n x C file is checked chunk by chunk), anything
    else becomes float64. Labels: one per row, integers (or whole floats) in 0..C-1.
    """
    from ogdash.core import chunks

    probs = pred_probs if isinstance(pred_probs, np.ndarray) and pred_probs.dtype.kind == "f" else \
        np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise OgdashError(
            f"pred_probs must be a 2-D array (n, C) with C >= 2 class columns, got shape {probs.shape}; "
            "for a one-unit sigmoid head stack [1 - p, p]."
        )
    for _, _, block in chunks.blocks(probs):
        if not np.all(np.isfinite(block)) or block.min(initial=0) < 0 or block.max(initial=0) > 1:
            raise OgdashError("pred_probs must hold finite probabilities in [0, 1]; pass softmax outputs, not logits.")
        if not np.allclose(block.sum(axis=1, dtype=np.float64), 1.0, atol=1e-3):
            raise OgdashError("Each row of pred_probs must sum to 1; pass softmax outputs, not logits.")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != probs.shape[0]:
        raise OgdashError(
            f"labels must be a 1-D array with one entry per row of pred_probs ({probs.shape[0]}), "
            f"got shape {lab.shape}."
        )
    lab = _whole(lab)
    if lab.dtype.kind not in "iu":
        raise OgdashError(f"labels must be integers 0..C-1, got dtype {lab.dtype}.")
    if lab.size and (lab.min() < 0 or lab.max() >= probs.shape[1]):
        raise OgdashError(
            f"labels must lie in 0..{probs.shape[1] - 1} to index the columns of pred_probs, "
            f"got values from {lab.min()} to {lab.max()}."
        )
    return probs, lab.astype(np.int64)


def train_test_pair(G_train, G_test) -> tuple[np.ndarray, np.ndarray]:
    """Training (n, p) and test (m, p) gradients as arrays (not copied): 2-D, one width, neither empty."""
    A, B = np.asarray(G_train), np.asarray(G_test)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise OgdashError(f"training and test gradients must be 2-D with the same width; got {A.shape} and {B.shape}.")
    if len(A) == 0 or len(B) == 0:
        raise OgdashError("influence needs at least one training and one test gradient.")
    return A, B
