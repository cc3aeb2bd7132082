"""ogdash: find the training samples that hurt your model, by outlier gradient analysis.

Data and a model go in; per-sample gradients come out once and are cached;
detectors turn gradients into scores (higher = more detrimental); a budget turns
scores into flags; people review flags into decisions; decisions trim the data;
a retrain measures what the trim was worth.
"""
from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.errors import OgdashError
from ogdash.data import Dataset, Splits, blobs, digits, load_file, load_splits, make_dataset, mnist5k, moons
from ogdash.detect.detectors import DETECTORS, flag, make_detector, score
from ogdash.detect.metrics import detection_metrics
from ogdash.engine.gradients import GradientSet, extract_gradients
from ogdash.models import ModelSpec, fit, load_weights, save_weights
from ogdash.engine.settings import GradientSettings
from ogdash.pipeline import ScanResult, ScanSettings, holdout_validation, scan, train_model
from ogdash.retrain import RetrainReport, trim, trim_and_retrain

__all__ = ["DiskCache", "cache_key", "Dataset", "Splits", "blobs", "digits", "load_file", "load_splits",
           "make_dataset", "mnist5k", "moons", "DETECTORS", "flag", "make_detector", "score", "OgdashError",
           "GradientSet", "extract_gradients", "detection_metrics", "ModelSpec", "fit", "load_weights",
           "save_weights", "ScanResult", "ScanSettings", "GradientSettings", "holdout_validation", "scan", "train_model", "RetrainReport", "trim",
           "trim_and_retrain"]
