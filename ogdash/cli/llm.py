"""``ogdash llm``: prompt influence on a fine-tuned language model, headless: on a built-in benchmark (``--task``)
or on your own fine-tuning files (``--train``/``--test``)."""
from __future__ import annotations

import argparse
import time

from ogdash.cli.args import choice_list, positive_int
from ogdash.core.errors import OgdashError
from ogdash.core.progress import stderr_progress

TASK_CHOICES = ("sentence_transformations", "math_no_reason", "math_reason")


def _budget(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget must be a fraction like 0.1, a count like 20, or 'auto'; "
                                         f"got {text!r}")


def add_llm_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``llm`` command to an argparse subparsers object; returns its parser."""
    from ogdash.experiments.llm_files import DEFAULT_DETECTOR, DETECTORS, METHODS as FILE_METHODS
    from ogdash.experiments.llm_prompts import METHODS

    p = subparsers.add_parser(
        "llm", help="which fine-tuning prompts influence each test prompt, and which hurt the fine-tune (LoRA "
                    "gradients)",
        description="Fine-tune LoRA (or load your adapter), extract per-example LoRA gradients and score every "
                    "training example's influence on every test prompt (higher = more influential). With --task: "
                    "a built-in benchmark and the paper's class-detection AUC and recall. With --train/--test: "
                    "your own JSONL, CSV, Parquet or dataset folder (prompt + completion, or chat messages); "
                    "writes each training example's detrimental score (higher = more detrimental) with flags, "
                    "and the top influences per test prompt.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--task", choices=TASK_CHOICES, help="a built-in benchmark")
    source.add_argument("--train", help="your training file: .jsonl, .json, .csv, .parquet or a save_to_disk folder")
    p.add_argument("--test", help="your test file (same shape); influence is computed on its prompts")
    p.add_argument("--model", default="smollm2",
                   help="smollm2 (SmolLM2-135M-Instruct, default), tiny (random test model) or a local "
                        "Hugging Face model folder")
    p.add_argument("--adapter", help="a LoRA adapter folder (peft, safetensors) used as it is, without fine-tuning")
    p.add_argument("--methods", type=choice_list(list(dict.fromkeys([*METHODS, *FILE_METHODS]))),
                   default=("oga", "tracin", "datainf"),
                   help="comma-separated: oga,tracin,datainf (default), and with --train also less (a LESS-style "
                        "cosine baseline); the first is the default method")
    p.add_argument("--out", help="with --train: write scores.csv (id, score, flagged and the texts) here")
    p.add_argument("--influence-out", help="with --train/--test: write influence.csv (test_id, train_id, method, "
                                           "score, rank) here")
    p.add_argument("--top-k", type=positive_int, default=10, help="influences per test prompt and method (default 10)")
    p.add_argument("--detector", choices=tuple(DETECTORS), default=DEFAULT_DETECTOR,
                   help="detrimental score of each training example: align (default; how far its gradient points "
                        "from its group's), l2 (the gradient's norm), iforest, less (a LESS-style baseline)")
    p.add_argument("--budget", type=_budget, default="auto",
                   help="examples to flag: a fraction, a count, or auto (default: the suggested budget)")
    p.add_argument("--group-by", help="a column of the training file to group by (Outlier Gradient's forests, the "
                                      "heatmap); default: k-means clusters of the gradients")
    p.add_argument("--clusters", type=positive_int, help="k for the clusters (default: n/50, 2 to 10)")
    p.add_argument("--cleaned-out", help="write the training file without the flagged examples here (JSON lines, "
                                         "the input's record format)")
    p.add_argument("--refinetune", action="store_true",
                   help="fine-tune again without the flagged examples and beside it without as many random ones "
                        "(same seeds and steps); held-out loss on the test file")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds for --refinetune (default 3)")
    p.add_argument("--query", help="a typed prompt: its top influences by each method")
    p.add_argument("--query-completion", help="the completion seen for --query (default: the model's own)")
    p.add_argument("--layers", choices=("last", "all"), default="last",
                   help="LoRA gradients of the last decoder layer (the paper's) or of every LoRA layer")
    p.add_argument("--lora-layers", default="4",
                   help="put LoRA in the last N decoder layers (default 4, CPU-friendly) or 'all' (the paper's)")
    p.add_argument("--proj-dim", type=int,
                   help="project gradients to this many dimensions (default: none with --task, 8192 with --train; "
                        "0 = none)")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (default 1)")
    p.add_argument("--batch-size", type=positive_int, help="fine-tuning batch size (default 16)")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate (default 1e-3)")
    p.add_argument("--max-length", type=positive_int, help="token cut-off per prompt + completion (default 128)")
    p.add_argument("--loss-on", choices=("all", "completion"),
                   help="tokens the loss covers: all of prompt + completion (the default with --task, as DataInf's "
                        "code) or the completion only (the default with --train)")
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


def _lora(args):
    from ogdash.models.llm import LoraSettings

    if args.lora_layers == "all":
        return LoraSettings(layers=None)
    try:
        return LoraSettings(layers=int(args.lora_layers))
    except ValueError:
        raise OgdashError(f"--lora-layers takes a positive number or 'all'; got {args.lora_layers!r}.") from None


def _finetune(args, loss_on: str):
    from dataclasses import replace

    from ogdash.models.llm import FinetuneSettings

    given = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                               ("max_length", args.max_length), ("loss_on", args.loss_on)) if v is not None}
    return replace(FinetuneSettings(seed=args.seed, loss_on=loss_on), **given)


def run_llm(args) -> dict:
    """Run the ``llm`` command; returns ``LLMInfluence.summary()`` (JSON-ready), or with ``--train`` the summary
    of :func:`ogdash.cli.llm_files.run_files`."""
    import torch

    from ogdash.core.cache import DiskCache

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train is not None:
        from ogdash.cli.llm_files import run_files

        return run_files(args, _lora(args), _finetune(args, "completion"))
    from ogdash.experiments.llm_prompts import METHODS, analyze

    for flag, value in (("--test", args.test), ("--adapter", args.adapter), ("--out", args.out),
                        ("--influence-out", args.influence_out), ("--query", args.query),
                        ("--cleaned-out", args.cleaned_out), ("--group-by", args.group_by)):
        if value is not None:
            raise OgdashError(f"{flag} goes with --train (your own files), not with --task.")
    if args.refinetune:
        raise OgdashError("--refinetune goes with --train and --test (your own files), not with --task.")
    if any(m not in METHODS for m in args.methods):
        raise OgdashError(f"with --task the methods are {', '.join(METHODS)}; got {', '.join(args.methods)}.")
    lora, settings = _lora(args), _finetune(args, "all")
    cache = None if args.no_cache else DiskCache(args.cache)
    t = time.perf_counter()
    result = analyze(args.task, model=args.model, methods=args.methods, layers=args.layers,
                     proj_dim=args.proj_dim or None,
                     per_class=args.per_class, test_per_class=args.test_per_class, seed=args.seed, lora=lora,
                     settings=settings, cache=cache, device=args.device,
                     progress=stderr_progress(args.quiet))
    out = result.summary()
    out["seconds"]["total"] = time.perf_counter() - t
    return out


def format_llm(out: dict) -> str:
    """The human-readable report: one line per method, beside the paper's Llama-2-13B numbers (or, for your own
    files, :func:`ogdash.cli.llm_files.format_files`)."""
    from ogdash.experiments.llm_prompts import METHODS

    if "task" not in out:
        from ogdash.cli.llm_files import format_files

        return format_files(out)
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
