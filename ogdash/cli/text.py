"""``ogdash textselect``: data selection for fine-tuning on noisy text (the paper's Figure 3), headless."""
from __future__ import annotations

import argparse
from pathlib import Path

from ogdash.cli.args import choice_list, fraction, positive_int
from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Timer, stderr_progress
from ogdash.data.text import DEFAULT_NOISE
from ogdash.experiments.text_lora import TextLoraSettings
from ogdash.experiments.textselect import (
    DEFAULT_EPOCHS,
    DEFAULT_KEEP,
    DEFAULT_N_TEST,
    DEFAULT_N_TRAIN,
    DEFAULT_SEEDS,
    ENCODERS,
    FINETUNE,
    HEADS,
    METHOD_KEYS,
    ROTTEN_TOMATOES,
    load_text_splits,
    run_selection,
)


def add_textselect_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``textselect`` on the CLI's subparsers."""
    p = subparsers.add_parser("textselect", help="data selection for fine-tuning on noisy text (Figure 3)")
    p.add_argument("--data", required=True, help=f"'{ROTTEN_TOMATOES}' (built in) or a CSV with text,label[,true_label]")
    p.add_argument("--noise", type=fraction, default=DEFAULT_NOISE, help="fraction of training labels flipped (default 0.2)")
    p.add_argument("--keep", type=fraction, default=DEFAULT_KEEP, help="fraction of training samples kept (default 0.7)")
    p.add_argument("--methods", type=choice_list(METHOD_KEYS), default=METHOD_KEYS,
                   help=f"comma-separated, from {', '.join(METHOD_KEYS)} (default: all)")
    p.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS, help="training epochs per run (default 10)")
    p.add_argument("--seeds", type=positive_int, default=DEFAULT_SEEDS, help="number of seeds 0..N-1 (default 3)")
    p.add_argument("--head", choices=list(HEADS), default="logreg")
    p.add_argument("--lr", type=float, help="head learning rate (default 1e-2 linear, 1e-3 MLP)")
    p.add_argument("--encoder", choices=list(ENCODERS), default="minilm")
    p.add_argument("--finetune", choices=list(FINETUNE), default="head",
                   help="head: a head on frozen embeddings (default); lora: LoRA fine-tune the encoder too (GPU)")
    p.add_argument("--lora-lr", type=float, default=5e-4, help="learning rate of the LoRA weights (default 5e-4)")
    p.add_argument("--n-train", type=positive_int, help=f"training texts (built-in default {DEFAULT_N_TRAIN}; CSV: all)")
    p.add_argument("--n-test", type=positive_int, help=f"test texts (built-in default {DEFAULT_N_TEST}; CSV: 20%%)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the split and the label noise")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--cache", help="cache directory (default: $OGDASH_CACHE or ~/.cache/ogdash)")
    return p


def run_textselect(args) -> dict:
    """Run the experiment for parsed CLI args; returns a JSON-able dict (summary rows, curves, timings)."""
    if args.data != ROTTEN_TOMATOES and not Path(args.data).is_file():
        raise OgdashError(f"--data must be '{ROTTEN_TOMATOES}' or an existing CSV file; {args.data!r} is neither.")
    cache = DiskCache(args.cache) if args.cache else DiskCache()
    progress = stderr_progress(args.quiet)
    timer = Timer()
    with timer("load"):
        splits, note, enc_s = load_text_splits(args.data, args.noise, args.data_seed, args.n_train, args.n_test,
                                               args.encoder, cache, progress)
    load_s = timer.seconds["load"]
    lora = TextLoraSettings(lr=args.lora_lr) if args.finetune == "lora" else None
    result = run_selection(splits, args.methods, args.keep, args.epochs, range(args.seeds), args.head, args.lr,
                           progress=progress, note=note, encode_seconds=enc_s, finetune=args.finetune,
                           encoder=args.encoder, lora=lora)
    summary = result.summary()
    mean_curves = result.curves.groupby(["method", "epoch"])["accuracy"].mean().unstack("epoch")
    return {
        "data": args.data, "note": note, "n_train": splits.train.n, "n_test": splits.test.n,
        "n_mislabeled": int(splits.train.noisy.sum()), "keep": args.keep, "epochs": args.epochs,
        "seeds": args.seeds, "head": args.head, "encoder": args.encoder, "finetune": args.finetune,
        "encode_seconds": enc_s, "load_seconds": load_s,
        "rows": summary.to_dict(orient="records"),
        "mean_curves": {m: [float(v) for v in mean_curves.loc[m]] for m in mean_curves.index},
    }


def format_textselect(out: dict) -> str:
    """The summary table, one method a line."""
    lines = [out["note"], f"encoding: {out['encode_seconds']:.1f} s (0 = cached); "
             f"keep {out['keep']:.0%}, {out['epochs']} epochs, {out['seeds']} seed(s), {out['head']} head, "
             f"{'LoRA-tuned encoder' if out['finetune'] == 'lora' else 'frozen encoder'}"]
    lines.append(f"{'method':40s} {'final %':>14s} {'best %':>14s} {'kept':>6s} {'mislabeled':>10s} {'seconds':>8s}")
    for r in out["rows"]:
        lines.append(f"{r['label']:40s} {r['final']:6.1f} ± {r['final_std']:4.1f}  {r['best']:6.1f} ± {r['best_std']:4.1f} "
                     f"{r['kept']:6.0f} {r['kept_mislabeled']:10.0f} {r['seconds']:8.2f}")
    return "\n".join(lines)
