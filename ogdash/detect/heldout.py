"""Held-out gradients: each sample's last-layer gradient from a last layer that never saw its label.

A model that has fitted a wrong label gives that sample a small gradient.
:func:`heldout_probabilities` refits the last layer on its inputs ``h`` (the network
below kept as it is) without each fold, so each sample's logit gradient
``e = p - onehot(y)``, the bias part of its last-layer gradient, comes from a last
layer that never saw its label. :class:`HeldOutMargin`, the recommended detector,
scores by that gradient's normalized margin and self-confidence combined by rank (the rule
that won the detection benchmark, ``DEFAULT_RANK_RULE``); the same probabilities give the suggested
labels (:func:`suggestions`) and the suggested budget. Higher = more detrimental.

The refit is closed-form, so it stays cheap at scale (50,000 x 512 inputs, 100 classes:
about a second on two cores): a ridge regression of the one-hot labels on the
standardised inputs. One pass over the data gives every fold's ``h^T h`` and
``h^T onehot(y)``; a fold's fit is the totals minus its own part, then one (H+1)-square
solve. Its scores become probabilities through a softmax with one temperature per
fold, fitted (by likelihood) on the leave-one-out scores of that fold's own fit rows,
so no part of a sample's probabilities depends on its label. It replaced a
scikit-learn logistic regression per fold (about 30 times slower at that size) with the
same or better AUROC on the detection benchmark (README, "Detection benchmark").
"""
from __future__ import annotations

import weakref

import numpy as np

from ogdash.core import chunks, validate
from ogdash.core.errors import OgdashError
from ogdash.detect.base import check_fitted, require_labels
from ogdash.engine.gradients import GradientSet
from ogdash.influence.quality import label_quality_scores

PROBE_RIDGE = 10.0  # L2 strength of the refitted last layer (standardised inputs): too strong to memorise a label
PROBE_FOLDS = 5
CALIBRATION_ROWS = 1000  # fit rows per fold whose leave-one-out scores fit its temperature

_last = None  # (weak reference to acts, labels, folds, seed, probabilities) of the last refit


def heldout_probabilities(acts, labels, folds: int = PROBE_FOLDS, seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities (n, C) of the last layer refitted on its inputs ``acts`` (n, H).

    Each row comes from a ridge regression of the one-hot labels on the standardised
    inputs (L2 strength ``PROBE_RIDGE``), fitted on the other folds, and a softmax
    whose temperature is fitted on those folds too (see the module docstring), so it
    never saw that sample's label. C = max label + 1; classes nobody was given get
    probability 0. Folds are stratified by label and seeded; classes smaller than
    ``folds`` shrink them. The last result is remembered: asking again for the same
    ``acts`` array (treated as read-only), labels, folds and seed refits nothing.
    """
    global _last
    y = validate.labels(labels, len(acts))
    last = _last  # one read: another thread may replace it
    if last is not None and last[0]() is acts and np.array_equal(last[1], y) and last[2:4] == (folds, seed):
        return last[4].copy()
    P = _refit(acts, y, folds, seed)
    try:
        _last = (weakref.ref(acts), y, folds, seed, P)
    except TypeError:  # a list or another object without weak references: nothing to remember it by
        _last = None
    return P.copy()


def _refit(acts, y: np.ndarray, folds: int, seed: int, out=None) -> np.ndarray:
    """Out-of-fold probabilities (n, max label + 1): seeded stratified folds, then :func:`_cross_fit` (into ``out``
    when given)."""
    return _cross_fit(acts, y, _folds(y, folds, seed), seed, out)


def heldout_into(acts, labels, out, folds: int = PROBE_FOLDS, seed: int = 0) -> np.ndarray:
    """:func:`heldout_probabilities` written into ``out`` (n, C >= max label + 1), chunk by chunk, and returned:
    how a scan keeps them in a memory-mapped cache file. Nothing is remembered."""
    return _refit(acts, validate.labels(labels, len(acts)), folds, seed, out)


def _folds(y: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Rows of each fold: stratified by label, seeded; at most as many folds as the smallest given class."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    if np.count_nonzero(counts) < 2:
        raise OgdashError("refitting the last layer needs at least two given classes.")
    folds = int(min(folds, counts[counts > 0].min()))
    if folds < 2:
        raise OgdashError("every given class needs at least two samples to refit the last layer without them.")
    return [held for _, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)]


def _cross_fit(acts, y: np.ndarray, parts: list[np.ndarray], seed: int, out=None) -> np.ndarray:
    """Probabilities (n, max label + 1) of each fold's rows from the ridge fit and temperature without that fold.

    Two passes over ``acts`` in row chunks (``ogdash.core.chunks``; it may be a memory-mapped file): the
    first adds each chunk's rows into their fold's ``h^T h`` and per-class sums, the second scores each
    chunk's rows with their fold's fit and writes their probabilities into ``out`` (any (n, C >= max label + 1)
    float array, a memory-mapped cache file say; default a new float32 array). Memory holds one chunk
    and the K fits, never an n x C or n x H array.
    """
    import torch  # its matrix products are the fastest here (float32 sums of products, float64 solves)

    acts = acts if isinstance(acts, np.ndarray) else np.asarray(acts, dtype=np.float32)
    n, classes = len(y), np.flatnonzero(np.bincount(y))
    fold_of = np.empty(n, dtype=np.int64)
    for k, rows in enumerate(parts):
        fold_of[rows] = k
    column = np.searchsorted(classes, y)  # each label's column among the given classes
    centre, scale = chunks.moments(acts)
    standardise = _standardiser(centre, scale)
    width = len(centre) + 1
    # pass 1: each fold's part of h^T h and of h^T onehot(y) (the sum of its rows' h per class), float64 totals
    grams = torch.zeros(len(parts), width, width, dtype=torch.float64)
    sums = torch.zeros(len(parts), len(classes), width, dtype=torch.float64)
    for start, stop, block in chunks.blocks(acts, np.float32):
        X, f, c = torch.from_numpy(standardise(block)), fold_of[start:stop], torch.from_numpy(column[start:stop])
        for k in np.unique(f):
            rows = torch.from_numpy(np.flatnonzero(f == k))
            Xk = X[rows]
            grams[k] += (Xk.T @ Xk).double()
            sums[k] += torch.zeros(len(classes), width).index_add_(0, c[rows], Xk).double()
    gram, total = grams.sum(0), sums.sum(0)
    penalty = torch.full((width,), PROBE_RIDGE, dtype=torch.float64)
    penalty[-1] = 1e-6  # the bias column: (almost) unpenalised
    rng = np.random.default_rng(seed)
    order = np.concatenate(parts)  # the calibration rows are drawn as when rows were sorted by fold
    bounds = np.cumsum([0] + [len(p) for p in parts])
    fits = []
    for k in range(len(parts)):
        # the fit without fold k: the totals minus its part, one Cholesky factorisation
        factor = torch.linalg.cholesky((gram - grams[k]) + torch.diag(penalty))
        W = torch.cholesky_solve((total - sums[k]).T, factor)
        fit_rows = np.r_[0:bounds[k], bounds[k + 1]:n]
        cal = order[np.sort(rng.choice(fit_rows, min(CALIBRATION_ROWS, len(fit_rows)), replace=False))]
        Xc = torch.from_numpy(standardise(np.asarray(acts[cal], dtype=np.float32)))
        fits.append((W.float(), _temperature(_leave_one_out(Xc.double(), column[cal], W, factor), column[cal])))
    # pass 2: each chunk's rows scored by the fit that never saw their fold
    out = np.zeros((n, int(y.max()) + 1), dtype=np.float32) if out is None else out
    for start, stop, block in chunks.blocks(acts, np.float32):
        X, f = torch.from_numpy(standardise(block)), fold_of[start:stop]
        P = np.zeros((stop - start, out.shape[1]), dtype=out.dtype)
        for k in np.unique(f):
            rows = np.flatnonzero(f == k)
            W, temperature = fits[k]
            P[np.ix_(rows, classes)] = _softmax(temperature * (X[torch.from_numpy(rows)] @ W).double().numpy())
        chunks.write(out, start, P)
    return out


def _standardiser(centre: np.ndarray, scale: np.ndarray):
    """rows -> float32 rows centred and scaled to unit variance per column (labels unused), then a 1s column."""
    centre, scale = centre.astype(np.float32), np.where(scale > 0, scale, 1).astype(np.float32)

    def standardise(rows: np.ndarray) -> np.ndarray:
        X = (np.asarray(rows, dtype=np.float32).reshape(len(rows), -1) - centre) / scale
        return np.hstack([X, np.ones((len(X), 1), dtype=np.float32)])
    return standardise


def _leave_one_out(X, column, W, factor) -> np.ndarray:
    """Each fit row's ridge scores from the same fit without that row: y - (y - s) / (1 - leverage), exactly.

    X, column: those rows' inputs and label columns; W: the fit's weights; factor: the
    Cholesky factor L of its regularised h^T h, so the leverage x^T (L L^T)^-1 x is |L^-1 x|^2.
    """
    import torch

    leverage = (torch.linalg.solve_triangular(factor, X.T, upper=False) ** 2).sum(0)
    Y = torch.nn.functional.one_hot(torch.from_numpy(column), W.shape[1]).double()
    return (Y - (Y - X @ W) / (1 - leverage)[:, None]).numpy()


def _temperature(S, column) -> float:
    """The T > 0 under which softmax(T S) best predicts the labels (mean log-likelihood; a 1-D convex problem)."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(S))

    def loss(log_t):
        Z = np.exp(log_t) * S
        top = Z.max(1)
        return np.mean(np.log(np.exp(Z - top[:, None]).sum(1)) + top - Z[rows, column])

    fit = minimize_scalar(loss, bounds=(-10.0, 10.0), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(fit.x))


def _softmax(Z) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    Z = np.exp(Z - Z.max(1, keepdims=True))
    return Z / Z.sum(1, keepdims=True)


def heldout_gradients(grads: GradientSet, labels, folds: int = PROBE_FOLDS, seed: int = 0) -> GradientSet:
    """Closed-form last-layer gradients ``(p - onehot(y)) ⊗ h`` with ``p`` from the held-out last layer.

    grads: closed-form gradients (their ``acts`` are the refit's inputs); labels: the
    given labels (n,). Returns a GradientSet of the same samples whose ``probs``,
    ``loss`` and ``errors`` (float32, made chunk by chunk) come from :func:`heldout_probabilities`.
    """
    y = validate.labels(labels, grads.n)
    P = _heldout_probs(grads, y, folds, seed)
    binary = grads.errors is not None and grads.errors.shape[1] == 1
    errors = np.empty((grads.n, 1 if binary else P.shape[1]), dtype=np.float32)
    for start, stop, block in chunks.blocks(P, np.float32):
        rows, given = np.arange(stop - start), y[start:stop]
        if binary:
            errors[start:stop] = block[:, 1:] - given[:, None]
        else:
            block[rows, given] -= 1
            errors[start:stop] = block
    loss = -np.log(np.clip(P[np.arange(grads.n), y].astype(np.float64), 1e-12, None))
    return GradientSet(grads.ids, P, loss, grads.layer, errors=errors, acts=grads.acts, bias=grads.bias)


def _heldout_probs(grads: GradientSet, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Held-out probabilities with as many columns as the model's (classes above every given label: 0)."""
    if grads.acts is None:
        raise OgdashError("held-out gradients refit the last layer on its inputs, which dense gradients lack; "
                          "use the last layer's closed-form gradients or another detector.")
    P = heldout_probabilities(grads.acts, y, folds, seed)
    width = max(grads.probs.shape[1], P.shape[1])
    return P if P.shape[1] == width else np.hstack([P, np.zeros((len(P), width - P.shape[1]), dtype=P.dtype)])


def suggestions(grads: GradientSet, labels, seed: int = 0) -> np.ndarray:
    """(n, C) probabilities that each sample's suggested label comes from (argmax), higher = surer.

    Where the gradients are the last layer's closed form, they are the held-out last
    layer's (:func:`heldout_probabilities`): a model that never saw the sample's label, so
    a memorised wrong label is not echoed back. Otherwise the model's own probabilities.
    """
    if grads.acts is None:
        return np.asarray(grads.probs)
    return _heldout_probs(grads, validate.labels(labels, grads.n), PROBE_FOLDS, seed)


RANK_RULES = ("margin", "self_confidence", "combined")
# Chosen by measurement (benchmarks/detection.py, 36 cases; README, "Ranking rule"): the combination had the best
# AUROC in 16 cases (margin 12, self-confidence 8) and the best precision at the true rate in 19 (15, 7).
DEFAULT_RANK_RULE = "combined"


def rank_probabilities(probs, labels, rule: str = DEFAULT_RANK_RULE) -> np.ndarray:
    """Scores (n,) from held-out probabilities (n, C) by one of ``RANK_RULES``; higher = more detrimental.

    ``margin``: cleanlab's normalized margin, ``1 - (p_y - max_{k≠y} p_k + 1) / 2``;
    ``self_confidence``: ``1 - p_y``; ``combined``: the mean of the two's rank-normalised scores.
    """
    from ogdash.detect.ensemble import combine

    y = validate.labels(labels, len(probs))
    if rule == "margin":
        return label_quality_scores(probs, y, "normalized_margin")
    if rule == "self_confidence":
        return label_quality_scores(probs, y, "self_confidence")
    if rule == "combined":
        return combine([label_quality_scores(probs, y, m) for m in ("normalized_margin", "self_confidence")])
    raise OgdashError(f"unknown ranking rule {rule!r}; choose one of {', '.join(RANK_RULES)}.")


def heldout_margin(probs, labels) -> np.ndarray:
    """The held-out margin detector's scores (n,) from held-out probabilities (n, C): ``DEFAULT_RANK_RULE``
    (the mean rank of cleanlab's normalized margin and self-confidence, flipped); higher = more detrimental."""
    return rank_probabilities(probs, labels, DEFAULT_RANK_RULE)


class HeldOutMargin:
    """Each sample's held-out logit gradient ranked by ``DEFAULT_RANK_RULE`` (the normalized margin and the
    self-confidence of its held-out probabilities, combined by rank); higher = more detrimental.

    Only the fitted samples can be scored: cross-fitting has no held-out head for new ones.

    Parameters
    ----------
    folds : int, default ``PROBE_FOLDS`` (5), folds of the refit.
    seed : int, default 0, seeds the folds.

    Attributes
    ----------
    ids_ : array (n,), the ids of the fitted samples.
    probs_ : float32 array (n, C), their held-out probabilities.
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
        self.probs_ = _heldout_probs(G, labels, self.folds, self.seed)
        return self

    def score_samples(self, G: GradientSet, y=None) -> np.ndarray:
        """``heldout_margin`` of the probabilities from the fold that did not see each sample.

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
