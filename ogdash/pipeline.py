"""The stages wired together with the disk cache: train → gradients → scores → flags.

The CLI and the pages both call these, so a scan computed headless on a GPU
server is picked up by the dashboard without recomputing anything.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress, Timer
from ogdash.data.dataset import Dataset, Splits
from ogdash.detect.budget import BudgetEstimate, suggest_budget
from ogdash.detect.crossfit import probe_probabilities
from ogdash.detect.flags import flag
from ogdash.detect.heldout import rank_probabilities
from ogdash.detect.metrics import detection_metrics
from ogdash.detect.registry import DETECTORS, RECOMMENDED, method
from ogdash.detect.scoring import score
from ogdash.engine.gradients import GradientSet, extract_gradients, from_arrays, to_arrays
from ogdash.engine.settings import GradientSettings
from ogdash.models.train import accuracy, fit
from ogdash.models.zoo import ModelSpec, build_model, weights_key


def model_key(spec: ModelSpec, train: Dataset, seed: int) -> str:
    """The cache key of the model ``spec`` trains on ``train`` with ``seed``."""
    return cache_key("model", spec.key(), train.fingerprint(), train.n_classes, seed)


def cached_model(spec: ModelSpec, train: Dataset, seed: int = 0, cache: DiskCache | None = None):
    """The model ``train_model`` would return if it is already in the disk cache, else None."""
    hit = None if cache is None else cache.load("models", model_key(spec, train, seed), mmap=False)
    if hit is None:
        return None
    model = build_model(spec.resolved(train.n), train.X.shape[1:], train.n_classes, seed)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in hit.items()})
    return model.eval()


def train_model(spec: ModelSpec, train: Dataset, seed: int = 0, cache: DiskCache | None = None,
                progress: Progress = None, device=None, val: Dataset | None = None) -> torch.nn.Module:
    """The model ``fit`` would train, loaded from the cache when it was trained before.

    A last-layer fine-tune of your network (``spec.tune == "last"``) trains its last layer
    on the backbone's features, computed once and cached (``backbone_dataset``). ``val``:
    a set whose accuracy the progress reports (it never changes the model).
    """
    model = cached_model(spec, train, seed, cache)
    if model is not None:
        return model
    features = None
    if spec.user and spec.tune == "last":  # the backbone's features from the disk cache (computed once)
        features = tuple(None if ds is None else backbone_dataset(spec, ds, cache, device, progress).X
                         for ds in (train, val))
    model = fit(spec, train.X, train.y, train.n_classes, seed, progress, device,
                None if val is None else (val.X, val.y), features)
    if cache is not None:
        cache.save("models", model_key(spec, train, seed),
                   {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    return model


def backbone_dataset(spec: ModelSpec, ds: Dataset, cache: DiskCache | None = None, device=None,
                     progress: Progress = None) -> Dataset:
    """``ds`` with each input replaced by your network's backbone features (its last layer's inputs).

    Computed once per (network, weights, data) and kept in the disk cache: a frozen backbone
    with a head trained here, and every retrain of that head, reuse them.
    """
    from ogdash.core.cache import file_digest
    from ogdash.models.train import default_device, prepare
    from ogdash.models.user import backbone_features

    key = cache_key("features", spec.arch, file_digest(spec.weights) if spec.weights else None, ds.fingerprint())
    hit = None if cache is None else cache.load("features", key, mmap=False)
    if hit is not None:
        H = np.asarray(hit["features"])
    else:
        # the backbone with a throwaway head: your file's head (maybe for other classes) is not needed here
        model = build_model(replace(spec, new_head=True), ds.X.shape[1:], ds.n_classes, 0)
        H = backbone_features(prepare(model, torch.device(device) if device else default_device(), ds.X.ndim == 4),
                              ds.X, progress=progress)
        if cache is not None:
            cache.save("features", key, {"features": H})
    return replace(ds, X=H, feature_names=None, _fingerprint=[])


def gradients_key(model, ds: Dataset, settings: GradientSettings = GradientSettings()) -> str:
    """The cache key of ``ds``'s gradients under ``model``: data, weights and the settings."""
    return cache_key("grads", ds.fingerprint(), weights_key(model), settings.to_dict())


def cached_gradients(model, ds: Dataset, settings: GradientSettings = GradientSettings(),
                     cache: DiskCache | None = None) -> GradientSet | None:
    """The gradients ``gradients`` would return if they are already in the disk cache, else None."""
    hit = None if cache is None else cache.load("gradients", gradients_key(model, ds, settings))
    return None if hit is None else from_arrays(hit)


def gradients(model, ds: Dataset, settings: GradientSettings = GradientSettings(), cache: DiskCache | None = None,
              progress: Progress = None, device=None) -> GradientSet:
    """``extract_gradients`` behind the disk cache, keyed by data, weights and ``settings``.

    Dense rows stream straight into a memory-mapped cache file, chunk by chunk, and
    come back memory-mapped: memory stays bounded and a restart recomputes nothing.
    """
    layer, dim, seed = settings.layer, settings.projection_dim, settings.seed
    if cache is None:
        return extract_gradients(model, ds, layer, dim, seed, progress=progress, device=device)
    hit = cached_gradients(model, ds, settings, cache)
    if hit is not None:
        return hit
    key = gradients_key(model, ds, settings)
    with cache.writer("gradients", key) as w:
        gs = extract_gradients(model, ds, layer, dim, seed, progress=progress, device=device,
                               allocate=lambda shape: w.array("dense", shape))
        for name, value in to_arrays(gs).items():
            if name not in w.names:  # rows written in place are stored already
                w.put(name, value)
    return from_arrays(cache.load("gradients", key))


def holdout_validation(splits: Splits, fraction: float = 0.1, seed: int = 0) -> Splits:
    """Move a seeded fraction of the training set into a validation set (if there is none)."""
    if splits.val is not None:
        return splits
    if not 0 < fraction < 0.5:
        raise OgdashError(f"validation fraction must be in (0, 0.5); got {fraction}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(splits.train.n)
    k = max(1, int(round(fraction * splits.train.n)))
    return Splits(splits.train.subset(np.sort(order[k:])), splits.test, splits.train.subset(np.sort(order[:k])))


@dataclass(frozen=True)
class ScanSettings:
    """What a scan does besides the data and the model.

    detector: a detector key (``ogdash.detect`` registry; default the recommended one).
    budget: a fraction 0 < b < 1 or a count b >= 1 of samples to flag, or ``"auto"`` for the
    suggested budget. seed: training, projection and detector seed. layer, projection_dim:
    which gradients (see :class:`GradientSettings`).
    """

    detector: str = RECOMMENDED
    budget: float | str = 0.05
    seed: int = 0
    layer: str = "last"
    projection_dim: int | None = None

    def __post_init__(self):
        if isinstance(self.budget, str) and self.budget != "auto":
            raise OgdashError(f"budget must be a number or 'auto'; got {self.budget!r}.")
        if self.detector not in DETECTORS:  # before anything is trained
            raise OgdashError(f"unknown detector {self.detector!r}; choose one of {', '.join(DETECTORS)}.")

    @property
    def gradients(self) -> GradientSettings:
        return GradientSettings(self.layer, self.projection_dim, self.seed)

    def to_dict(self) -> dict:
        """A stable, JSON-able form."""
        return asdict(self)


@dataclass
class ScanResult:
    """Everything one scan produced; ``scores`` follow higher = more detrimental."""

    model: torch.nn.Module
    grads: GradientSet
    scores: np.ndarray
    flags: np.ndarray
    accuracy_before: float
    detection: dict | None
    seconds: dict = field(default_factory=dict)
    suggested_budget: BudgetEstimate | None = None  # set when the budget was 'auto'
    probs: np.ndarray | None = None  # cross-fitted probabilities (n, C), when the scan read them (detect.crossfit)


def scan(splits: Splits, spec: ModelSpec, settings: ScanSettings = ScanSettings(), cache: DiskCache | None = None,
         progress: Progress = None, device=None, model: torch.nn.Module | None = None) -> ScanResult:
    """Train (or load) the model, extract training gradients, score and flag them.

    ``model``: a trained network to analyse as it is (your own, see ``ogdash.models.user``);
    by default ``spec`` is trained. ``budget='auto'`` flags the suggested budget
    (``ogdash.detect.budget.suggest_budget``), which the result then carries as ``suggested_budget``.
    """
    timer, seed, budget, seconds = Timer(), settings.seed, settings.budget, None
    with timer("train"):
        if model is None:
            model = cached_model(spec, splits.train, seed, cache)
        if model is None:  # trained now: how long one training takes decides whether a cross-fit is cheap
            t = time.perf_counter()
            model = train_model(spec, splits.train, seed, cache, progress, device, splits.val)
            seconds = time.perf_counter() - t
    with timer("gradients"):
        g_train = gradients(model, splits.train, settings.gradients, cache, device=device)
        g_val = None
        entry = method(settings.detector)
        if entry.needs_validation:
            if splits.val is None or splits.val.n == 0:
                raise OgdashError(f"{entry.name} needs a non-empty validation set (its samples are the inliers).")
            g_val = gradients(model, splits.val, settings.gradients, cache, device=device)
    probs = None
    with timer("probe"):  # small, cheap or memorised: the held-out probabilities are cross-fitted (detect.crossfit)
        if settings.detector == RECOMMENDED or budget == "auto":
            own = (spec.head_spec(), backbone_dataset(spec, splits.train, cache, device)) \
                if spec.user and spec.tune == "last" else (spec, splits.train)
            probs = probe_probabilities(*own, g_train.predicted, seed, seconds, cache, device, progress)
    with timer("score"):
        if probs is not None and settings.detector == RECOMMENDED:
            scores = rank_probabilities(probs, splits.train.y)
        else:
            scores = score(g_train, settings.detector, g_val, seed, labels=splits.train.y)
        suggested = None
        if budget == "auto":  # the held-out probe's refit is remembered: score() and this share one
            suggested = suggest_budget(g_train, splits.train.y, seed=seed, crossfit=probs)
            budget = suggested.budget
        flags = flag(scores, budget)
    acc = accuracy(model, splits.test.X, splits.test.y)
    det = None if splits.train.noisy is None else detection_metrics(flags, scores, splits.train.noisy)
    return ScanResult(model, g_train, scores, flags, acc, det, timer.seconds, suggested, probs)
