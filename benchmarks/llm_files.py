"""Your own fine-tuning files at benchmark size: speed, memory, typed queries, detection and influence (issue #29).

A generated five-task instruction set (``ogdash.data.prompts.make_instruction_set``: three sentence
transformations, addition, multiplication), ``--per-task`` training records per task with ``--wrong``
of each task's completions replaced by wrong ones, and ``--test-per-task`` correct test records per task, written
as JSONL and run through the same library calls as ``ogdash llm --train --test``. It measures, in one process:

1. **speed and memory**: reading, loading the model, the frozen layers, LoRA fine-tuning and the gradient pass,
   wall-clock and process CPU seconds each, and the process's peak resident memory (``ru_maxrss``);
2. **typed queries** after extraction: seconds from the prompt (with its completion) to the ranked lists of all
   methods, median of ``--queries``; and with the model's own completion (greedy generation);
3. **detection**: the AUROC of each detrimental score against the planted wrong completions, the precision at
   the true count, and the suggested budget against the true share;
4. **influence**: for each method, the mean share of a test prompt's top-10 influences that come from its own task
   (Outlier Gradient grouped by the task column, and by gradient clusters, which never see the task);
5. with ``--refinetune``: the flagged examples removed against as many random ones, 3 seeds.

The LESS-style cosine (LESS, Xia et al. 2024, without Adam preconditioning or several checkpoints) is the peer
baseline, both as an influence method and as a detrimental score (least similar to any test prompt).

Usage: python benchmarks/llm_files.py [--model smollm2] [--per-task 200] [--test-per-task 20] [--wrong 0.1]
       [--queries 5] [--refinetune] [--json out.json] [--cache DIR]
"""
import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ogdash.core.cache import DiskCache
from ogdash.data.prompt_files import write_jsonl
from ogdash.data.prompts import make_instruction_set
from ogdash.detect.flags import flag
from ogdash.experiments import llm_files as lf
from ogdash.experiments.llm_budget import suggest_prompt_budget


def _auroc(scores, truth) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, scores))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--per-task", type=int, default=200)
    ap.add_argument("--test-per-task", type=int, default=20)
    ap.add_argument("--wrong", type=float, default=0.1)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--layers", default="last")
    ap.add_argument("--lora-layers", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--refinetune", action="store_true")
    ap.add_argument("--cache", help="cache folder (default: a fresh temporary one, so every stage is measured)")
    ap.add_argument("--json")
    args = ap.parse_args()

    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="ogdash-bench-llm-"))
    data = make_instruction_set(args.per_task, args.test_per_task, args.wrong, seed=0)
    train, test = write_jsonl(list(data.train), work / "train.jsonl"), write_jsonl(list(data.test), work / "test.jsonl")
    cache = DiskCache(args.cache or work / "cache")
    settings = lf.FileSettings(model=args.model, layers=args.layers,
                               lora=lf.LoraSettings(layers=args.lora_layers),
                               finetune=lf.FinetuneSettings(epochs=args.epochs, loss_on="completion"))
    if args.model == "tiny":  # a character tokenizer: the same texts are about four times as many tokens
        settings = lf.with_settings(settings, max_length=512)
    t0 = time.perf_counter()
    run = lf.extract(train, test, settings, cache, progress=None)
    extract_wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stages = {k: (round(run.seconds[k], 1), round(run.cpu_seconds[k], 1)) for k in run.seconds}
    tokens = None
    from ogdash.models import llm

    tok = llm.load_language_model(args.model, "cpu").tokenizer if args.model == "tiny" else None
    if tok is None:
        from transformers import AutoTokenizer

        folder = next((cache.root / "llm_models").glob("smollm2-*"), None)
        tok = AutoTokenizer.from_pretrained(folder) if folder else None
    if tok is not None:
        lengths = [len(a) + len(b) + 1 for a, b in zip(tok(list(run.train.prompts))["input_ids"],
                                                       tok(list(run.train.completions), add_special_tokens=False)[
                                                           "input_ids"])]
        tokens = {"mean": float(np.mean(lengths)), "max": int(np.max(lengths))}

    # typed queries
    from ogdash.experiments.llm_query import QueryEngine

    t = time.perf_counter()
    groups = lf.grouping(run, "task")
    engine = QueryEngine(run, cache, groups=groups)
    engine_s = time.perf_counter() - t
    methods = ["oga", "tracin", "datainf", "less"]
    given, own, stages = [], [], []
    given_cpu = []
    for q in range(args.queries):
        rec = data.test[q * len(data.test) // max(args.queries, 1)]
        c = time.process_time()
        res = engine.query(rec["prompt"], rec["completion"], methods, 10, groups)
        given_cpu.append(time.process_time() - c)
        given.append(res.seconds)
        stages.append({k: round(v, 3) for k, v in res.stages.items()})
    for q in range(min(2, args.queries)):
        own.append(engine.query(data.test[q]["prompt"], None, methods, 10, groups).seconds)

    # detection against the planted wrong completions
    truth = np.array([i in data.wrong for i in run.train.ids])
    detection = {}
    clusters = lf.grouping(run, None)
    def measure(s):
        top = flag(s, int(truth.sum()))
        per_task = {n: _auroc(s[groups.labels == i], truth[groups.labels == i]) for i, n in enumerate(groups.names)}
        return {"auroc": _auroc(s, truth), "precision_at_true_count": float(truth[top].mean()), "per_task": per_task}

    for det in lf.DETECTORS:
        detection[det] = measure(lf.detrimental(run, det, groups))
    detection["align (gradient clusters, no task column)"] = measure(lf.detrimental(run, "align", clusters))
    detection["loss (the example's own loss, for reference)"] = measure(run.loss)
    s = lf.detrimental(run, lf.DEFAULT_DETECTOR, groups)
    budget = suggest_prompt_budget(s, groups.labels, groups.names)

    # influence: own-task share of each test prompt's top 10
    share = {}
    for m in methods:
        share[m] = float(np.nanmean(lf.own_group_share(run, m, groups, 10)))
    task_of = {n: i for i, n in enumerate(groups.names)}
    tl = np.array([task_of[r["task"]] for r in data.test])
    M = lf.influence(run, "oga", clusters)
    share["oga (gradient clusters)"] = float(np.mean([np.mean(groups.labels[lf.ranking(run, "oga", M[t_], clusters)[
        :10]] == tl[t_]) for t_ in range(len(M))]))

    out = {"model": args.model, "n_train": run.train.n, "n_test": run.test.n, "wrong": int(truth.sum()),
           "tokens": tokens, "load_before": load, "load_after": os.getloadavg(), "grad_dim": run.grad_dim,
           "lora_coordinates": run.full_dim, "stages_wall_cpu_s": stages, "extract_wall_s": round(extract_wall, 1),
           "finetune_plus_gradients_wall_s": round(sum(run.seconds.get(k, 0) for k in
                                                       ("frozen_prefix", "finetune", "gradients")), 1),
           "finetune_plus_gradients_cpu_s": round(sum(run.cpu_seconds.get(k, 0) for k in
                                                      ("frozen_prefix", "finetune", "gradients")), 1),
           "peak_rss_mb": round(peak_mb), "query_engine_load_s": round(engine_s, 2),
           "query_given_completion_s_median": round(statistics.median(given), 3), "query_given_all_s": given,
           "query_given_cpu_s": given_cpu, "load_at_queries": os.getloadavg(),
           "query_stages_s": stages,
           "query_own_completion_s": own, "detection": detection,
           "suggested_budget": budget.to_dict(), "true_share": float(truth.mean()), "own_task_share_top10": share,
           "cluster_groups": clusters.n_groups, "notes": run.notes}
    if args.refinetune:
        from ogdash.experiments.llm_refinetune import refinetune

        flagged = np.flatnonzero(flag(s, budget.budget))
        r = refinetune(run, flagged, seeds=(0, 1, 2), cache=cache)
        out["refinetune"] = {**r.summary(), "flagged": int(len(flagged)),
                             "flagged_truly_wrong": int(truth[flagged].sum())}
    print(json.dumps(out, indent=1, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
