"""Cross-fitted probabilities: each sample judged by a model trained without it, as cleanlab's users do.

The last-layer refit (``ogdash.detect.heldout``) keeps the trained network below the last
layer, so when that network has memorised its noisy labels (an MLP on a small table reaches
training accuracy 1.0), the features already encode each wrong label and the refit echoes it:
on wine with 10% flipped labels the wrong label kept a median probability of 0.83 and 1 flip
in 14 was found. :func:`crossfit_probabilities` trains K models of the same spec, each on all
folds but one (stratified, seeded; trained together where that pays,
``ogdash.models.stacked``), and keeps each sample's probabilities from the model that never
saw it.

How long the fold models train is chosen by cross-validation too: the default step budget
makes an MLP on a 140-row table memorise every label, and its out-of-fold predictions then
err on 11-17% of the clean samples, which confident learning counts as noise (estimate 18%
for a true 10%). The fold models are looked at after 1/32, 1/16, ... and all of the budget
(``CHECKPOINTS``), and the checkpoint whose out-of-fold log-loss against the given labels is
lowest gives the probabilities: one number over all samples picks it, as any
cross-validated hyper-parameter (``benchmarks/small_tables.py``: wine, breast cancer and
digits.csv then estimate within 0.5-5 points of the truth).

Small data makes each fold model weak (digits.csv: 256 rows per fold, 87-89% held-out
accuracy, so its own mistakes outnumber the 5% wrong labels): repeating the cross-fit with
other folds and initialisations and averaging the probabilities (``repeats``, a bagged
cross-fit) raises that to 90-93% and brought the estimate from 11-14% to 6-8% (truth 5%).
:func:`repeats_for` repeats it as often as fits in ``CROSSFIT_SECONDS`` (at most
``MAX_REPEATS``).

That costs K trainings per repeat, and it is not better where the model has not memorised:
on the detection benchmark's digits cases (a CNN that fits 51-87% of its noisy labels) the
refit's AUROC was 0.941 against the cross-fit's 0.937 and its suggested budget closer to the
truth, at a 20th to a 100th of the cost. So :func:`should_crossfit` asks for it when the model
fits the given labels almost perfectly (``MEMORISED``), whatever the data's size, and the
closed-form refit (``heldout_probabilities``: about a second at 50,000 rows) stays the probe
otherwise.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress, report
from ogdash.data.dataset import Dataset
from ogdash.detect.heldout import PROBE_FOLDS, _folds
from ogdash.models.zoo import ModelSpec

MEMORISED = 0.99  # a model that agrees with at least this share of the given labels has memorised them
CROSSFIT_SECONDS = 60.0  # repeats of the cross-fit: as many as fit in this time
MAX_REPEATS = 4
CHECKPOINTS = (32, 16, 8, 4, 2, 1)  # the fold models are looked at after total/k steps
MIN_STEPS = 8  # no checkpoint earlier than this


def should_crossfit(spec: ModelSpec, train_agreement: float) -> bool:
    """Whether the probe should be cross-fitted: the model agrees with at least ``MEMORISED`` of the given labels
    (``train_agreement``: the share of training samples whose predicted class is the given label). Your network
    fine-tuned in full is never cross-fitted (K trainings of it are not cheap)."""
    return not (spec.user and spec.tune == "all") and train_agreement >= MEMORISED


def repeats_for(seconds: float | None, n_rows: int, folds: int = PROBE_FOLDS) -> int:
    """How many times to repeat the cross-fit: as often as ``folds`` trainings of ``seconds`` each fit in
    ``CROSSFIT_SECONDS`` (at most ``MAX_REPEATS``, at least 1); unknown seconds: ``MAX_REPEATS`` below 2,000
    rows, else 1."""
    if seconds is None:
        return MAX_REPEATS if n_rows < 2_000 else 1
    return int(np.clip(CROSSFIT_SECONDS // max(folds * seconds, 1e-9), 1, MAX_REPEATS))


def crossfit_probabilities(spec: ModelSpec, train: Dataset, folds: int = PROBE_FOLDS, seed: int = 0,
                           progress: Progress = None, device=None, cache: DiskCache | None = None,
                           stack: bool | None = None, info: dict | None = None, repeats: int = 1) -> np.ndarray:
    """Out-of-fold class probabilities (n, C) of ``spec`` trained K times, each time without one fold.

    Folds are stratified by the given labels and seeded (``ogdash.detect.heldout._folds``:
    at most as many as the smallest class has samples). Every fold's model starts from
    ``seed``'s initialisation and trains up to the full set's step budget; the probabilities
    come from the checkpoint with the lowest out-of-fold log-loss (see the module
    docstring; ``info``, when given, receives its ``steps`` and each checkpoint's
    ``log_loss``). Your network's
    last-layer fine-tune is cross-fitted on its backbone's features: pass ``spec.head_spec()``
    and a Dataset of those features. C = ``train.n_classes`` (two columns for a binary
    problem). ``repeats``: cross-fits with other folds and initialisations (seeds ``seed``,
    ``seed + 1``, ...), their probabilities averaged. With ``cache`` the result is kept on
    disk under the spec, data, folds, seed and repeats.
    """
    if repeats < 1:
        raise OgdashError(f"repeats must be at least 1; got {repeats}.")
    key = cache_key("crossfit", spec.key(), train.fingerprint(), train.n_classes, folds, seed, CHECKPOINTS, repeats)
    hit = None if cache is None else cache.load("probes", key, mmap=False)
    if hit is not None and "probs" in hit:
        if info is not None:
            info["steps"] = int(hit["steps"])
        return np.asarray(hit["probs"], dtype=np.float64)
    from ogdash.models.stacked import Arm, fit_arms
    from ogdash.models.train import predict_proba

    every, arms, parts = np.arange(train.n), [], []
    for r in range(repeats):
        split = _folds(train.y, folds, seed + r)
        for k, held in enumerate(split):
            rows = np.setdiff1d(every, held)
            name = f"fold {k + 1} of {len(split)}" + (f", repeat {r + 1} of {repeats}" if repeats > 1 else "")
            arms.append(Arm(name, seed + r, rows, train.y[rows]))
            parts.append(held)
    total = spec.total_steps(train.n)
    fixed = replace(spec, steps=total)  # each fold trains (at most) as long as the full set
    at = sorted({max(MIN_STEPS, total // k) for k in CHECKPOINTS if total // k >= MIN_STEPS} | {total})
    seen = {step: np.zeros((train.n, max(2, train.n_classes))) for step in at}

    def look(step, k, model):  # each repeat's folds cover every sample once: the sum over repeats, averaged below
        seen[step][parts[k]] += predict_proba(model, train.X[parts[k]]) / repeats

    sub = None if progress is None else (lambda f, msg: progress(0.95 * f, f"cross-fitting: {msg}"))
    fit_arms(fixed, train.X, arms, train.n_classes, sub, device, stack, at_steps=at, checkpoint=look)
    rows = np.arange(train.n)
    losses = {step: float(-np.mean(np.log(np.clip(P[rows, train.y], 1e-12, None)))) for step, P in seen.items()}
    best = min(at, key=lambda step: (losses[step], -step))  # ties: the longer training
    P = seen[best]
    if not np.isfinite(P).all():
        raise OgdashError("cross-fitting gave non-finite probabilities; lower the learning rate.")
    if info is not None:
        info.update(steps=best, log_loss=losses)
    report(progress, 1.0, "cross-fitting: done")
    if cache is not None:
        cache.save("probes", key, {"probs": P, "steps": np.array(best)})
    return P


def probe_probabilities(spec: ModelSpec, train: Dataset, predicted, seed: int = 0, seconds: float | None = None,
                        cache: DiskCache | None = None, device=None, progress: Progress = None) -> np.ndarray | None:
    """The cross-fitted probabilities a scan should read instead of the last-layer refit, or None where
    :func:`should_crossfit` keeps the refit.

    predicted: the trained model's predicted class of each training sample (its agreement
    with the given labels tells a memorised fit); seconds: how long its training took (None
    when it came from the cache). Repeats: :func:`repeats_for`.
    """
    if not should_crossfit(spec, float(np.mean(np.asarray(predicted) == train.y))):
        return None
    return crossfit_probabilities(spec, train, seed=seed, progress=progress, device=device, cache=cache,
                                  repeats=repeats_for(seconds, train.n))
