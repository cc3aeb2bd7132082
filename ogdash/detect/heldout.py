"""Held-out gradients: each sample's last-layer gradient from a last layer that never saw its label.

A model that has fitted a wrong label gives that sample a small gradient.
:func:`heldout_probabilities` refits the last layer (a logistic regression on its
inputs ``h``, the network below kept as it is) on the other folds, so each sample's
logit gradient ``e = p - onehot(y)``, the bias part of its last-layer gradient, comes
from a last layer that never saw its label. :class:`HeldOutMargin`, the recommended
detector, scores by that gradient's normalized margin; the same probabilities give
the suggested labels (:func:`suggestions`). Higher = more detrimental.
"""
from __future__ import annotations

import numpy as np

from ogdash.core import validate
from ogdash.core.errors import OgdashError
from ogdash.detect.base import check_fitted, require_labels
from ogdash.engine.gradients import GradientSet
from ogdash.influence.quality import label_quality_scores

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
    y = validate.labels(labels, len(X))
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


def heldout_gradients(grads: GradientSet, labels, folds: int = PROBE_FOLDS, seed: int = 0) -> GradientSet:
    """Closed-form last-layer gradients ``(p - onehot(y)) ⊗ h`` with ``p`` from the held-out last layer.

    grads: closed-form gradients (their ``acts`` are the refit's inputs); labels: the
    given labels (n,). Returns a GradientSet of the same samples whose ``probs``,
    ``loss`` and ``errors`` come from :func:`heldout_probabilities`.
    """
    if grads.acts is None:
        raise OgdashError("held-out gradients refit the last layer on its inputs, which dense gradients lack; "
                          "use the last layer's closed-form gradients or another detector.")
    y = validate.labels(labels, grads.n)
    P = heldout_probabilities(grads.acts, y, folds, seed)
    K = max(grads.probs.shape[1], P.shape[1])
    P = np.pad(P, ((0, 0), (0, K - P.shape[1])))
    onehot = np.eye(K)[y]
    errors = (P[:, 1:] - y[:, None]) if grads.errors is not None and grads.errors.shape[1] == 1 else P - onehot
    loss = -np.log(np.clip(P[np.arange(grads.n), y], 1e-12, None))
    return GradientSet(grads.ids, P, loss, grads.layer, errors=errors.astype(np.float32), acts=grads.acts,
                       bias=grads.bias)


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
    """The held-out margin detector's scores (n,) from held-out probabilities (n, C).

    ``1 - (p_y - max_{k≠y} p_k + 1) / 2``, cleanlab's normalized margin flipped; higher = more detrimental.
    """
    return label_quality_scores(probs, validate.labels(labels, len(probs)), "normalized_margin")


class HeldOutMargin:
    """Normalized margin (cleanlab's) of each sample's held-out logit gradient; higher = more detrimental.

    Only the fitted samples can be scored: cross-fitting has no held-out head for new ones.

    Parameters
    ----------
    folds : int, default ``PROBE_FOLDS`` (5), folds of the refit.
    seed : int, default 0, seeds the folds.

    Attributes
    ----------
    ids_ : array (n,), the ids of the fitted samples.
    probs_ : float64 array (n, C), their held-out probabilities.
    """

    def __init__(self, *, folds: int = PROBE_FOLDS, seed: int = 0):
        self.folds, self.seed = folds, seed

    def fit(self, G: GradientSet, y=None) -> "HeldOutMargin":
        """Refit the last layer fold by fold (:func:`heldout_probabilities`).

        Parameters
        ----------
        G : GradientSet of closed-form last-layer gradients (its ``acts`` are the refit's inputs).
        y : int array (n,), the given labels (required).

        Returns
        -------
        self
        """
        labels = require_labels(y, G.n, "the held-out margin")
        self.ids_ = np.asarray(G.ids).copy()
        self.probs_ = heldout_gradients(G, labels, self.folds, self.seed).probs
        return self

    def score_samples(self, G: GradientSet, y=None) -> np.ndarray:
        """``1 - (p_y - max_{k≠y} p_k + 1) / 2`` with ``p`` from the fold that did not see the sample.

        Parameters
        ----------
        G : the GradientSet it was fitted on (same ids, same order).
        y : int array (n,), the given labels (required).

        Returns
        -------
        scores : float64 array (n,), higher = more detrimental.
        """
        check_fitted(self, "probs_")
        if G.n != len(self.ids_) or not np.array_equal(np.asarray(G.ids), self.ids_):
            raise OgdashError("a held-out margin scores the samples it was fitted on; fit it on these gradients.")
        return heldout_margin(self.probs_, require_labels(y, G.n, "the held-out margin"))
