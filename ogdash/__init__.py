"""ogdash: find the training samples that hurt your model, by outlier gradient analysis.

Data and a model go in; per-sample gradients come out once and are cached;
detectors turn gradients into scores (higher = more detrimental); a budget turns
scores into flags; people review flags into decisions; decisions trim the data;
a retrain measures what the trim was worth.
"""
from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.errors import OgdashError
from ogdash.data import Dataset, Splits, blobs, digits, load_file, load_splits, make_dataset, mnist5k, moons
from ogdash.detect.flags import flag
from ogdash.detect.metrics import detection_metrics
from ogdash.detect.registry import DETECTORS, make_detector
from ogdash.detect.scoring import score
from ogdash.engine.gradients import GradientSet, extract_gradients
from ogdash.models import ModelSpec, fit, load_weights, save_weights
from ogdash.pipeline import ScanResult, holdout_validation, scan, train_model
from ogdash.retrain import RetrainReport, trim, trim_and_retrain

__all__ = ["DiskCache", "cache_key", "Dataset", "Splits", "blobs", "digits", "load_file", "load_splits",
           "make_dataset", "mnist5k", "moons", "DETECTORS", "flag", "make_detector", "score", "OgdashError",
           "GradientSet", "extract_gradients", "detection_metrics", "ModelSpec", "fit", "load_weights",
           "save_weights", "ScanResult", "holdout_validation", "scan", "train_model", "RetrainReport", "trim",
           "trim_and_retrain"]
