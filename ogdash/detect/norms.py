"""Norm detectors: a gradient's L1 or L2 norm, exact from a GradientSet's factors."""
from __future__ import annotations

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.detect.base import check_fitted, dense, width
from ogdash.engine.gradients import GradientSet


class NormDetector:
    """Score = the L1 or L2 norm of each gradient; higher = more detrimental. Nothing is learnt.

    Parameters
    ----------
    ord : {1, 2}, default 2
        Which norm.

    Attributes
    ----------
    n_features_in_ : int
        Number of gradient coordinates p seen by ``fit``.

    Notes
    -----
    A factored GradientSet is never materialised: ``‖e ⊗ h‖ = ‖e‖·‖h‖`` for both norms.
    """

    def __init__(self, *, ord: int = 2):
        self.ord = ord

    def fit(self, G, y=None) -> "NormDetector":
        """Check the norm order and record the width.

        Parameters
        ----------
        G : array (n, p) or GradientSet
        y : ignored

        Returns
        -------
        self
        """
        if self.ord not in (1, 2):
            raise OgdashError(f"norm order must be 1 or 2; got {self.ord}.")
        self.n_features_in_ = width(G)
        return self

    def score_samples(self, G, y=None) -> np.ndarray:
        """The norm of every gradient.

        Parameters
        ----------
        G : array (n, p) or GradientSet
        y : ignored

        Returns
        -------
        scores : float64 array (n,), higher = more detrimental.
        """
        check_fitted(self, "n_features_in_")
        if isinstance(G, GradientSet):
            return G.norms(self.ord)
        return np.linalg.norm(dense(G).astype(np.float64), ord=self.ord, axis=1)
