"""Small versions of the paths that carry a million samples: chunked passes over memory-mapped files, the
chunked held-out refit, the bootstrap as counts, features mapped from an .npz or .npy files, --out, damaged shards."""
import json
import os
import zipfile

import numpy as np
import pytest

from ogdash.core import chunks
from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data.files import load_file, load_splits
from ogdash.data.mapped import is_mapped


def _clustered(rng, n, k, d, flip=0.2, spread=1.5):
    y_true = rng.integers(0, k, n)
    X = (rng.normal(0, 1, (k, d))[y_true] * 3 + spread * rng.normal(size=(n, d))).astype(np.float32)
    y = y_true.copy()
    wrong = rng.random(n) < flip
    y[wrong] = (y[wrong] + rng.integers(1, k, wrong.sum())) % k
    return X, y, y_true


def _reference_refit(acts, y, parts, seed):
    """The held-out refit as it was computed in memory, whole (before it streamed): the reference."""
    import torch

    from ogdash.detect.heldout import CALIBRATION_ROWS, PROBE_RIDGE, _leave_one_out, _softmax, _temperature

    classes = np.flatnonzero(np.bincount(y))
    order = np.concatenate(parts)
    bounds = np.cumsum([0] + [len(p) for p in parts])
    A = np.asarray(acts, dtype=np.float32)[order]
    A = (A - A.mean(0)) / np.where(A.std(0) > 0, A.std(0), 1)
    X = torch.from_numpy(np.hstack([A, np.ones((len(A), 1), np.float32)]))
    column = np.searchsorted(classes, y[order])
    folds = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    grams = [X[f].T @ X[f] for f in folds]
    sums = [torch.zeros(len(classes), X.shape[1]).index_add_(0, torch.from_numpy(column[f]), X[f]) for f in folds]
    gram, total = sum(grams), sum(sums)
    penalty = torch.full((X.shape[1],), PROBE_RIDGE, dtype=torch.float64)
    penalty[-1] = 1e-6
    rng = np.random.default_rng(seed)
    out = np.zeros((len(y), int(y.max()) + 1))
    for k, f in enumerate(folds):
        factor = torch.linalg.cholesky((gram - grams[k]).double() + torch.diag(penalty))
        W = torch.cholesky_solve((total - sums[k]).T.double(), factor)
        fit_rows = np.r_[0:f.start, f.stop:len(y)]
        cal = np.sort(rng.choice(fit_rows, min(CALIBRATION_ROWS, len(fit_rows)), replace=False))
        temperature = _temperature(_leave_one_out(X[cal].double(), column[cal], W, factor), column[cal])
        out[np.ix_(order[f], classes)] = _softmax(temperature * (X[f] @ W.float()).double().numpy())
    return out


def test_chunked_refit_equals_the_in_memory_refit(monkeypatch, tmp_path):
    """Two passes in chunks (here 40 rows each), from a memory-mapped file, give today's in-memory refit."""
    from ogdash.detect.heldout import _cross_fit, _folds

    rng = np.random.default_rng(0)
    X, y, _ = _clustered(rng, 1500, 6, 12)
    y[y == 4] = 5  # a class nobody was given: its column stays 0
    parts = _folds(y, 5, seed=3)
    expected = _reference_refit(X, y, parts, seed=3)
    np.save(tmp_path / "acts.npy", X)
    monkeypatch.setattr(chunks, "CHUNK_VALUES", 40 * 12)
    mapped = np.load(tmp_path / "acts.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "P.npy", mode="w+", dtype=np.float32, shape=(1500, 6))
    P = _cross_fit(mapped, y, parts, seed=3, out=out)
    assert P is out
    np.testing.assert_allclose(P, expected, atol=2e-5)  # float64 sums of float32 chunks against float32 wholes
    assert np.all(P[:, 4] == 0) and np.allclose(P.sum(1), 1, atol=1e-5)


def test_bootstrap_as_counts_equals_resampling_rows():
    """Each resample used as counts, recounting only entries near a threshold, gives what recomputing the estimate
    on the resampled rows gave; a bootstrap forced onto a subsample keeps the point estimate."""
    from ogdash.detect import budget

    rng = np.random.default_rng(1)
    n, K = 3000, 20
    y_true = rng.integers(0, K, n)
    y = np.where(rng.random(n) < 0.2, rng.integers(0, K, n), y_true)
    L = rng.normal(size=(n, K))
    L[np.arange(n), y_true] += 2.5
    P = np.exp(L) / np.exp(L).sum(1, keepdims=True)
    draws = np.random.default_rng(5)
    resampled = [budget._rate(P[i], y[i]) for i in (draws.integers(0, n, n) for _ in range(25))]
    point, boots, top = budget._bootstrap(P, y, 25, np.random.default_rng(5))
    assert point == budget._rate(P, y) and np.array_equal(top, P.argmax(1))
    np.testing.assert_allclose(boots, resampled, rtol=0, atol=1e-12)
    narrow = budget.BAND_MAX
    try:
        budget.BAND_MAX = 300 * K  # too many entries near a threshold: m-out-of-n on a subsample
        sub_point, sub_boots, _ = budget._bootstrap(P, y, 25, np.random.default_rng(5))
    finally:
        budget.BAND_MAX = narrow
    assert sub_point == point and len(sub_boots) == 25 and np.std(sub_boots) > 0


def test_blocks_hand_back_the_pages_of_a_mapped_file(tmp_path):
    """A pass over a 64 MB mapped file leaves this process with about one chunk of it, not the file."""
    status = "/proc/self/status"
    if not os.path.exists(status):
        pytest.skip("needs Linux's /proc")

    def file_mb():
        with open(status) as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssFile:")) / 1024

    a = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(16_384, 1024))
    for start, stop in chunks.spans(len(a), 1024):
        chunks.write(a, start, np.full((stop - start, 1024), start, np.float32))
    del a
    mapped = np.load(tmp_path / "big.npy", mmap_mode="r")
    before = file_mb()
    total = sum(float(block[:, 0].sum()) for _, _, block in chunks.blocks(mapped))
    assert total == sum(float(s) * (e - s) for s, e in chunks.spans(16_384, 1024))
    assert file_mb() - before < 32  # the 64 MB file is not kept resident
    mean, std = chunks.moments(mapped[:, :3])
    np.testing.assert_allclose(mean, np.asarray(mapped[:, :3], np.float64).mean(0))
    np.testing.assert_allclose(std, np.asarray(mapped[:, :3], np.float64).std(0))


def test_features_are_mapped_from_an_npz_or_npy_files_never_read(tmp_path):
    rng = np.random.default_rng(2)
    X, y, y_true = _clustered(rng, 400, 3, 8)
    np.savez(tmp_path / "plain.npz", X=X, y=y, y_true=y_true)  # numpy.savez stores members uncompressed
    ds = load_file(tmp_path / "plain.npz")
    assert is_mapped(ds.X) and np.array_equal(ds.X, X) and ds.sources[:2] == ("index 0", "index 1")
    np.savez_compressed(tmp_path / "packed.npz", X=X, y=y)  # compressed: read, as before
    assert not is_mapped(load_file(tmp_path / "packed.npz").X)
    np.savez(tmp_path / "wide.npz", X=X.astype(np.float64), y=y)  # another dtype: read (and converted)
    assert not is_mapped(load_file(tmp_path / "wide.npz").X)

    folder = tmp_path / "arrays"
    folder.mkdir()
    for name, arr in (("X", X), ("y", y), ("y_true", y_true)):
        np.save(folder / f"{name}.npy", arr)
    from ogdash.data.spec import DataSpec

    spec = DataSpec.from_paths(folder, test=tmp_path / "plain.npz")
    assert spec.source == "files"
    splits = spec.load()
    assert is_mapped(splits.train.X) and np.array_equal(splits.train.y_true, y_true)
    assert splits.train.fingerprint() == load_file(tmp_path / "plain.npz", "train").fingerprint()


def test_mapped_features_caps_and_damage_are_one_line(tmp_path, monkeypatch):
    """Threats: a header that claims more than the file holds, a mapped file over its cap, a held-out split that
    would copy mapped features into memory, a compressed member over the in-memory cap. Each refusal names
    what to change."""
    X = np.ones((1000, 16), np.float32)
    y = np.arange(1000) % 4
    np.savez(tmp_path / "ok.npz", X=X, y=y)
    raw = (tmp_path / "ok.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "ok.npz") as z:
        start = z.getinfo("X.npy").header_offset
    # the X member's header says (1000, 16) but its file ends a few rows in
    (tmp_path / "cut.npz").write_bytes(raw[:start + 200 + 4 * 16 * 10])
    with pytest.raises(OgdashError) as e:
        load_file(tmp_path / "cut.npz")
    assert "\n" not in str(e.value) and ("truncated" in str(e.value) or "readable .npz" in str(e.value))

    monkeypatch.setenv("OGDASH_MAX_MAPPED_ELEMENTS", "1000")
    with pytest.raises(OgdashError, match="OGDASH_MAX_MAPPED_ELEMENTS"):
        load_file(tmp_path / "ok.npz")
    monkeypatch.delenv("OGDASH_MAX_MAPPED_ELEMENTS")

    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "5000")  # the mapped X is not held to it, y is
    assert is_mapped(load_file(tmp_path / "ok.npz").X)
    with pytest.raises(OgdashError, match=r"OGDASH_MAX_ELEMENTS.*--test|--test.*OGDASH_MAX_ELEMENTS"):
        load_splits(tmp_path / "ok.npz")  # holding out a test share would copy 12,800 values into memory
    np.savez_compressed(tmp_path / "packed.npz", X=X, y=y)
    with pytest.raises(OgdashError, match="OGDASH_MAX_ELEMENTS"):
        load_file(tmp_path / "packed.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    folder = tmp_path / "objects"
    folder.mkdir()
    os.replace(tmp_path / "obj.npy", folder / "X.npy")
    np.save(folder / "y.npy", np.array([0]))
    with pytest.raises(OgdashError, match="unpickle|numeric"):
        load_file(folder)


def test_scan_keeps_heldout_probabilities_in_a_mapped_cache_file(tmp_path):
    """With a disk cache the scan's held-out probabilities are a float32 memory-mapped file, equal to the
    in-memory refit; a second scan reads them back."""
    from ogdash.data.dataset import Splits, make_dataset
    from ogdash.detect.heldout import suggestions
    from ogdash.models import ModelSpec
    from ogdash.pipeline import Scan, ScanSettings

    rng = np.random.default_rng(3)
    X, y, y_true = _clustered(rng, 600, 4, 6)
    splits = Splits(make_dataset("train", X, y, y_true=y_true), None)
    cache = DiskCache(tmp_path / "cache")
    scan = Scan(splits, ModelSpec("logreg", steps=50), ScanSettings(budget="auto"), cache)
    P = scan.probabilities()
    assert is_mapped(P) and P.dtype == np.float32 and P.shape == (600, 4)
    np.testing.assert_allclose(P, suggestions(scan.gradients(), y), atol=1e-6)
    assert is_mapped(scan.gradients().errors) and scan.gradients().probs.dtype == np.float32
    again = Scan(splits, ModelSpec("logreg", steps=50), ScanSettings(budget="auto"), cache)
    np.testing.assert_array_equal(again.probabilities(), P)
    np.testing.assert_array_equal(again.scores(), scan.scores())


def test_out_writes_one_row_per_training_sample(tmp_path, capsys):
    from ogdash.cli.main import main

    rng = np.random.default_rng(4)
    X, y, y_true = _clustered(rng, 500, 3, 5)
    np.savez(tmp_path / "train.npz", X=X, y=y, y_true=y_true)
    out = tmp_path / "scores.csv"
    assert main(["scan", "--train", str(tmp_path / "train.npz"), "--model", "logreg", "--epochs", "1",
                 "--budget", "auto", "--out", str(out), "--json", "--cache", str(tmp_path / "c")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == res["n_train"] == 400 and "out" in res["seconds"]
    assert list(df.columns) == ["id", "source", "given_label", "predicted_label", "score", "flagged", "true_label"]
    assert df["flagged"].sum() == res["n_flagged"] and df["id"].is_unique
    assert df["source"].str.startswith("index ").all()


def test_a_damaged_shard_is_recomputed_never_merged(tmp_path):
    """A stored shard whose file was damaged is not merged (the merge says which is missing) and the next
    extraction computes it again; the merged gradients then equal one process's."""
    from ogdash.data.dataset import make_dataset
    from ogdash.distributed import SHARD_STAGE, extract_shard, merge_shards, shard_key
    from ogdash.models import ModelSpec
    from ogdash.pipeline import gradients, gradients_key, train_model

    rng = np.random.default_rng(5)
    X, y, _ = _clustered(rng, 300, 3, 5)
    train = make_dataset("train", X, y)
    cache = DiskCache(tmp_path / "c")
    model = train_model(ModelSpec("logreg", steps=30), train, 0, cache)
    assert [extract_shard(model, train, r, 2, cache=cache) for r in (0, 1)] == [False, False]
    key = shard_key(gradients_key(model, train), 1, 2)
    damaged = cache.entry(SHARD_STAGE, key) / "acts.npy"
    damaged.write_bytes(damaged.read_bytes()[:-16])
    with pytest.raises(OgdashError, match=r"shards \[1\] of 2 are missing"):
        merge_shards(model, train, 2, cache=cache)
    assert [extract_shard(model, train, r, 2, cache=cache) for r in (0, 1)] == [True, False]  # 1 recomputed
    merged = merge_shards(model, train, 2, cache=cache)
    single = gradients(model, train)
    for name in ("errors", "acts", "probs", "loss"):
        np.testing.assert_allclose(getattr(merged, name), getattr(single, name), atol=1e-6)


def test_parquet_embeddings_over_the_memory_cap_are_streamed_into_a_mapped_file(tmp_path, monkeypatch):
    """A Parquet of labels and embeddings (a fixed-length list column, plain columns, or variable-length lists)
    past OGDASH_MAX_ELEMENTS is converted batch by batch into a float32 file under the cache and mapped: the same
    data, ids and fingerprint as the in-memory read; a second load reuses the conversion."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ogdash.data.parquet_mapped import converted_path

    monkeypatch.setenv("OGDASH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(6)
    X, y, y_true = _clustered(rng, 900, 3, 8)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 8)
    pq.write_table(pa.table({"label": y, "true_label": y_true, "emb": emb}), tmp_path / "fixed.parquet",
                   row_group_size=200)
    pq.write_table(pa.table({"label": y, "emb": pa.array(list(X.astype(np.float64)))}), tmp_path / "lists.parquet")
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)]).assign(label=y)
    df.index = df.index + 1000  # a pandas index: the sample ids
    df.to_parquet(tmp_path / "columns.parquet")
    for name in ("fixed", "lists", "columns"):
        path = tmp_path / f"{name}.parquet"
        whole = load_file(path)
        monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "2000")
        mapped = load_file(path)
        monkeypatch.delenv("OGDASH_MAX_ELEMENTS")
        assert not is_mapped(whole.X) and is_mapped(mapped.X) and mapped.X.dtype == np.float32
        np.testing.assert_array_equal(mapped.X, whole.X)
        assert mapped.fingerprint() == whole.fingerprint() and mapped.feature_names == whole.feature_names
        assert np.array_equal(mapped.ids, whole.ids) and mapped.sources[:2] == ("row 0", "row 1")
        assert converted_path(path).is_file()
    assert np.array_equal(load_file(tmp_path / "fixed.parquet").y_true, y_true)
    assert load_file(tmp_path / "columns.parquet").ids[0] == 1000


def test_parquet_refusals_are_one_line(tmp_path, monkeypatch):
    """Threats: embeddings over the mapped cap, rows of different lengths, a text table over the in-memory cap,
    a file that is not Parquet. Each is one line naming what to change; nothing half-converted is kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("OGDASH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "100")
    y = np.arange(60) % 3
    pq.write_table(pa.table({"label": y, "emb": pa.array([[0.5] * 4] * 60)}), tmp_path / "ok.parquet")
    monkeypatch.setenv("OGDASH_MAX_MAPPED_ELEMENTS", "200")
    with pytest.raises(OgdashError, match="OGDASH_MAX_MAPPED_ELEMENTS") as e:
        load_file(tmp_path / "ok.parquet")
    assert "\n" not in str(e.value)
    monkeypatch.delenv("OGDASH_MAX_MAPPED_ELEMENTS")
    ragged = [[0.5] * 4] * 59 + [[0.5] * 3]
    pq.write_table(pa.table({"label": y, "emb": pa.array(ragged)}), tmp_path / "ragged.parquet")
    with pytest.raises(OgdashError, match="different lengths"):
        load_file(tmp_path / "ragged.parquet")
    assert not any((tmp_path / "cache").rglob("X.npy"))  # the refused conversion left nothing behind
    pq.write_table(pa.table({"label": y, "text": ["a few words"] * 60, "f": [1.0] * 60}), tmp_path / "text.parquet")
    with pytest.raises(OgdashError, match="OGDASH_MAX_ELEMENTS"):
        load_file(tmp_path / "text.parquet")
    # a decompression bomb (a small file of one repeated value standing for 200,000) is not converted: refused
    pq.write_table(pa.table({"label": np.zeros(200_000, np.int64), "f": np.ones(200_000)}), tmp_path / "bomb.parquet")
    with pytest.raises(OgdashError, match="OGDASH_MAX_ELEMENTS"):
        load_file(tmp_path / "bomb.parquet")
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(OgdashError, match="not a readable Parquet"):
        load_file(tmp_path / "fake.parquet")


def test_flags_in_linear_time_equal_a_stable_sort():
    """The budget rule without a full sort: the top k scores, ties to the earlier sample, NaN last, exactly as a
    stable argsort of -scores picks them."""
    from ogdash.detect.flags import budget_count, flag

    rng = np.random.default_rng(8)
    for trial in range(200):
        n = int(rng.integers(1, 50))
        scores = rng.integers(0, 4, n).astype(float)  # many ties
        if trial % 3 == 0:
            scores[rng.random(n) < 0.3] = np.nan
        for budget in {1, max(1, n // 2), n, 0.3}:
            k = budget_count(budget, n)
            want = np.zeros(n, bool)
            want[np.argsort(-scores, kind="stable")[:k]] = True
            np.testing.assert_array_equal(flag(scores, budget), want)


def test_unusual_features_read_only_the_classes_of_the_cards(tmp_path):
    """A card's z-scores come from its class's statistics, computed from that class's rows alone (memory-mapped
    here) and equal to the statistics over every class at once."""
    from ogdash.data.dataset import Splits
    from ogdash.explain import class_stats, unusual_features
    from ogdash.models import ModelSpec
    from ogdash.pipeline import Scan, ScanSettings

    rng = np.random.default_rng(9)
    X, y, y_true = _clustered(rng, 700, 5, 6)
    np.savez(tmp_path / "train.npz", X=X, y=y, y_true=y_true)
    train = load_file(tmp_path / "train.npz", "train")
    assert is_mapped(train.X)
    scan = Scan(Splits(train, None), ModelSpec("logreg", steps=20), ScanSettings(), DiskCache(tmp_path / "c"))
    whole = class_stats(X, y, 5)
    positions = [0, 5, 123, 699]
    got = scan.unusual_features(positions, top=3)
    for p in positions:
        want = unusual_features(X[p], int(y[p]), whole, 3)
        assert [u["feature"] for u in got[p]] == [u["feature"] for u in want]
        np.testing.assert_allclose([u["z"] for u in got[p]], [u["z"] for u in want], rtol=1e-4)
    assert scan.class_feature_stats(int(y[0])).count.tolist() == [int((y == y[0]).sum())]
