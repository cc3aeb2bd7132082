"""Class-conditional detectors, held-out gradients, and ensembles of detectors.

**Class-conditional detection.** A mislabelled sample is unusual *for the class it
was given*: a 1 labelled 7 has a gradient that is ordinary across the training set
but not among the samples labelled 7. :class:`PerClass` fits one detector per given
class, the way the paper fits one IsolationForest per class for LLM prompts, and
scores each sample with its own class's detector: IsolationForest, the distance to
the nearest gradients (:class:`KnnDistance`), or the component along the class's mean
gradient (:class:`MeanAlignment`, which finds many 1s labelled 7 where density
detectors see a second cluster rather than outliers).

**Held-out gradients.** A model that has fitted a wrong label gives that sample a
small gradient. :func:`heldout_probabilities` refits the last layer (a logistic
regression on its inputs ``h``, the network below kept as it is) on the other folds,
so each sample's logit gradient ``e = p - onehot(y)``, the bias part of its
last-layer gradient, comes from a last layer that never saw its label.
:class:`HeldOutMargin` scores by that gradient's normalized margin.

**Ensembles.** Scores of different detectors live on different scales, so an
ensemble averages their *rank-normalised* scores (:func:`rank_normalise`: 0 for the
lowest score, 1 for the highest, ties share their mean rank). Members are detector
names (``ogdash.detect.detectors.DETECTORS``) or label-quality scores (``"lq:<method>"``,
see ``ogdash.influence.baselines.label_quality_scores``) from the same model's probabilities.

``benchmarks/detection.py`` measures them all (README, "Detection benchmark"). Every
score here follows ogdash's one convention: higher = more detrimental.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import rankdata

from ogdash.core.errors import OgdashError
from ogdash.engine.gradients import GradientSet

# Classes with fewer training samples than this are scored by a detector fitted on all samples:
# a forest grown on three points says nothing.
MIN_CLASS_SIZE = 8

# Named ensembles: (members, a short label, what they combine in words). Members are detector
# names or "lq:<label-quality method>"; each counts equally.
ENSEMBLES = {
    "ens_margins": (("heldout_margin", "lq:normalized_margin"), "held-out margin + normalized margin",
                    "the held-out gradient's margin and the normalized margin of the model's own probabilities "
                    "(a label-quality score)"),
    "ens_margin_align": (("heldout_margin", "pc_align"), "held-out margin + class-mean alignment",
                         "the held-out gradient's margin and the gradient's alignment with the mean gradient of its "
                         "given class (which singles out confusable pairs, many 1s labelled 7)"),
    "ens_gradient": (("l2", "pc_align"), "L2 norm + class-mean alignment",
                     "the gradient's L2 norm and its alignment with the mean gradient of its given class "
                     "(gradient detectors only)"),
}


def given_labels(grads: GradientSet) -> np.ndarray:
    """The labels a closed-form last-layer GradientSet was computed with, read back from its errors.

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


def check_labels(labels, n: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n:
        raise OgdashError(f"labels must be one integer per training sample ({n}); got shape {lab.shape}.")
    if lab.dtype.kind not in "iu":
        if lab.dtype.kind == "f" and np.all(lab == np.round(lab)):
            lab = lab.astype(np.int64)
        else:
            raise OgdashError(f"labels must be integers; got dtype {lab.dtype}.")
    return lab.astype(np.int64)


def _rows(G, positions):
    return G.subset(positions) if isinstance(G, GradientSet) else np.asarray(G)[positions]


def _n(G) -> int:
    return G.n if isinstance(G, GradientSet) else len(G)


# --------------------------------------------------------------------------- class-conditional


class PerClass:
    """One outlier detector per given class; each sample is scored by its own class's detector.

    factory: a callable returning a fresh detector with ``fit(G)`` and ``score_samples(G)``
    (higher = more detrimental), e.g. ``lambda: make_detector("iforest")``.
    ``fit(G, labels)`` and ``score_samples(G, labels)`` take the given labels (n,) beside
    ``G`` (an (n, p) array or a GradientSet). Classes with fewer than ``min_class_size``
    samples at fit time, or unseen ones, are scored by one detector fitted on every
    sample. Scores of different classes' detectors are compared as they are, so the
    detector's score must mean the same in every class (IsolationForest's normalised
    path length does, and so do distances and projections in the one gradient space).
    """

    def __init__(self, factory: Callable[[], object], min_class_size: int = MIN_CLASS_SIZE):
        self.factory, self.min_class_size = factory, min_class_size

    def fit(self, G, labels):
        labels = check_labels(labels, _n(G))
        if len(labels) == 0:
            raise OgdashError("cannot fit an outlier detector on zero samples.")
        self.detectors_ = {}
        classes, counts = np.unique(labels, return_counts=True)
        for c, count in zip(classes, counts):
            if count >= self.min_class_size:
                self.detectors_[int(c)] = self.factory().fit(_rows(G, np.flatnonzero(labels == c)))
        small = [int(c) for c, count in zip(classes, counts) if count < self.min_class_size]
        self.fallback_ = self.factory().fit(G) if small else None
        return self

    def score_samples(self, G, labels) -> np.ndarray:
        labels = check_labels(labels, _n(G))
        out = np.empty(len(labels), dtype=np.float64)
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            det = self.detectors_.get(int(c))
            if det is None:
                if self.fallback_ is None:
                    self.fallback_ = self.factory().fit(G)
                det = self.fallback_
            out[rows] = det.score_samples(_rows(G, rows))
        return out


class KnnDistance:
    """Score = mean Euclidean distance to the ``k`` nearest fitted gradients (higher = more isolated).

    A sample's own row, when it was fitted too, is left out (the first neighbour at
    distance 0). Distances are in gradient units, so scores of detectors fitted on
    different classes compare as they are.
    """

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, G, y=None):
        from sklearn.neighbors import NearestNeighbors

        X = _dense(G)
        if len(X) == 0:
            raise OgdashError("cannot fit an outlier detector on zero samples.")
        self.nn_ = NearestNeighbors(n_neighbors=min(self.k + 1, len(X))).fit(X)
        return self

    def score_samples(self, G) -> np.ndarray:
        d, _ = self.nn_.kneighbors(_dense(G))
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
    (``g·u = eᵀ M a`` with M the mean of ``e aᵀ``), never materialised.
    """

    def fit(self, G, y=None):
        if _n(G) == 0:
            raise OgdashError("cannot fit an outlier detector on zero samples.")
        if isinstance(G, GradientSet) and G.factored:
            M = G.errors.astype(np.float64).T @ G.augmented_acts().astype(np.float64) / G.n
        else:
            M = _dense(G).astype(np.float64).mean(0)
        self.direction_ = M / max(np.linalg.norm(M), 1e-300)
        return self

    def score_samples(self, G) -> np.ndarray:
        if isinstance(G, GradientSet) and G.factored and self.direction_.ndim == 2:
            e, a = G.errors.astype(np.float64), G.augmented_acts().astype(np.float64)
            return ((e @ self.direction_) * a).sum(1)
        return _dense(G).astype(np.float64) @ self.direction_.ravel()


def _dense(G) -> np.ndarray:
    X = G.matrix() if isinstance(G, GradientSet) else np.asarray(G)
    if X.ndim != 2:
        raise OgdashError(f"gradients must be a 2-D (n, p) array; got shape {X.shape}.")
    return np.asarray(X, dtype=np.float32)


# --------------------------------------------------------------------------- held-out gradients


PROBE_C = 0.1  # inverse L2 strength of the refitted last layer: too weak to memorise a wrong label
PROBE_FOLDS = 5


def heldout_probabilities(acts, labels, folds: int = PROBE_FOLDS, seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities (n, C) of the last layer refitted on its inputs ``acts`` (n, H).

    Each row comes from a logistic regression (standardised inputs, L2 with
    ``C = PROBE_C``) fitted on the other folds, so it never saw that sample's label.
    C = max label + 1; classes nobody was given get probability 0. Folds are
    stratified by label and seeded; classes smaller than ``folds`` shrink them.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(acts, dtype=np.float64)
    y = check_labels(labels, len(X))
    present = np.bincount(y)[np.bincount(y) > 0]
    if len(present) < 2:
        raise OgdashError("refitting the last layer needs at least two given classes.")
    folds = int(min(folds, present.min()))
    if folds < 2:
        raise OgdashError("every given class needs at least two samples to refit the last layer without them.")
    out = np.zeros((len(y), int(y.max()) + 1))
    for fit_rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        head = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=1000))
        head.fit(X[fit_rows], y[fit_rows])
        out[np.ix_(held, head.classes_)] = head.predict_proba(X[held])
    return out


def suggestions(grads: GradientSet, labels, seed: int = 0) -> np.ndarray:
    """(n, C) probabilities that each sample's suggested label comes from (argmax), higher = surer.

    Where the gradients are the last layer's closed form, they are the held-out last
    layer's (:func:`heldout_probabilities`): a model that never saw the sample's label, so
    a memorised wrong label is not echoed back. Otherwise the model's own probabilities.
    """
    if grads.acts is None:
        return np.asarray(grads.probs, dtype=np.float64)
    return heldout_gradients(grads, labels, seed=seed).probs


def heldout_margin(probs, labels) -> np.ndarray:
    """The held-out margin detector's scores from held-out probabilities (n, C): ``1 - (p_y - max_{k≠y} p_k + 1) / 2``."""
    from ogdash.influence.baselines import label_quality_scores

    return label_quality_scores(probs, check_labels(labels, len(probs)), "normalized_margin")


def heldout_gradients(grads: GradientSet, labels, folds: int = PROBE_FOLDS, seed: int = 0) -> GradientSet:
    """Closed-form last-layer gradients ``(p - onehot(y)) ⊗ h`` with ``p`` from the held-out last layer.

    grads: closed-form gradients (their ``acts`` are the refit's inputs); labels: the
    given labels (n,). Returns a GradientSet of the same samples whose ``probs``,
    ``loss`` and ``errors`` come from :func:`heldout_probabilities`.
    """
    if grads.acts is None:
        raise OgdashError("held-out gradients refit the last layer on its inputs, which dense gradients lack; "
                          "use the last layer's closed-form gradients or another detector.")
    y = check_labels(labels, grads.n)
    P = heldout_probabilities(grads.acts, y, folds, seed)
    K = max(grads.probs.shape[1], P.shape[1])
    P = np.pad(P, ((0, 0), (0, K - P.shape[1])))
    onehot = np.eye(K)[y]
    errors = (P[:, 1:] - y[:, None]) if grads.errors is not None and grads.errors.shape[1] == 1 else P - onehot
    loss = -np.log(np.clip(P[np.arange(grads.n), y], 1e-12, None))
    return GradientSet(grads.ids, P, loss, grads.layer, errors=errors.astype(np.float32), acts=grads.acts,
                       bias=grads.bias)


class HeldOutMargin:
    """Normalized margin (cleanlab's) of each sample's held-out logit gradient; higher = more detrimental.

    ``fit(G, labels)`` refits the last layer fold by fold (:func:`heldout_probabilities`);
    ``score_samples(G, labels)`` on the fitted samples returns ``1 - (p_y - max_{k≠y} p_k + 1) / 2``
    with ``p`` from the fold that did not see the sample. Only the fitted samples can be
    scored: cross-fitting has no held-out head for new ones.
    """

    def __init__(self, folds: int = PROBE_FOLDS, seed: int = 0):
        self.folds, self.seed = folds, seed

    def fit(self, G: GradientSet, labels):
        self.ids_ = np.asarray(G.ids).copy()
        self.probs_ = heldout_gradients(G, labels, self.folds, self.seed).probs
        return self

    def score_samples(self, G: GradientSet, labels) -> np.ndarray:
        if G.n != len(self.ids_) or not np.array_equal(np.asarray(G.ids), self.ids_):
            raise OgdashError("a held-out margin scores the samples it was fitted on; fit it on these gradients.")
        return heldout_margin(self.probs_, labels)


# --------------------------------------------------------------------------- ensembles


def rank_normalise(scores) -> np.ndarray:
    """Scores mapped to [0, 1] by rank: 0 = lowest, 1 = highest, tied scores share their mean rank.

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
    """Weighted mean of rank-normalised scores (all of one length); higher = more detrimental."""
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


def member_scores(train: GradientSet, name: str, val: GradientSet | None = None, seed: int = 0,
                  labels=None) -> list[np.ndarray]:
    """Each member's scores of a named ensemble, in ``ENSEMBLES[name]`` order (higher = more detrimental)."""
    from ogdash.detect.detectors import score
    from ogdash.influence.baselines import label_quality_scores

    if name not in ENSEMBLES:
        raise OgdashError(f"unknown ensemble {name!r}; choose one of {', '.join(ENSEMBLES)}.")
    labels = given_labels(train) if labels is None else check_labels(labels, train.n)
    out = []
    for member in ENSEMBLES[name][0]:
        if member.startswith("lq:"):
            out.append(label_quality_scores(train.probs, labels, member[3:]))
        else:
            out.append(score(train, member, val, seed, labels=labels))
    return out


def describe(name: str) -> str:
    """One sentence saying what a named ensemble combines."""
    if name not in ENSEMBLES:
        raise OgdashError(f"unknown ensemble {name!r}; choose one of {', '.join(ENSEMBLES)}.")
    return (f"Mean of the rank-normalised scores (0 = lowest, 1 = highest) of {ENSEMBLES[name][2]}; "
            "each member counts equally.")
