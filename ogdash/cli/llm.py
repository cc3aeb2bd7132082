"""``ogdash llm``: prompt influence on a fine-tuned language model, headless."""
from __future__ import annotations

import argparse
import time

from ogdash.cli.args import choice_list, positive_int
from ogdash.core.errors import OgdashError
from ogdash.core.progress import stderr_progress

TASK_CHOICES = ("sentence_transformations", "math_no_reason", "math_reason")


def add_llm_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``llm`` command to an argparse subparsers object; returns its parser."""
    from ogdash.experiments.llm_prompts import METHODS

    p = subparsers.add_parser(
        "llm", help="which fine-tuning prompts influence each test prompt (LoRA gradients; Table 3 metrics)",
        description="Fine-tune LoRA on a prompt benchmark, extract per-prompt LoRA gradients and score every "
                    "training prompt's influence on every test prompt (higher = more influential); prints the "
                    "class-detection AUC and recall of each method.")
    p.add_argument("--task", required=True, choices=TASK_CHOICES)
    p.add_argument("--model", default="smollm2",
                   help="smollm2 (SmolLM2-135M-Instruct, default), tiny (random test model) or a local "
                        "Hugging Face model folder")
    p.add_argument("--methods", type=choice_list(METHODS), default=("oga", "tracin", "datainf"),
                   help="comma-separated: oga,tracin,datainf (default all)")
    p.add_argument("--layers", choices=("last", "all"), default="last",
                   help="LoRA gradients of the last decoder layer (the paper's) or of every LoRA layer")
    p.add_argument("--lora-layers", default="4",
                   help="put LoRA in the last N decoder layers (default 4, CPU-friendly) or 'all' (the paper's)")
    p.add_argument("--proj-dim", type=positive_int, help="project gradients to this many dimensions (default: none)")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (default 1)")
    p.add_argument("--batch-size", type=positive_int, help="fine-tuning batch size (default 16)")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate (default 1e-3)")
    p.add_argument("--max-length", type=positive_int, help="token cut-off per prompt + completion (default 128)")
    p.add_argument("--loss-on", choices=("all", "completion"),
                   help="tokens the loss covers: all of prompt + completion (default, as DataInf's code) or the "
                        "completion only")
    p.add_argument("--per-class", type=positive_int, default=90, help="training prompts per class (default 90)")
    p.add_argument("--test-per-class", type=positive_int, default=10, help="test prompts per class (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--cache", help="cache directory (default: $OGDASH_CACHE or ~/.cache/ogdash)")
    p.add_argument("--no-cache", action="store_true", help="compute every stage afresh")
    return p


def run_llm(args) -> dict:
    """Run the ``llm`` command; returns ``LLMInfluence.summary()`` (JSON-ready)."""
    from dataclasses import replace

    import torch

    from ogdash.core.cache import DiskCache
    from ogdash.experiments.llm_prompts import analyze
    from ogdash.models.llm import FinetuneSettings, LoraSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.lora_layers == "all":
        lora_layers = None
    else:
        try:
            lora_layers = int(args.lora_layers)
        except ValueError:
            raise OgdashError(f"--lora-layers takes a positive number or 'all'; got {args.lora_layers!r}.")
    lora = LoraSettings(layers=lora_layers)
    given = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                               ("max_length", args.max_length), ("loss_on", args.loss_on)) if v is not None}
    settings = replace(FinetuneSettings(seed=args.seed), **given)
    cache = None if args.no_cache else DiskCache(args.cache)
    t = time.perf_counter()
    result = analyze(args.task, model=args.model, methods=args.methods, layers=args.layers, proj_dim=args.proj_dim,
                     per_class=args.per_class, test_per_class=args.test_per_class, seed=args.seed, lora=lora,
                     settings=settings, cache=cache, device=args.device,
                     progress=stderr_progress(args.quiet))
    out = result.summary()
    out["seconds"]["total"] = time.perf_counter() - t
    return out


def format_llm(out: dict) -> str:
    """The human-readable report: one line per method, beside the paper's Llama-2-13B numbers."""
    from ogdash.experiments.llm_prompts import METHODS

    lines = [f"{out['task']} on {out['model']} ({out['n_train']} training / {out['n_test']} test prompts, "
             f"{out['layers']}-layer LoRA gradients, {out['grad_dim']} dims); higher influence = more influential"]
    k = out["n_train"] // 10 if out["n_train"] % 10 == 0 else "class size"
    for m, d in out["metrics"].items():
        line = (f"  {METHODS[m]:<17} AUC {d['auc_mean']:.3f} ± {d['auc_std']:.3f}   "
                f"recall@{k} {d['recall_mean']:.3f} ± {d['recall_std']:.3f}")
        paper = out.get("paper_llama2_13b", {}).get(m)
        if paper:
            line += (f"   (paper, Llama-2-13B: {paper['auc_mean']:.3f} ± {paper['auc_std']:.3f} / "
                     f"{paper['recall_mean']:.3f} ± {paper['recall_std']:.3f})")
        lines.append(line)
    order = ["load_model", "frozen_prefix", "finetune", "gradients", *METHODS, "total"]
    secs = out["seconds"]
    lines.append("  wall seconds: " + ", ".join(f"{k} {secs[k]:.1f}" for k in order if k in secs))
    return "\n".join(lines)
