"""A suggested budget for fine-tuning examples, where there are no class labels to estimate noise from.

For labelled data ogdash estimates the share of wrong labels by confident learning
(``ogdash.detect.budget``); prompt + completion pairs have no classes, so that estimator cannot run. Here the
detrimental scores themselves are read: a two-component Gaussian mixture is fitted to the scores (to their logs
when they are all positive, as norms and losses are; the same "small-loss" mixture DivideMix fits to per-sample
losses), and the share of examples in the component with the higher mean is the estimated share of detrimental
examples; with groups (the ``align`` score is relative to its group), one mixture per group. A bootstrap over the
examples gives the interval.

A mixture always splits the scores in two, so the split is trusted only when the data show two groups:

- the two-component fit must beat one Gaussian clearly (BIC lower by at least ``MIN_BIC_GAIN``),
- the components must be separated: Ashman's D = sqrt(2) |mu1 - mu2| / sqrt(s1^2 + s2^2) of at least
  ``MIN_SEPARATION`` (2 is the usual threshold for a clean split),
- the high component must hold between 3 examples and half of them.

Otherwise the estimate is marked unreliable, with a one-sentence warning, and its interval widened to
[0, max(high, 2 x estimate)]: the scores do not say how many examples are detrimental, only their order. Per
group, a group without two clear groups of scores is left out of the estimate, named in the warning, and widens
the interval's top; on the five-task benchmark those are the arithmetic tasks, whose wrong answers a 135M model
cannot tell from right ones (README).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.detect.budget import BudgetEstimate

MIN_GROUP = 20  # examples a group needs for a mixture of its own
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
    groups: tuple = ()

    @property
    def warning(self) -> str:
        if self.reliable:
            return ""
        return (f"Unreliable: {self.reason}; the scores rank the examples but do not say how many are detrimental "
                f"there, and the share may lie anywhere in {self.low:.0%}–{self.high:.0%}.")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "separation": self.separation, "bic_gain": self.bic_gain,
                "groups": [dict(g) for g in self.groups]}

    def describe(self, warning: bool = True) -> str:
        """One sentence for people (and the warning, when unreliable and ``warning``)."""
        how = "in each group" if len(self.groups) > 1 else "of the scores"
        if self.fraction == 0 and not self.reliable:
            text = (f"no budget can be suggested: no group of examples scores apart from the rest (a two-component "
                    f"mixture {how})")
        else:
            text = (f"about {self.fraction:.1%} of the training examples ({self.count}) score as a separate high "
                    f"group ({self.level:.0%} interval {self.low:.1%}–{self.high:.1%}; a two-component mixture {how})")
        return text + (f". {self.warning}" if warning and self.warning else "")


def _scale(scores: np.ndarray) -> np.ndarray:
    """Positive scores (norms, losses) are skewed: their logs; others (z-scores) as they are."""
    s = np.asarray(scores, dtype=np.float64)
    return np.log(s) if np.all(s > 0) else s


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


def _one(x: np.ndarray, n_boot: int, level: float, seed: int) -> dict:
    """The mixture's estimate for one set of scores, its bootstrap interval and why it is not trusted ('')."""
    rng = np.random.default_rng(seed)
    n = len(x)
    if n < MIN_GROUP:
        return {"n": n, "share": 0.0, "low": 0.0, "high": 1.0, "separation": 0.0, "bic_gain": 0.0,
                "reason": f"too few examples ({n}) to tell"}
    fit_x = x if n <= FIT_ROWS else rng.choice(x, FIT_ROWS, replace=False)
    share, sep, gain = _fit(fit_x, seed)
    boots = [_fit(rng.choice(fit_x, len(fit_x)), seed)[0] for _ in range(n_boot)]
    tail = (1 - level) / 2
    low, high = np.quantile(boots, [tail, 1 - tail]) if boots else (share, share)
    reasons = []
    if gain < MIN_BIC_GAIN:
        reasons.append("the scores fit one group about as well as two")
    if sep < MIN_SEPARATION:
        reasons.append(f"the two groups of scores overlap (separation {sep:.1f}, below {MIN_SEPARATION:.0f})")
    if not 3 <= share * n <= n / 2:
        reasons.append(f"the high group holds {share:.0%} of the examples")
    return {"n": n, "share": share, "low": min(float(low), share), "high": max(float(high), share),
            "separation": sep, "bic_gain": gain, "reason": "; ".join(reasons)}


def suggest_prompt_budget(scores, groups=None, names=None, n_boot: int = 50, level: float = 0.9,
                          seed: int = 0) -> PromptBudget:
    """Estimated share of detrimental examples from their scores (higher = more detrimental), with an interval.

    Without ``groups`` one mixture is fitted to all scores. With ``groups`` (a group index per example, and their
    ``names``), one per group: a score made relative to its group (``align``) separates, or not, group by group.
    The estimate counts the groups whose scores separate; a group whose scores do not is named in the warning and
    adds nothing to the estimate but up to ``max(high, 2 x share)`` of its examples to the interval's top.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) < 10 or not np.all(np.isfinite(s)):
        raise OgdashError(f"a budget estimate needs at least 10 finite scores; got {len(s)}.")
    if not 0 < level < 1:
        raise OgdashError(f"level must be in (0, 1); got {level}.")
    x = _scale(s)
    labels = np.zeros(len(s), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    names = ["all"] if groups is None else list(names or [str(g) for g in range(labels.max() + 1)])
    parts = []
    for g, name in enumerate(names):
        m = labels == g
        if m.any():
            parts.append({"group": name, **_one(x[m], n_boot, level, seed)})
    n = len(s)
    good = [p for p in parts if not p["reason"]]
    bad = [p for p in parts if p["reason"]]
    count = sum(p["share"] * p["n"] for p in good)
    low = sum(p["low"] * p["n"] for p in good)
    high = sum(p["high"] * p["n"] for p in good) + sum(min(1.0, max(p["high"], 2 * p["share"])) * p["n"]
                                                       for p in bad)
    if groups is None or len(parts) == 1:
        reason = parts[0]["reason"]
        if reason:  # one mixture, not trusted: its split is the (unreliable) estimate
            count, low = parts[0]["share"] * n, 0.0
    elif not good:
        reason = "in no group do the scores show a separate high group"
    else:
        listed = [p["group"] for p in bad]
        listed = ", ".join(listed[:-1]) + " and " + listed[-1] if len(listed) > 1 else "".join(listed)
        reason = (f"in {listed} the scores show no separate high group, so their share is unknown and not "
                  "counted") if bad else ""
    sep = min((p["separation"] for p in parts), default=0.0)
    gain = min((p["bic_gain"] for p in parts), default=0.0)
    return PromptBudget(fraction=count / n, low=low / n, high=min(1.0, high / n), level=level, n=n,
                        source="score mixture" + ("" if groups is None else " per group"), own_error=0.0,
                        reliable=not reason, reason=reason, separation=sep, bic_gain=gain, groups=tuple(parts))
