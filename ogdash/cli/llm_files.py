"""``ogdash llm --train FILE [--test FILE]``: influence and detrimental examples on your own fine-tuning files.

Writes ``--out`` scores.csv (one row per training example: ``id``, ``source``, ``score`` higher = more
detrimental, ``flagged``, the group, ``prompt`` and ``completion``) and ``--influence-out`` influence.csv
(``test_id``, ``train_id``, ``method``, ``score`` higher = more influential, ``rank`` 1 = most influential; the
top ``--top-k`` per test prompt and method); optionally the cleaned file, a typed query and a re-fine-tune.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.core.progress import stderr_progress


def _write(path: str, data: bytes) -> str:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    except OSError as e:
        raise OgdashError(f"cannot write {p} ({e.strerror}); choose a writable path.") from None
    return str(p)


def run_files(args, lora, finetune) -> dict:
    """Run the command on ``args.train`` / ``args.test`` (see the module); returns a JSON-ready summary."""
    from ogdash.core.cache import DiskCache
    from ogdash.detect.flags import budget_count, flag
    from ogdash.experiments import llm_files as lf
    from ogdash.experiments.llm_budget import suggest_prompt_budget
    from ogdash.experiments.llm_review import cleaned_jsonl, review_table
    from ogdash.exports import csv_bytes

    t0 = time.perf_counter()
    methods = list(dict.fromkeys(args.methods))
    if (args.influence_out or args.refinetune) and not args.test:
        raise OgdashError("--influence-out and --refinetune need --test (the prompts to explain and measure on).")
    if args.detector == "less" and not args.test:
        raise OgdashError("the LESS-style detector compares with test prompts; give --test.")
    if args.query_completion and not args.query:
        raise OgdashError("--query-completion goes with --query.")
    proj = lf.PROJ_DIM if args.proj_dim is None else (args.proj_dim if args.proj_dim > 0 else None)
    settings = lf.FileSettings(model=args.model, adapter=args.adapter, layers=args.layers, proj_dim=proj,
                               seed=args.seed, lora=lora, finetune=finetune)
    cache = None if args.no_cache else DiskCache(args.cache)
    progress = stderr_progress(args.quiet)
    run = lf.extract(args.train, args.test, settings, cache, args.device, progress=progress)
    if args.budget != "auto":
        budget_count(args.budget, run.train.n)  # a bad budget fails before any scoring
    groups = lf.grouping(run, args.group_by, args.clusters)
    scores = lf.detrimental(run, args.detector, groups)
    by_group = (groups.labels, groups.names) if args.detector == "align" else (None, None)
    estimate = suggest_prompt_budget(scores, *by_group, seed=args.seed)
    flags = flag(scores, estimate.budget if args.budget == "auto" else args.budget)
    out = run.summary()
    out.update(detector=args.detector, methods=methods, budget=args.budget, n_flagged=int(flags.sum()),
               suggested_budget=estimate.to_dict(), groups=None if groups is None else
               {"source": groups.source, "names": list(groups.names)}, written={})
    out["suggested_budget"]["describe"] = estimate.describe()
    if args.out:
        table = review_table(run.train, scores, flags, groups).drop(columns=["sample_id"])
        out["written"]["scores"] = _write(args.out, csv_bytes(table))
    if run.test is not None:
        if args.influence_out:
            long = lf.influence_long(run, methods, args.top_k, groups)
            out["written"]["influence"] = _write(args.influence_out, csv_bytes(long))
        if groups is not None and groups.test_labels is not None and args.group_by:
            out["own_group_share"] = {m: float(np.nanmean(lf.own_group_share(run, m, groups, args.top_k)))
                                      for m in methods}
    if args.cleaned_out:
        data = cleaned_jsonl(run.train, removed=np.flatnonzero(flags))
        out["written"]["cleaned"] = _write(args.cleaned_out, data)
    if args.query:
        from ogdash.experiments.llm_query import QueryEngine

        res = QueryEngine(run, cache, args.device, progress).query(args.query, args.query_completion, methods,
                                                                   args.top_k, groups)
        out["query"] = {"prompt": res.prompt, "completion": res.completion, "generated": res.generated,
                        "loss": res.loss, "seconds": res.seconds,
                        "top": {m: t.drop(columns=["prompt"]).to_dict("records") for m, t in res.tables.items()}}
    if args.refinetune:
        from ogdash.experiments.llm_refinetune import refinetune

        r = refinetune(run, np.flatnonzero(flags), seeds=range(args.seed, args.seed + args.seeds), cache=cache,
                       device=args.device, progress=progress)
        out["refinetune"] = r.summary()
    out["seconds"]["total"] = time.perf_counter() - t0
    return out


def format_files(out: dict) -> str:
    """The human-readable report of a ``--train`` run."""
    from ogdash.experiments.llm_files import DETECTORS, METHODS

    b = out["suggested_budget"]
    lines = [f"{out['n_train']} training / {out['n_test']} test examples ({out['kind']} records) on {out['model']}"
             + (f" with the adapter {out['adapter']}" if out["adapter"] else " (LoRA fine-tuned here)")
             + f"; {out['grad_dim']:,} gradient coordinates"
             + (f" (projected from {out['lora_coordinates']:,})" if out["projected"] else ""),
             f"  detrimental score: {DETECTORS[out['detector']]}; higher = more detrimental",
             f"  suggested budget: {b['describe']}",
             f"  flagged {out['n_flagged']} examples"]
    for note in out["notes"]:
        lines.append(f"  note: {note}")
    for m, share in (out.get("own_group_share") or {}).items():
        lines.append(f"  {METHODS[m]}: {share:.0%} of each test prompt's top influences come from its own group")
    q = out.get("query")
    if q:
        lines.append(f"  query: {q['prompt'][:60]!r} -> {q['completion'][:60]!r}"
                     f"{' (the model’s own)' if q['generated'] else ''}, {q['seconds']:.2f} s")
        for m, rows in q["top"].items():
            lines.append(f"    {METHODS[m]}: " + ", ".join(str(r["id"]) for r in rows[:5]))
    r = out.get("refinetune")
    if r:
        lines.append(f"  re-fine-tune ({len(r['seeds'])} seeds, {r['steps']} steps each): {r['verdict']}")
    for what, path in out["written"].items():
        lines.append(f"  wrote {what}: {path}")
    lines.append("  wall seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in out["seconds"].items()))
    return "\n".join(lines)
