"""Label-quality baselines (cleanlab's rank scores), from predicted probabilities and labels.

Plain numpy over ``pred_probs (n, C)`` and integer ``labels (n,)``. The caller decides
which labels to feed: the given (possibly noisy) labels give the textbook baseline that
ranks by disagreement with the label; the model's predicted labels
(``pred_probs.argmax(1)``), which is what the paper's released code feeds, rank by low
confidence instead. Show both and name them.

The three functions whose name ends in ``_quality`` return cleanlab's label quality
(higher = cleaner) unchanged, so that they can be compared with cleanlab number for
number; :func:`label_quality_scores` is the flipped score, higher = more detrimental.
"""
from __future__ import annotations

import numpy as np

from ogdash.core import validate
from ogdash.core.errors import OgdashError

# Lower bound used by cleanlab's confidence-weighted entropy before dividing.
_CWE_CLIP = 1e-6


def self_confidence_quality(pred_probs, labels) -> np.ndarray:
    """Self-confidence label quality, ``p(label | x)``; higher = cleaner (cleanlab's direction).

    Parameters
    ----------
    pred_probs : array (n, C), rows are predicted class probabilities.
    labels : int array (n,), the labels to judge (given or predicted, the caller's choice).

    Returns
    -------
    quality : float64 array (n,) in [0, 1].  Equals
        ``cleanlab.rank.get_self_confidence_for_each_label(labels, pred_probs)``.
        NOT a detrimental score: use ``label_quality_scores(..., "self_confidence")``.
    """
    return _per_row(pred_probs, labels, lambda P, y: P[np.arange(len(y)), y])


def normalized_margin_quality(pred_probs, labels) -> np.ndarray:
    """Normalized-margin label quality; higher = cleaner (cleanlab's direction).

    The margin is ``p(label) - max_{k != label} p(k)``, in [-1, 1]; the normalized margin
    maps it to [0, 1] as ``(margin + 1) / 2``.

    Parameters
    ----------
    pred_probs : array (n, C), rows are predicted class probabilities, C >= 2.
    labels : int array (n,).

    Returns
    -------
    quality : float64 array (n,) in [0, 1].  Equals
        ``cleanlab.rank.get_normalized_margin_for_each_label(labels, pred_probs)``.
    """
    def margin(P, y):
        rows = np.arange(len(y))
        own = P[rows, y]
        P[rows, y] = -np.inf  # P is this chunk's own copy
        return (own - P.max(axis=1) + 1.0) / 2.0
    return _per_row(pred_probs, labels, margin)


def _per_row(pred_probs, labels, fn) -> np.ndarray:
    """``fn(P, y)`` (float64 (rows,)) over chunks of the checked probabilities (each a float64 copy), joined: an
    n x C memory-mapped file is never read whole."""
    from ogdash.core import chunks

    probs, lab = validate.probs_and_labels(pred_probs, labels)
    out = np.empty(len(lab))
    for start, stop, P in chunks.blocks(probs, np.float64):
        out[start:stop] = fn(P, lab[start:stop])
    return out


def _normalized_entropy(probs: np.ndarray) -> np.ndarray:
    # Shannon entropy divided by log(C), with 0 * log 0 = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
    return -terms.sum(axis=1) / np.log(probs.shape[1])


def confidence_weighted_entropy_quality(pred_probs, labels) -> np.ndarray:
    """Confidence-weighted-entropy label quality; higher = cleaner (cleanlab's direction).

    ``x = normalized_entropy(p) / max(p(label), 1e-6)`` (entropy over log C, so in [0, 1]),
    and the quality is ``log(1 + x) / max(x, 1e-6)``, which lies in (0, 1] and falls as
    ``x`` grows (uncertain prediction, or little mass on the label).

    Parameters
    ----------
    pred_probs : array (n, C), rows are predicted class probabilities, C >= 2.
    labels : int array (n,).

    Returns
    -------
    quality : float64 array (n,).  Equals
        ``cleanlab.rank.get_confidence_weighted_entropy_for_each_label(labels, pred_probs)``.
    """
    def quality(P, y):
        own = np.maximum(P[np.arange(len(y)), y], _CWE_CLIP)
        x = _normalized_entropy(P) / own
        # log(1 + x) rather than log1p(x): the latter differs from cleanlab by ~1e-10 when x < 1e-6.
        return np.log(1.0 + x) / np.maximum(x, _CWE_CLIP)
    return _per_row(pred_probs, labels, quality)


_QUALITY = {
    "normalized_margin": normalized_margin_quality,
    "self_confidence": self_confidence_quality,
    "confidence_weighted_entropy": confidence_weighted_entropy_quality,
}
# The method names label_quality_scores takes (the method registry labels and describes them).
LABEL_QUALITY_METHODS = tuple(_QUALITY)


def label_quality_scores(pred_probs, labels, method: str = "normalized_margin") -> np.ndarray:
    """Detrimental score from a cleanlab-style label quality: ``1 - quality``.

    Parameters
    ----------
    pred_probs : array (n, C)
        Predicted class probabilities (ideally out-of-sample).
    labels : int array (n,)
        The labels to judge.  Feed the given noisy labels for the textbook baseline, or
        ``pred_probs.argmax(1)`` to reproduce the paper's released code (which then ranks
        by low confidence rather than by label disagreement).
    method : {"normalized_margin", "self_confidence", "confidence_weighted_entropy"}
        Default ``"normalized_margin"``.

    Returns
    -------
    scores : float64 array (n,) in [0, 1], **higher = more detrimental**.  It is
        ``1 - quality`` where quality is cleanlab's score (higher = cleaner); the flip is
        monotone, so rankings are cleanlab's reversed and ties are kept.
    """
    if method not in _QUALITY:
        raise OgdashError(f"Unknown label-quality method {method!r}; choose one of {', '.join(LABEL_QUALITY_METHODS)}.")
    return 1.0 - _QUALITY[method](pred_probs, labels)
