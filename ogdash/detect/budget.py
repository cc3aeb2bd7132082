"""A suggested budget: the share of training samples that are probably mislabelled, estimated from the data.

The estimate is confident learning's (Northcutt et al., as cleanlab computes it
with ``estimation_method="off_diagonal_calibrated"``): a sample labelled ``i``
counts as "really ``j``" when the model's probability of ``j`` reaches the mean
probability of ``j`` among the samples labelled ``j``; the counts, rescaled so that
every given class keeps its size, estimate the joint of given and true labels, and
the mass off its diagonal is the noise rate. True labels are never used.

Its uncertainty is a bootstrap over the training samples: the estimate is recomputed
on resampled sets and the interval is the central ``level`` share of those
estimates. That measures sampling noise only, not a classifier that is itself often
wrong: confident learning cannot tell the classifier's own mistakes from wrong
labels, and a weak one makes it confidently wrong. So the estimate also measures the
classifier's **own error**: the share of samples whose most probable class differs
from the given label beyond the share the estimate calls mislabelled (a perfect
classifier disagrees exactly with the wrong labels). When it exceeds
``RELIABLE_ERROR`` (10% of the samples, as much as a typical noise rate) the estimate
is marked unreliable (``reliable``, ``warning``) and its interval widened by the own
error on both sides: each of those mistakes may have been counted as a wrong label,
or hidden one. On the detection benchmark (strong models, own error 2-5%) it never
fires; on a 50,000-sample, 100-class tabular set with 20% noise and a model at 55%
test accuracy it does (own error 14%, estimate 31%, widened interval 17-46%). It
cannot see a classifier so weak that confident learning counts nearly all its
disagreement as noise (own error near 0, estimate far too high).

Which probabilities (``probabilities(grads, labels, source)``): ``"probe"``, the
default, reads the held-out last layer of ``ogdash.detect.heldout.heldout_probabilities``
(refitted on the last layer's inputs without each fold), so every sample is judged by
a classifier that never saw its label; ``"model"`` reads the model's own
probabilities, which a model that memorised its noisy labels pushes too low. On the
detection benchmark both are within 30% of the true rate in every case (mean relative
error 2.9% for the probe, then a logistic refit, 4.3% for the model; 3.7% for today's
closed-form probe on the 10 cases re-measured; README, "Detection benchmark").

Both are blind to a network that memorised its noisy labels: its features already encode
each wrong label, so the refitted last layer echoes it, the estimate collapses (wine with
10% flipped labels: 1 of 14 flips flagged) and the own error is near 0, so it looked
reliable. **Cross-fitted** probabilities (``ogdash.detect.crossfit``: K models, each trained
without one fold) do not have that blind spot; ``suggest_budget(..., crossfit=P)`` estimates
from them (source ``"crossfit"``), and whenever they are given they are also the
**reference** of the reliability check: the own error is the share of given labels the
cross-fitted models disagree with beyond the estimate, and an estimate below half the
cross-fitted one is unreliable too (its interval is widened by that own error).

A classifier so weak that confident learning counts its own mistakes as wrong labels shows
itself on the **test set**: with test labels no noisier than the estimate says the training
labels are (share ``r``, spread over the other ``K - 1`` classes), a classifier that errs on a
share ``e`` of the true labels misses ``r + e (1 - r K / (K - 1))`` of the given test labels, so
the test error bounds its own error from below. When that bound exceeds ``RELIABLE_ERROR``, or
the model misses more than ``WEAK_TEST_ERROR`` of the test labels (a classifier that weak, or
test labels that wrong, cannot ground any estimate), the estimate is unreliable and its interval
reaches down by the whole test error (to 0 past ``WEAK_TEST_ERROR``): each of the classifier's
mistakes may have been counted as a wrong label. Measured: the shipped
``sample_data/reviews.csv`` (6% flipped) estimated 32% with MiniLM (test error 38%) and 58% with
TF-IDF (test error 48%), both called reliable before and unreliable now; built-in digits with 20%
or 40% injected noise (CNN, logistic regression), wine and breast cancer with 10% (MLP) stay
reliable, as does ``sample_data/digits.csv`` with the MLP (estimate 6.4%, truth 5%). With
logistic regression there (test error 19%, estimate 7.7%) the bound is 12%: unreliable, interval
0-22%.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ogdash.core import chunks, validate
from ogdash.core.errors import OgdashError
from ogdash.detect.heldout import heldout_gradients
from ogdash.engine.gradients import GradientSet

SOURCES = ("probe", "model")  # what ``probabilities`` reads from gradients; "crossfit" comes from its own models
CROSSFIT = "crossfit"
DEFAULT_SOURCE = "probe"
RELIABLE_ERROR = 0.10  # the classifier's own error above which the estimate is marked unreliable
WEAK_TEST_ERROR = 0.35  # a model missing more of its test labels than this cannot ground an estimate, whatever it says


@dataclass(frozen=True)
class BudgetEstimate:
    """Estimated share of detrimental (mislabelled) training samples, with a bootstrap interval.

    fraction: the point estimate in [0, 1]; low, high: the central ``level`` bootstrap
    interval, widened by ``own_error`` on both sides when unreliable; n: number of training samples;
    source: which probabilities ('probe' or 'model'); own_error: the share of samples the
    classifier gets wrong beyond the estimated wrong labels; reliable: own_error is at
    most ``RELIABLE_ERROR``.
    """

    fraction: float
    low: float
    high: float
    level: float
    n: int
    source: str
    own_error: float = 0.0
    reliable: bool = True
    reference: str | None = None  # the probabilities the own error was measured on, when not ``source``'s
    test_error: float | None = None  # the model's error on the test set, when it made the estimate unreliable

    @property
    def warning(self) -> str:
        """One sentence saying why the estimate is unreliable ('' when it is reliable)."""
        if self.reliable:
            return ""
        if self.test_error is not None:
            return (f"Unreliable: the model misses {self.test_error:.0%} of the test labels, too many for confident "
                    f"learning to tell its mistakes from wrong labels; the true share may lie anywhere in "
                    f"{self.low:.0%}–{self.high:.0%}. A stronger model (or encoder) makes the estimate meaningful.")
        if self.reference:
            return (f"Unreliable: models trained without each sample disagree with "
                    f"{self.own_error + self.fraction:.0%} of the given labels, far more than the {self.fraction:.1%} "
                    f"this estimate calls wrong (the model may have memorised its wrong labels); the true share may "
                    f"lie anywhere in {self.low:.0%}–{self.high:.0%}.")
        return (f"Unreliable: the classifier behind it disagrees with {self.own_error:.0%} of the given labels "
                f"beyond the ones it calls wrong, and confident learning cannot tell its mistakes from wrong labels; "
                f"the true share may lie anywhere in {self.low:.0%}–{self.high:.0%}.")

    @property
    def budget(self) -> float:
        """The estimate as a budget for ``flag``: a fraction, at least one sample's worth."""
        return float(min(max(self.fraction, 1.0 / self.n), (self.n - 1.0) / self.n))

    @property
    def count(self) -> int:
        """The budget as a number of samples."""
        return int(round(self.budget * self.n))

    def to_dict(self) -> dict:
        """JSON-ready fields (what the CLI prints as suggested_budget)."""
        return {"fraction": self.fraction, "low": self.low, "high": self.high, "level": self.level,
                "count": self.count, "source": self.source, "own_error": self.own_error, "reliable": self.reliable,
                "reference": self.reference, "test_error": self.test_error, "warning": self.warning}

    def describe(self) -> str:
        """One sentence for people: the estimate, its count and its interval (and the warning when unreliable)."""
        how = {"probe": "a last layer refitted without each sample", "model": "the model's own probabilities",
               CROSSFIT: "models each trained without the sample"}.get(self.source, "the given probabilities")
        return (f"about {self.fraction:.1%} of the training samples ({self.count}) look mislabelled "
                f"({self.level:.0%} interval {self.low:.1%}–{self.high:.1%}; confident learning on {how})"
                + (f". {self.warning}" if self.warning else ""))


def confident_joint(pred_probs, labels) -> np.ndarray:
    """Confident joint counts (K, K): row = given label, column = the confidently predicted class.

    Equals ``cleanlab.count.compute_confident_joint(labels, pred_probs, calibrate=False)``:
    per-class thresholds ``t_j`` = mean of ``p_j`` over the samples labelled ``j``; a
    sample counts in the column of the one class whose probability reaches its
    threshold (the most probable one when several do; nowhere when none does); each
    diagonal entry is at least 1.
    """
    P, y = validate.probs_and_labels(pred_probs, labels)
    return _confident_joint(P, y)


def _given_probability(P, y: np.ndarray) -> np.ndarray:
    """Each sample's probability of its given label (n,), float64, chunk by chunk."""
    out = np.empty(len(y))
    for start, stop, block in chunks.blocks(P):
        out[start:stop] = block[np.arange(stop - start), y[start:stop]]
    return out


def _thresholds(weights, y: np.ndarray, given: np.ndarray, K: int) -> np.ndarray:
    """Per-class thresholds t_j: the (weighted) mean probability of j among the samples labelled j; a class
    nobody was given can confidently claim no one (infinite threshold)."""
    counts = np.bincount(y, weights=weights, minlength=K)
    sums = np.bincount(y, weights=given if weights is None else weights * given, minlength=K)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def _confident_joint(P, y: np.ndarray) -> np.ndarray:
    K = P.shape[1]
    thresholds = _thresholds(None, y, _given_probability(P, y), K)
    cj = np.zeros((K, K), dtype=np.int64)
    for start, stop, block in chunks.blocks(P):
        confident = block >= thresholds - 1e-6
        n_confident = confident.sum(1)
        guess = np.where(n_confident > 1, block.argmax(1), confident.argmax(1))
        keep = n_confident > 0
        np.add.at(cj, (y[start:stop][keep], guess[keep]), 1)
    np.fill_diagonal(cj, np.maximum(cj.diagonal(), 1))
    return cj


def _rate(P: np.ndarray, y: np.ndarray) -> float:
    cj = _confident_joint(P, y)
    share = np.bincount(y, minlength=P.shape[1]) / len(y)
    # calibrated joint: each given class keeps its share; its off-diagonal part is the noise
    return float(np.sum(share * (1.0 - cj.diagonal() / cj.sum(1))))


class _TooWide(Exception):
    """More entries lie near a threshold than ``_Guesses`` keeps."""


class _Guesses:
    """Every sample's confidently predicted class under any thresholds within ``band`` of ``thresholds``, from one
    pass over the probabilities: what the bootstrap needs, without a pass over n x C values per resample.

    An entry P_ij far above (below) its class's threshold is confident (not) under all of them; only the few
    entries within the band can change, so they are kept (row, class, value) and recounted per resample.
    """

    def __init__(self, P, thresholds: np.ndarray, band: np.ndarray, limit: int | None = None):
        low, high = thresholds - 1e-6 - band, thresholds - 1e-6 + band
        n = len(P)
        self.fixed = np.empty(n, dtype=np.int32)  # entries confident under every threshold
        self.member = np.empty(n, dtype=np.int32)  # one of them (the one, when there is one)
        self.top = np.empty(n, dtype=np.int64)  # the most probable class
        rows, cols, values, kept = [], [], [], 0
        for start, stop, block in chunks.blocks(P):
            surely = block >= high
            self.fixed[start:stop], self.member[start:stop] = surely.sum(1), surely.argmax(1)
            self.top[start:stop] = block.argmax(1)
            r, c = np.nonzero((block >= low) & ~surely)
            kept += len(r)
            if limit is not None and kept > limit:
                raise _TooWide
            rows.append((r + start).astype(np.int32 if n < 2**31 else np.int64))
            cols.append(c.astype(np.int32))
            values.append(block[r, c])
        rows = np.concatenate(rows)  # ascending: chunks in order, each row-major
        self.cols, self.values = np.concatenate(cols), np.concatenate(values)
        new_row = np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.zeros(0, bool)
        self.unsure, self.at = rows[new_row], np.cumsum(new_row) - 1

    def guess(self, thresholds: np.ndarray) -> np.ndarray:
        """(n,) each sample's confidently predicted class under ``thresholds`` (within the band), -1 for none: the
        single confident class, or the most probable one when several are confident (as ``_confident_joint``)."""
        inside = self.values >= (thresholds - 1e-6)[self.cols]
        at = self.at[inside]
        count = self.fixed.astype(np.int64)
        count[self.unsure] += np.bincount(at, minlength=len(self.unsure))
        member = self.member.astype(np.int64)
        # a row with no sure member and one entry inside: that entry's class (rows with more are not read)
        rows, cols = self.unsure[at], self.cols[inside]
        alone = self.fixed[rows] == 0
        member[rows[alone]] = cols[alone]
        return np.where(count > 1, self.top, np.where(count == 1, member, -1))


def _rate_of(guess: np.ndarray, y: np.ndarray, weights, K: int) -> float:
    """``_rate`` from each sample's confident guess and its weight in a resample (counts)."""
    keep = (guess >= 0) * weights
    total = np.bincount(y, weights=keep, minlength=K)
    diagonal = np.bincount(y, weights=keep * (guess == y), minlength=K)
    row = total - diagonal + np.maximum(diagonal, 1)  # each diagonal entry is at least 1
    share = np.bincount(y, weights=weights, minlength=K) / weights.sum()
    return float(np.sum(share * (1.0 - np.maximum(diagonal, 1) / row)))


BOOT_WORK = 1_000_000_000  # entries the default bootstrap may recount, over all its resamples (about 5 s)
BAND_MAX = 50_000_000  # entries near a threshold kept in memory (600 MB); beyond, the bootstrap runs on a subsample


def _bootstrap(P, y: np.ndarray, n_boot: int, rng, fewer: bool = False) -> tuple[float, list[float], np.ndarray]:
    """(the estimate, the resampled estimates, each sample's most probable class) in three passes over P.

    Each resample is drawn as row indices (``rng.integers(0, n, n)``, as before) and used as counts: it costs
    O(n) and a recount of the entries near a threshold (``_Guesses``), not a pass over n x C probabilities,
    so a million samples with a thousand classes take 200 resamples in seconds. The result equals ``_rate``
    of ``P[idx], y[idx]`` up to the order of sums. ``fewer``: keep the recounts within ``BOOT_WORK`` by
    using fewer resamples (at least 50): a weak classifier's diffuse probabilities put many entries near
    the thresholds (20,000 samples of 1,000 classes at 24% accuracy: every entry)."""
    n, K = P.shape
    given = _given_probability(P, y)
    t = _thresholds(None, y, given, K)
    states, cuts = [], []
    for _ in range(n_boot):
        states.append(rng.bit_generator.state)
        cuts.append(_thresholds(_counts(rng, n), y, given, K))
    band = np.zeros(K)
    with np.errstate(invalid="ignore"):  # inf - inf: a class nobody was given, in any resample: no band
        for cut in cuts:
            band = np.maximum(band, np.nan_to_num(np.abs(cut - t), nan=0.0, posinf=np.inf))
    try:
        guesses = _Guesses(P, t, band * (1 + 1e-9) + 1e-12, BAND_MAX)  # a margin for rounding t - 1e-6 + band
    except _TooWide:
        return _subsampled(P, y, n_boot, rng, fewer)
    point = _rate_of(guesses.guess(t), y, np.ones(n), K)
    if fewer:
        keep = int(np.clip(BOOT_WORK // max(1, n + len(guesses.values)), min(50, n_boot), n_boot))
        states, cuts = states[:keep], cuts[:keep]
    boots = []
    for state, cut in zip(states, cuts):
        rng.bit_generator.state = state  # the same resample again, rather than n_boot x n counts kept
        boots.append(_rate_of(guesses.guess(cut), y, _counts(rng, n), K))
    return point, boots, guesses.top


def _subsampled(P, y: np.ndarray, n_boot: int, rng, fewer: bool) -> tuple[float, list[float], np.ndarray]:
    """``_bootstrap`` where too many entries sit near a threshold (a weak classifier on many samples): the
    resampled estimates of a seeded subsample of m rows (m x C within ``BAND_MAX``), their spread around the
    subsample's own estimate scaled by sqrt(m / n) and centred on the full estimate (the m-out-of-n bootstrap)."""
    n, K = P.shape
    m = int(min(n, max(2, BAND_MAX // K)))
    rows = np.sort(rng.choice(n, m, replace=False))
    sub_point, sub_boots, _ = _bootstrap(np.asarray(P[rows]), y[rows], n_boot, rng, fewer)
    point, scale = _rate(P, y), np.sqrt(m / n)
    return point, [point + (b - sub_point) * scale for b in sub_boots], chunks.argmax_rows(P)


def _counts(rng, n: int) -> np.ndarray:
    """How often each of n samples is drawn in one bootstrap resample (float64 counts)."""
    return np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)


def noise_rate(pred_probs, labels) -> float:
    """Estimated share of wrong labels: off-diagonal mass of the calibrated confident joint.

    Equals ``1 - trace(cleanlab.count.estimate_joint(labels, pred_probs))`` up to
    cleanlab's rounding of counts to whole numbers.
    """
    P, y = validate.probs_and_labels(pred_probs, labels)
    return _rate(P, y)


def probabilities(grads: GradientSet, labels, source: str = DEFAULT_SOURCE, seed: int = 0) -> np.ndarray:
    """The class probabilities a budget estimate reads (see the module docstring)."""
    if source == "model":
        return grads.probs
    if source == "probe":
        if grads.acts is None:
            raise OgdashError("the probe refits the last layer on its inputs, which dense gradients lack; "
                              "use source='model'.")
        return heldout_gradients(grads, labels, seed=seed).probs
    raise OgdashError(f"unknown probability source {source!r}; choose one of {', '.join(SOURCES)}.")


def own_error(pred_probs, labels, fraction: float) -> float:
    """The classifier's own error: the share of samples whose most probable class is not the given label,
    beyond ``fraction``, the estimated share of wrong labels (never below 0)."""
    P, y = validate.probs_and_labels(pred_probs, labels)
    return float(max(0.0, np.mean(chunks.argmax_rows(P) != y) - fraction))


def error_bound(test_error: float, fraction: float, n_classes: int) -> float:
    """A lower bound on a classifier's own error from its error on test labels that are at most ``fraction`` wrong
    (uniformly over the other classes): ``(e - r) / (1 - r K / (K - 1))``; 1.0 when labels that noisy leave no
    room to tell (the denominator vanishes)."""
    room = 1.0 - fraction * n_classes / (n_classes - 1)
    return 1.0 if room <= 0.05 else float(min(1.0, max(0.0, (test_error - fraction) / room)))


def boot_count(n: int, n_classes: int) -> int:
    """Bootstrap resamples by default: 200 at any size (each costs O(n), not a pass over the n x C
    probabilities: ``_bootstrap``; fewer, at least 50, where too many entries sit near a threshold)."""
    return 200


def estimate_budget(pred_probs, labels, n_boot: int | None = None, level: float = 0.9, seed: int = 0,
                    source: str = "probs", reference=None, reference_name: str = CROSSFIT,
                    test_error: float | None = None) -> BudgetEstimate:
    """Noise-rate estimate from probabilities (n, C) and given labels (n,), with an interval.

    The interval is the bootstrap's (n_boot resamples of the training samples, default
    :func:`boot_count`; 0: none,
    low = high = the estimate), widened by the classifier's own error on both sides when
    that exceeds ``RELIABLE_ERROR`` (:func:`own_error`, see the module docstring).
    level: the bootstrap interval's central share; source: a name for where
    ``pred_probs`` came from. reference: other probabilities (n, C) of the same samples
    (cross-fitted ones, called ``reference_name``) that the own error is measured on
    instead; the estimate is then also unreliable when it is below half of theirs. test_error: the model's
    error on its test set; unreliable when the own error it implies (:func:`error_bound`) exceeds
    ``RELIABLE_ERROR`` (the interval then reaches down by the whole test error).
    """
    P, y = validate.probs_and_labels(pred_probs, labels)
    if len(y) < 2:
        raise OgdashError("a budget estimate needs at least two training samples.")
    if not 0 < level < 1:
        raise OgdashError(f"level must be in (0, 1); got {level}.")
    point, boots, top = _bootstrap(P, y, boot_count(*P.shape) if n_boot is None else n_boot,
                                   np.random.default_rng(seed), fewer=n_boot is None)
    tail = (1.0 - level) / 2
    low, high = np.quantile(boots, [tail, 1 - tail]) if boots else (point, point)
    low, high = min(low, point), max(high, point)
    if reference is None:
        err = float(max(0.0, np.mean(top != y) - point))  # own_error, from the pass the bootstrap made
        reliable = err <= RELIABLE_ERROR
    else:  # judged by models that never saw each label: a memorised label cannot hide there
        R, _ = validate.probs_and_labels(reference, y)
        err = own_error(R, y, point)
        reliable = err <= RELIABLE_ERROR and point >= _rate(R, y) / 2
    if not reliable:  # each of the classifier's own mistakes may have been counted as a wrong label, or hidden one
        low, high = max(0.0, low - err), min(1.0, high + err)
    weak = None
    if test_error is not None and reliable and P.shape[1] > 1:
        bound = error_bound(test_error, point, P.shape[1])
        if bound > RELIABLE_ERROR or test_error > WEAK_TEST_ERROR:  # a weak classifier: its mistakes look like wrong labels
            weak, err, reliable = float(test_error), bound, False
            low = 0.0 if test_error > WEAK_TEST_ERROR else max(0.0, low - test_error)
            high = min(1.0, high + bound)
    named = reference_name if reference is not None and source != reference_name else None
    return BudgetEstimate(point, float(low), float(high), level, len(y), source, err, reliable, named, weak)


def suggest_budget(grads: GradientSet, labels, source: str = DEFAULT_SOURCE, n_boot: int | None = None,
                   level: float = 0.9, seed: int = 0, crossfit=None) -> BudgetEstimate:
    """The suggested budget for a scan: estimated share of mislabelled training samples, with its interval.

    grads: the training GradientSet; labels: the given training labels (n,). crossfit:
    cross-fitted probabilities (n, C) (``ogdash.detect.crossfit``), when the scan computed
    them: they replace the default probe (source ``"crossfit"``) and are the reference of the
    reliability check whatever the source.
    """
    labels = validate.labels(labels, grads.n)
    if crossfit is not None and source == DEFAULT_SOURCE:
        return estimate_budget(crossfit, labels, n_boot, level, seed, CROSSFIT, crossfit)
    return estimate_budget(probabilities(grads, labels, source, seed), labels, n_boot, level, seed, source, crossfit)
