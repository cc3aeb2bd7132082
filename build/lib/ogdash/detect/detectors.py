"""Outlier detectors on gradient space, and the budget rule that turns scores into flags.

Every detector follows scikit-learn's estimator API, ``fit(G)`` then
``score_samples(G)``, but with ogdash's one convention: **higher score = more
detrimental** (scikit-learn's own ``score_samples`` means "more normal"; the
wrappers here flip it once). ``G`` is an (n, p) array or a ``GradientSet``; norm
detectors read a GradientSet's factors directly and never materialise it.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.svm import OneClassSVM

from ogdash.core.errors import OgdashError
from ogdash.detect.ensemble import (
    ENSEMBLES,
    HeldOutMargin,
    KnnDistance,
    MeanAlignment,
    PerClass,
    combine,
    given_labels,
    member_scores,
)
from ogdash.engine.gradients import GradientSet

DETECTORS = {
    "iforest": "IsolationForest on the gradients (the paper's main detector)",
    "l1": "L1 norm of the gradient",
    "l2": "L2 norm of the gradient",
    "ocsvm": "OneClassSVM fitted on validation gradients as inliers",
    # class-conditional and ensemble detectors: their logic lives in ogdash.detect.ensemble
    "pc_iforest": "IsolationForest within each given class (class-conditional)",
    "pc_knn": "distance to the nearest gradients of the same given class (class-conditional kNN)",
    "pc_align": "alignment with the mean gradient of the same given class (class-conditional)",
    "heldout_margin": "margin of the held-out gradient (last layer refitted without the sample)",
    **{name: f"ensemble: {label}" for name, (_, label, _) in ENSEMBLES.items()},
}
# The default: the detector with the best detection in benchmarks/detection.py (README, "Detection benchmark").
RECOMMENDED = "heldout_margin"

# Above this many coordinates, forests and SVMs run on a seeded sparse projection.
MAX_DENSE_DIM = 2048
DEFAULT_PROJECTION_DIM = 256


def _matrix(G) -> np.ndarray:
    if isinstance(G, GradientSet):
        return G.matrix()
    G = np.asarray(G, dtype=np.float32)
    if G.ndim != 2:
        raise OgdashError(f"gradients must be a 2-D (n, p) array; got shape {G.shape}.")
    return G


class NormDetector:
    """Score = the gradient's L1 or L2 norm. Nothing to fit."""

    def __init__(self, ord: int = 2):
        if ord not in (1, 2):
            raise OgdashError(f"norm order must be 1 or 2; got {ord}.")
        self.ord = ord

    def fit(self, G, y=None):
        return self

    def score_samples(self, G) -> np.ndarray:
        if isinstance(G, GradientSet):
            return G.norms(self.ord)
        return np.linalg.norm(_matrix(G).astype(np.float64), ord=self.ord, axis=1)


class SklearnDetector:
    """Wraps any scikit-learn-style outlier estimator; flips its score so higher = more detrimental.

    ``sign=-1`` for estimators whose ``score_samples`` is "higher = more normal"
    (IsolationForest, OneClassSVM, LocalOutlierFactor); ``sign=+1`` with
    ``method='decision_function'`` for PyOD detectors.
    """

    def __init__(self, estimator, sign: int = -1, method: str = "score_samples"):
        self.estimator, self.sign, self.method = estimator, sign, method

    def fit(self, G, y=None):
        X = _matrix(G)
        if len(X) == 0:
            raise OgdashError("cannot fit an outlier detector on zero samples.")
        self.estimator.fit(X)
        return self

    def score_samples(self, G) -> np.ndarray:
        return self.sign * np.asarray(getattr(self.estimator, self.method)(_matrix(G)), dtype=np.float64)


class KernelOneClassSVM:
    """OneClassSVM (RBF) on gradients through their inner products: exact, and from factors when factored.

    ``gamma`` follows scikit-learn's 'scale' rule, ``1 / (p · Var(G))``, with the
    variance over all entries of the fitted gradients, also computed from factors;
    on the same data this equals ``OneClassSVM(gamma='scale')`` on the dense matrix.
    """

    def __init__(self, nu: float = 0.1, chunk_size: int = 2048):
        self.nu, self.chunk_size = nu, chunk_size

    @staticmethod
    def _moments(G: GradientSet) -> tuple[float, float]:
        if G.factored:
            e, a = G.errors.astype(np.float64), G.augmented_acts().astype(np.float64)
            total = float(np.sum(e.sum(1) * a.sum(1)))
            squares = float(np.sum((e * e).sum(1) * (a * a).sum(1)))
        else:
            M = G.matrix().astype(np.float64)
            total, squares = float(M.sum()), float((M * M).sum())
        size = G.n * G.dim
        return total / size, squares / size

    def _kernel(self, G: GradientSet, rows, ref: GradientSet, ref_sq: np.ndarray) -> np.ndarray:
        part = G.subset(rows)
        d2 = (part.norms(2) ** 2)[:, None] + ref_sq[None, :] - 2 * part.gram(ref)
        return np.exp(-self.gamma * np.maximum(d2, 0))

    def fit(self, G: GradientSet, y=None):
        if G.n == 0:
            raise OgdashError("OneClassSVM needs validation gradients as inliers; give a non-empty validation set.")
        mean, meansq = self._moments(G)
        var = meansq - mean * mean
        self.gamma = 1.0 / (G.dim * var) if var > 0 else 1.0
        everyone = np.arange(G.n)
        svm = OneClassSVM(kernel="precomputed", nu=self.nu).fit(self._kernel(G, everyone, G, G.norms(2) ** 2))
        # scoring needs the kernel against the support vectors only: f(x) = Σ α_i k(x, sv_i) + b
        self._sv = G.subset(svm.support_)
        self._sv_sq = self._sv.norms(2) ** 2
        self._alpha, self._b = svm.dual_coef_[0].astype(np.float64), float(svm.intercept_[0])
        return self

    def score_samples(self, G: GradientSet) -> np.ndarray:
        spans = [np.arange(s, min(s + self.chunk_size, G.n)) for s in range(0, G.n, self.chunk_size)]
        return np.concatenate([-(self._kernel(G, rows, self._sv, self._sv_sq) @ self._alpha + self._b) for rows in spans])


def make_detector(name: str, seed: int = 0):
    """A fresh detector by name (see ``DETECTORS``)."""
    if name == "l1":
        return NormDetector(1)
    if name == "l2":
        return NormDetector(2)
    if name == "iforest":
        return SklearnDetector(IsolationForest(n_estimators=100, random_state=seed))
    if name == "ocsvm":
        return KernelOneClassSVM(nu=0.1)
    if name == "pc_iforest":
        return PerClass(lambda: make_detector("iforest", seed))
    if name == "pc_knn":
        return PerClass(KnnDistance)
    if name == "pc_align":
        return PerClass(MeanAlignment)
    if name == "heldout_margin":
        return HeldOutMargin(seed=seed)
    raise OgdashError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}.")


def score(train: GradientSet, detector: str = RECOMMENDED, val: GradientSet | None = None, seed: int = 0,
          labels=None) -> np.ndarray:
    """Detrimental score of every training sample (n,), higher = more detrimental.

    Norms come exactly from the gradients (from factors when factored).
    OneClassSVM fits on the validation gradients (inliers) and scores the
    training ones through exact inner products (from factors when factored).
    IsolationForest fits on the training gradients; wider than ``MAX_DENSE_DIM``
    they are first projected (a TensorSketch of the factors, or a seeded sparse
    random projection of dense gradients).
    Class-conditional detectors (``pc_*``), the held-out margin and ensembles
    need the given training labels (n,); without ``labels`` they are read back
    from closed-form gradients (``ogdash.detect.ensemble.given_labels``).
    """
    if detector in ENSEMBLES:
        return combine(member_scores(train, detector, val, seed, labels))
    det = make_detector(detector, seed)
    if isinstance(det, (PerClass, HeldOutMargin)) and labels is None:
        labels = given_labels(train)
    if isinstance(det, HeldOutMargin):
        return det.fit(train, labels).score_samples(train, labels)
    if isinstance(det, NormDetector):
        return det.score_samples(train)
    if detector == "ocsvm":
        if val is None or val.n == 0:
            raise OgdashError("OneClassSVM needs validation gradients as inliers; give a non-empty validation set.")
        return det.fit(val).score_samples(train)
    if not train.projected and train.dim > MAX_DENSE_DIM:
        from ogdash.engine.gradients import project

        train = project(train, DEFAULT_PROJECTION_DIM, seed)
    if isinstance(det, PerClass):
        return det.fit(train, labels).score_samples(train, labels)
    return det.fit(train).score_samples(train)


def budget_count(budget: float, n: int) -> int:
    """Number of samples a budget flags: a fraction 0 < b < 1 of n (at least 1), or a count b >= 1."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)) or not math.isfinite(budget):
        raise OgdashError(f"budget must be a number; got {budget!r}.")
    if budget <= 0:
        raise OgdashError(f"budget must be positive (a fraction like 0.05 or a count like 50); got {budget}.")
    if budget < 1:
        return max(1, int(round(budget * n)))
    if budget != int(budget):
        raise OgdashError(f"a budget of 1 or more is a count of samples and must be whole; got {budget}.")
    if budget > n:
        raise OgdashError(f"budget {int(budget)} is more than the {n} training samples; give a count up to {n} "
                          "or a fraction below 1.")
    return int(budget)


def flag(scores, budget: float) -> np.ndarray:
    """Boolean mask of the top-k scores, k from ``budget_count``; ties keep the earlier sample."""
    scores = np.asarray(scores, dtype=np.float64)
    k = budget_count(budget, len(scores))
    top = np.argsort(-scores, kind="stable")[:k]
    mask = np.zeros(len(scores), dtype=bool)
    mask[top] = True
    return mask
