"""The paper's two toy problems (Appendix B.1.1): linear blobs and half-moons.

Both are seeded. Labels of a few training samples are flipped, equally many per
class; the test set keeps its true labels. Two flip modes:

- ``far``: flips among the points farthest from the other class, as the paper's
  released toy data has them (easy outliers on the far side of each cluster);
- ``uniform``: flips drawn at random within each class (a harder benchmark).
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import make_blobs, make_moons

from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Splits, make_dataset

FLIP_MODES = ("far", "uniform")


def flip_labels(X, y, n_flips: int, mode: str, rng) -> np.ndarray:
    """Indices of ``n_flips`` samples to flip, half from each of the two classes."""
    if mode not in FLIP_MODES:
        raise OgdashError(f"unknown flip mode {mode!r}; use one of {FLIP_MODES}.")
    chosen = []
    for c, k in ((0, n_flips // 2), (1, n_flips - n_flips // 2)):
        own = np.flatnonzero(y == c)
        if k > len(own):
            raise OgdashError(f"cannot flip {k} labels of class {c}: it has {len(own)} samples.")
        if mode == "uniform":
            chosen.append(rng.choice(own, k, replace=False))
            continue
        other = X[y != c]
        dist = np.min(np.linalg.norm(X[own, None, :] - other[None, :, :], axis=-1), axis=1)
        # the farthest quarter of the class (at least 2k points), then a seeded draw
        pool = own[np.argsort(-dist)[: max(2 * k, len(own) // 4)]]
        chosen.append(rng.choice(pool, k, replace=False))
    return np.concatenate(chosen)


def _split(name, X, y, n_train, n_flips, flip_mode, seed) -> Splits:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    tr, te = order[:n_train], order[n_train:]
    y_given = y[tr].copy()
    flips = flip_labels(X[tr], y[tr], n_flips, flip_mode, rng)
    y_given[flips] = 1 - y_given[flips]
    classes = ("0", "1")
    train = make_dataset(f"{name}/train", X[tr], y_given, classes, y_true=y[tr])
    test = make_dataset(f"{name}/test", X[te], y[te], classes, y_true=y[te])
    return Splits(train, test)


def blobs(seed: int = 0, n_train: int = 150, n_test: int = 100, n_flips: int = 10,
          flip_mode: str = "far") -> Splits:
    """Two linearly separable Gaussian blobs (150 train / 100 test, 10 flips)."""
    X, y = make_blobs(n_samples=n_train + n_test, centers=[(-2.0, -2.0), (2.0, 2.0)],
                      cluster_std=1.0, random_state=seed)
    return _split("blobs", X, y, n_train, n_flips, flip_mode, seed)


def moons(seed: int = 0, n_train: int = 250, n_test: int = 100, n_flips: int = 20,
          flip_mode: str = "far", noise: float = 0.15) -> Splits:
    """Two half-moons (250 train / 100 test, 20 flips)."""
    X, y = make_moons(n_samples=n_train + n_test, noise=noise, random_state=seed)
    return _split("moons", X, y, n_train, n_flips, flip_mode, seed)
