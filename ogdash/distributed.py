"""Sharded gradient extraction under PyTorch's own launcher (``torchrun``), merged into the same cache.

``torchrun --nproc_per_node=N -m ogdash extract --train ... --model ... --cache DIR``
runs one process per GPU (or CPU process). Every rank loads the data and the same
model, takes its shard of the training set (positions ``rank, rank + N, ...``, as
``DistributedSampler`` without shuffling or padding: every sample lands in exactly
one shard) and writes that shard's gradients atomically into the shared cache, stage
``gradient_shards``. After a barrier rank 0 merges the shards in dataset (sample-id)
order into stage ``gradients`` under ``pipeline.gradients_key``, the key a
single-process run uses, so ``scan`` and the dashboard pick it up without recomputing.

- Data: what ``scan`` reads, through the same ``DataSpec`` (files, image folders, CIFAR), so
  the training split and its cache key are the ones ``scan`` and the dashboard use.
- Model: a zoo model with ``--weights`` loads that checkpoint on every rank; without it rank 0
  trains exactly as ``scan`` does (``pipeline.train_model``, cached), and the other ranks read
  those weights back from the cache after a barrier, so all ranks hold identical weights
  (checked: every rank's cache key must agree). Your network (``torchvision`` or a
  ``module:factory`` with its weights) is loaded as it is on every rank; as a frozen backbone
  (``new_head``) each rank computes its shard of the backbone's features, rank 0 merges them
  into the cache entry ``scan`` reads (stage ``features``) and trains the head on them.
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

import os
import shutil
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import numpy as np
import torch

from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress, Timer
from ogdash.data.dataset import Dataset
from ogdash.engine.gradients import GradientSet, extract_gradients, from_arrays, to_arrays
from ogdash.engine.settings import GradientSettings

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
    """The cache key of one rank's shard of the gradients stored under ``key``."""
    return cache_key("grad_shard", key, rank, world_size)


def extract_shard(model, ds: Dataset, rank: int, world_size: int, settings: GradientSettings = GradientSettings(),
                  cache: DiskCache | None = None, chunk_size: int | None = None, progress: Progress = None,
                  device=None) -> bool:
    """Compute and store one rank's shard; True when a complete shard was already stored (resume)."""
    from ogdash.pipeline import gradients_key

    cache = cache or DiskCache()
    skey = shard_key(gradients_key(model, ds, settings), rank, world_size)
    if cache.load(SHARD_STAGE, skey, mmap=True) is not None:
        return True
    # a killed earlier attempt of this very shard leaves its temporary folder behind
    for stale in (cache.root / SHARD_STAGE).glob(f".{skey}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    part = ds.subset(shard_positions(ds.n, rank, world_size))
    with cache.writer(SHARD_STAGE, skey) as w:
        gs = extract_gradients(model, part, settings.layer, settings.projection_dim, settings.seed, chunk_size,
                               progress, device,
                               allocate=w.array)
        for name, value in to_arrays(gs).items():
            if name not in w.names:  # rows written in place are stored already
                w.put(name, value)
    return False


def merge_shards(model, ds: Dataset, world_size: int, settings: GradientSettings = GradientSettings(),
                 cache: DiskCache | None = None, keep_shards: bool = False) -> GradientSet:
    """Merge the ``world_size`` stored shards, in dataset order, into the single-process cache entry."""
    from ogdash.pipeline import gradients_key

    cache = cache or DiskCache()
    key = gradients_key(model, ds, settings)
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
        """True when more than one process takes part."""
        return self.world_size > 1


def ranks_from_env(device: str = "auto") -> Ranks:
    """This process's rank, world size and device from torchrun's environment (one process without it)."""
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


def _barrier(r: Ranks) -> None:
    import torch.distributed as dist

    if r.distributed:
        dist.barrier(device_ids=[r.local_rank]) if r.device.type == "cuda" else dist.barrier()


def _features(spec, train: Dataset, cache: DiskCache, r: Ranks) -> None:
    """Your backbone's features of ``train`` in the cache (stage ``features``): each rank computes its shard, rank 0
    merges them in dataset order under the key ``pipeline.backbone_dataset`` reads."""
    from ogdash.pipeline import backbone_features_of, features_key

    key = features_key(spec, train)
    done = [cache.load("features", key, mmap=True) is not None]
    if r.distributed:
        import torch.distributed as dist

        dist.broadcast_object_list(done, src=0)  # rank 0 decides, so no rank skips alone
    if done[0]:
        return
    skey = shard_key(key, r.rank, r.world_size)
    if cache.load(SHARD_STAGE, skey, mmap=True) is None:
        part = train.subset(shard_positions(train.n, r.rank, r.world_size))
        cache.save(SHARD_STAGE, skey, {"ids": part.ids, "features": backbone_features_of(spec, part, r.device)})
        _log(r, f"stored its shard of the backbone's features ({part.n} samples)")
    _barrier(r)  # every shard is stored
    if r.rank == 0:
        keys = [shard_key(key, q, r.world_size) for q in range(r.world_size)]
        shards = [cache.load(SHARD_STAGE, k, mmap=False) for k in keys]
        if any(s is None for s in shards):
            raise OgdashError(f"a shard of the backbone's features is missing under {cache.root}; --cache must be a "
                              "folder every process can reach, and rerunning computes what is missing.")
        first = np.asarray(shards[0]["features"])
        H = np.zeros((train.n, *first.shape[1:]), dtype=first.dtype)
        for sh in shards:
            H[train.positions(np.asarray(sh["ids"]))] = np.asarray(sh["features"])
        cache.save("features", key, {"features": H})
        del shards
        for k in keys:
            shutil.rmtree(cache.entry(SHARD_STAGE, k), ignore_errors=True)


def _model(spec, train: Dataset, weights, seed: int, cache: DiskCache, r: Ranks):
    from ogdash.models.weights import load_weights
    from ogdash.models.zoo import build_model
    from ogdash.pipeline import cached_model, load_network, train_model

    if spec.user and not spec.new_head:  # your network as it is: the same file on every rank
        return load_network(spec, train)
    if weights:
        model = build_model(spec.resolved(train.n), train.X.shape[1:], train.n_classes, seed)
        return load_weights(model, weights).eval()
    if spec.user and spec.tune == "last" and r.distributed:  # a frozen backbone: its features sharded, then the head
        _features(spec, train, cache, r)
    model = train_model(spec, train, seed, cache, device=r.device) if r.rank == 0 else None
    _barrier(r)  # rank 0 has stored the model
    if model is None:
        model = cached_model(spec, train, seed, cache)
        if model is None:
            raise OgdashError(f"rank {r.rank} cannot read the model rank 0 trained under {cache.root}; --cache must "
                              "be a folder every process can reach (a shared filesystem across nodes).")
    return model


def run_extract(data, spec, settings: GradientSettings = GradientSettings(), *, weights=None,
                chunk_size: int | None = None, device: str = "auto", cache: DiskCache | None = None,
                shard_progress: Callable[[Ranks, DiskCache, str], Progress] | None = None) -> dict:
    """Extract the training gradients of ``data`` (a ``DataSpec``, or a path as ``--train``) with ``spec``'s model
    into the cache.

    Under torchrun each rank extracts its shard and rank 0 merges them; alone it is
    ``pipeline.gradients``. ``weights`` loads a zoo model's checkpoint instead of training (your
    network names its weights in ``spec``). ``shard_progress`` (rank, cache, key) returns a progress
    callback for this rank's shard (tests use it to crash a rank mid-shard). Returns a summary dict
    (rank 0's carries the merged entry).
    """
    from ogdash.data.spec import DataSpec
    from ogdash.pipeline import cached_gradients, gradients, gradients_key

    timer = Timer()
    if chunk_size is not None and chunk_size < 1:
        raise OgdashError(f"--chunk-size must be at least 1; got {chunk_size}.")
    seed = settings.seed
    r = ranks_from_env(device)
    data = data if isinstance(data, DataSpec) else DataSpec.from_paths(data)
    with timer("load"):
        train = data.load().train  # the training split scan scores: the same cache keys
    if train.n < r.world_size:
        raise OgdashError(f"{data.describe()}: {train.n} samples cannot be split over {r.world_size} processes; "
                          "start fewer processes.")
    cache = cache or DiskCache()
    out = {"n_train": train.n, "world_size": r.world_size, **settings.to_dict()}

    if not r.distributed:
        with timer("model"):
            model = _model(spec, train, weights, seed, cache, r)
        with timer("extract"):
            cached = cached_gradients(model, train, settings, cache) is not None
            gs = gradients(model, train, settings, cache, device=r.device)
        key = gradients_key(model, train, settings)
        return {**out, "key": key, "entry": str(cache.entry("gradients", key)), "cached": cached,
                "shards_reused": [], "dim": gs.dim, "factored": gs.factored, "rank": 0, "seconds": timer.totals()}

    import torch.distributed as dist

    if r.device.type == "cuda":
        torch.cuda.set_device(r.local_rank)
    dist.init_process_group("nccl" if r.device.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        with timer("model"):
            model = _model(spec, train, weights, seed, cache, r)
        key = gradients_key(model, train, settings)
        keys = [None] * r.world_size
        dist.all_gather_object(keys, key)
        if len(set(keys)) != 1:
            raise OgdashError("the processes disagree on the data or the weights (different cache keys); give every "
                              "rank the same --train file and --weights.")
        cached = [cached_gradients(model, train, settings, cache) is not None]
        dist.broadcast_object_list(cached, src=0)  # rank 0 decides, so no rank skips alone
        reused = False
        with timer("extract"):  # until the slowest rank's shard is stored
            if not cached[0]:
                progress = shard_progress(r, cache, key) if shard_progress else None
                reused = extract_shard(model, train, r.rank, r.world_size, settings, cache, chunk_size, progress,
                                       r.device)
                _log(r, ("reused its stored shard" if reused else "stored its shard")
                     + f" ({len(shard_positions(train.n, r.rank, r.world_size))} samples)")
            flags = [None] * r.world_size
            dist.all_gather_object(flags, reused)  # also the barrier: every shard is stored
        gs = None
        with timer("merge"):
            if r.rank == 0:
                if not cached[0]:
                    merge_shards(model, train, r.world_size, settings, cache)
                gs = cached_gradients(model, train, settings, cache)
                if gs is None:
                    raise OgdashError(f"the merged gradients under {cache.root} cannot be read back; rerun.")
        _barrier(r)  # nobody leaves before the merged entry exists
    finally:
        dist.destroy_process_group()
    return {**out, "key": key, "entry": str(cache.entry("gradients", key)), "cached": bool(cached[0]),
            "shards_reused": [q for q, f in enumerate(flags) if f], "rank": r.rank,
            "dim": None if gs is None else gs.dim, "factored": None if gs is None else gs.factored,
            "seconds": timer.totals()}
