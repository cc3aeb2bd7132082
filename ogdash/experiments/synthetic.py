"""The paper's synthetic experiment (Section 4, Figure 1, Table 1), headless.

One *case* is a toy dataset with flipped labels and a model spec:

- ``blobs``: two Gaussian blobs, 150 train / 100 test, 10 flips, logistic regression
  without intercept (as the paper's released code);
- ``moons``: two half-moons, 250 train / 100 test, 20 flips, an MLP (16-16 by default;
  ``model_preset="paper_mlp"`` gives the paper's 2-2-2-1 net, which can collapse).

:func:`analyse` trains the model once and computes every method's score on it:

- label quality (Normalized Margin, Self-Confidence, Confidence-weighted Entropy) from
  the trained model's in-sample probabilities, fed the given noisy labels *and*, as a
  separate variant, the model's predicted labels (what the paper's released code does);
- influence (Exact Hessian Eq. 1, TracIn at the last checkpoint, LiSSA, DataInf,
  Self-LiSSA, Self-DataInf) on the per-sample gradients of **all** parameters, with the
  training set as the reference set; exact and LiSSA use the exact Hessian of the summed
  training objective over all parameters (tiny models, so it is affordable);
- outlier gradient (IsolationForest, L1, L2, OneClassSVM) on the **last layer's**
  gradient, the paper's choice; OneClassSVM is fitted on the last-layer gradients of
  ``n_val`` extra clean samples drawn from the same generator with another seed.

The methods are entries of the method registry (``ogdash.detect.registry``); their
scores are computed in ``ogdash.experiments.synthetic_scores``.

Every score is higher = more detrimental. :func:`table1` turns scores into flags with
one budget for all methods, retrains on each trimmed set with the same seed (and so
the same initialisation), and reports mean and std over seeds next to the paper's
published numbers, which are kept in separate columns.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.core.threads import one_thread
from ogdash.data.dataset import Dataset, Splits, make_dataset
from ogdash.data.synthetic import FLIP_MODES, blobs, moons
from ogdash.detect.flags import budget_count, flag
from ogdash.detect.metrics import detection_metrics
from ogdash.detect.registry import DETECTORS, method
from ogdash.experiments.synthetic_scores import DETECTOR_METHODS, METHOD_KEYS, METHOD_LABELS, METHODS, method_scores
from ogdash.models.train import accuracy, predict_proba
from ogdash.models.zoo import ModelSpec
from ogdash.pipeline import train_model
from ogdash.retrain import trim, trim_and_retrain

DATASETS = {
    "blobs": "Linear blobs, logistic regression (Figure 1 A-D)",
    "moons": "Half-moons, MLP (Figure 1 E-H, Table 1)",
}
MODEL_PRESETS = {
    "default": "blobs: logistic regression without intercept; moons: MLP 16-16",
    "paper_mlp": "the paper's 2-2-2-1 MLP (moons only; 5,000 full-batch Adam epochs, may collapse)",
}
DEFAULT_FLIPS = {"blobs": 10, "moons": 20}
LABEL_VARIANTS = {
    "given": "fed the given (noisy) labels: the textbook baseline",
    "predicted": "fed the model's predicted labels, as the paper's released code does",
}
DEFAULT_BUDGET = 0.10  # the paper's released synthetic code: IsolationForest contamination=0.1
N_VAL = 100
_VAL_SEED_OFFSET = 1_000_003  # validation samples come from another seed of the same generator
BASELINE_ROW = "none"

# Table 1 of the paper (half-moons, MLP): (outlier detection accuracy %, post-trim test accuracy %).
# The paper publishes no table for the blobs case, and no synthetic OneClassSVM row.
PUBLISHED_TABLE1 = {
    "moons": {
        BASELINE_ROW: (None, 90.0),
        "normalized_margin": (82.0, 89.0),
        "self_confidence": (82.0, 89.0),
        "confidence_weighted_entropy": (82.0, 89.0),
        "exact": (90.0, 90.0),
        "tracin": (82.0, 91.0),
        "lissa": (82.0, 91.0),
        "datainf": (82.0, 91.0),
        "self_lissa": (82.0, 90.0),
        "self_datainf": (90.0, 87.0),
        "og_iforest": (96.0, 96.0),
        "og_l1": (98.0, 87.0),
        "og_l2": (98.0, 87.0),
    },
    "blobs": {},
}


# --------------------------------------------------------------------------- the case


@dataclass(frozen=True, eq=False)
class SyntheticCase:
    """One toy problem: splits (untouched test set), clean validation samples, the model spec."""

    dataset: str
    seed: int
    flip_mode: str
    n_flips: int
    model_preset: str
    spec: ModelSpec
    splits: Splits
    val: Dataset

    @property
    def model_name(self) -> str:
        """The model's name as tables show it."""
        if self.spec.kind == "logreg":
            return "logistic regression (no intercept)"
        if self.spec.kind == "paper_mlp":
            return "MLP 2-2-2-1 (paper)"
        return "MLP " + "-".join(str(h) for h in self.spec.hidden)


def synthetic_case(dataset: str = "moons", seed: int = 0, flip_mode: str = "far", n_flips: int | None = None,
                   model_preset: str = "default", epochs: int | None = None, n_val: int = N_VAL) -> SyntheticCase:
    """The splits and model spec of one case.

    dataset: 'blobs' (logistic regression without intercept, as the paper's released code)
    or 'moons' (``ModelSpec('mlp')``, 16-16; or the paper's 2-2-2-1 net with
    ``model_preset='paper_mlp'``). n_flips None = the paper's 10 (blobs) / 20 (moons).
    epochs None = the model kind's default (only tests shorten it). The validation set
    holds ``n_val`` clean samples from the same generator with a different seed; it is
    used only as OneClassSVM's inliers.
    """
    if dataset not in DATASETS:
        raise OgdashError(f"unknown synthetic dataset {dataset!r}; choose one of {', '.join(DATASETS)}.")
    if model_preset not in MODEL_PRESETS:
        raise OgdashError(f"unknown model preset {model_preset!r}; choose one of {', '.join(MODEL_PRESETS)}.")
    if flip_mode not in FLIP_MODES:
        raise OgdashError(f"unknown flip mode {flip_mode!r}; choose one of {', '.join(FLIP_MODES)}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31 - _VAL_SEED_OFFSET:
        raise OgdashError(f"seed must be a whole number from 0 to {2**31 - _VAL_SEED_OFFSET - 1}; got {seed!r}.")
    if epochs is not None and (not isinstance(epochs, (int, np.integer)) or epochs < 1):
        raise OgdashError(f"epochs must be a positive whole number or None; got {epochs!r}.")
    seed = int(seed)
    n_flips = DEFAULT_FLIPS[dataset] if n_flips is None else int(n_flips)
    if n_flips < 2:
        raise OgdashError(f"flip at least 2 labels (one per class); got {n_flips}.")
    make = blobs if dataset == "blobs" else moons
    splits = make(seed=seed, n_flips=n_flips, flip_mode=flip_mode)
    clean = make(seed=seed + _VAL_SEED_OFFSET, n_train=n_val, n_test=1, n_flips=0).train
    val = make_dataset(f"{dataset}/val", clean.X, clean.y, clean.classes, y_true=clean.y_true,
                       ids=np.arange(n_val) + 10**6)
    if dataset == "blobs":
        if model_preset == "paper_mlp":
            raise OgdashError("the blobs case uses logistic regression; the 2-2-2-1 MLP preset is for moons.")
        spec = ModelSpec("logreg", bias=False, epochs=epochs)
    else:
        spec = ModelSpec("paper_mlp" if model_preset == "paper_mlp" else "mlp", epochs=epochs)
    return SyntheticCase(dataset, seed, flip_mode, n_flips, model_preset, spec, splits, val)


# --------------------------------------------------------------------------- scores


@dataclass(eq=False)
class CaseResult:
    """Everything computed on one trained model of one case (what the page caches).

    scores: method key -> (n,) float64, higher = more detrimental. Label-quality methods
    appear twice: ``key`` (given labels) and ``key@predicted`` (predicted labels).
    seconds: method key -> seconds to compute that score from the trained model,
    including the gradients, Hessian or probabilities it needs.
    grad_last: (n, d) last-layer training gradients; layout: (n, 2) their 2-D view.
    """

    case: SyntheticCase
    accuracy_before: float
    probs: np.ndarray
    grad_last: np.ndarray
    layout: np.ndarray
    layout_note: str
    scores: dict
    seconds: dict
    hessian_damping: float
    hessian_eigen_range: tuple
    boundary: tuple
    train_seconds: float
    notes: list = field(default_factory=list)

    @property
    def noisy(self) -> np.ndarray:
        """(n,) bool: which training labels were flipped."""
        return self.case.splits.train.noisy


def score_key(method: str, label_variant: str = "given") -> str:
    """The key of a method's scores in ``CaseResult.scores`` (``@predicted`` for label quality fed predicted labels)."""
    if method not in METHOD_KEYS:
        raise OgdashError(f"unknown method {method!r}; choose one of {', '.join(METHOD_KEYS)}.")
    if label_variant not in LABEL_VARIANTS:
        raise OgdashError(f"label variant must be one of {', '.join(LABEL_VARIANTS)}; got {label_variant!r}.")
    family = next(m.family for m in METHODS if m.key == method)
    return f"{method}@predicted" if family == "label quality" and label_variant == "predicted" else method


def layout_2d(G: np.ndarray) -> tuple[np.ndarray, str]:
    """A 2-D view of gradients: as they are when they are 2-D (the paper's D/H), else their PCA."""
    from ogdash.engine.layout2d import layout_2d as layout

    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 2 or len(G) < 2 or G.shape[1] < 2:
        raise OgdashError(f"a gradient layout needs an (n >= 2, d >= 2) array; got shape {G.shape}.")
    coords, note = layout(G, "pca", seed=0)
    if G.shape[1] == 2:
        return coords, "the last-layer gradient is 2-D and is drawn as is"
    return coords, note.replace("of the gradients", f"of the {G.shape[1]}-D last-layer gradients", 1)


def _boundary(model, X: np.ndarray, steps: int = 80) -> tuple:
    lo, hi = X.min(0) - 0.5, X.max(0) + 0.5
    gx, gy = np.linspace(lo[0], hi[0], steps), np.linspace(lo[1], hi[1], steps)
    grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2).astype(np.float32)
    return gx, gy, predict_proba(model, grid)[:, 1].reshape(steps, steps)


def analyse(case: SyntheticCase, cache: DiskCache | None = None, lissa_iterations: int = 1000,
            progress: Progress = None) -> CaseResult:
    """Train (or load from ``cache``) the case's model and compute every method's scores."""
    sub = (lambda lo, hi: None if progress is None else (lambda f, m: progress(lo + (hi - lo) * f, m)))
    with one_thread():
        t = time.perf_counter()
        model = train_model(case.spec, case.splits.train, case.seed, cache, sub(0.0, 0.6), device="cpu")
        train_seconds = time.perf_counter() - t
        scores, seconds, info = method_scores(model, case, lissa_iterations, sub(0.6, 1.0))
    layout, note = layout_2d(info["grad_last"])
    notes = []
    acc = accuracy(model, case.splits.test.X, case.splits.test.y)
    if acc < 0.75:
        notes.append(f"this model reaches only {100 * acc:.0f}% test accuracy: it has likely collapsed "
                     "(dead ReLUs), which the paper's 2-2-2-1 net does on some seeds.")
    return CaseResult(case, acc, info["probs"], info["grad_last"], layout, note, scores, seconds,
                      info["damping"], info["eigen_range"], _boundary(model, case.splits.train.X), train_seconds,
                      notes)


# --------------------------------------------------------------------------- flags, metrics, retrains


def method_flags(result: CaseResult, method: str, budget: float, label_variant: str = "given") -> np.ndarray:
    """The (n,) boolean flags of one method under the budget (a fraction or a count)."""
    return flag(result.scores[score_key(method, label_variant)], budget)


# the detectors the study offers, by registry key: their names (the study's validation samples are clean draws of the
# same generator, which OneClassSVM fits on) and what each does
DETECTOR_NAMES = {k: method(k).name + (" (clean validation inliers)" if method(k).needs_validation else "")
                  for k in DETECTOR_METHODS}
DETECTOR_HELP = {k: DETECTORS.get(k, "") for k in DETECTOR_METHODS}


def detector_flags(result: CaseResult, detector: str, budget: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(scores, flags, detection metrics against the known flips) of a detector (registry key) under the budget."""
    scores = result.scores[DETECTOR_METHODS[detector]]
    flags = flag(scores, budget)
    return scores, flags, detection_metrics(flags, scores, result.case.splits.train.noisy)


def flagged_count(budget: float, n: int) -> int:
    """How many samples a budget (a fraction or a count) flags out of n."""
    return budget_count(budget, n)


def post_trim_accuracy(result: CaseResult, flags: np.ndarray, cache: DiskCache | None = None,
                       progress: Progress = None) -> float:
    """Test accuracy after removing the flagged samples and retraining with the case's seed."""
    case = result.case
    trimmed = trim(case.splits, case.splits.train.ids[np.asarray(flags, bool)])
    with one_thread():
        model = train_model(case.spec, trimmed.train, case.seed, cache, progress, device="cpu")
        return accuracy(model, case.splits.test.X, case.splits.test.y)


def trim_report(result: CaseResult, method: str, budget: float, label_variant: str = "given",
                cache: DiskCache | None = None, progress: Progress = None):
    """Trim one method's flags and retrain with the case's seed: (RetrainReport, trimmed samples).

    The trimmed-samples frame has one row per removed sample: id, given label, true
    label, whether it was truly flipped, and the method's score.
    """
    case, key = result.case, score_key(method, label_variant)
    train = case.splits.train
    flags = flag(result.scores[key], budget)
    with one_thread():
        report = trim_and_retrain(case.splits, case.spec, train.ids[flags], seeds=[case.seed], cache=cache,
                                  progress=progress, device="cpu")
    trimmed = pd.DataFrame({"id": train.ids[flags], "given label": train.y[flags], "true label": train.y_true[flags],
                            "truly flipped": train.noisy[flags], "score": result.scores[key][flags]})
    return report, trimmed.sort_values("score", ascending=False, ignore_index=True)


def seed_rows(result: CaseResult, budget: float, label_variant: str = "given", cache: DiskCache | None = None,
              post_trim: bool = True, progress: Progress = None) -> list[dict]:
    """One row per method (plus the untrimmed model) for one seed; accuracies in %.

    Methods that flag the same samples share one retrain.
    """
    noisy = result.noisy
    rows = [dict(method=BASELINE_ROW, seed=result.case.seed, detection_accuracy=math.nan, precision=math.nan,
                 recall=math.nan, post_trim_accuracy=100 * result.accuracy_before, seconds=math.nan)]
    retrained: dict[bytes, float] = {}
    for i, m in enumerate(METHODS):
        key = score_key(m.key, label_variant)
        flags = flag(result.scores[key], budget)
        det = detection_metrics(flags, result.scores[key], noisy)
        acc = math.nan
        if post_trim:
            sig = np.packbits(flags).tobytes()
            if sig not in retrained:
                if progress:
                    progress(i / len(METHODS), f"retraining without {m.label}'s flags")
                retrained[sig] = post_trim_accuracy(result, flags, cache)
            acc = 100 * retrained[sig]
        rows.append(dict(method=m.key, seed=result.case.seed, detection_accuracy=100 * det["accuracy"],
                         precision=100 * det["precision"], recall=100 * det["recall"], post_trim_accuracy=acc,
                         seconds=result.seconds[key]))
    if progress:
        progress(1.0, "done")
    return rows


MEASURED = ("detection_accuracy", "precision", "recall", "post_trim_accuracy", "seconds")


def summarise(rows: Iterable[dict], dataset: str, model_name: str = "model",
              label_variant: str = "given") -> pd.DataFrame:
    """Mean and std over seeds of each method's rows, with the paper's numbers in separate columns.

    Columns: method, label, family, n_seeds, then ``<col>`` (mean) and ``<col>_std`` for
    detection_accuracy, precision, recall, post_trim_accuracy (all %) and seconds, then
    published_detection_accuracy and published_post_trim_accuracy (NaN where the paper
    has no number) and published_note. std is the population std (0 for one seed).
    Label-quality rows say which labels they were fed.
    """
    df = pd.DataFrame(list(rows))
    if df.empty:
        raise OgdashError("no rows to summarise; run at least one seed.")
    published = PUBLISHED_TABLE1.get(dataset, {})
    out = []
    for key in (BASELINE_ROW, *METHOD_KEYS):
        part = df[df["method"] == key]
        if part.empty:
            continue
        family = "model" if key == BASELINE_ROW else next(m.family for m in METHODS if m.key == key)
        label = f"{model_name}, no trimming" if key == BASELINE_ROW else METHOD_LABELS[key]
        if family == "label quality":
            label += " (predicted labels)" if label_variant == "predicted" else " (given labels)"
        row = dict(method=key, label=label, family=family, n_seeds=int(part["seed"].nunique()))
        for col in MEASURED:
            vals = part[col].to_numpy(dtype=float)
            finite = vals[np.isfinite(vals)]
            row[col] = float(finite.mean()) if len(finite) else math.nan
            row[col + "_std"] = float(finite.std()) if len(finite) else math.nan
        pub = published.get(key)
        row["published_detection_accuracy"] = math.nan if pub is None or pub[0] is None else pub[0]
        row["published_post_trim_accuracy"] = math.nan if pub is None else pub[1]
        row["published_note"] = ("not published" if not published else
                                 "not in the paper's table" if pub is None else "")
        out.append(row)
    return pd.DataFrame(out)


def table1(dataset: str = "moons", seeds: Iterable[int] = range(5), budget: float = DEFAULT_BUDGET, *,
           flip_mode: str = "far", n_flips: int | None = None, model_preset: str = "default",
           label_variant: str = "given", epochs: int | None = None, post_trim: bool = True,
           cache: DiskCache | None = None, lissa_iterations: int = 1000, progress: Progress = None) -> pd.DataFrame:
    """Table 1 for one case over several seeds (see :func:`summarise` for the columns).

    Each seed generates its own data and trains its own model (seed = data seed = init
    seed); post-trim accuracy retrains on the trimmed set with that same seed.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise OgdashError("give at least one seed.")
    rows, name = [], "model"
    for i, s in enumerate(seeds):
        lo, hi = i / len(seeds), (i + 1) / len(seeds)
        sub = (lambda a, b: None if progress is None else
               (lambda f, m, a=a, b=b, s=s: progress(a + (b - a) * f, f"seed {s}: {m}")))
        case = synthetic_case(dataset, s, flip_mode, n_flips, model_preset, epochs)
        name = case.model_name
        result = analyse(case, cache, lissa_iterations, sub(lo, (lo + hi) / 2))
        rows += seed_rows(result, budget, label_variant, cache, post_trim, sub((lo + hi) / 2, hi))
    return summarise(rows, dataset, name, label_variant)


def _pm(mean: float, std: float, digits: int) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if np.isfinite(std) else f"{mean:.{digits}f}"


def format_table1(df: pd.DataFrame) -> pd.DataFrame:
    """The table as display strings: measured columns 'mean ± std', published columns apart."""
    def pub(v, note):
        return note if note else ("–" if not np.isfinite(v) else f"{v:.1f}")

    return pd.DataFrame({
        "Method": df["label"],
        "Detection accuracy %": [_pm(m, s, 1) for m, s in zip(df["detection_accuracy"], df["detection_accuracy_std"])],
        "Precision %": [_pm(m, s, 1) for m, s in zip(df["precision"], df["precision_std"])],
        "Recall %": [_pm(m, s, 1) for m, s in zip(df["recall"], df["recall_std"])],
        "Post-trim accuracy %": [_pm(m, s, 1) for m, s in zip(df["post_trim_accuracy"], df["post_trim_accuracy_std"])],
        "Seconds": [_pm(m, s, 3) for m, s in zip(df["seconds"], df["seconds_std"])],
        "Published: detection %": [pub(v, n) for v, n in zip(df["published_detection_accuracy"], df["published_note"])],
        "Published: post-trim %": [pub(v, n) for v, n in zip(df["published_post_trim_accuracy"], df["published_note"])],
    })
