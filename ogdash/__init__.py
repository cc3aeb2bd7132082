"""ogdash: find the training samples that hurt your model, by outlier gradient analysis.

Data and a model go in; per-sample gradients come out once and are cached;
detectors turn gradients into scores (higher = more detrimental); a budget turns
scores into flags; people review flags into decisions; decisions trim the data;
a retrain measures what the trim was worth.

The names below load on first use (PEP 562), so importing one layer (say
``ogdash.influence``) never drags in the layers above it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_API = {
    "ogdash.core.cache": ("DiskCache", "cache_key"),
    "ogdash.core.errors": ("OgdashError",),
    "ogdash.data": ("DataSpec", "Dataset", "Splits", "blobs", "digits", "load_file", "load_splits", "make_dataset",
                    "mnist5k", "moons"),
    "ogdash.detect.flags": ("flag",),
    "ogdash.detect.metrics": ("detection_metrics",),
    "ogdash.detect.registry": ("DETECTORS", "make_detector"),
    "ogdash.detect.scoring": ("score",),
    "ogdash.engine.gradients": ("GradientSet", "extract_gradients"),
    "ogdash.models": ("ModelSpec", "fit", "load_weights", "save_weights"),
    "ogdash.engine.settings": ("GradientSettings",),
    "ogdash.pipeline": ("Scan", "ScanResult", "ScanSettings", "find_issues", "holdout_validation", "scan",
                        "train_model"),
    "ogdash.retrain": ("RetrainReport", "trim", "trim_and_retrain"),
}
_HOME = {name: module for module, names in _API.items() for name in names}

__all__ = ["DiskCache", "cache_key", "DataSpec", "Dataset", "Splits", "blobs", "digits", "load_file", "load_splits",
           "make_dataset", "mnist5k", "moons", "DETECTORS", "flag", "make_detector", "score", "OgdashError",
           "GradientSet", "extract_gradients", "detection_metrics", "ModelSpec", "fit", "load_weights",
           "save_weights", "Scan", "ScanResult", "ScanSettings", "find_issues", "GradientSettings",
           "holdout_validation", "scan", "train_model", "RetrainReport", "trim", "trim_and_retrain"]


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'ogdash' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # loaded once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from ogdash.core.cache import DiskCache, cache_key
    from ogdash.core.errors import OgdashError
    from ogdash.data import DataSpec, Dataset, Splits, blobs, digits, load_file, load_splits, make_dataset, mnist5k, moons
    from ogdash.detect.flags import flag
    from ogdash.detect.metrics import detection_metrics
    from ogdash.detect.registry import DETECTORS, make_detector
    from ogdash.detect.scoring import score
    from ogdash.engine.gradients import GradientSet, extract_gradients
    from ogdash.models import ModelSpec, fit, load_weights, save_weights
    from ogdash.engine.settings import GradientSettings
    from ogdash.pipeline import Scan, ScanResult, ScanSettings, find_issues, holdout_validation, scan, train_model
    from ogdash.retrain import RetrainReport, trim, trim_and_retrain
