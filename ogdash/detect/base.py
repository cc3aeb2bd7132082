"""What every detector shares: the "fitted yet?" check and reading an (n, p) array or a GradientSet.

Detectors follow scikit-learn's estimator API: keyword-only constructor parameters,
``fit(G, y=None)`` returning the detector, ``score_samples(G, y=None)`` returning one
float per row, and fitted attributes whose names end in ``_``. ``G`` is an (n, p)
array or a ``GradientSet``; ``y`` the given labels (n,), read only by detectors that
need them. Every score: **higher = more detrimental**.
"""
from __future__ import annotations

import numpy as np

from ogdash.core import validate
from ogdash.core.errors import OgdashError
from ogdash.engine.gradients import GradientSet


def check_fitted(detector, *attributes: str) -> None:
    """Raise ``OgdashError`` unless ``detector`` has every fitted attribute named (e.g. ``"estimator_"``)."""
    if not all(hasattr(detector, name) for name in attributes):
        raise OgdashError(f"this {type(detector).__name__} is not fitted yet; call fit first.")


def n_samples(G) -> int:
    """Number of rows of an (n, p) array or a GradientSet."""
    return G.n if isinstance(G, GradientSet) else len(G)


def rows(G, positions):
    """The rows at ``positions`` of an (n, p) array or a GradientSet, as the same kind of object."""
    return G.subset(positions) if isinstance(G, GradientSet) else np.asarray(G)[positions]


def dense(G) -> np.ndarray:
    """The gradients as an (n, p) float32 matrix; a factored GradientSet is materialised."""
    return validate.matrix(G.matrix() if isinstance(G, GradientSet) else G)


def width(G) -> int:
    """Number of gradient coordinates p of an (n, p) array or a GradientSet, without materialising it."""
    return G.dim if isinstance(G, GradientSet) else dense(G).shape[1]


def check_nonempty(G) -> None:
    """Raise ``OgdashError`` when there is nothing to fit on."""
    if n_samples(G) == 0:
        raise OgdashError("cannot fit an outlier detector on zero samples.")


def require_labels(y, n: int, who: str) -> np.ndarray:
    """Given labels (n,) as int64 for a detector that reads them; ``who`` names the detector in the error."""
    if y is None:
        raise OgdashError(f"{who} needs the given labels; pass y (the training set's labels, one per sample).")
    return validate.labels(y, n)
