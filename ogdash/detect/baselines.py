"""Two references in the detector protocol: label quality from the model's probabilities, and a random floor.

They let ensembles and experiments treat them like any detector (``fit`` then
``score_samples``, higher = more detrimental); neither reads the gradients themselves.
"""
from __future__ import annotations

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.detect.base import check_fitted, n_samples, require_labels
from ogdash.engine.gradients import GradientSet
from ogdash.influence.quality import LABEL_QUALITY_METHODS, label_quality_scores


class LabelQuality:
    """A label-quality score of the model's own probabilities (``GradientSet.probs``) for the given labels.

    Parameters
    ----------
    method : {"normalized_margin", "self_confidence", "confidence_weighted_entropy"}
        See ``ogdash.influence.quality.label_quality_scores``.

    Attributes
    ----------
    n_classes_ : int, number of probability columns seen by ``fit``.
    """

    def __init__(self, *, method: str = "normalized_margin"):
        self.method = method

    def fit(self, G: GradientSet, y=None) -> "LabelQuality":
        """Check the method and the probabilities; nothing is learnt.

        Parameters
        ----------
        G : GradientSet (its ``probs`` (n, C) are read).
        y : ignored

        Returns
        -------
        self
        """
        if self.method not in LABEL_QUALITY_METHODS:
            raise OgdashError(f"Unknown label-quality method {self.method!r}; "
                              f"choose one of {', '.join(LABEL_QUALITY_METHODS)}.")
        if not isinstance(G, GradientSet):
            raise OgdashError("label-quality scores read the model's probabilities; give a GradientSet, not an array.")
        self.n_classes_ = G.probs.shape[1]
        return self

    def score_samples(self, G: GradientSet, y=None) -> np.ndarray:
        """``1 - quality`` of each sample's given label.

        Parameters
        ----------
        G : GradientSet (its ``probs`` (n, C) are read).
        y : int array (n,), the given labels (required).

        Returns
        -------
        scores : float64 array (n,) in [0, 1], higher = more detrimental.
        """
        check_fitted(self, "n_classes_")
        return label_quality_scores(G.probs, require_labels(y, G.n, "a label-quality score"), self.method)


class RandomScores:
    """A seeded random permutation of 0..n-1 as scores: the floor any detector should beat.

    Parameters
    ----------
    seed : int, default 0

    Attributes
    ----------
    seed_ : int, the seed the scores are drawn with.
    """

    def __init__(self, *, seed: int = 0):
        self.seed = seed

    def fit(self, G, y=None) -> "RandomScores":
        """Nothing to learn.

        Parameters
        ----------
        G : array (n, p) or GradientSet; y : ignored

        Returns
        -------
        self
        """
        self.seed_ = int(self.seed)
        return self

    def score_samples(self, G, y=None) -> np.ndarray:
        """A random permutation of the ranks, the same for the same seed and n.

        Parameters
        ----------
        G : array (n, p) or GradientSet (only n is read); y : ignored

        Returns
        -------
        scores : float64 array (n,), a permutation of 0..n-1.
        """
        check_fitted(self, "seed_")
        return np.random.default_rng(self.seed_).permutation(n_samples(G)).astype(np.float64)
