"""What a fix is worth, measured as the Trim & retrain page measures it.

For each case: train the model once (seed 0), flag with the default detector at the
suggested budget, then retrain over several seeds (same initialisation and step budget for
every row) with: no change, each fix of the flags (remove / relabel / auto), a control of
each fix's kind (as many random removals; the suggested label on as many random samples),
and every flipped label restored (the ceiling). Prints one table per case with the share of the noise gap each fix wins back,
(fix - noisy) / (restored - noisy), and the page's verdict.

    python benchmarks/fixes.py [--seeds 5] [--case preset|mnist_uniform|all]

Cases:
- preset: the Data page's preset (digits, 30% confusable-pair noise, CNN 40 epochs);
- mnist_uniform: MNIST-5k with 20% uniform noise and the default CNN, where noise costs little.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataclasses import replace  # noqa: E402

from dashboard.state import DEFAULT_DATA, PRESET_DATA, PRESET_MODEL, VAL_FRACTION  # noqa: E402
from ogdash import data  # noqa: E402
from ogdash.data.dataset import Splits  # noqa: E402
from ogdash.detect.budget import suggest_budget  # noqa: E402
from ogdash.detect.flags import flag  # noqa: E402
from ogdash.detect.heldout import suggestions  # noqa: E402
from ogdash.detect.registry import RECOMMENDED  # noqa: E402
from ogdash.detect.scoring import score  # noqa: E402
from ogdash.models.zoo import ModelSpec  # noqa: E402
from ogdash.pipeline import gradients, train_model  # noqa: E402
from ogdash.retrain import NONE, compare, fixes_from_flags, restored  # noqa: E402

CASES = {
    "default": (dict(DEFAULT_DATA), ModelSpec("cnn")),
    "preset": (dict(PRESET_DATA), ModelSpec("cnn", epochs=PRESET_MODEL["epochs"])),
    "mnist_uniform": ({"name": "mnist5k", "seed": 0, "noise_rate": 0.2, "noise_kind": "uniform"}, ModelSpec("cnn")),
    "digits_mlp": (dict(DEFAULT_DATA, flat=True), ModelSpec("mlp")),
}


def load(cfg: dict):
    splits = data.BUILTIN[cfg["name"]](seed=cfg["seed"], noise_rate=cfg["noise_rate"], noise_kind=cfg["noise_kind"],
                                       val_fraction=VAL_FRACTION)
    if cfg.get("flat"):  # the images as feature rows
        splits = Splits(*(None if d is None else replace(d, X=d.X.reshape(d.n, -1), _fingerprint=[])
                          for d in (splits.train, splits.test, splits.val)))
    return splits


def run(name: str, seeds: int, timing: bool, modes: bool) -> None:
    cfg, spec = CASES[name]
    t0 = time.perf_counter()
    splits = load(cfg)
    train = splits.train
    t = time.perf_counter()
    model = train_model(spec, train, 0)
    one = time.perf_counter() - t
    grads = gradients(model, train)
    scores = score(grads, RECOMMENDED, labels=train.y)
    budget = suggest_budget(grads, train.y)
    flags = flag(scores, budget.budget)
    P = suggestions(grads, train.y)
    fixes = fixes_from_flags(train, flags, P.argmax(1), P.max(1)) + [restored(train)]
    c = compare(splits, spec, fixes, range(seeds), suggested=P.argmax(1))
    noisy, ceiling = c.row(NONE).accuracy.mean(), c.row("restored").accuracy.mean()
    print(f"\n## {name}: {cfg['name']}, {cfg['noise_rate']:.0%} {cfg['noise_kind']} noise, {spec.kind} "
          f"{spec.resolved(train.n).epochs} epochs ({c.steps} steps), {seeds} seeds; {int(flags.sum())} flagged by "
          f"{RECOMMENDED} at the suggested budget {budget.fraction:.1%} (true {train.noisy.mean():.1%}), precision "
          f"{train.noisy[flags].mean():.2f}")
    print("| row | removed | relabelled | test accuracy | vs no change | vs random (paired) | gap won |")
    print("|---|---|---|---|---|---|---|")
    for r in c.to_rows():
        paired = c.paired(r["action"], "random").mean() * 100 if r["control"] else None
        won = f"{(r['accuracy_mean'] - noisy) / (ceiling - noisy):+.0%}" if ceiling > noisy else "no gap"
        print(f"| {r['label']} | {r['n_removed']} | {r['n_relabelled']} | {100 * r['accuracy_mean']:.1f} ± "
              f"{100 * r['accuracy_std']:.1f} | {100 * r['change_mean']:+.1f} | "
              f"{'' if paired is None else f'{paired:+.1f}'} | {won} |")
    for a, v in c.verdicts().items():
        print(f"- {a}: {v}")
    runs = len(c.rows) * seeds
    print(f"\nOne training {one:.1f} s; the retrain of {len(c.rows)} arms x {seeds} seeds = {runs} runs "
          f"({c.stacked} of them stacked) {c.seconds:.1f} s: **{c.seconds / one:.1f}x one training**")
    if timing:
        t = time.perf_counter()
        fit_all_threads(spec, train, 0)
        print(f"One training on every CPU thread (as main trained it): {time.perf_counter() - t:.1f} s")
    if modes:
        for stack in (True, False):
            c2 = compare(splits, spec, fixes, range(seeds), suggested=P.argmax(1), stack=stack)
            print(f"The retrain forced {'stacked' if stack else 'one by one'}: {c2.seconds:.1f} s "
                  f"({c2.seconds / one:.1f}x one training)")
    print(f"({time.perf_counter() - t0:.0f} s on {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())})")


def fit_all_threads(spec, train, seed):
    """One training the way main trained a CNN: every CPU thread torch has (no one-thread rule)."""
    import contextlib
    from unittest import mock

    from ogdash.models import train as training

    with mock.patch.object(training, "_threads_for", lambda *a: contextlib.nullcontext()):
        training.fit(spec, train.X, train.y, train.n_classes, seed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--case", default="all", choices=[*CASES, "all"])
    p.add_argument("--timing", action="store_true", help="also time one training on every CPU thread")
    p.add_argument("--modes", action="store_true", help="also time the retrain forced stacked and forced one by one")
    args = p.parse_args()
    for name in (CASES if args.case == "all" else [args.case]):
        run(name, args.seeds, args.timing, args.modes)


if __name__ == "__main__":
    main()
