"""A suggested budget for fine-tuning examples, where there are no class labels to estimate noise from.

For labelled data ogdash estimates the share of wrong labels by confident learning
(``ogdash.detect.budget``); prompt + completion pairs have no classes, so that estimator cannot run. Here the
detrimental scores themselves are read: a two-component Gaussian mixture is fitted to the log of the scores
(scores are made positive first; the same "small-loss" mixture DivideMix fits to per-sample losses), and the
weight of the component with the higher mean is the estimated share of detrimental examples. A bootstrap over
the examples gives the interval.

A mixture always splits the scores in two, so the split is trusted only when the data show two groups:

- the two-component fit must beat one Gaussian clearly (BIC lower by at least ``MIN_BIC_GAIN``),
- the components must be separated: Ashman's D = sqrt(2) |mu1 - mu2| / sqrt(s1^2 + s2^2) of at least
  ``MIN_SEPARATION`` (2 is the usual threshold for a clean split),
- the high component must hold between 3 examples and half of them.

Otherwise the estimate is marked unreliable, with a one-sentence warning, and its interval widened to
[0, max(high, 2 x estimate)]: the scores do not say how many examples are detrimental, only their order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.detect.budget import BudgetEstimate

MIN_BIC_GAIN = 10.0
MIN_SEPARATION = 2.0
FIT_ROWS = 20_000  # the mixture is fitted on at most this many scores (a seeded sample): 1-D, it needs few


@dataclass(frozen=True)
class PromptBudget(BudgetEstimate):
    """A budget estimate from a score mixture; ``reason`` says why it is unreliable ('' when reliable).

    ``separation``: Ashman's D of the two components; ``bic_gain``: how much lower the two-component BIC is.
    """

    reason: str = ""
    separation: float = 0.0
    bic_gain: float = 0.0

    @property
    def warning(self) -> str:
        if self.reliable:
            return ""
        return (f"Unreliable: {self.reason}, so the scores rank the examples but do not say how many are "
                f"detrimental; the share may lie anywhere in {self.low:.0%}–{self.high:.0%}.")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "separation": self.separation, "bic_gain": self.bic_gain}

    def describe(self) -> str:
        return (f"about {self.fraction:.1%} of the training examples ({self.count}) score as a separate high group "
                f"({self.level:.0%} interval {self.low:.1%}–{self.high:.1%}; a two-component mixture of the scores)"
                + (f". {self.warning}" if self.warning else ""))


def _positive_log(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if np.all(s > 0):
        return np.log(s)
    spread = np.ptp(s) or 1.0
    return np.log(s - s.min() + 1e-3 * spread)  # iForest-style scores: shift to positive, keep the order


def _fit(x: np.ndarray, seed: int):
    from sklearn.mixture import GaussianMixture

    X = x[:, None]
    one = GaussianMixture(1, random_state=seed).fit(X)
    two = GaussianMixture(2, random_state=seed, n_init=2).fit(X)
    hi = int(np.argmax(two.means_.ravel()))
    mu, var = two.means_.ravel(), two.covariances_.ravel()
    sep = float(np.sqrt(2) * abs(mu[1] - mu[0]) / np.sqrt(var.sum()))
    share = float(np.mean(two.predict(X) == hi))
    return share, sep, float(one.bic(X) - two.bic(X))


def suggest_prompt_budget(scores, n_boot: int = 50, level: float = 0.9, seed: int = 0) -> PromptBudget:
    """Estimated share of detrimental examples from their scores (higher = more detrimental), with an interval.

    The share is the fraction of examples the two-component mixture assigns to its high component.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) < 10 or not np.all(np.isfinite(s)):
        raise OgdashError(f"a budget estimate needs at least 10 finite scores; got {len(s)}.")
    if not 0 < level < 1:
        raise OgdashError(f"level must be in (0, 1); got {level}.")
    rng = np.random.default_rng(seed)
    x = _positive_log(s)
    fit_x = x if len(x) <= FIT_ROWS else rng.choice(x, FIT_ROWS, replace=False)
    share, sep, gain = _fit(fit_x, seed)
    boots = [_fit(rng.choice(fit_x, len(fit_x)), seed)[0] for _ in range(n_boot)]
    tail = (1 - level) / 2
    low, high = np.quantile(boots, [tail, 1 - tail]) if boots else (share, share)
    low, high = min(float(low), share), max(float(high), share)
    n = len(s)
    reasons = []
    if gain < MIN_BIC_GAIN:
        reasons.append("the scores fit one group about as well as two")
    if sep < MIN_SEPARATION:
        reasons.append(f"the two groups of scores overlap (separation {sep:.1f}, below {MIN_SEPARATION:.0f})")
    if not 3 <= share * n <= n / 2:
        reasons.append(f"the high group holds {share:.0%} of the examples")
    reliable = not reasons
    if not reliable:
        low, high = 0.0, float(min(1.0, max(high, 2 * share)))
    return PromptBudget(fraction=share, low=float(low), high=float(high), level=level, n=n,
                        source="score mixture", own_error=0.0, reliable=reliable, reason="; ".join(reasons),
                        separation=sep, bic_gain=gain)
