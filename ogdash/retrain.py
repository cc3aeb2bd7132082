"""Trim (or relabel) training samples and retrain: what was the trim worth?

Both runs of a seed use the same initial weights and the same optimiser settings;
accuracy is always measured on the untouched test set.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ogdash.cache import DiskCache
from ogdash.data.dataset import Splits
from ogdash.errors import OgdashError
from ogdash.models.train import accuracy, per_class_accuracy
from ogdash.models.zoo import ModelSpec
from ogdash.pipeline import train_model


@dataclass
class RetrainReport:
    """Test accuracy before and after the trim, one entry per seed."""

    seeds: list
    before: np.ndarray            # (S,)
    after: np.ndarray             # (S,)
    per_class_before: np.ndarray  # (S, C)
    per_class_after: np.ndarray   # (S, C)
    n_removed: int
    n_relabelled: int
    removed_truly_noisy: int | None
    seconds: float

    @property
    def summary(self) -> dict:
        return {
            "accuracy_before": float(self.before.mean()), "accuracy_before_std": float(self.before.std()),
            "accuracy_after": float(self.after.mean()), "accuracy_after_std": float(self.after.std()),
            "seeds": list(self.seeds), "n_removed": self.n_removed, "n_relabelled": self.n_relabelled,
            "removed_truly_noisy": self.removed_truly_noisy,
        }


def trim(splits: Splits, remove_ids=(), relabel: dict[int, int] | None = None) -> Splits:
    """The splits with ``remove_ids`` dropped from and ``relabel`` applied to the training set only."""
    train = splits.train
    remove_ids = np.asarray(list(remove_ids), dtype=np.int64)
    if len(remove_ids):
        train.positions(remove_ids)  # raises on unknown ids
    relabel = {int(k): int(v) for k, v in (relabel or {}).items() if int(k) not in set(remove_ids.tolist())}
    bad = [v for v in relabel.values() if not 0 <= v < train.n_classes]
    if bad:
        raise OgdashError(f"relabel targets must be classes 0..{train.n_classes - 1}; got {bad[:3]}.")
    train = train.relabelled(relabel).without(remove_ids)
    if len(np.unique(train.y)) < 2:
        raise OgdashError("the trimmed training set has fewer than two classes left; trim less.")
    return Splits(train, splits.test, splits.val)


def trim_and_retrain(splits: Splits, spec: ModelSpec, remove_ids=(), relabel=None, seeds=(0,),
                     cache: DiskCache | None = None, progress=None, device=None) -> RetrainReport:
    """Retrain with and without the trim for each seed; accuracy on the untouched test set."""
    t0 = time.perf_counter()
    trimmed = trim(splits, remove_ids, relabel)
    test, C = splits.test, splits.train.n_classes
    before, after, pc_before, pc_after = [], [], [], []
    for i, seed in enumerate(seeds):
        for which, data, accs, pcs in (("before", splits, before, pc_before), ("after", trimmed, after, pc_after)):
            step = (2 * i + (which == "after")) / (2 * len(seeds))
            sub = None if progress is None else (lambda f, msg, s=step: progress(s + f / (2 * len(seeds)), f"seed {seed} {which}: {msg}"))
            model = train_model(spec, data.train, seed, cache, sub, device)
            accs.append(accuracy(model, test.X, test.y))
            pcs.append(per_class_accuracy(model, test.X, test.y, C))
    noisy = splits.train.noisy
    removed_noisy = None
    if noisy is not None and len(remove_ids):
        removed_noisy = int(noisy[splits.train.positions(np.asarray(list(remove_ids)))].sum())
    return RetrainReport(list(seeds), np.array(before), np.array(after), np.array(pc_before), np.array(pc_after),
                         splits.train.n - trimmed.train.n, len(relabel or {}), removed_noisy,
                         time.perf_counter() - t0)
