"""What is a fix worth? Retrain with each fix and with controls beside it, seed by seed, on the untouched test set.

A fix is a ``Fix``: training samples removed and labels changed. ``compare`` retrains the
unchanged data and every fix for each seed, with the same initial weights and the same
number of optimiser steps (a step budget taken from the full training set, so a smaller
set is not simply trained less), and measures each model on the untouched test set. All
the runs of one comparison share an architecture and a step budget, so they train
together where that pays (``ogdash.models.stacked.fit_arms``) and one by one elsewhere,
with the same result.

Each fix is compared with a **control of its own kind**, drawn anew for each seed: the
same change applied to as many random samples. A removal's control removes as many
random samples; a relabel's control takes as many random samples and sets each to its
suggested label (the rule the relabel fix applies to the flags; a sample whose suggestion
is its given label stays as it is, as a flagged one does). That control asks the fair
question "did choosing these samples matter?": a control that relabelled random samples
to a random other class would plant new noise, so almost any fix would beat it. A fix
that removes some samples and relabels others (relabel-if-sure, your reviewed decisions)
gets both at once. Fixes of the same size and kind share one control.

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
from ogdash.models.train import predict_proba
from ogdash.models.zoo import ModelSpec
from ogdash.pipeline import backbone_dataset, cached_model, model_key

ACTIONS = {"remove": "remove the flagged samples",
           "relabel": "relabel the flagged samples to the suggested label",
           "auto": "relabel where the suggestion is confident, remove the rest"}
SHORT = {"remove": "remove", "relabel": "relabel", "auto": "relabel if sure, else remove"}
NONE, RANDOM, RESTORED, DECISIONS = "none", "random", "restored", "decisions"
BASELINE = "unchanged data, retrained (the baseline)"


@dataclass(frozen=True)
class Fix:
    """One change to the training set: ids removed and ids relabelled (id -> class); ``short``: its name in a
    few words (progress and verdicts say it)."""

    name: str
    label: str
    remove: tuple[int, ...] = ()
    relabel: dict = field(default_factory=dict)
    short: str = ""

    def changes(self) -> tuple[int, int]:
        """(samples removed, samples relabelled); a sample both removed and relabelled counts as removed."""
        removed = set(int(i) for i in self.remove)
        return len(removed), sum(int(k) not in removed for k in self.relabel)

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
            out.append(Fix(name, ACTIONS[name], tuple(ids.tolist()), short=SHORT[name]))
        elif name == "relabel":
            out.append(Fix(name, ACTIONS[name], (), dict(zip(ids[change].tolist(), suggested[flags][change].tolist())),
                           SHORT[name]))
        elif name == "auto":
            out.append(Fix(name, f"relabel where the suggestion is at least {threshold:.0%} sure, remove the rest",
                           tuple(ids[~sure].tolist()), dict(zip(ids[sure].tolist(), suggested[flags][sure].tolist())),
                           SHORT[name]))
        else:
            raise OgdashError(f"unknown action {name!r}; choose from {', '.join(ACTIONS)}.")
    return out


def decisions_fix(removed_ids, relabelled: dict) -> Fix:
    """Your reviewed decisions as a fix: the samples you removed, and your relabels applied."""
    return Fix(DECISIONS, "your reviewed decisions (removals, and relabels applied)",
               tuple(int(i) for i in removed_ids), {int(k): int(v) for k, v in relabelled.items()}, "your decisions")


def restored(train: Dataset) -> Fix:
    """Every flipped label set back to the truth (only when the truth is known): the most a fix can win."""
    if not train.truth_known:
        raise OgdashError("the true labels are not known here, so there is nothing to restore.")
    noisy = train.noisy
    return Fix(RESTORED, "every flipped label restored (true labels known)", (),
               dict(zip(train.ids[noisy].tolist(), train.y_true[noisy].tolist())), "true labels restored")


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
    drawn: tuple[int, int] | None = None  # a control's (random removals, random samples given their suggestion)


def control_words(row: Row) -> str:
    """What a control did, in words: "26 random removals", "the suggested label on 20 random samples", ..."""
    return _words(*(row.drawn or (row.n_removed, 0)))


def control_cell(row: Row) -> str:
    """A control in a table cell: "63 removed", "63 relabelled" (drawn for the suggested label) or both."""
    drawn = row.drawn or (row.n_removed, 0)
    return ", ".join(f"{k} {what}" for k, what in zip(drawn, ("removed", "relabelled")) if k)


def _words(removals: int, relabels: int) -> str:
    parts = ([f"{removals} random removal{'s' * (removals != 1)}"] if removals else []) + (
        [f"the suggested label on {relabels} random sample{'s' * (relabels != 1)}"] if relabels else [])
    return " and ".join(parts) or "no change"


@dataclass
class Comparison:
    """Rows of retrains on the same seeds; ``rows[0]`` is the unchanged training set (the baseline)."""

    seeds: list
    steps: int
    rows: list[Row]
    seconds: float
    stacked: int = 0  # how many of the runs trained together (``ogdash.models.stacked``); the others one by one

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
        """In words: did this fix beat its control (the same change on random samples), seed by seed, and did it
        improve on the unchanged data? Beating chance needs at least 3 seeds and a win on every one."""
        if name == RESTORED:
            gain = self.paired(name, NONE)
            return (f"Restoring every flipped label changes the test accuracy by {100 * gain.mean():+.1f} points "
                    "against the unchanged data: what the noise costs this model, and so the most a fix can win back.")
        d, gain = self.paired(name, RANDOM), self.paired(name, NONE)
        words = control_words(self.row(self.row(name).control or RANDOM))
        wins, S = int((d > 0).sum()), len(d)
        spread = "one seed: no spread measured" if S == 1 else f"± {100 * d.std():.1f}"
        text = f"{100 * d.mean():+.1f} points against {words} ({spread}; better on {wins} of {S} seeds)"
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

    def verdicts(self) -> dict[str, str]:
        """A verdict for every fix (those with a control) and for the restored labels, by fix name."""
        return {r.name: self.verdict(r.name) for r in self.rows if r.control or r.name == RESTORED}

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
                        "truly_noisy": r.truly_noisy, "corrected": r.corrected, "control": r.control,
                        "drawn": None if r.drawn is None else list(r.drawn)})
        return out


def random_fix(train: Dataset, k: int, seed: int, name: str = RANDOM) -> Fix:
    """The control of a removal: ``k`` training samples removed at random, drawn anew for each seed."""
    return control_fix(train, k, 0, seed, name=name)


def control_fix(train: Dataset, removals: int, relabels: int, seed: int, suggested=None, name: str = RANDOM) -> Fix:
    """The control of a fix that removes ``removals`` and relabels ``relabels`` samples: as many random samples
    removed, and as many other random samples set to their suggested label (``suggested``, (n,) classes in the
    training set's row order; a sample whose suggestion is its label stays as it is). Without suggestions the
    relabelled samples get a random other class. Drawn anew for each seed."""
    if removals + relabels > train.n:
        raise OgdashError(f"a control cannot touch {removals + relabels} of {train.n} samples; trim less.")
    key = [seed, removals] if not relabels else [seed, removals, relabels]  # a removal's draw as it always was
    rng = np.random.default_rng(key)
    pos = rng.choice(train.n, size=removals + relabels, replace=False) if relabels else None
    if not relabels:  # the same draw as before relabel controls existed, so earlier comparisons reproduce
        ids = rng.choice(train.ids, size=removals, replace=False) if removals else np.zeros(0, np.int64)
        return Fix(name, f"{removals} random samples removed (the control)", tuple(sorted(ids.tolist())),
                   short="random control")
    gone, moved = pos[:removals], pos[removals:]
    if suggested is None:
        to = (train.y[moved] + rng.integers(1, train.n_classes, len(moved))) % train.n_classes
        how = "a random other class"
    else:
        to = np.asarray(suggested)[moved]
        how = "their suggested label"
    change = to != train.y[moved]
    what = f"{relabels} random samples set to {how}" + (f", {removals} others removed" if removals else "")
    return Fix(name, f"{what} (the control)", tuple(sorted(train.ids[gone].tolist())),
               dict(zip(train.ids[moved][change].tolist(), to[change].tolist())), "random control")


def compare(splits: Splits, spec: ModelSpec, fixes, seeds=(0, 1, 2), cache: DiskCache | None = None,
            progress=None, device=None, control: bool = True, suggested=None, stack: bool | None = None
            ) -> Comparison:
    """Retrain the unchanged data, each fix, and (``control``) each fix's control, for each seed.

    suggested: (n,) each training sample's suggested label, for the controls of relabels
    (see ``control_fix``). stack: train the runs together (True), one by one (False), or
    where it pays (None; ``ogdash.models.stacked.fit_arms``). progress hears the overall
    progress in words: "run 7 of 15 (relabel, seed 2) — about 40 s left".
    """
    t0 = time.perf_counter()
    train, test, C = splits.train, splits.test, splits.train.n_classes
    fixes = list(fixes)
    names = [f.name for f in fixes]
    if len(set(names)) != len(names) or NONE in names or any(n.startswith(RANDOM) for n in names):
        raise OgdashError(f"fix names must be unique and neither '{NONE}' nor start with '{RANDOM}'; got {names}.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise OgdashError("give at least one seed.")
    if suggested is not None and len(suggested) != train.n:
        raise OgdashError(f"give one suggested label per training sample ({train.n}); got {len(suggested)}.")
    if spec.user and spec.tune == "last":  # every arm trains your network's last layer on features computed once
        splits = Splits(*(None if ds is None else backbone_dataset(spec, ds, cache, device)
                          for ds in (splits.train, splits.test, splits.val)))
        train, test, spec = splits.train, splits.test, spec.head_spec()
    steps = spec.total_steps(train.n)  # the full set's step budget, for every retrain
    fixed = replace(spec, steps=steps)
    sizes = [f.changes() for f in fixes]
    controls = {}  # (removals, relabels) -> control name; the first (largest) is plain "random"
    if control:
        for k in sorted({k for f, k in zip(fixes, sizes) if sum(k) and f.name != RESTORED}, key=sum, reverse=True):
            controls[k] = RANDOM if not controls else f"{RANDOM}_{len(controls) + 1}"
    arms = [Fix(NONE, BASELINE, short="unchanged data")] + fixes + list(controls)
    plan = []  # (arm, seed's position, the seed's fix)
    for si, seed in enumerate(seeds):
        for ai, arm in enumerate(arms):
            fix = arm if isinstance(arm, Fix) else control_fix(train, *arm, seed, suggested, controls[arm])
            if not isinstance(arm, Fix) and len(controls) > 1:
                fix = replace(fix, short=f"random control, {_words(*arm)}")
            plan.append((ai, si, fix))
    stats = {}
    models = _train(fixed, train, [(fix, seeds[si]) for _, si, fix in plan], cache, progress, device, stack, stats)
    acc = np.zeros((len(arms), len(seeds)))
    pcs = np.zeros((len(arms), len(seeds), C))
    for (ai, si, _), model in zip(plan, models):
        pred = predict_proba(model, test.X).argmax(1)
        acc[ai, si] = np.mean(pred == test.y)
        pcs[ai, si] = [np.mean(pred[test.y == c] == c) if np.any(test.y == c) else np.nan for c in range(C)]
    first = {ai: fix for ai, si, fix in plan if si == 0}  # the first seed's draw stands for a control's samples
    rows = [_row(train, first[ai], acc[ai], pcs[ai]) for ai in range(len(arms))]
    for row, k in zip(rows[1:], sizes):
        row.control = controls.get(k)
    for row, k in zip(rows[1 + len(fixes):], controls):
        row.drawn = k
    return Comparison(seeds, steps, rows, time.perf_counter() - t0, stats.get("stacked", 0))


def _train(spec: ModelSpec, train: Dataset, runs, cache, progress, device, stack, stats: dict) -> list:
    """The model of each (fix, seed) run: from the disk cache where it was trained before, the others trained
    together where that pays (``fit_arms``) and stored."""
    from ogdash.models.stacked import Arm, fit_arms

    out, todo = [None] * len(runs), []
    for j, (fix, seed) in enumerate(runs):
        ds = fix.apply(train)
        out[j] = cached_model(spec, ds, seed, cache)
        if out[j] is None:
            todo.append((j, ds, Arm(f"{fix.short or fix.name}, seed {seed}", seed, train.positions(ds.ids), ds.y)))
    models = fit_arms(spec, train.X, [a for _, _, a in todo], train.n_classes, progress, device, stack, stats)
    for (j, ds, arm), model in zip(todo, models):
        out[j] = model
        if cache is not None:
            cache.save("models", model_key(spec, ds, arm.seed),
                       {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    return out


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
