"""Sharded extraction (ogdash.distributed): 2 CPU ranks with gloo equal one process, and a killed rank resumes.

Every launch pays for importing torch in fresh processes, so there are three in all: two
with torch.multiprocessing (one import, then fork) and the rerun after the crash with
torchrun, the command users type.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from ogdash import pipeline
from ogdash.core.cache import DiskCache
from ogdash.data.files import load_file
from ogdash.detect.scoring import score
from ogdash.distributed import SHARD_STAGE, extract_shard, merge_shards, shard_key
from ogdash.engine.settings import GradientSettings
from ogdash.models import ModelSpec

SPEC = ModelSpec("mlp", (16, 16), 20)
FIELDS = ("ids", "probs", "loss", "errors", "acts", "dense")


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 1, (300, 4)) for c in (0, 2, -2)]).astype(np.float32)
    y = np.repeat(np.arange(3), 300)
    y[rng.choice(900, 40, replace=False)] = rng.integers(0, 3, 40)
    path = tmp_path_factory.mktemp("dist") / "train.npz"
    np.savez(path, X=X, y=y)
    np.savez(path.with_name("test.npz"), X=X[::10], y=y[::10])  # --test keeps every training row scored
    return path


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _args(train_file, cache):
    return ["--train", str(train_file), "--test", str(train_file.with_name("test.npz")), "--model", "mlp",
            "--epochs", "20", "--cache", str(cache), "--device", "cpu", "--chunk-size", "64", "--json"]


def _same(a, b):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.shape == y.shape and x.dtype == y.dtype, name
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)
    assert np.array_equal(a.ids, b.ids)
    assert (a.layer, a.bias, a.projected) == (b.layer, b.bias, b.projected)


def _reference(train, cache_dir, tmp_path, **kw):
    """The model rank 0 trained, and what single-process ``pipeline.gradients`` makes with it."""
    model = pipeline.cached_model(SPEC, train, 0, DiskCache(cache_dir))
    return model, pipeline.gradients(model, train, cache=DiskCache(tmp_path / "single"), **kw)


LAUNCHER = """
import os, signal, sys, time, torch.multiprocessing as mp
import ogdash.pipeline, ogdash.data.files  # imported once, before the fork
from ogdash.cli.args import Parser
from ogdash.cli.extract import add_arguments, main_extract
from ogdash.engine.settings import GradientSettings
from ogdash.distributed import SHARD_STAGE, shard_key

def kill_mid_shard(r, cache, key):
    # rank $KILL_RANK SIGKILLs itself after its first chunk, once every other shard is stored
    if os.environ.get("KILL_RANK") != str(r.rank):
        return None
    def hook(fraction, message):
        others = [shard_key(key, q, r.world_size) for q in range(r.world_size) if q != r.rank]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(cache.load(SHARD_STAGE, k) is not None for k in others):
            time.sleep(0.2)
        print("killing this rank mid-shard", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return hook

def worker(rank, argv):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
    code = main_extract(add_arguments(Parser()).parse_args(argv), kill_mid_shard)
    sys.stdout.flush()
    if code:
        sys.exit(code)

mp.start_processes(worker, (sys.argv[1:],), nprocs=2, start_method="fork")
"""


def _launch(argv, **env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.run([sys.executable, "-c", LAUNCHER, *argv], capture_output=True, text=True, timeout=240,
                          env={**_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), **env})


def _torchrun(argv):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "ogdash", "extract", *argv], capture_output=True, text=True, timeout=240, env=_env())


def test_two_gloo_ranks_equal_one_process(train_file, tmp_path, monkeypatch):
    cache = tmp_path / "c"
    r = _launch(_args(train_file, cache))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])  # rank 0 alone prints
    assert res["world_size"] == 2 and res["n_train"] == 900 and not res["cached"]
    assert "[rank 1/2] stored its shard (450 samples)" in r.stderr

    train = load_file(train_file, "train")
    # the reference is the model rank 0 stored in the cache, never one retrained here: training
    # is not bitwise reproducible across thread counts (the job runs with OMP_NUM_THREADS=1)
    model, single = _reference(train, cache, tmp_path)
    assert model is not None, "rank 0 stored no model under the single-process model key"
    # the merged entry sits under the key single-process gradients() computes for that model
    assert res["key"] == pipeline.gradients_key(model, train)
    merged = pipeline.cached_gradients(model, train, cache=DiskCache(cache))
    assert merged is not None
    _same(merged, single)  # same weights, other process, chunking and thread count: close, not bitwise
    np.testing.assert_allclose(score(merged, "l2", seed=0), score(single, "l2", seed=0), rtol=1e-5)
    assert not any((cache / SHARD_STAGE).iterdir())  # shards go once merged

    # scan picks the merged gradients (and the model) up without recomputing either
    def boom(*a, **k):
        raise AssertionError("recomputed")
    monkeypatch.setattr(pipeline, "extract_gradients", boom)
    monkeypatch.setattr(pipeline, "fit", boom)
    from ogdash.data.dataset import Splits
    res_scan = pipeline.scan(Splits(train, train), SPEC, pipeline.ScanSettings("iforest", 0.05), cache=DiskCache(cache))
    assert pipeline.weights_key(res_scan.model) == pipeline.weights_key(model)
    assert pipeline.gradients(model, train, cache=DiskCache(cache)) is not None  # a hit, not a recompute
    for name in FIELDS:  # the very arrays rank 0 merged
        x, y = getattr(res_scan.grads, name), getattr(merged, name)
        assert (x is None and y is None) or np.array_equal(x, y), name
    # and scan scores those gradients (IsolationForest is compared on the same input only:
    # its random split thresholds make it discontinuous in rounding-level differences)
    np.testing.assert_array_equal(res_scan.scores, score(merged, "iforest", seed=0))


def test_killed_rank_leaves_no_result_and_rerun_resumes(train_file, tmp_path):
    cache = tmp_path / "c"
    argv = _args(train_file, cache)
    r = _launch(argv, KILL_RANK="1")
    assert r.returncode != 0 and "killing this rank mid-shard" in r.stderr, r.stderr[-3000:]

    train = load_file(train_file, "train")
    model = pipeline.cached_model(SPEC, train, 0, DiskCache(cache))
    key = pipeline.gradients_key(model, train)
    assert pipeline.cached_gradients(model, train, cache=DiskCache(cache)) is None
    assert not (cache / "gradients" / key).exists()
    shard0, shard1 = (cache / SHARD_STAGE / shard_key(key, q, 2) for q in (0, 1))
    assert (shard0 / "meta.json").exists() and not shard1.exists()
    assert list((cache / SHARD_STAGE).glob(f".{shard1.name}.*"))  # rank 1's half-written shard, hidden

    r = _torchrun(argv)  # shards do not depend on the launcher
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["shards_reused"] == [0] and not res["cached"]
    assert "[rank 0/2] reused its stored shard" in r.stderr and "[rank 1/2] stored its shard" in r.stderr
    assert not list((cache / SHARD_STAGE).iterdir())  # merged, then shards and leftovers removed
    _, single = _reference(train, cache, tmp_path)
    _same(pipeline.cached_gradients(model, train, cache=DiskCache(cache)), single)


@pytest.mark.parametrize("layer,dim,world", [("last", 16, 2), ("body", 24, 3), ("head", None, 3)])
def test_shards_of_projected_and_generic_gradients_equal_the_full_run(layer, dim, world, tmp_path, train_file):
    """In one process: the seeded projections (TensorSketch, SparseProjector) give every shard the
    rows of the full projection, and uneven shards merge back in dataset order."""
    train = load_file(train_file, "train").subset(np.arange(0, 900, 3))
    model = pipeline.train_model(ModelSpec("mlp", (8,), 5), train, 0)
    cache = DiskCache(tmp_path / "c")
    for rank in range(world):
        assert not extract_shard(model, train, rank, world, GradientSettings(layer, dim, 7), cache, chunk_size=32)
    assert extract_shard(model, train, 0, world, GradientSettings(layer, dim, 7), cache)  # stored: resumed, not recomputed
    merged = merge_shards(model, train, world, GradientSettings(layer, dim, 7), cache)
    single = pipeline.gradients(model, train, GradientSettings(layer, dim, 7), DiskCache(tmp_path / "single"))
    _same(merged, single)
    assert pipeline.cached_gradients(model, train, GradientSettings(layer, dim, 7), cache) is not None


@pytest.mark.parametrize("extra,env,needle", [
    (["--train", "missing.npz"], {}, "file not found"),
    (["--projection-dim", "0"], {}, "--projection-dim"),
    ([], {"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5"),
])
def test_bad_input_is_one_line_exit_2(train_file, tmp_path, capsys, monkeypatch, extra, env, needle):
    from ogdash.cli.args import Parser
    from ogdash.cli.extract import add_arguments as _add_arguments
    from ogdash.cli.extract import main_extract

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = _add_arguments(Parser()).parse_args(_args(train_file, tmp_path / "c") + extra)
    assert main_extract(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err and len(err.strip().splitlines()) == 1


NETS = """
import torch
from torch import nn

def backbone():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())

def classifier():
    return nn.Sequential(backbone(), nn.Linear(16, 3))
"""


def test_two_ranks_extract_your_network_frozen_or_as_it_is(tmp_path, monkeypatch):
    """Your own network under torchrun: a frozen backbone's features are sharded and merged into the cache entry
    the scan reads, the head is trained once on them, and its gradients merge under the single-process key; a
    whole network as it is gives every rank the same weights. The scan then recomputes nothing."""
    import torch
    from safetensors.torch import save_file

    from ogdash.data.spec import DataSpec

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 60)
    X = (rng.normal(0, 0.3, (180, 1, 8, 8)) + y[:, None, None, None]).astype(np.float32)
    np.savez(tmp_path / "train.npz", X=X, y=y)
    np.savez(tmp_path / "test.npz", X=X[::6], y=y[::6])
    (tmp_path / "mynets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mynets

    torch.manual_seed(0)
    for name, net in (("backbone", mynets.backbone()), ("classifier", mynets.classifier())):
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / f"{name}.safetensors"))
    data = DataSpec("files", train=str(tmp_path / "train.npz"), test=str(tmp_path / "test.npz"))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for arch, extra in (("backbone", ["--new-head", "--epochs", "5"]), ("classifier", [])):
        cache = tmp_path / f"c_{arch}"
        r = _launch(["--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"), "--model",
                     "custom", "--arch", f"mynets:{arch}", "--weights", str(tmp_path / f"{arch}.safetensors"),
                     "--cache", str(cache), "--device", "cpu", "--json", *extra], **env)
        assert r.returncode == 0, r.stderr[-3000:]
        res = json.loads(r.stdout.strip().splitlines()[-1])
        assert res["world_size"] == 2 and res["n_train"] == 180
        spec = ModelSpec("custom", arch=f"mynets:{arch}", weights=str(tmp_path / f"{arch}.safetensors"),
                         new_head=arch == "backbone", epochs=5 if arch == "backbone" else None)
        train = data.load().train
        if arch == "backbone":  # the features, sharded and merged: what one process computes
            assert "[rank 1/2] stored its shard of the backbone's features (90 samples)" in r.stderr
            merged = DiskCache(cache).load("features", pipeline.features_key(spec, train))
            np.testing.assert_allclose(merged["features"], pipeline.backbone_features_of(spec, train), rtol=1e-5,
                                       atol=1e-6)

        def boom(*a, **k):
            raise AssertionError("recomputed")
        monkeypatch.setattr(pipeline, "extract_gradients", boom)
        monkeypatch.setattr(pipeline, "fit", boom)
        monkeypatch.setattr(pipeline, "backbone_features_of", boom)
        scan = pipeline.Scan(data, spec, cache=DiskCache(cache))
        assert res["key"] == pipeline.gradients_key(scan.model(), train)
        assert scan.result().scores.shape == (180,)
        monkeypatch.undo()
        monkeypatch.syspath_prepend(str(tmp_path))
