"""THE scan: data and a model in; the model, gradients, held-out probabilities, scores, flags and the
suggested budget out, each stage computed once and cached.

:class:`Scan` is the one way the CLI, the pages and a Python user run the stages: built from a
``DataSpec`` (or ``Splits``), a ``ModelSpec`` (or your trained network) and ``ScanSettings``,
it computes each stage on first use and keeps it in its ``stages`` store (a dict by default;
the dashboard gives its process-wide, bounded memo, so every page and tab shares one scan), under
a key made of what the stage depends on. Models, gradients and layouts are also kept in the disk
cache (``DiskCache``), so a scan computed headless on a GPU server is picked up by the dashboard
without recomputing anything. :func:`scan` runs every stage at once; :func:`find_issues` is the
array-first entry: ``find_issues(X, labels)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ogdash.core.cache import DiskCache, cache_key, file_stamp
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress, Timer
from ogdash.core.threads import at_most
from ogdash.data.dataset import Dataset, Splits, hold_out_validation, make_dataset
from ogdash.data.search import SearchIndex, find_samples
from ogdash.data.spec import DataSpec
from ogdash.detect.budget import BudgetEstimate, estimate_budget
from ogdash.detect.crossfit import probe_probabilities, should_crossfit
from ogdash.detect.flags import budget_count, flag
from ogdash.detect.heldout import PROBE_FOLDS, heldout_into, suggestions
from ogdash.detect.metrics import detection_auroc, detection_metrics
# the detectors' vocabulary, for the CLI and the pages (which call the scan, never the stages)
from ogdash.detect.registry import DETECTORS, ENSEMBLES, RECOMMENDED, Method, describe, method  # noqa: F401
from ogdash.detect.scoring import score
from ogdash.engine.gradients import GradientSet, extract_gradients, from_arrays, selectable_layers, to_arrays
from ogdash.engine.layout2d import LAYOUTS, UMAP_FIT_MAX, cached_layout, layout_2d  # noqa: F401
from ogdash.engine.settings import GradientSettings
# top_pairs: the pages list the class pairs through the scan's module
from ogdash.explain import ClassStats, class_stats, flag_pairs, nearest_in_classes, row_norms, top_pairs  # noqa: F401
from ogdash.explain.neighbours import class_index
from ogdash.explain import unusual_features
from ogdash.models.train import accuracy, check_fits, confusion, fit, predict_proba
from ogdash.models.weights import load_torchvision
from ogdash.models.zoo import ModelSpec, build_model, weights_key

holdout_validation = hold_out_validation  # the public name since the first release
NEIGHBOUR_MEMORY = 20_000  # positions whose neighbours a scan keeps (about 1 MB at k = 3)


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


def features_key(spec: ModelSpec, ds: Dataset) -> str:
    """The cache key of your network's backbone features of ``ds`` (stage ``features``)."""
    from ogdash.core.cache import file_digest

    return cache_key("features", spec.arch, file_digest(spec.weights) if spec.weights else None, ds.fingerprint())


def backbone_dataset(spec: ModelSpec, ds: Dataset, cache: DiskCache | None = None, device=None,
                     progress: Progress = None) -> Dataset:
    """``ds`` with each input replaced by your network's backbone features (its last layer's inputs).

    Computed once per (network, weights, data) and kept in the disk cache: a frozen backbone
    with a head trained here, and every retrain of that head, reuse them (``ogdash extract``
    computes them sharded over processes, into the same entry).
    """
    key = features_key(spec, ds)
    hit = None if cache is None else cache.load("features", key, mmap=False)
    if hit is not None:
        H = np.asarray(hit["features"])
    else:
        H = backbone_features_of(spec, ds, device, progress)
        if cache is not None:
            cache.save("features", key, {"features": H})
    return replace(ds, X=H, feature_names=None, _fingerprint=[])


def backbone_features_of(spec: ModelSpec, ds: Dataset, device=None, progress: Progress = None) -> np.ndarray:
    """(n, H) features of ``ds`` under your network's backbone (no cache)."""
    from ogdash.models.devices import default_device, prepare
    from ogdash.models.user import backbone_features

    # the backbone with a throwaway head: your file's head (maybe for other classes) is not needed here
    model = build_model(replace(spec, new_head=True), ds.X.shape[1:], ds.n_classes, 0)
    return backbone_features(prepare(model, torch.device(device) if device else default_device(), ds.X.ndim == 4),
                             ds.X, progress=progress)


def load_network(spec: ModelSpec, train: Dataset) -> torch.nn.Module:
    """Your trained network as it is (``spec.user``), checked against the data here rather than pages later."""
    if spec.kind == "torchvision":  # the file is checked before the model is built (it can weigh gigabytes)
        model = load_torchvision(spec.arch, train.n_classes, spec.weights)
    else:
        model = build_model(spec, train.X.shape[1:], train.n_classes)
    check_fits(model, train.X, train.n_classes, f"{spec.arch} with {Path(spec.weights).name}")
    return model


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
                               allocate=w.array)
        for name, value in to_arrays(gs).items():
            if name not in w.names:  # rows written in place are stored already
                w.put(name, value)
    return from_arrays(cache.load("gradients", key, verify=False))  # hashed as it was written


def heldout(grads: GradientSet, labels, key: str, seed: int = 0, cache: DiskCache | None = None) -> np.ndarray:
    """The held-out probabilities (n, C) of closed-form gradients (``ogdash.detect.heldout``), behind the disk
    cache under ``key`` (which must name the gradients): written there chunk by chunk as float32 and read
    back memory-mapped, so an n x C array is never held in memory; without a cache, in memory."""
    if cache is None:
        return suggestions(grads, labels, seed=seed)
    key = cache_key("heldout", key, PROBE_FOLDS, seed)
    hit = cache.load("probes", key)
    if hit is None:
        with cache.writer("probes", key) as w:
            width = max(grads.probs.shape[1], int(np.max(labels)) + 1)
            heldout_into(grads.acts, labels, w.array("probs", (grads.n, width), np.float32), seed=seed)
        hit = cache.load("probes", key, verify=False)  # hashed as it was written
    return hit["probs"]


# ---------------------------------------------------------------- the scan

@dataclass(frozen=True)
class ScanSettings:
    """What a scan does besides the data and the model, checked when made.

    detector: a detector key (``DETECTORS``; default the recommended one), resolved to its registry
    entry once (``entry``). budget: a fraction 0 < b < 1 or a count b >= 1 of samples to flag, or
    ``"auto"`` for the suggested budget. seed: seeds training, folds and detectors. gradients:
    which gradients (:class:`GradientSettings`: the layer, an optional projection and its seed).
    """

    detector: str = RECOMMENDED
    budget: float | str = 0.05
    seed: int = 0
    gradients: GradientSettings = GradientSettings()
    entry: Method = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.budget != "auto":
            if isinstance(self.budget, str):
                raise OgdashError(f"budget must be a number or 'auto'; got {self.budget!r}.")
            budget_count(self.budget, 2**62)  # its form: a fraction, or a whole count (checked against n later)
        if self.detector not in DETECTORS:  # before anything is trained
            raise OgdashError(f"unknown detector {self.detector!r}; choose one of {', '.join(DETECTORS)}.")
        object.__setattr__(self, "entry", method(self.detector))
        if not isinstance(self.gradients, GradientSettings):
            raise OgdashError("gradients must be GradientSettings(layer, projection_dim, seed).")

    def to_dict(self) -> dict:
        """A stable, JSON-able form."""
        return {"detector": self.detector, "budget": self.budget, "seed": self.seed,
                "gradients": self.gradients.to_dict()}


@dataclass
class ScanResult:
    """Everything one scan produced; ``scores`` follow higher = more detrimental.

    probabilities: (n, C) each training sample's class probabilities from a model that never saw its
    label (models cross-fitted without it where the model memorised its labels, else the last layer
    refitted without it), where the gradients allow; the suggested labels are their argmax. accuracy_before: on the test set (None without one). detection: precision, recall
    and AUROC against the true labels, only when they are known. notes: what the scan decided for you.
    """

    model: torch.nn.Module
    grads: GradientSet
    scores: np.ndarray
    flags: np.ndarray
    accuracy_before: float | None
    detection: dict | None
    seconds: dict = field(default_factory=dict)
    suggested_budget: BudgetEstimate | None = None  # set when the budget was 'auto'
    probabilities: np.ndarray | None = None
    notes: list = field(default_factory=list)


class _Stages:
    """The default store of a scan's stages: a plain dict with the memo's ``get``/``put``."""

    def __init__(self):
        self._items = {}

    def get(self, key: str, compute=None):
        if key not in self._items and compute is not None:
            self._items[key] = compute()
        return self._items.get(key)

    def put(self, key: str, value) -> None:
        self._items[key] = value


class Scan:
    """One data set scanned with one model: each stage computed on first use, once, and cached.

    data: a ``DataSpec`` (loaded on first use) or ``Splits``. model: a ``ModelSpec`` (trained here,
    or your network loaded as it is: ``ModelSpec('torchvision'|'custom', arch=..., weights=...)``),
    a zoo kind name such as ``"mlp"``, or a trained ``nn.Module`` to analyse as it is. settings:
    :class:`ScanSettings`. cache: a ``DiskCache`` for models, gradients and layouts (None: none).
    stages: where stage results are kept (anything with ``get(key, compute)`` and ``put(key, value)``,
    such as the dashboard's memo; default a dict of this scan's own). data_key, model_key: strings
    that name the data and the model in stage keys (default: from the spec and its files' stamps,
    or the data's content).

    Every training sample is scored; nothing is moved out of training behind your back. A detector
    that needs inliers (OneClassSVM) fits on the validation set when there is one, else on the
    training gradients themselves (``notes`` says so).
    """

    def __init__(self, data, model="mlp", settings: ScanSettings = ScanSettings(), cache: DiskCache | None = None,
                 device=None, stages=None, data_key: str | None = None, model_key: str | None = None):
        if not isinstance(data, (DataSpec, Splits)):
            raise OgdashError("data must be a DataSpec or Splits; for arrays use ogdash.find_issues(X, labels).")
        self.data, self.settings, self.cache, self.device = data, settings, cache, device
        self.spec = ModelSpec(model) if isinstance(model, str) else model if isinstance(model, ModelSpec) else None
        self.network = model if isinstance(model, torch.nn.Module) else None
        if self.spec is None and self.network is None:
            raise OgdashError("model must be a ModelSpec, a model kind such as 'mlp', or a trained nn.Module.")
        self.stages = _Stages() if stages is None else stages
        self._data_key, self._model_key = data_key, model_key

    # ---------------------------------------------------------------- keys

    @property
    def data_key(self) -> str:
        if self._data_key is None:
            if isinstance(self.data, DataSpec):
                self._data_key = cache_key("data", self.data.to_dict(), [file_stamp(p) for p in self.data.paths()])
            else:
                s = self.data
                self._data_key = cache_key("data", *[None if d is None else d.fingerprint()
                                                     for d in (s.train, s.test, s.val)])
        return self._data_key

    @property
    def model_key(self) -> str:
        if self._model_key is None:
            self._model_key = (weights_key(self.network) if self.network is not None
                               else cache_key(self.spec.key(), self.settings.seed))
        return self._model_key

    def key(self, stage: str, *more) -> str:
        """The store key of ``stage`` (and ``more``: a detector, a budget, a layout), made of what it depends on."""
        if stage in ("splits", "feature_stats", "search"):  # the data's alone
            return cache_key(stage, self.data_key)
        if stage in ("class_index", "class_feature_stats"):  # the data's alone, per argument
            return cache_key(stage, self.data_key, *more)
        if stage in ("model", "train_seconds", "summary"):
            return cache_key(stage, self.data_key, self.model_key)
        return cache_key(stage, self.data_key, self.model_key, self.settings.gradients.to_dict(),
                         self.settings.seed, *more)

    # ---------------------------------------------------------------- data and model

    def splits(self, progress: Progress = None) -> Splits:
        """The training, test and validation data (a ``DataSpec`` is loaded here, once)."""
        if isinstance(self.data, Splits):
            return self.data
        return self.stages.get(self.key("splits"), lambda: self.data.load(self.cache, progress))

    @property
    def train(self) -> Dataset:
        return self.splits().train

    def model(self, compute: bool = True, progress: Progress = None) -> torch.nn.Module | None:
        """The model: your network as it is, else trained (or loaded from the disk cache).

        compute=False: None when it would have to be trained (the dashboard trains on a click).
        """
        key = self.key("model")
        hit = self.stages.get(key)
        if hit is not None:
            return hit
        if self.network is not None:
            model = self.network
        elif self.spec.user and not self.spec.new_head:
            model = load_network(self.spec, self.train)
        else:
            splits, seed = self.splits(), self.settings.seed
            model = cached_model(self.spec, splits.train, seed, self.cache)
            if model is None:
                if not compute:
                    return None
                start = time.perf_counter()
                model = train_model(self.spec, splits.train, seed, self.cache, progress, self.device, splits.val)
                self.stages.put(self.key("train_seconds"), time.perf_counter() - start)
        self.stages.put(key, model)
        return model

    def train_seconds(self) -> float | None:
        """How long training took in this process (None when the model was loaded)."""
        return self.stages.get(self.key("train_seconds"))

    def accuracy(self) -> float | None:
        """The model's accuracy on the test set (None without one)."""
        test = self.splits().test
        return None if test is None else self.summary()["test"]

    def summary(self) -> dict:
        """Train and test accuracy and the test set's confusion matrix (test entries None without a test set)."""
        def compute():
            model, s = self.model(), self.splits()
            k = s.train.n_classes
            return {"train": accuracy(model, s.train.X, s.train.y),
                    "test": None if s.test is None else accuracy(model, s.test.X, s.test.y),
                    "confusion": None if s.test is None else confusion(model, s.test.X, s.test.y, k)}
        return self.stages.get(self.key("summary"), compute)

    def predicted(self) -> np.ndarray:
        """(n,) the model's own predicted class of each training sample."""
        def compute():
            grads = self.gradients(compute=False)
            if grads is not None:
                return np.asarray(grads.predicted)
            return predict_proba(self.model(), self.train.X).argmax(1)
        return self.stages.get(self.key("predicted"), compute)

    def layers(self) -> list[str]:
        """The layers whose gradients can be scored: ``last`` (the closed form) and the model's own."""
        return ["last"] + [name for name in selectable_layers(self.model()) if name != "head"]

    # ---------------------------------------------------------------- gradients and what follows from them

    def gradients(self, compute: bool = True, progress: Progress = None) -> GradientSet | None:
        """The training set's per-sample gradients (compute=False: None unless extracted before)."""
        key = self.key("grads")
        hit = self.stages.get(key)
        if hit is not None:
            return hit
        model = self.model(compute)
        if model is None:
            return None
        gs, train = self.settings.gradients, self.train
        found = cached_gradients(model, train, gs, self.cache)
        if found is None:
            if not compute:
                return None
            found = gradients(model, train, gs, self.cache, progress, self.device)
        self.stages.put(key, found)
        return found

    def validation_gradients(self) -> GradientSet | None:
        """The validation set's gradients (None without a validation set)."""
        val = self.splits().val
        if val is None or val.n == 0:
            return None
        return self.stages.get(self.key("val_grads"), lambda: gradients(
            self.model(), val, self.settings.gradients, self.cache, device=self.device))

    def crossfit(self, progress: Progress = None) -> np.ndarray | None:
        """Cross-fitted probabilities (n, C), from K models each trained without one fold, where the model has
        memorised its given labels (``ogdash.detect.crossfit.should_crossfit``); None where the last-layer refit
        is the probe. Kept on disk; how often the cross-fit is repeated depends on the data's size only, so a
        reload or the CLI reads the same probabilities."""
        def compute():
            spec, train = self.spec, self.train
            if spec is None:  # a trained network given as it is: nothing here trains it again
                return (None,)
            if not should_crossfit(spec, float(np.mean(self.gradients().predicted == train.y))):
                return (None,)  # the last-layer refit is the probe: no backbone features needed
            if spec.user and spec.tune == "last":  # your network: its last layer, on the backbone's features
                spec, train = spec.head_spec(), backbone_dataset(spec, train, self.cache, self.device)
            return (probe_probabilities(spec, train, self.gradients().predicted, self.settings.seed, None,
                                        self.cache, self.device, progress),)
        return self.stages.get(self.key("crossfit"), compute)[0]

    @property
    def probability_source(self) -> str:
        """'crossfit' (models trained without each sample), 'probe' (a last layer refitted without it) or 'model'
        (the model's own probabilities)."""
        if self.crossfit() is not None:
            return "crossfit"
        return "probe" if self.gradients().acts is not None else "model"

    def probabilities(self, progress: Progress = None) -> np.ndarray:
        """(n, C) class probabilities of each training sample from a model that never saw its label where it can
        (cross-fitted, else the last layer refitted without it), else the model's own; the suggestions' argmax."""
        def compute():
            cross = self.crossfit(progress)
            if cross is not None:
                return cross
            grads, train = self.gradients(), self.train
            if grads.acts is None:
                return suggestions(grads, train.y, seed=self.settings.seed)  # the model's own
            key = gradients_key(self.model(), train, self.settings.gradients)
            return heldout(grads, train.y, key, self.settings.seed, self.cache)
        return self.stages.get(self.key("probabilities"), compute)

    def scores(self, detector: str | None = None) -> np.ndarray:
        """Each training sample's score (n,) by ``detector`` (default the settings'); higher = more detrimental."""
        entry = self.settings.entry if detector in (None, self.settings.detector) else method(detector)

        def compute():
            grads, labels = self.gradients(), self.train.y
            if entry.from_probabilities is not None and self.probability_source != "model":
                return entry.from_probabilities(self.probabilities(), labels)  # one probe serves all three
            inliers = (self.validation_gradients() or grads) if entry.needs_validation else None
            return score(grads, entry, inliers, self.settings.seed, labels=labels)
        return self.stages.get(self.key("scores", entry.key), compute)

    def suggested_budget(self) -> BudgetEstimate:
        """The estimated share of mislabelled training samples, with its interval and whether it is reliable."""
        return self.stages.get(self.key("budget"), lambda: estimate_budget(
            self.probabilities(), self.train.y, seed=self.settings.seed, source=self.probability_source,
            reference=self.crossfit(), test_error=None if self.accuracy() is None else 1.0 - self.accuracy()))

    def budget(self, budget=None) -> float:
        """A budget as a fraction or count (``"auto"``: the suggested fraction); default the settings'."""
        budget = self.settings.budget if budget is None else budget
        return self.suggested_budget().budget if budget == "auto" else float(budget)

    def flags(self, detector: str | None = None, budget=None) -> np.ndarray:
        """Boolean mask (n,) of the top scores by ``detector`` within ``budget`` (defaults: the settings')."""
        b = self.budget(budget)
        entry = self.settings.entry if detector in (None, self.settings.detector) else method(detector)
        return self.stages.get(self.key("flags", entry.key, b), lambda: flag(self.scores(entry.key), b))

    def detection(self, detector: str | None = None, budget=None) -> dict | None:
        """Precision, recall, AUROC and outlier-detection accuracy of the flags, only when the truth is known."""
        noisy = self.train.noisy
        if noisy is None:
            return None
        b = self.budget(budget)
        entry = self.settings.entry if detector in (None, self.settings.detector) else method(detector)
        # memoised, the AUROC per detector: it sorts every score (0.3 s at a million samples), whatever the budget
        auroc = self.stages.get(self.key("auroc", entry.key), lambda: detection_auroc(self.scores(entry.key), noisy))
        return self.stages.get(self.key("detection", entry.key, b), lambda: detection_metrics(
            self.flags(entry.key, b), self.scores(entry.key), noisy, auroc))

    def inliers_note(self, detector: str | None = None) -> str | None:
        """What a detector that needs inliers fits on here, when it is not a validation set."""
        entry = self.settings.entry if detector is None else method(detector)
        if entry.needs_validation and self.validation_gradients() is None:
            return (f"{entry.name} needs inliers and this data has no validation set: it is fitted on the training "
                    "gradients themselves, so every sample is scored.")
        return None

    def layout(self, layout: str = "pca", progress: Progress = None) -> tuple[np.ndarray, str]:
        """(n, 2) coordinates of the gradients and the axes' description; kept on disk with the gradients."""
        def compute():
            grads = self.gradients()
            if self.cache is None:
                return layout_2d(grads, layout, progress=progress)
            disk_key = gradients_key(self.model(), self.train, self.settings.gradients)
            return cached_layout(grads, layout, self.cache, disk_key, progress=progress)
        return self.stages.get(self.key("layout", layout), compute)

    # ---------------------------------------------------------------- what a reviewer sees beside a flag

    def suggested(self) -> np.ndarray:
        """(n,) each training sample's suggested label: the argmax of ``probabilities``."""
        return self.stages.get(self.key("suggested"), lambda: self.probabilities().argmax(1))

    def feature_space(self) -> tuple[np.ndarray, str]:
        """The rows neighbours are found in, and their name: the model's features (the last layer's inputs, the
        gradient's second factor) when the gradients are kept as factors, else the gradient rows."""
        grads = self.gradients()
        if grads.acts is not None:
            return grads.acts, "the model's feature space (the last layer's inputs)"
        return grads.dense, "gradient space"

    def neighbours(self, positions, k: int = 3) -> dict[int, dict]:
        """For each training position: its ``k`` nearest samples (cosine, ``feature_space``) among those given its
        label and among those given its suggested label, as ``{"given": (positions, similarity), "suggested":
        (...)}`` ("suggested" is None when the suggestion is the given label).

        One chunked pass over the rows serves every position not asked before; answers are kept in a stage
        (at most ``NEIGHBOUR_MEMORY`` positions), so paging back costs nothing.
        """
        known = self.stages.get(self.key("neighbours", k), dict)  # shared by every session: read each entry once
        positions = [int(p) for p in positions]
        out = {p: known.get(p) for p in positions}
        missing = [p for p, hit in out.items() if hit is None]
        if missing:
            rows, _ = self.feature_space()
            norms = self.stages.get(self.key("feature_norms"), lambda: row_norms(rows))
            given, suggested = self.train.y[missing], self.suggested()[missing]
            index = self.stages.get(self.key("class_index"), lambda: class_index(self.train.y))  # per data
            found, sims = nearest_in_classes(rows, self.train.y, missing,
                                             np.stack([given, np.where(suggested != given, suggested, -1)], 1), k,
                                             norms, index=index)
            if len(known) + len(missing) > NEIGHBOUR_MEMORY:
                known.clear()
            for i, p in enumerate(missing):
                keep = [found[i, j] >= 0 for j in range(2)]
                out[p] = known[p] = {"given": (found[i, 0][keep[0]], sims[i, 0][keep[0]]),
                                     "suggested": None if suggested[i] == given[i] else (found[i, 1][keep[1]],
                                                                                          sims[i, 1][keep[1]])}
        return {p: out[p] for p in positions}

    def class_pairs(self, detector: str | None = None, budget=None) -> np.ndarray:
        """(C, C) flagged samples by given class (rows) and suggested class (columns): where the flags fall."""
        b = self.budget(budget)
        entry = self.settings.entry if detector in (None, self.settings.detector) else method(detector)
        return self.stages.get(self.key("class_pairs", entry.key, b), lambda: flag_pairs(
            self.train.y, self.suggested(), self.flags(entry.key, b), self.train.n_classes))

    def feature_stats(self) -> ClassStats | None:
        """Each class's mean and spread of every input feature (feature rows only; None for images and text)."""
        train = self.train
        if train.kind != "features":
            return None
        return self.stages.get(self.key("feature_stats"), lambda: class_stats(
            train.X, train.y, train.n_classes))

    def unusual_features(self, positions, top: int = 5) -> dict[int, list[dict]]:
        """For each training position of a feature row, its ``top`` features by |z| against its given class
        (``ogdash.explain.unusual_features``); empty for images and text."""
        train = self.train
        if train.kind != "features":
            return {int(p): [] for p in positions}
        return {int(p): unusual_features(train.X[int(p)], 0, self.class_feature_stats(int(train.y[int(p)])), top)
                for p in positions}

    def class_feature_stats(self, label: int) -> ClassStats:
        """One class's mean and spread of every input feature, as a one-class ``ClassStats``: only that class's
        rows are read (a page of cards at a million rows and 100 classes reads a few classes, not every row)."""
        def compute():
            order, starts = self.stages.get(self.key("class_index"), lambda: class_index(self.train.y))
            rows = order[starts[label]:starts[label + 1]] if label < len(starts) - 1 else order[:0]
            X = self.train.X
            return class_stats(_Rows(X, rows), np.zeros(len(rows), dtype=np.int64), 1)
        return self.stages.get(self.key("class_feature_stats", int(label)), compute)

    def find(self, query: str) -> np.ndarray:
        """Sorted training positions that ``query`` names: an id, a file name, ``line 7``, ``row 7``, or words in a
        text (``ogdash.data.search.find_samples``; the index is built once per data)."""
        index = self.stages.get(self.key("search"), lambda: SearchIndex.of(self.train))
        return find_samples(self.train, query, index)

    # ---------------------------------------------------------------- everything at once

    def result(self, progress: Progress = None) -> ScanResult:
        """Run every stage: train (or load), extract, score, flag; timed per stage."""
        timer, settings = Timer(), self.settings
        splits = self.splits(progress)
        if settings.budget != "auto":
            budget_count(settings.budget, splits.train.n)  # a bad count fails before anything is trained
        with timer("train"):
            model = self.model(progress=progress)
        with timer("gradients"):
            self.gradients(progress=progress)
            if settings.entry.needs_validation:
                self.validation_gradients()
        probs = None
        if settings.entry.from_probabilities is not None or settings.budget == "auto":
            with timer("probe"):  # the held-out probabilities: cross-fitted where the model memorised its labels
                self.crossfit(progress)
                probs = self.probabilities() if self.probability_source != "model" else None
        with timer("score"):
            scores = self.scores()
            suggested = self.suggested_budget() if settings.budget == "auto" else None
            flags = self.flags()
        notes = [n for n in [self.inliers_note()] if n]
        return ScanResult(model, self.gradients(), scores, flags, self.accuracy(), self.detection(), timer.seconds,
                          suggested, probs, notes)


class _Rows:
    """The rows ``positions`` (sorted) of an array, read a slice at a time: what ``class_stats`` reads in chunks."""

    def __init__(self, X, positions):
        self.X, self.positions = X, positions
        self.shape = (len(positions), *X.shape[1:])

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, part: slice) -> np.ndarray:
        return np.asarray(self.X[self.positions[part]])


def scan(splits: Splits, spec: ModelSpec, settings: ScanSettings = ScanSettings(), cache: DiskCache | None = None,
         progress: Progress = None, device=None, model: torch.nn.Module | None = None) -> ScanResult:
    """Train (or load) the model, extract training gradients, score and flag them: ``Scan(...).result()``.

    ``model``: a trained network to analyse as it is (your own, see ``ogdash.models.user``);
    by default ``spec`` is trained. ``budget='auto'`` flags the suggested budget
    (``ogdash.detect.budget.estimate_budget``), which the result then carries as ``suggested_budget``.
    """
    return Scan(splits, spec if model is None else model, settings, cache, device).result(progress)


def find_issues(X, labels, model="mlp", *, detector: str = RECOMMENDED, budget="auto", seed: int = 0,
                classes=None, ids=None, threads: int | None = None, cache: DiskCache | None = None,
                progress: Progress = None) -> ScanResult:
    """Score every training sample of arrays, no test set needed: the array-first entry.

    X: (n, d) feature rows or (n, C, H, W) images; labels: (n,) given class indices. model: a zoo
    kind (``"logreg"``, ``"mlp"``, ``"cnn"``), a ``ModelSpec``, or your trained ``nn.Module`` (analysed
    as it is). budget: ``"auto"`` (the suggested budget, the default), a fraction or a count.
    classes: class names; ids: stable sample ids (default 0..n-1); threads: at most this many CPU threads.

    Returns a :class:`ScanResult`: ``scores`` (higher = more detrimental), ``flags``,
    ``suggested_budget``, ``probabilities`` (held out: their argmax is each sample's suggested label).
    """
    train = make_dataset("data", X, labels, classes, ids=ids)
    with at_most(threads):
        return Scan(Splits(train, None), model, ScanSettings(detector, budget, seed), cache).result(progress)
