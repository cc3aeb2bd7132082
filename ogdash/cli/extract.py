"""``ogdash extract``: per-sample gradients into the cache, sharded over torchrun processes."""
from __future__ import annotations

import argparse

from ogdash.cli.args import hidden_widths, run_command
from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.distributed import run_extract
from ogdash.engine.settings import GradientSettings
from ogdash.models.zoo import MODEL_KINDS, ModelSpec


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``extract`` options on parser ``p``."""
    p.add_argument("--train", required=True, help="training set (.npz with X, y or .csv with a label column)")
    p.add_argument("--model", required=True, choices=MODEL_KINDS)
    p.add_argument("--hidden", type=hidden_widths, default=(16, 16), help="MLP widths, e.g. 16,16")
    p.add_argument("--epochs", type=int, help="training epochs (default depends on the model)")
    p.add_argument("--no-scale", dest="scale", action="store_false",
                   help="feed feature columns as they are (default: standardised with the training statistics)")
    p.add_argument("--weights", help="trained weights (.safetensors or a tensors-only .pt); default: train as scan does")
    p.add_argument("--layer", default="last", help="'last' (closed form, default), a module or parameter name, or 'all'")
    p.add_argument("--projection-dim", type=int, help="project gradients to this many dimensions")
    p.add_argument("--chunk-size", type=int, help="samples per batch (default: 512 last layer, 256 otherwise)")
    p.add_argument("--seed", type=int, default=0, help="training and projection seed (as scan's --seed)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: one GPU per process with nccl when GPUs are visible, else CPU with gloo")
    p.add_argument("--cache", help="cache directory every process can reach (default: $OGDASH_CACHE or ~/.cache/ogdash)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (rank 0)")
    return p


def add_extract_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``extract`` on the CLI's subparsers."""
    return add_arguments(subparsers.add_parser(
        "extract", help="per-sample gradients into the cache, sharded over torchrun processes"))


def run(args, shard_progress=None) -> dict:
    """The ``extract`` command for parsed ``args``."""
    for flag, value in (("--epochs", args.epochs), ("--projection-dim", args.projection_dim),
                        ("--chunk-size", args.chunk_size)):
        if value is not None and value < 1:
            raise OgdashError(f"{flag} must be at least 1; got {value}.")
    return run_extract(args.train, ModelSpec(args.model, args.hidden, args.epochs, scale=args.scale),
                       GradientSettings(args.layer, args.projection_dim, args.seed), weights=args.weights,
                       chunk_size=args.chunk_size, device=args.device, cache=DiskCache(args.cache),
                       shard_progress=shard_progress)


def summary_line(result: dict) -> str:
    """One line saying how many gradients were extracted, how, and where they are cached."""
    reused = result["shards_reused"]
    how = "already cached" if result["cached"] else (
        f"{result['world_size']} process{'es' if result['world_size'] > 1 else ''}"
        + (f", {len(reused)} shard{'s' if len(reused) > 1 else ''} reused" if reused else ""))
    return (f"gradients of {result['n_train']} training samples ({how}) in {result['seconds']['total']:.1f} s, "
            f"cached at {result['entry']}")


def main_extract(args, shard_progress=None) -> int:
    """Run ``extract`` for parsed ``args`` with the CLI's conventions; only rank 0 prints the result."""
    return run_command(lambda a: run(a, shard_progress), summary_line, args)
