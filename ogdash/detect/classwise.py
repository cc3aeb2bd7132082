"""Class-conditional detection: a sample is judged among the samples given its label.

A mislabelled sample is unusual *for the class it was given*: a 1 labelled 7 has a
gradient that is ordinary across the training set but not among the samples labelled
7. :class:`PerClass` fits one detector per given class, the way the paper fits one
IsolationForest per class for LLM prompts, and scores each sample with its own
class's detector: IsolationForest, the distance to the nearest gradients
(:class:`KnnDistance`), or the component along the class's mean gradient
(:class:`MeanAlignment`, which finds many 1s labelled 7 where density detectors see a
second cluster rather than outliers). Every score: higher = more detrimental.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.detect.base import check_fitted, check_nonempty, dense, n_samples, require_labels, rows
from ogdash.engine.gradients import GradientSet

# Classes with fewer training samples than this are scored by a detector fitted on all samples:
# a forest grown on three points says nothing.
MIN_CLASS_SIZE = 8


def given_labels(grads: GradientSet) -> np.ndarray:
    """The labels (n,) a closed-form last-layer GradientSet was computed with, read back from its errors.

    ``e = p - onehot(y)``: the given class is the one negative entry of ``e`` (softmax)
    or the sign of ``e`` (one sigmoid unit). Where ``p(y)`` rounded to exactly 1 there
    is no negative entry, and then ``y`` is the predicted class. Dense gradients carry
    no labels: pass them explicitly.
    """
    if grads.errors is None:
        raise OgdashError("class-conditional scores need the given labels; these gradients are dense, "
                          "so pass labels= (the training set's y).")
    e = np.asarray(grads.errors)
    if e.shape[1] == 1:
        return np.where(e[:, 0] < 0, 1, np.where(e[:, 0] > 0, 0, np.rint(grads.probs[:, -1]))).astype(np.int64)
    return np.where(e.min(1) < 0, e.argmin(1), grads.probs.argmax(1)).astype(np.int64)


class PerClass:
    """One outlier detector per given class; each sample is scored by its own class's detector.

    Classes with fewer than ``min_class_size`` samples at fit time, or unseen ones, are
    scored by one detector fitted on every sample. Scores of different classes'
    detectors are compared as they are, so the detector's score must mean the same in
    every class (IsolationForest's normalised path length does, and so do distances and
    projections in the one gradient space).

    Parameters
    ----------
    factory : callable returning a fresh, unfitted detector (``fit``/``score_samples``,
        higher = more detrimental), e.g. ``KnnDistance`` or ``lambda: isolation_forest(0)``.
    min_class_size : int, default ``MIN_CLASS_SIZE`` (8)

    Attributes
    ----------
    detectors_ : dict class -> fitted detector, for the classes large enough.
    fallback_ : the detector fitted on every sample, or None when no class needed it yet.
    """

    def __init__(self, factory: Callable[[], object], *, min_class_size: int = MIN_CLASS_SIZE):
        self.factory, self.min_class_size = factory, min_class_size

    def fit(self, G, y=None) -> "PerClass":
        """Fit one detector per given class.

        Parameters
        ----------
        G : array (n, p) or GradientSet
        y : int array (n,), the given labels (required).

        Returns
        -------
        self
        """
        labels = require_labels(y, n_samples(G), "a class-conditional detector")
        check_nonempty(G)
        self.detectors_ = {}
        classes, counts = np.unique(labels, return_counts=True)
        for c, count in zip(classes, counts):
            if count >= self.min_class_size:
                self.detectors_[int(c)] = self.factory().fit(rows(G, np.flatnonzero(labels == c)))
        small = [int(c) for c, count in zip(classes, counts) if count < self.min_class_size]
        self.fallback_ = self.factory().fit(G) if small else None
        return self

    def score_samples(self, G, y=None) -> np.ndarray:
        """Score each sample with the detector of the class it is given.

        Parameters
        ----------
        G : array (m, p) or GradientSet
        y : int array (m,), the labels the samples are given (required).

        Returns
        -------
        scores : float64 array (m,), higher = more detrimental.
        """
        check_fitted(self, "detectors_")
        labels = require_labels(y, n_samples(G), "a class-conditional detector")
        out = np.empty(len(labels), dtype=np.float64)
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            det = self.detectors_.get(int(c))
            if det is None:
                if self.fallback_ is None:
                    self.fallback_ = self.factory().fit(G)
                det = self.fallback_
            out[members] = det.score_samples(rows(G, members))
        return out


class KnnDistance:
    """Score = mean Euclidean distance to the ``k`` nearest fitted gradients (higher = more isolated).

    A sample's own row, when it was fitted too, is left out (the first neighbour at
    distance 0). Distances are in gradient units, so scores of detectors fitted on
    different classes compare as they are.

    Parameters
    ----------
    k : int, default 10

    Attributes
    ----------
    nn_ : the fitted ``sklearn.neighbors.NearestNeighbors`` (k + 1 neighbours, at most n).
    """

    def __init__(self, *, k: int = 10):
        self.k = k

    def fit(self, G, y=None) -> "KnnDistance":
        """Index the gradients for neighbour search.

        Parameters
        ----------
        G : array (n, p) or GradientSet (materialised as a dense float32 matrix)
        y : ignored

        Returns
        -------
        self
        """
        from sklearn.neighbors import NearestNeighbors

        X = dense(G)
        check_nonempty(X)
        self.nn_ = NearestNeighbors(n_neighbors=min(self.k + 1, len(X))).fit(X)
        return self

    def score_samples(self, G, y=None) -> np.ndarray:
        """Mean distance of each gradient to its k nearest fitted gradients, itself left out.

        Parameters
        ----------
        G : array (m, p) or GradientSet
        y : ignored

        Returns
        -------
        scores : float64 array (m,), higher = more detrimental.
        """
        check_fitted(self, "nn_")
        d, _ = self.nn_.kneighbors(dense(G))
        # leave the sample itself out: drop a first neighbour at distance 0, else the farthest one
        self_hit = d[:, 0] == 0
        kept = np.where(self_hit[:, None], d[:, 1:], d[:, :-1]) if d.shape[1] > 1 else d
        return kept.mean(1)


class MeanAlignment:
    """Score = the gradient's component along the fitted gradients' mean direction.

    Fitted within one given class, the mean gradient points where the class's
    largest gradients push: when many samples of one true class carry this label
    (a 1 labelled 7, again and again), that is their direction, and they score
    highest. Factored gradients are handled through their factors
    (``g·u = eᵀ M a`` with M the mean of ``e aᵀ``), never materialised, so this
    detector is exact at any width and is never projected.

    Attributes
    ----------
    direction_ : float64 array, the unit mean gradient: (K, H [+1]) from factors, else (p,).
    """

    def fit(self, G, y=None) -> "MeanAlignment":
        """The unit mean of the gradients.

        Parameters
        ----------
        G : array (n, p) or GradientSet
        y : ignored

        Returns
        -------
        self
        """
        check_nonempty(G)
        if isinstance(G, GradientSet) and G.factored:
            M = G.errors.astype(np.float64).T @ G.augmented_acts().astype(np.float64) / G.n
        else:
            M = dense(G).astype(np.float64).mean(0)
        self.direction_ = M / max(np.linalg.norm(M), 1e-300)
        return self

    def score_samples(self, G, y=None) -> np.ndarray:
        """Each gradient's component along the fitted mean direction.

        Parameters
        ----------
        G : array (m, p) or GradientSet of the fitted width.
        y : ignored

        Returns
        -------
        scores : float64 array (m,), higher = more detrimental.
        """
        check_fitted(self, "direction_")
        if isinstance(G, GradientSet) and G.factored and self.direction_.ndim == 2:
            e, a = G.errors.astype(np.float64), G.augmented_acts().astype(np.float64)
            return ((e @ self.direction_) * a).sum(1)
        return dense(G).astype(np.float64) @ self.direction_.ravel()
