"""Ensembles of detectors: the mean of their rank-normalised scores.

Scores of different detectors live on different scales, so an ensemble averages their
*rank-normalised* scores (:func:`rank_normalise`: 0 for the lowest score, 1 for the
highest, ties share their mean rank). The named ensembles are entries of the method
registry (``ogdash.detect.registry``, family "ensemble"), whose members are registry
keys; ``benchmarks/detection.py`` measures them (README, "Detection benchmark").
Higher = more detrimental.
"""
from __future__ import annotations

import copy

import numpy as np
from scipy.stats import rankdata

from ogdash.core.errors import OgdashError
from ogdash.detect.base import check_fitted


def rank_normalise(scores) -> np.ndarray:
    """Scores (n,) mapped to [0, 1] by rank: 0 = lowest, 1 = highest, tied scores share their mean rank.

    Keeps the order (and so the flags and the AUROC) of one detector, and puts
    detectors with different scales on one scale. A single sample gets 0.5.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise OgdashError(f"scores must be one number per sample; got shape {s.shape}.")
    if not np.all(np.isfinite(s)):
        raise OgdashError("scores must be finite to be ranked.")
    if len(s) < 2:
        return np.full(len(s), 0.5)
    return (rankdata(s, method="average") - 1.0) / (len(s) - 1.0)


def combine(score_lists, weights=None) -> np.ndarray:
    """Weighted mean (n,) of rank-normalised scores (each (n,)); higher = more detrimental."""
    score_lists = [np.asarray(s, dtype=np.float64) for s in score_lists]
    if not score_lists:
        raise OgdashError("an ensemble needs at least one member.")
    n = len(score_lists[0])
    if any(len(s) != n for s in score_lists):
        raise OgdashError(f"ensemble members must score the same samples; got lengths {[len(s) for s in score_lists]}.")
    w = np.ones(len(score_lists)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(score_lists),) or np.any(w < 0) or w.sum() <= 0:
        raise OgdashError("ensemble weights must be one non-negative number per member, not all zero.")
    return sum(wi * rank_normalise(s) for wi, s in zip(w, score_lists)) / w.sum()


class Ensemble:
    """Detectors fitted on the same gradients; the score is the weighted mean of their rank-normalised scores.

    Parameters
    ----------
    members : list of unfitted detectors (copied at fit time, so they stay unfitted).
    weights : None (each member counts equally) or one non-negative number per member.

    Attributes
    ----------
    members_ : list of the fitted copies, in ``members`` order.
    """

    def __init__(self, members, *, weights=None):
        self.members, self.weights = members, weights

    def fit(self, G, y=None) -> "Ensemble":
        """Fit every member on ``G`` (and ``y``, for members that read labels).

        Parameters
        ----------
        G : array (n, p) or GradientSet
        y : int array (n,) or None, the given labels.

        Returns
        -------
        self
        """
        if not self.members:
            raise OgdashError("an ensemble needs at least one member.")
        self.members_ = [copy.deepcopy(m).fit(G, y) for m in self.members]
        return self

    def member_scores(self, G, y=None) -> list[np.ndarray]:
        """Each fitted member's scores (n,), in ``members`` order (higher = more detrimental)."""
        check_fitted(self, "members_")
        return [m.score_samples(G, y) for m in self.members_]

    def score_samples(self, G, y=None) -> np.ndarray:
        """The weighted mean of the members' rank-normalised scores.

        Parameters
        ----------
        G : array (n, p) or GradientSet
        y : int array (n,) or None, the given labels.

        Returns
        -------
        scores : float64 array (n,) in [0, 1], higher = more detrimental.
        """
        return combine(self.member_scores(G, y), self.weights)
