"""Label noise injected on purpose, so that detection can be scored against the truth."""
from __future__ import annotations

import numpy as np

from ogdash.core.errors import OgdashError

# Pairs people confuse when they write digits; used for ten-class image sets.
DIGIT_PAIRS = ((1, 7), (3, 8), (4, 9), (5, 6))


def default_pairs(n_classes: int) -> tuple[tuple[int, int], ...]:
    if n_classes == 10:
        return DIGIT_PAIRS
    return tuple((c, c + 1) for c in range(0, n_classes - 1, 2))


def inject_noise(y, rate: float, kind: str = "uniform", n_classes: int | None = None,
                 seed: int = 0, pairs=None) -> np.ndarray:
    """Return a copy of labels y with round(rate * n) labels flipped.

    kind='uniform': the flipped samples are drawn at random and each gets a
    different class drawn uniformly. kind='pairs': only samples of classes in
    ``pairs`` are flipped, each to its partner (as people confuse 1 and 7), so the
    overall noise rate is still ``rate``.
    """
    y = np.asarray(y, dtype=np.int64)
    k = int(n_classes or y.max() + 1)
    if not 0 <= rate < 1:
        raise OgdashError(f"noise rate must be in [0, 1); got {rate}.")
    rng = np.random.default_rng(seed)
    n_flip = int(round(rate * len(y)))
    noisy = y.copy()
    if n_flip == 0:
        return noisy
    if kind == "uniform":
        idx = rng.choice(len(y), n_flip, replace=False)
        shift = rng.integers(1, k, size=n_flip)
        noisy[idx] = (y[idx] + shift) % k
    elif kind == "pairs":
        partner = {}
        for a, b in pairs or default_pairs(k):
            partner[a], partner[b] = b, a
        eligible = np.flatnonzero(np.isin(y, list(partner)))
        if n_flip > len(eligible):
            raise OgdashError(f"pair noise can flip at most {len(eligible) / len(y):.0%} of these labels; lower the rate.")
        idx = rng.choice(eligible, n_flip, replace=False)
        noisy[idx] = [partner[c] for c in y[idx]]
    else:
        raise OgdashError(f"unknown noise kind {kind!r}; use 'uniform' or 'pairs'.")
    return noisy
