"""What is a fix worth? Retrain with each fix and with controls beside it, seed by seed, on the untouched test set.

A fix is a ``Fix``: training samples removed and labels changed. ``compare`` retrains the
unchanged data and every fix for each seed, with the same initial weights and the same
number of optimiser steps (a step budget taken from the full training set, so a smaller
set is not simply trained less), and measures each model on the untouched test set. Its
rows always include a **random control** for each fix: as many random samples removed as
the fix touches (removes or relabels), drawn anew for each seed, so a fix is compared with
chance, seed by seed. Fixes that touch as many samples (the three fixes of one flag set)
share one control.

``fixes_from_flags`` turns a detector's flags into the three fixes a user can apply:
remove them, relabel them to the suggested label, or relabel where the suggestion is
confident and remove the rest.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Dataset, Splits
from ogdash.models.train import accuracy, per_class_accuracy
from ogdash.models.zoo import ModelSpec
from ogdash.pipeline import backbone_dataset, train_model

ACTIONS = {"remove": "remove the flagged samples",
           "relabel": "relabel the flagged samples to the suggested label",
           "auto": "relabel where the suggestion is confident, remove the rest"}
NONE, RANDOM, RESTORED = "none", "random", "restored"


@dataclass(frozen=True)
class Fix:
    """One change to the training set: ids removed and ids relabelled (id -> class)."""

    name: str
    label: str
    remove: tuple[int, ...] = ()
    relabel: dict = field(default_factory=dict)

    def apply(self, train: Dataset) -> Dataset:
        """The training set with this fix applied: rows removed, labels changed."""
        remove = np.asarray(self.remove, dtype=np.int64)
        if len(remove):
            train.positions(remove)  # raises on unknown ids
        relabel = {int(k): int(v) for k, v in self.relabel.items() if int(k) not in set(remove.tolist())}
        bad = [v for v in relabel.values() if not 0 <= v < train.n_classes]
        if bad:
            raise OgdashError(f"relabel targets must be classes 0..{train.n_classes - 1}; got {bad[:3]}.")
        out = train.relabelled(relabel).without(remove)
        if len(np.unique(out.y)) < 2:
            raise OgdashError("the trimmed training set has fewer than two classes left; trim less.")
        return out


def fixes_from_flags(train: Dataset, flags, suggested, confidence, threshold: float = 0.5,
                     actions=tuple(ACTIONS)) -> list[Fix]:
    """The fixes a flag set allows, by name (see ``ACTIONS``).

    ``suggested`` (n,) is each sample's suggested class (a prediction that did not see the
    sample, where there is one) and ``confidence`` (n,) its probability. A flagged sample
    whose suggestion is its given label is kept as it is by the relabel actions.
    """
    flags = np.asarray(flags, dtype=bool)
    suggested, confidence = np.asarray(suggested), np.asarray(confidence, dtype=np.float64)
    ids = train.ids[flags]
    change = suggested[flags] != train.y[flags]
    sure = change & (confidence[flags] >= threshold)
    out = []
    for name in actions:
        if name == "remove":
            out.append(Fix(name, ACTIONS[name], tuple(ids.tolist())))
        elif name == "relabel":
            out.append(Fix(name, ACTIONS[name], (), dict(zip(ids[change].tolist(), suggested[flags][change].tolist()))))
        elif name == "auto":
            out.append(Fix(name, f"relabel where the suggestion is at least {threshold:.0%} sure, remove the rest",
                           tuple(ids[~sure].tolist()), dict(zip(ids[sure].tolist(), suggested[flags][sure].tolist()))))
        else:
            raise OgdashError(f"unknown action {name!r}; choose from {', '.join(ACTIONS)}.")
    return out


def restored(train: Dataset) -> Fix:
    """Every flipped label set back to the truth (only when the truth is known): the most a fix can win."""
    if not train.truth_known:
        raise OgdashError("the true labels are not known here, so there is nothing to restore.")
    noisy = train.noisy
    return Fix(RESTORED, "every flipped label restored (true labels known)", (),
               dict(zip(train.ids[noisy].tolist(), train.y_true[noisy].tolist())))


@dataclass
class Row:
    """One retrained training set: test accuracy per seed and per class, and what was changed."""

    name: str
    label: str
    accuracy: np.ndarray            # (S,)
    per_class: np.ndarray           # (S, C)
    n_removed: int
    n_relabelled: int
    touched: tuple[int, ...]        # ids removed or relabelled (for the random control: the first seed's)
    truly_noisy: int | None = None  # of the touched samples, how many had a wrong label (truth known)
    corrected: int | None = None    # relabels to the true label (truth known)
    control: str | None = None      # the random control this fix is compared with


@dataclass
class Comparison:
    """Rows of retrains on the same seeds; ``rows[0]`` is the unchanged training set."""

    seeds: list
    steps: int
    rows: list[Row]
    seconds: float

    def row(self, name: str) -> Row:
        """The row of the fix (or reference) called ``name``."""
        return next(r for r in self.rows if r.name == name)

    def paired(self, name: str, against: str = NONE) -> np.ndarray:
        """Per-seed accuracy differences ``name - against`` (points of accuracy as a fraction);
        ``against=RANDOM`` means the fix's own random control."""
        if against == RANDOM:
            against = self.row(name).control or RANDOM
        return self.row(name).accuracy - self.row(against).accuracy

    def verdict(self, name: str) -> str:
        """In words: did this fix beat random removal of the same size, seed by seed, and did it improve on the
        unchanged data? Beating chance needs at least 3 seeds and a win on every one."""
        d, gain = self.paired(name, RANDOM), self.paired(name, NONE)
        k = self.row(self.row(name).control or RANDOM).n_removed
        wins, S = int((d > 0).sum()), len(d)
        spread = "one seed: no spread measured" if S == 1 else f"± {100 * d.std():.1f}"
        text = f"{100 * d.mean():+.1f} points against {k} random removals ({spread}; better on {wins} of {S} seeds)"
        change = f"{100 * gain.mean():+.1f} points against the unchanged data"
        if S < 3:
            return f"Too few seeds to tell a fix from chance: {text}. Use at least 3 seeds."
        if not (wins == S and d.mean() > 0):
            return f"Did not beat chance: {text}; {change}."
        if (gain > 0).all():
            return f"Beat chance and improved the model: {text}; {change}."
        better = int((gain > 0).sum())
        if gain.mean() > 0:  # better on average, not on every seed: say so rather than "did not improve"
            return (f"Beat chance, and improved the model on {better} of {S} seeds only: {text}; {change}. Use more "
                    "seeds to tell whether it pays.")
        return (f"Beat chance, but did not improve the model: {text}; {change}. The noise costs this model little, "
                "so the fix mostly changes what the model trains on without winning accuracy back.")

    def to_rows(self) -> list[dict]:
        """One plain dict per row (the CLI's JSON and the page's table)."""
        base = self.row(NONE).accuracy
        out = []
        for r in self.rows:
            d = r.accuracy - base
            out.append({"action": r.name, "label": r.label, "n_removed": r.n_removed, "n_relabelled": r.n_relabelled,
                        "accuracy_mean": float(r.accuracy.mean()), "accuracy_std": float(r.accuracy.std()),
                        "accuracy_per_seed": r.accuracy.tolist(), "change_mean": float(d.mean()),
                        "change_std": float(d.std()), "per_class_mean": np.nanmean(r.per_class, 0).tolist(),
                        "truly_noisy": r.truly_noisy, "corrected": r.corrected, "control": r.control})
        return out


def random_fix(train: Dataset, k: int, seed: int, name: str = RANDOM) -> Fix:
    """The control: ``k`` training samples removed at random, drawn anew for each seed."""
    ids = np.random.default_rng([seed, k]).choice(train.ids, size=k, replace=False)
    return Fix(name, f"{k} random samples removed (the control)", tuple(sorted(ids.tolist())))


def compare(splits: Splits, spec: ModelSpec, fixes, seeds=(0, 1, 2), cache: DiskCache | None = None,
            progress=None, device=None, control: bool = True) -> Comparison:
    """Retrain the unchanged data, each fix, and (``control``) a same-size random removal, for each seed."""
    t0 = time.perf_counter()
    train, test, C = splits.train, splits.test, splits.train.n_classes
    fixes = list(fixes)
    names = [f.name for f in fixes]
    if len(set(names)) != len(names) or NONE in names or any(n.startswith(RANDOM) for n in names):
        raise OgdashError(f"fix names must be unique and neither '{NONE}' nor start with '{RANDOM}'; got {names}.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise OgdashError("give at least one seed.")
    if spec.user and spec.tune == "last":  # every arm trains your network's last layer on features computed once
        splits = Splits(*(None if ds is None else backbone_dataset(spec, ds, cache, device)
                          for ds in (splits.train, splits.test, splits.val)))
        train, test, spec = splits.train, splits.test, spec.head_spec()
    steps = spec.total_steps(train.n)  # the full set's step budget, for every retrain
    fixed = replace(spec, steps=steps)
    sizes = [len(set(f.remove) | set(f.relabel)) for f in fixes]
    controls = {}  # touched count -> control name; the first (largest) is plain "random"
    if control:
        for k in sorted({k for f, k in zip(fixes, sizes) if k and f.name != RESTORED}, reverse=True):
            controls[k] = RANDOM if not controls else f"{RANDOM}_{k}"
    arms = [Fix(NONE, "no change (the model as trained)")] + fixes + [k for k in controls]
    acc = {i: [] for i in range(len(arms))}
    pcs = {i: [] for i in range(len(arms))}
    drawn = {}
    total = len(seeds) * len(arms)
    for si, seed in enumerate(seeds):
        for ai, arm in enumerate(arms):
            fix = arm if isinstance(arm, Fix) else random_fix(train, arm, seed, controls[arm])
            drawn.setdefault(ai, fix)  # the first seed's draw stands for a control's touched samples
            done = (si * len(arms) + ai) / total
            sub = None if progress is None else (
                lambda f, msg, d=done, n=fix.name, s=seed: progress(d + f / total, f"seed {s}, {n}: {msg}"))
            model = train_model(fixed, fix.apply(train), seed, cache, sub, device)
            acc[ai].append(accuracy(model, test.X, test.y))
            pcs[ai].append(per_class_accuracy(model, test.X, test.y, C))
    rows = [_row(train, drawn[ai], np.array(acc[ai]), np.array(pcs[ai])) for ai in range(len(arms))]
    for row, k in zip(rows[1:], sizes):
        row.control = controls.get(k)
    return Comparison(seeds, steps, rows, time.perf_counter() - t0)


def _row(train: Dataset, fix: Fix, acc: np.ndarray, pcs: np.ndarray) -> Row:
    removed = set(fix.remove)
    relabel = {k: v for k, v in fix.relabel.items() if k not in removed}
    touched = tuple(fix.remove) + tuple(relabel)
    noisy = corrected = None
    if train.truth_known and touched:
        pos = train.positions(np.asarray(touched, dtype=np.int64))
        noisy = int(train.noisy[pos].sum())
        if relabel:
            rp = train.positions(np.asarray(list(relabel), dtype=np.int64))
            corrected = int((train.y_true[rp] == np.asarray(list(relabel.values()))).sum())
    return Row(fix.name, fix.label, acc, pcs, len(removed), len(relabel), touched, noisy, corrected)


# --------------------------------------------------------------------------- the single trim of the CLI and scan

@dataclass
class RetrainReport:
    """Test accuracy before and after one trim, and after a same-size random removal, one entry per seed."""

    seeds: list
    before: np.ndarray            # (S,)
    after: np.ndarray             # (S,)
    per_class_before: np.ndarray  # (S, C)
    per_class_after: np.ndarray   # (S, C)
    n_removed: int
    n_relabelled: int
    removed_truly_noisy: int | None
    seconds: float
    random_after: np.ndarray | None = None  # (S,) the control; None when nothing was removed

    @property
    def summary(self) -> dict:
        """Mean and spread of the accuracy before, after and (when run) after the random control, as plain numbers."""
        out = {
            "accuracy_before": float(self.before.mean()), "accuracy_before_std": float(self.before.std()),
            "accuracy_after": float(self.after.mean()), "accuracy_after_std": float(self.after.std()),
            "seeds": list(self.seeds), "n_removed": self.n_removed, "n_relabelled": self.n_relabelled,
            "removed_truly_noisy": self.removed_truly_noisy,
        }
        if self.random_after is not None:
            out["accuracy_random"] = float(self.random_after.mean())
            out["accuracy_random_std"] = float(self.random_after.std())
        return out


def trim(splits: Splits, remove_ids=(), relabel: dict[int, int] | None = None) -> Splits:
    """The splits with ``remove_ids`` dropped from and ``relabel`` applied to the training set only."""
    fix = Fix("trim", "trim", tuple(int(i) for i in remove_ids), dict(relabel or {}))
    return Splits(fix.apply(splits.train), splits.test, splits.val)


def trim_and_retrain(splits: Splits, spec: ModelSpec, remove_ids=(), relabel=None, seeds=(0,),
                     cache: DiskCache | None = None, progress=None, device=None) -> RetrainReport:
    """Retrain without and with the trim (and a same-size random removal) for each seed."""
    fix = Fix("trim", "the trim", tuple(int(i) for i in remove_ids), dict(relabel or {}))
    c = compare(splits, spec, [fix], seeds, cache, progress, device)
    before, after = c.row(NONE), c.row("trim")
    control = c.row(RANDOM).accuracy if any(r.name == RANDOM for r in c.rows) else None
    removed_noisy = None
    if splits.train.truth_known and fix.remove:
        removed_noisy = int(splits.train.noisy[splits.train.positions(np.asarray(fix.remove))].sum())
    return RetrainReport(c.seeds, before.accuracy, after.accuracy, before.per_class, after.per_class,
                         after.n_removed, after.n_relabelled, removed_noisy, c.seconds, control)
