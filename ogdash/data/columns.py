"""Label and feature columns as every loader checks them: integer class indices, finite numeric features."""
from __future__ import annotations

import numpy as np

from ogdash.core.errors import OgdashError


def labels_array(arr, what: str, path, at=None) -> np.ndarray:
    """One integer class index per row; a refusal says how many rows are wrong and where the first is (``at(i)``:
    "line 7", "row 3"), never what they hold: a file that is not what it should be may hold anything."""
    arr = np.asarray(arr)
    at = at or (lambda i: f"index {i}")
    if arr.ndim != 1:
        raise OgdashError(f"{path}: {what} must be one label per row (1-D); got shape {arr.shape}; "
                          "give one integer label per sample.")
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64)
    elif arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        out = arr.astype(np.int64)  # whole numbers written as floats (1.0) are fine
    else:
        bad = non_integers(arr)
        raise OgdashError(f"{path}: {what} must be integer class indices 0..K-1; {len(bad):,} of {len(arr):,} are "
                          f"not (the first at {at(int(bad[0]))}); map class names or other values to integers "
                          "0..K-1 first.")
    if len(out) and out.min() < 0:
        raise OgdashError(f"{path}: {what} must be non-negative class indices; found {out.min()} (at "
                          f"{at(int(np.argmin(out)))}); map the labels to integers 0..K-1.")
    return out


def non_integers(arr: np.ndarray) -> np.ndarray:
    """Positions of the labels that are not whole numbers."""
    def whole(v) -> bool:
        v = v.item() if isinstance(v, np.generic) else v
        if isinstance(v, str):  # a column with one word in it is read as text: its numbers are still numbers
            return v.strip().lstrip("+-").isdigit()
        return not isinstance(v, bool) and isinstance(v, (int, float)) and bool(np.isfinite(v)) and v == round(v)
    bad = np.flatnonzero([not whole(v) for v in arr.ravel()])
    return bad if len(bad) else np.arange(min(1, arr.size))


def feature_array(X, path) -> np.ndarray:
    """X as float32 (n, d) rows or (n, C, H, W) images in [0, 1], checked finite chunk by chunk: a memory-mapped
    float32 X stays mapped (never copied or read whole)."""
    from ogdash.core import chunks

    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    if X.dtype.kind not in "iuf" and X.dtype.kind != "b":
        raise OgdashError(f"{path}: X must be numeric; found dtype {X.dtype}; save features as numbers.")
    X = X.astype(np.float32, copy=False)
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim not in (2, 4):
        raise OgdashError(f"{path}: X must be (n, d), (n, H, W) or (n, C, H, W); got shape {X.shape}; reshape it.")
    top = -np.inf
    for _, _, block in chunks.blocks(X):
        if not np.all(np.isfinite(block)):
            raise OgdashError(f"{path}: X contains NaN or infinite values; remove or impute them.")
        top = max(top, float(block.max(initial=-np.inf)))
    if X.ndim == 4 and X.size and top > 1.0:
        X = X / 255.0
    return X
