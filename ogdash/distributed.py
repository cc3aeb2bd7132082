"""Sharded gradient extraction under PyTorch's own launcher (``torchrun``), merged into the same cache.

``torchrun --nproc_per_node=N -m ogdash extract --train ... --model ... --cache DIR``
runs one process per GPU (or CPU process). Every rank loads the data and the same
model, takes its shard of the training set (positions ``rank, rank + N, ...``, as
``DistributedSampler`` without shuffling or padding: every sample lands in exactly
one shard) and writes that shard's gradients atomically into the shared cache, stage
``gradient_shards``. After a barrier rank 0 merges the shards in dataset (sample-id)
order into stage ``gradients`` under ``pipeline.gradients_key``, the key a
single-process run uses, so ``scan`` and the dashboard pick it up without recomputing.

- Model: ``--weights`` loads a checkpoint on every rank; without it rank 0 trains
  exactly as ``scan`` does (``pipeline.train_model``, cached), and the other ranks read
  those weights back from the cache after a barrier, so all ranks hold identical
  weights (checked: every rank's cache key must agree).
- Projections are seeded by (seed, shape) (``SparseProjector``, ``TensorSketch``), so
  a shard's projected rows equal the same rows of the full projection.
- Backend: ``nccl`` with one GPU per rank (``LOCAL_RANK``), ``gloo`` on CPU.
- Crashes: shards and the merged entry are written with ``DiskCache.writer`` (temporary
  folder, renamed into place when complete), so a killed rank leaves no entry under the
  final key; a rerun (same number of processes) reuses every shard that completed.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) it runs in one process
and stores exactly what ``ogdash.pipeline.gradients`` stores.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch

from ogdash.cache import DiskCache, cache_key
from ogdash.cliargs import Parser, run_command
from ogdash.data.dataset import Dataset
from ogdash.errors import OgdashError
from ogdash.gradients import GradientSet, extract_gradients, from_arrays, to_arrays

SHARD_STAGE = "gradient_shards"
# Long enough for rank 0 to train, or the slowest rank to finish its shard, before a
# barrier gives up; a rank that dies is noticed by torchrun, which stops the others.
BARRIER_TIMEOUT = timedelta(hours=24)
_COPY_ROWS = 65536  # rows copied per step while merging, so memory stays bounded


# --------------------------------------------------------------------------- shards

def shard_positions(n: int, rank: int, world_size: int) -> np.ndarray:
    """Dataset positions of one rank's shard: ``rank, rank + world_size, ...``."""
    return np.arange(rank, n, world_size)


def shard_key(key: str, rank: int, world_size: int) -> str:
    return cache_key("grad_shard", key, rank, world_size)


def extract_shard(model, ds: Dataset, rank: int, world_size: int, layer: str = "last",
                  projection_dim: int | None = None, seed: int = 0, cache: DiskCache | None = None,
                  chunk_size: int | None = None, progress=None, device=None) -> bool:
    """Compute and store one rank's shard; True when a complete shard was already stored (resume)."""
    from ogdash.pipeline import gradients_key

    cache = cache or DiskCache()
    skey = shard_key(gradients_key(model, ds, layer, projection_dim, seed), rank, world_size)
    if cache.load(SHARD_STAGE, skey, mmap=True) is not None:
        return True
    # a killed earlier attempt of this very shard leaves its temporary folder behind
    for stale in (cache.root / SHARD_STAGE).glob(f".{skey}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    part = ds.subset(shard_positions(ds.n, rank, world_size))
    with cache.writer(SHARD_STAGE, skey) as w:
        gs = extract_gradients(model, part, layer, projection_dim, seed, chunk_size, progress, device,
                               allocate=lambda shape: w.array("dense", shape))
        for name, value in to_arrays(gs).items():
            if name not in w.names:  # rows written in place are stored already
                w.put(name, value)
    return False


def merge_shards(model, ds: Dataset, world_size: int, layer: str = "last", projection_dim: int | None = None,
                 seed: int = 0, cache: DiskCache | None = None, keep_shards: bool = False) -> GradientSet:
    """Merge the ``world_size`` stored shards, in dataset order, into the single-process cache entry."""
    from ogdash.pipeline import gradients_key

    cache = cache or DiskCache()
    key = gradients_key(model, ds, layer, projection_dim, seed)
    keys = [shard_key(key, r, world_size) for r in range(world_size)]
    shards = [cache.load(SHARD_STAGE, k) for k in keys]
    missing = [r for r, s in enumerate(shards) if s is None]
    if missing:
        raise OgdashError(f"gradient shards {missing} of {world_size} are missing under {cache.root}; --cache must be "
                          "a folder every process can reach, and rerunning the same command computes what is missing.")
    arrays = [n for n, v in shards[0].items() if isinstance(v, np.ndarray)]
    scalars = {n: v for n, v in shards[0].items() if not isinstance(v, np.ndarray)}
    positions = []
    for r, s in enumerate(shards):
        if {n: v for n, v in s.items() if not isinstance(v, np.ndarray)} != scalars or \
                [n for n, v in s.items() if isinstance(v, np.ndarray)] != arrays:
            raise OgdashError(f"gradient shard {r} disagrees with shard 0 on its layout; clear {cache.root / SHARD_STAGE} "
                              "and rerun.")
        positions.append(ds.positions(s["ids"]))
    covered = np.sort(np.concatenate(positions))
    if not np.array_equal(covered, np.arange(ds.n)):
        raise OgdashError(f"the {world_size} gradient shards do not cover every sample exactly once; clear "
                          f"{cache.root / SHARD_STAGE} and rerun.")
    with cache.writer("gradients", key) as w:
        for name in arrays:
            first = shards[0][name]
            out = w.array(name, (ds.n, *first.shape[1:]), dtype=first.dtype)
            for s, pos in zip(shards, positions):
                for start in range(0, len(pos), _COPY_ROWS):
                    out[pos[start:start + _COPY_ROWS]] = s[name][start:start + _COPY_ROWS]
        for name, value in scalars.items():
            w.put(name, value)
    if not keep_shards:
        del shards  # release the memory maps before their files go
        for k in keys:
            shutil.rmtree(cache.entry(SHARD_STAGE, k), ignore_errors=True)
    return from_arrays(cache.load("gradients", key))


# --------------------------------------------------------------------------- processes

@dataclass
class Ranks:
    """This process's place in the job, from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # None: the default device, as single-process ``scan`` uses

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_env(device: str = "auto") -> Ranks:
    try:
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as e:
        raise OgdashError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({e}); launch with torchrun.") from e
    if world < 1 or not 0 <= rank < world:
        raise OgdashError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world}); launch with torchrun.")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise OgdashError("--device cuda asked for, but no GPU is visible; use --device cpu.")
    if world == 1:  # 'auto' keeps the default device, exactly as single-process scan
        return Ranks(device=None if device == "auto" else torch.device(device))
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise OgdashError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} GPUs are visible; "
                              "start at most one process per GPU (--nproc_per_node).")
        return Ranks(rank, world, local, torch.device("cuda", local))
    return Ranks(rank, world, local, torch.device("cpu"))


def _log(r: Ranks, message: str) -> None:
    print(f"[rank {r.rank}/{r.world_size}] {message}", file=sys.stderr, flush=True)


def _test_kill_hook(r: Ranks, cache: DiskCache, key: str):
    """Test only (OGDASH_TEST set): OGDASH_TEST_KILL_RANK=k makes rank k SIGKILL itself after its
    first chunk, once every other rank's shard is stored — a crash mid-shard, deterministically."""
    if not os.environ.get("OGDASH_TEST") or os.environ.get("OGDASH_TEST_KILL_RANK") != str(r.rank):
        return None

    def hook(fraction, message):
        others = [shard_key(key, q, r.world_size) for q in range(r.world_size) if q != r.rank]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(cache.load(SHARD_STAGE, k) is not None for k in others):
            time.sleep(0.2)
        _log(r, "test hook: killing this rank mid-shard")
        os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _barrier(r: Ranks) -> None:
    import torch.distributed as dist

    if r.distributed:
        dist.barrier(device_ids=[r.local_rank]) if r.device.type == "cuda" else dist.barrier()


def _model(args, spec, train: Dataset, cache: DiskCache, r: Ranks):
    from ogdash.models.train import load_weights
    from ogdash.models.zoo import build_model
    from ogdash.pipeline import cached_model, train_model

    if args.weights:
        model = build_model(spec.resolved(train.n), train.X.shape[1:], train.n_classes, args.seed)
        return load_weights(model, args.weights).eval()
    model = train_model(spec, train, args.seed, cache, device=r.device) if r.rank == 0 else None
    _barrier(r)  # rank 0 has stored the model
    if model is None:
        model = cached_model(spec, train, args.seed, cache)
        if model is None:
            raise OgdashError(f"rank {r.rank} cannot read the model rank 0 trained under {cache.root}; --cache must "
                              "be a folder every process can reach (a shared filesystem across nodes).")
    return model


def run_extract(args) -> dict:
    """The ``extract`` command: this rank's shard, then (rank 0) the merge. Returns a summary dict."""
    from ogdash.data.files import load_file
    from ogdash.models.zoo import ModelSpec
    from ogdash.pipeline import cached_gradients, gradients, gradients_key

    t0 = time.perf_counter()
    for flag, value in (("--epochs", args.epochs), ("--projection-dim", args.projection_dim),
                        ("--chunk-size", args.chunk_size)):
        if value is not None and value < 1:
            raise OgdashError(f"{flag} must be at least 1; got {value}.")
    r = ranks_from_env(args.device)
    train = load_file(args.train, "train")  # as load_splits loads --train for scan
    if train.n_classes < 2 or len(np.unique(train.y)) < 2:
        raise OgdashError(f"{args.train}: the training labels hold a single class; add samples of at least one other class.")
    if train.n < r.world_size:
        raise OgdashError(f"{args.train}: {train.n} samples cannot be split over {r.world_size} processes; "
                          "start fewer processes.")
    spec = ModelSpec(args.model, args.hidden, args.epochs)
    cache = DiskCache(args.cache)
    seconds = {"load": time.perf_counter() - t0}
    out = {"n_train": train.n, "world_size": r.world_size, "layer": args.layer,
           "projection_dim": args.projection_dim, "seed": args.seed}

    if not r.distributed:
        t = time.perf_counter()
        model = _model(args, spec, train, cache, r)
        seconds["model"] = time.perf_counter() - t
        t = time.perf_counter()
        cached = cached_gradients(model, train, args.layer, args.projection_dim, args.seed, cache) is not None
        gs = gradients(model, train, args.layer, args.projection_dim, args.seed, cache, device=r.device)
        seconds["extract"] = time.perf_counter() - t
        key = gradients_key(model, train, args.layer, args.projection_dim, args.seed)
        return {**out, "key": key, "entry": str(cache.entry("gradients", key)), "cached": cached,
                "shards_reused": [], "dim": gs.dim, "factored": gs.factored, "rank": 0,
                "seconds": {**seconds, "total": time.perf_counter() - t0}}

    import torch.distributed as dist

    if r.device.type == "cuda":
        torch.cuda.set_device(r.local_rank)
    dist.init_process_group("nccl" if r.device.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        t = time.perf_counter()
        model = _model(args, spec, train, cache, r)
        seconds["model"] = time.perf_counter() - t
        key = gradients_key(model, train, args.layer, args.projection_dim, args.seed)
        keys = [None] * r.world_size
        dist.all_gather_object(keys, key)
        if len(set(keys)) != 1:
            raise OgdashError("the processes disagree on the data or the weights (different cache keys); give every "
                              "rank the same --train file and --weights.")
        cached = [cached_gradients(model, train, args.layer, args.projection_dim, args.seed, cache) is not None]
        dist.broadcast_object_list(cached, src=0)  # rank 0 decides, so no rank skips alone
        reused, t = False, time.perf_counter()
        if not cached[0]:
            reused = extract_shard(model, train, r.rank, r.world_size, args.layer, args.projection_dim, args.seed,
                                   cache, args.chunk_size, _test_kill_hook(r, cache, key), r.device)
            _log(r, ("reused its stored shard" if reused else "stored its shard")
                 + f" ({len(shard_positions(train.n, r.rank, r.world_size))} samples)")
        flags = [None] * r.world_size
        dist.all_gather_object(flags, reused)  # also the barrier: every shard is stored
        seconds["extract"] = time.perf_counter() - t  # until the slowest rank's shard is stored
        t = time.perf_counter()
        gs = None
        if r.rank == 0:
            if not cached[0]:
                merge_shards(model, train, r.world_size, args.layer, args.projection_dim, args.seed, cache)
            gs = cached_gradients(model, train, args.layer, args.projection_dim, args.seed, cache)
            if gs is None:
                raise OgdashError(f"the merged gradients under {cache.root} cannot be read back; rerun.")
        seconds["merge"] = time.perf_counter() - t
        _barrier(r)  # nobody leaves before the merged entry exists
    finally:
        dist.destroy_process_group()
    return {**out, "key": key, "entry": str(cache.entry("gradients", key)), "cached": bool(cached[0]),
            "shards_reused": [q for q, f in enumerate(flags) if f], "rank": r.rank,
            "dim": None if gs is None else gs.dim, "factored": None if gs is None else gs.factored,
            "seconds": {**seconds, "total": time.perf_counter() - t0}}


# --------------------------------------------------------------------------- command line

def _add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from ogdash.cli import _hidden
    from ogdash.models.zoo import MODEL_KINDS

    p.add_argument("--train", required=True, help="training set (.npz with X, y or .csv with a label column)")
    p.add_argument("--model", required=True, choices=MODEL_KINDS)
    p.add_argument("--hidden", type=_hidden, default=(16, 16), help="MLP widths, e.g. 16,16")
    p.add_argument("--epochs", type=int, help="training epochs (default depends on the model)")
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
    return _add_arguments(subparsers.add_parser(
        "extract", help="per-sample gradients into the cache, sharded over torchrun processes"))


def summary_line(result: dict) -> str:
    reused = result["shards_reused"]
    how = "already cached" if result["cached"] else (
        f"{result['world_size']} process{'es' if result['world_size'] > 1 else ''}"
        + (f", {len(reused)} shard{'s' if len(reused) > 1 else ''} reused" if reused else ""))
    return (f"gradients of {result['n_train']} training samples ({how}) in {result['seconds']['total']:.1f} s, "
            f"cached at {result['entry']}")


def main_extract(args) -> int:
    """Run ``extract`` for parsed ``args`` with the CLI's conventions; only rank 0 prints the result."""
    return run_command(run_extract, summary_line, args)


if __name__ == "__main__":  # python -m ogdash.distributed --train ... (same options as `ogdash extract`)
    sys.exit(main_extract(_add_arguments(Parser(prog="python -m ogdash.distributed")).parse_args()))
