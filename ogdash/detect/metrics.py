"""How well flags match the truth, when the truth is known."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def detection_metrics(flags, scores, noisy, auroc: float | None = None) -> dict:
    """Precision, recall, AUROC and the paper's "outlier detection accuracy".

    flags: (n,) bool, the flagged samples. scores: (n,) higher = more detrimental.
    noisy: (n,) bool, the samples whose given label is wrong. ``accuracy`` is the
    share of all training samples where flagged == noisy (Table 1 of the paper),
    not the recall on the noisy ones. ``auroc``: when known (it depends on the scores, not the budget).
    """
    flags, noisy = np.asarray(flags, bool), np.asarray(noisy, bool)
    tp = int(np.sum(flags & noisy))
    return {
        "precision": tp / max(1, int(flags.sum())),
        "recall": tp / max(1, int(noisy.sum())),
        "auroc": detection_auroc(scores, noisy) if auroc is None else auroc,
        "accuracy": float(np.mean(flags == noisy)),
        "n_flagged": int(flags.sum()),
        "n_noisy": int(noisy.sum()),
        "n_flagged_noisy": tp,
    }


def detection_auroc(scores, noisy) -> float:
    """AUROC of the scores against the noisy samples (nan unless both kinds are present)."""
    noisy = np.asarray(noisy, bool)
    return float(roc_auc_score(noisy, scores)) if 0 < noisy.sum() < len(noisy) else float("nan")
