import os

import numpy as np
import pytest

from ogdash.core.errors import OgdashError
from ogdash.data import blobs, digits, inject_noise, load_file, load_splits, mnist5k, moons, resolve_under


@pytest.mark.parametrize("make,n_train,n_test,flips", [(blobs, 150, 100, 10), (moons, 250, 100, 20)])
@pytest.mark.parametrize("mode", ["far", "uniform"])
def test_synthetic_sizes_and_flips(make, n_train, n_test, flips, mode):
    s = make(seed=3, flip_mode=mode)
    assert (s.train.n, s.test.n) == (n_train, n_test)
    assert s.train.noisy.sum() == flips
    assert (s.train.y_true[s.train.noisy] == 0).sum() == flips // 2  # half from each class
    assert not s.test.noisy.any()
    again = make(seed=3, flip_mode=mode)
    assert np.array_equal(again.train.X, s.train.X) and np.array_equal(again.train.y, s.train.y)


def test_far_flips_lie_farther_from_the_other_class_than_uniform_ones():
    def mean_dist(s):
        X, yt, noisy = s.train.X, s.train.y_true, s.train.noisy
        d = [np.min(np.linalg.norm(X[yt != yt[i]] - X[i], axis=1)) for i in np.flatnonzero(noisy)]
        return np.mean(d)
    far = np.mean([mean_dist(blobs(seed, flip_mode="far")) for seed in range(3)])
    uniform = np.mean([mean_dist(blobs(seed, flip_mode="uniform")) for seed in range(3)])
    assert far > 1.2 * uniform


def test_noise_rate_and_pairs():
    y = np.repeat(np.arange(10), 100)
    u = inject_noise(y, 0.2, "uniform", 10, seed=0)
    assert (u != y).mean() == pytest.approx(0.2)
    p = inject_noise(y, 0.3, "pairs", 10, seed=0)
    assert (p != y).mean() == pytest.approx(0.3)
    flipped = p != y
    assert set(zip(y[flipped], p[flipped])) <= {(1, 7), (7, 1), (3, 8), (8, 3), (4, 9), (9, 4), (5, 6), (6, 5)}
    with pytest.raises(OgdashError):
        inject_noise(y, 0.95, "pairs", 10)


def test_builtin_images():
    d = digits(seed=0, noise_rate=0.1)
    assert d.train.X.shape[1:] == (1, 8, 8) and d.train.n + d.test.n == 1797
    assert 0 <= d.train.X.min() and d.train.X.max() <= 1
    assert d.train.noisy.mean() == pytest.approx(0.1, abs=0.005)
    assert not set(d.train.ids) & set(d.test.ids)
    assert d.train.view(0).shape == (8, 8) and d.train.view(0).dtype == np.uint8
    m = mnist5k(seed=1)
    assert m.train.n + m.test.n == 5000 and m.train.X.shape[1:] == (1, 28, 28)


def test_fingerprint_changes_with_content():
    s = moons(0)
    assert s.train.fingerprint() == moons(0).train.fingerprint()
    assert s.train.fingerprint() != moons(1).train.fingerprint()
    assert s.train.relabelled({int(s.train.ids[0]): 1 - int(s.train.y[0])}).fingerprint() != s.train.fingerprint()


def test_load_npz_and_csv(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = np.arange(30) % 3
    np.savez(tmp_path / "a.npz", X=X, y=y, y_true=y)
    ds = load_file(tmp_path / "a.npz")
    assert ds.n == 30 and ds.n_classes == 3 and ds.y_true is not None and ds.ids.tolist() == list(range(30))
    import pandas as pd
    pd.DataFrame({"f1": X[:, 0], "f2": X[:, 1], "label": y, "true_label": y}).to_csv(tmp_path / "a.csv", index=False)
    ds = load_file(tmp_path / "a.csv")
    assert ds.X.shape == (30, 2) and ds.y_true is not None
    imgs = np.random.default_rng(0).integers(0, 256, size=(10, 12, 12))
    np.savez(tmp_path / "img.npz", X=imgs, y=np.arange(10) % 2)
    ds = load_file(tmp_path / "img.npz")
    assert ds.X.shape == (10, 1, 12, 12) and ds.X.max() <= 1 and ds.kind == "image"


def _bad_files(tmp_path):
    good_X = np.zeros((6, 2))
    cases = {
        "missing_y.npz": dict(X=good_X),
        "mismatch.npz": dict(X=good_X, y=np.arange(5) % 2),
        "float_labels.npz": dict(X=good_X, y=np.array([0, 1, 0.5, 1, 0, 1])),
        "negative.npz": dict(X=good_X, y=np.array([0, 1, -1, 1, 0, 1])),
        "nan.npz": dict(X=np.array([[np.nan, 0]] * 6), y=np.arange(6) % 2),
        "inf.npz": dict(X=np.array([[np.inf, 0]] * 6), y=np.arange(6) % 2),
        "empty.npz": dict(X=np.zeros((0, 2)), y=np.zeros(0, int)),
        "object.npz": dict(X=np.array([{"a": 1}] * 6, dtype=object), y=np.arange(6) % 2),
    }
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
    (tmp_path / "strings.csv").write_text("f,label\n1,cat\n2,dog\n")
    (tmp_path / "nolabel.csv").write_text("f,g\n1,2\n")
    (tmp_path / "latin1.csv").write_bytes("f,label\n1,0\n# caf\xe9\n".encode("latin-1"))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return list(cases) + ["strings.csv", "nolabel.csv", "latin1.csv", "corrupt.npz", "does_not_exist.npz", "x.txt"]


def test_bad_files_give_one_clear_error(tmp_path):
    for name in _bad_files(tmp_path):
        with pytest.raises(OgdashError) as e:
            load_file(tmp_path / name)
        assert "\n" not in str(e.value) and len(str(e.value)) < 300, name


def test_splits_validate_against_training(tmp_path):
    X = np.zeros((6, 2))
    np.savez(tmp_path / "tr.npz", X=X, y=np.arange(6) % 2)
    np.savez(tmp_path / "single.npz", X=X, y=np.zeros(6, int))
    np.savez(tmp_path / "te_unseen.npz", X=X, y=np.arange(6) % 3)
    np.savez(tmp_path / "te_shape.npz", X=np.zeros((6, 3)), y=np.arange(6) % 2)
    with pytest.raises(OgdashError, match="single class"):
        load_splits(tmp_path / "single.npz", tmp_path / "tr.npz")
    with pytest.raises(OgdashError, match="unseen"):
        load_splits(tmp_path / "tr.npz", tmp_path / "te_unseen.npz")
    with pytest.raises(OgdashError, match="shape"):
        load_splits(tmp_path / "tr.npz", tmp_path / "te_shape.npz")


def test_paths_stay_under_the_data_root(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.npz").write_bytes(b"")
    assert resolve_under(root, "sub/a.npz") == (root / "sub" / "a.npz").resolve()
    os.symlink("/etc", root / "escape")
    for bad in ("../x.npz", "/etc/passwd", "escape/passwd", "sub/../../x"):
        with pytest.raises(OgdashError, match="outside the data root"):
            resolve_under(root, bad)
