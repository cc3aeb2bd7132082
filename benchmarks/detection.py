"""Detection benchmark: every detector, the label-quality scores and the suggested budget, against known label noise.

Digits and MNIST-5k with uniform and confusable-pair label noise (1↔7, 3↔8, 4↔9, 5↔6) at
10%, 20% and 40%, seeds 0-2 (the seed sets the split, the noise and the CNN's
initialisation), the default CNN trained on the noisy labels, 10% of the data held out
(clean) as OneClassSVM's inliers. For every case it measures, against the truly flipped
samples:
- AUROC, and precision when flagging exactly the true noise rate, of every detector in
  ``ogdash.detect.registry.DETECTORS`` and of the three label-quality scores computed from the
  same model's probabilities with the given labels;
- the suggested budget (``ogdash.detect.budget.suggest_budget``, both probability sources,
  and from the cross-fitted probabilities) against the true noise rate;
- the ranking rules of held-out probabilities (``ogdash.detect.heldout.rank_probabilities``:
  normalized margin, self-confidence, their combination), on both held-out probes: the
  closed-form last-layer refit and the cross-fit (``ogdash.detect.crossfit``: K CNNs, each
  trained without one fold, repeated as often as fits in a minute). ``--no-crossfit`` skips
  the cross-fit (it trains 5-20 CNNs per case).
Prints Markdown tables (means over seeds) and the per-case checks of the recommended
detector. Models and gradients go through the disk cache ($OGDASH_CACHE), so a rerun
only re-scores.

Usage: python benchmarks/detection.py [--datasets digits,mnist5k] [--kinds uniform,pairs]
       [--rates 0.1,0.2,0.4] [--seeds 0,1,2] [--json results.json] [--no-crossfit]
"""
import argparse
import json
import os
import time

import numpy as np
import torch

from ogdash.core.cache import DiskCache
from ogdash.data import digits, mnist5k
from ogdash.detect.budget import CROSSFIT, SOURCES, suggest_budget
from ogdash.detect.crossfit import crossfit_probabilities, repeats_for
from ogdash.detect.ensemble import combine
from ogdash.detect.flags import flag
from ogdash.detect.metrics import detection_metrics
from ogdash.detect.heldout import RANK_RULES, heldout_probabilities, rank_probabilities
from ogdash.detect.registry import DETECTORS, ENSEMBLES, RECOMMENDED
from ogdash.detect.scoring import score
from ogdash.influence.quality import label_quality_scores
from ogdash.models import ModelSpec
from ogdash.pipeline import gradients, train_model

LOADERS = {"digits": digits, "mnist5k": mnist5k}
LQ_SHORT = {"normalized_margin": "lq_margin", "self_confidence": "lq_selfconf", "confidence_weighted_entropy": "lq_cwe"}


def run_case(name, kind, rate, seed, cache, crossfit: bool = True) -> dict:
    splits = LOADERS[name](seed=seed, noise_rate=rate, noise_kind=kind, val_fraction=0.1)
    t = time.perf_counter()
    model = train_model(ModelSpec("cnn"), splits.train, seed)  # trained here (not cached): its time sets the repeats
    one = time.perf_counter() - t
    g = gradients(model, splits.train, cache=cache)
    v = gradients(model, splits.val, cache=cache)
    t_model = time.perf_counter() - t
    y, noisy = splits.train.y, splits.train.noisy
    true_rate = float(noisy.mean())
    scores, seconds = {}, {}
    for method, short in LQ_SHORT.items():
        scores[short] = label_quality_scores(g.probs, y, method)
    for det in DETECTORS:
        t = time.perf_counter()
        if det in ENSEMBLES:  # the same mean of rank-normalised member scores score() computes, members reused
            members = [scores[LQ_SHORT.get(m, m)] for m in ENSEMBLES[det][0]]
            scores[det] = combine(members)
        else:
            scores[det] = score(g, det, v, seed, labels=y)
        seconds[det] = time.perf_counter() - t
    out = {"case": [name, kind, rate, seed], "true_rate": true_rate, "n": int(len(y)),
           "train_fit": float(np.mean(g.predicted == y)), "seconds_model": t_model, "seconds": seconds,
           "auroc": {}, "precision": {}, "budget": {}}
    for key, s in scores.items():
        m = detection_metrics(flag(s, true_rate), s, noisy)
        out["auroc"][key], out["precision"][key] = m["auroc"], m["precision"]
    probes = {"refit": heldout_probabilities(g.acts, y, seed=seed)}
    out["seconds"]["refit"] = seconds["heldout_margin"]
    if crossfit:
        t, repeats = time.perf_counter(), repeats_for(one, len(y))
        probes["crossfit"] = crossfit_probabilities(ModelSpec("cnn"), splits.train, seed=seed, cache=cache,
                                                    repeats=repeats)
        out["seconds"]["crossfit"], out["repeats"] = time.perf_counter() - t, repeats
    for probe, P in probes.items():
        for rule in RANK_RULES:
            s = rank_probabilities(P, y, rule)
            m = detection_metrics(flag(s, true_rate), s, noisy)
            out["auroc"][f"{probe}:{rule}"], out["precision"][f"{probe}:{rule}"] = m["auroc"], m["precision"]
    for source in SOURCES:
        est = suggest_budget(g, y, source=source, seed=seed)
        out["budget"][source] = est.to_dict()
    if crossfit:
        out["budget"][CROSSFIT] = suggest_budget(g, y, seed=seed, crossfit=probes["crossfit"]).to_dict()
    return out


def setting(r):
    name, kind, rate, _ = r["case"]
    return (name, kind, rate)


def table(results, metric, columns) -> str:
    head = "| data | noise | rate | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (3 + len(columns))]
    groups = {}
    for r in results:
        groups.setdefault(setting(r), []).append(r)
    for (name, kind, rate), rs in groups.items():
        cells = []
        vals = {c: np.mean([r[metric][c] for r in rs]) for c in columns}
        best = max(vals.values())
        for c in columns:
            cell = f"{vals[c]:.3f}"
            cells.append(f"**{cell}**" if vals[c] == best else cell)
        lines.append(f"| {name} | {kind} | {rate:.0%} | " + " | ".join(cells) + " |")
    means = [f"{np.mean([r[metric][c] for r in results]):.3f}" for c in columns]
    lines.append("| **mean** | | | " + " | ".join(means) + " |")
    return "\n".join(lines)


def budget_table(results) -> str:
    """Per setting: the suggested budget's mean over seeds [lowest, highest], its mean 90% interval, and in how
    many seeds it lies within 30% of the true rate, for each probability source."""
    sources = [s for s in (*SOURCES, CROSSFIT) if all(s in r["budget"] for r in results)]
    lines = ["| data | noise | true rate | " + " | ".join(f"{s}: estimate [seeds' range] | {s}: mean 90% interval | "
                                                       f"{s}: within 30%" for s in sources) + " |",
             "|" + "---|" * (3 + 3 * len(sources))]
    groups = {}
    for r in results:
        groups.setdefault(setting(r), []).append(r)
    for (name, kind, rate), rs in groups.items():
        truth = np.mean([r["true_rate"] for r in rs])
        cells = []
        for s in sources:
            f = np.array([r["budget"][s]["fraction"] for r in rs])
            lo, hi = np.mean([r["budget"][s]["low"] for r in rs]), np.mean([r["budget"][s]["high"] for r in rs])
            ok = sum(abs(r["budget"][s]["fraction"] - r["true_rate"]) <= 0.3 * r["true_rate"] for r in rs)
            cells += [f"{f.mean():.3f} [{f.min():.3f}, {f.max():.3f}]", f"{lo:.3f}–{hi:.3f}", f"{ok}/{len(rs)}"]
        lines.append(f"| {name} | {kind} | {truth:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checks(results, default: str) -> str:
    lq = list(LQ_SHORT.values())
    lines = []
    wins, diffs = 0, []
    for r in results:
        best_lq = max(lq, key=lambda k: r["auroc"][k])
        d = r["auroc"][default] - r["auroc"][best_lq]
        diffs.append(d)
        wins += d >= 0
        if d < 0:
            lines.append(f"  below: {r['case']} {default} {r['auroc'][default]:.4f} < {best_lq} {r['auroc'][best_lq]:.4f}")
    lines.insert(0, f"{default}: AUROC >= best label-quality score in {wins}/{len(results)} cases; "
                    f"mean difference {np.mean(diffs):+.4f} (min {np.min(diffs):+.4f})")
    for s in [s for s in (*SOURCES, CROSSFIT) if all(s in r["budget"] for r in results)]:
        ok = sum(abs(r["budget"][s]["fraction"] - r["true_rate"]) <= 0.3 * r["true_rate"] for r in results)
        inside = sum(r["budget"][s]["low"] <= r["true_rate"] <= r["budget"][s]["high"] for r in results)
        err = np.mean([abs(r["budget"][s]["fraction"] - r["true_rate"]) / r["true_rate"] for r in results])
        lines.append(f"suggested budget ({s}): within 30% of the true rate in {ok}/{len(results)} cases; "
                     f"interval holds the true rate in {inside}/{len(results)}; mean relative error {err:.1%}")
    return "\n".join(lines)


def rule_wins(results) -> str:
    """For each held-out probe: on how many cases each ranking rule has the best AUROC and the best precision at
    the true rate (ties count for every rule that reaches the best)."""
    lines = []
    for probe in sorted({k.split(":")[0] for k in results[0]["auroc"] if ":" in k}):
        for metric in ("auroc", "precision"):
            keys = [f"{probe}:{rule}" for rule in RANK_RULES]
            wins = {k: sum(r[metric][k] >= max(r[metric][j] for j in keys) - 1e-12 for r in results) for k in keys}
            means = {k: np.mean([r[metric][k] for r in results]) for k in keys}
            lines.append(f"{probe} {metric}: " + ", ".join(f"{k.split(':')[1]} best in {wins[k]}/{len(results)} "
                                                           f"(mean {means[k]:.3f})" for k in keys))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="digits,mnist5k")
    ap.add_argument("--kinds", default="uniform,pairs")
    ap.add_argument("--rates", default="0.1,0.2,0.4")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--json", help="also write every case's numbers to this file")
    ap.add_argument("--no-crossfit", action="store_true", help="skip the cross-fitted probe (5-20 CNNs per case)")
    args = ap.parse_args()
    torch.set_num_threads(min(4, torch.get_num_threads()))
    print(f"load average at the start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    cache = DiskCache()
    results = []
    t0 = time.perf_counter()
    for name in args.datasets.split(","):
        for kind in args.kinds.split(","):
            for rate in map(float, args.rates.split(",")):
                for seed in map(int, args.seeds.split(",")):
                    r = run_case(name, kind, rate, seed, cache, not args.no_crossfit)
                    results.append(r)
                    cf = "" if args.no_crossfit else (
                        f"; cross-fit x{r['repeats']} AUROC {r['auroc']['crossfit:margin']:.3f}, budget "
                        f"{r['budget'][CROSSFIT]['fraction']:.3f} ({r['seconds']['crossfit']:.0f} s)")
                    print(f"{name} {kind} {rate:.0%} seed {seed}: {RECOMMENDED} AUROC {r['auroc'][RECOMMENDED]:.3f}, "
                          f"lq_margin {r['auroc']['lq_margin']:.3f}; budget {r['budget']['probe']['fraction']:.3f} "
                          f"vs {r['true_rate']:.3f}{cf} ({time.perf_counter() - t0:.0f} s)", flush=True)
    columns = list(DETECTORS) + list(LQ_SHORT.values())
    rules = [k for k in results[0]["auroc"] if ":" in k]
    print("\nRanking rules of the held-out probabilities: AUROC (mean over seeds)\n")
    print(table(results, "auroc", rules))
    print("\nRanking rules: precision at the true noise rate (mean over seeds)\n")
    print(table(results, "precision", rules))
    print("\n" + rule_wins(results))
    print(f"\nAUROC (mean over seeds; bold = best in the row; recommended default: {RECOMMENDED})\n")
    print(table(results, "auroc", columns))
    print("\nPrecision when flagging exactly the true noise rate (mean over seeds)\n")
    print(table(results, "precision", columns))
    print("\nSuggested budget against the true noise rate (mean over seeds)\n")
    print(budget_table(results))
    print("\nSeconds to score (mean over cases): " +
          ", ".join(f"{d} {np.mean([r['seconds'][d] for r in results]):.2f}" for d in DETECTORS))
    print("\n" + checks(results, RECOMMENDED))
    print(f"\n{time.perf_counter() - t0:.0f} s on {os.cpu_count()} cores; load average at the end: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
