"""Image folders and CIFAR in torchvision's local format, loaded without unpickling anything but arrays."""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ogdash.core.errors import OgdashError
from ogdash.data.folders import load_cifar, load_cifar_n, load_image_folder


def make_folder(root, classes=("cat", "dog"), n=3, size=10, mode="RGB"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")
    return root


def test_image_folder_layout(tmp_path):
    root = make_folder(tmp_path / "imgs")
    (root / "cat" / "notes.txt").write_text("not an image, skipped as torchvision does")
    ds = load_image_folder(root, size=8)
    assert ds.X.shape == (6, 3, 8, 8) and ds.classes == ("cat", "dog") and ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    gray = load_image_folder(make_folder(tmp_path / "gray", mode="L"), size=8)
    assert gray.X.shape == (6, 1, 8, 8)


def test_image_folder_bad_inputs(tmp_path):
    root = make_folder(tmp_path / "corrupt")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(OgdashError, match="broken.png"):
        load_image_folder(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OgdashError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty")
    root = make_folder(tmp_path / "hole")
    (root / "zebra").mkdir()
    with pytest.raises(OgdashError, match="zebra"):
        load_image_folder(root)
    with pytest.raises(OgdashError, match="not found"):
        load_image_folder(tmp_path / "missing")


def fake_cifar10(root, n=20):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n)),
                 b"filenames": [b"x.png"] * n}
        (base / name).write_bytes(pickle.dumps(batch))
    (base / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return root


def test_cifar_with_cifar_n_labels(tmp_path):
    root = fake_cifar10(tmp_path)
    splits = load_cifar(root)
    assert splits.train.X.shape == (100, 3, 32, 32) and splits.test.n == 20 and splits.train.classes[3] == "c3"
    noisy = (splits.train.y + 1) % 10
    np.savez(tmp_path / "CIFAR-10_human.npz", worse_label=noisy, clean_label=splits.train.y)
    s = load_cifar(root, tmp_path / "CIFAR-10_human.npz", "worse_label")
    assert np.array_equal(s.train.y, noisy) and np.array_equal(s.train.y_true, splits.train.y)
    torch.save({"worse_label": noisy, "aggre_label": splits.train.y}, tmp_path / "CIFAR-10_human.pt")
    s = load_cifar(root, tmp_path / "CIFAR-10_human.pt")  # as released: numpy arrays in a torch file
    assert np.array_equal(s.train.y, noisy)
    with pytest.raises(OgdashError, match="choose one of"):
        load_cifar(root, tmp_path / "CIFAR-10_human.npz", "no_such_key")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_with_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = fake_cifar10(tmp_path / "c")
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(OgdashError, match="will not unpickle"):
        load_cifar(root)
    assert not (tmp_path / "pwned").exists()
    torch.save({"worse_label": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(OgdashError, match="cannot be loaded safely"):
        load_cifar_n(tmp_path / "evil.pt", None, 100, 10)
    assert not (tmp_path / "pwned").exists()
