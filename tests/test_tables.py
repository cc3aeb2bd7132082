"""Parquet files and Hugging Face datasets saved on disk, through the library, the CLI and the Data & model page.

The datasets are made here from scikit-learn's digits, with the real ``datasets`` and pyarrow writers.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from streamlit.testing.v1 import AppTest

datasets = pytest.importorskip("datasets")

from dashboard.nav import ROOT  # noqa: E402
from ogdash.cli.main import main  # noqa: E402
from ogdash.core.errors import OgdashError  # noqa: E402
from ogdash.data import load_file, load_splits  # noqa: E402
from tests.test_bad_inputs import seen

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
N_TRAIN, N_TEST = 150, 60


def _digits():
    d = load_digits()
    return (d.images * 15).astype(np.uint8), d.target.astype(int)  # 0..240, exact in 8-bit PNGs


def _image_dataset(images, labels, **extra):
    features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)}
    features.update({k: datasets.Value("int64") for k in extra})
    return datasets.Dataset.from_dict({"image": [Image.fromarray(im) for im in images], "label": list(labels),
                                       **extra}, features=datasets.Features(features))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A data root with a saved image dataset (train, test, a DatasetDict), Parquet files and broken inputs."""
    root = tmp_path_factory.mktemp("tables")
    images, target = _digits()
    tr, te = slice(0, N_TRAIN), slice(N_TRAIN, N_TRAIN + N_TEST)
    train = _image_dataset(images[tr], target[tr])
    train.save_to_disk(str(root / "hf" / "train"))
    _image_dataset(images[te], target[te]).save_to_disk(str(root / "hf" / "test"))
    datasets.DatasetDict({"train": train, "test": train}).save_to_disk(str(root / "hfdict"))
    train.to_parquet(str(root / "images.parquet"))
    _image_dataset(images[te], target[te]).to_parquet(str(root / "images_test.parquet"))

    # numeric features: a ClassLabel column named 'digit' (no 'label' column) and a float embedding list
    flat = images.reshape(len(images), -1).astype(float)
    feats = datasets.Features({**{f"p{k}": datasets.Value("float32") for k in range(8)},
                               "emb": datasets.List(datasets.Value("float32")),
                               "digit": datasets.ClassLabel(names=NAMES)})
    datasets.Dataset.from_dict({**{f"p{k}": flat[:N_TRAIN, k] for k in range(8)},
                                "emb": flat[:N_TRAIN, 8:12].tolist(), "digit": target[:N_TRAIN].tolist()},
                               features=feats).save_to_disk(str(root / "hf_features"))

    # pandas: an id column and categorical labels; an index of its own; plain integers
    cols = {f"pixel_{k}": flat[:N_TRAIN, k] for k in range(64)}
    pd.DataFrame({"id": 1000 + np.arange(N_TRAIN), **cols,
                  "label": pd.Categorical.from_codes(target[:N_TRAIN], NAMES)}).to_parquet(root / "rows.parquet")
    pd.DataFrame({**cols, "label": target[:N_TRAIN]}, index=500 + np.arange(N_TRAIN)).to_parquet(root / "indexed.parquet")
    pd.DataFrame({**{f"pixel_{k}": flat[te, k] for k in range(64)}, "label": target[te]}).to_parquet(root / "rows_test.parquet")

    # bad inputs
    bad = root / "bad"
    bad.mkdir()
    pd.DataFrame({"a": [1.0, 2.0], "b": [0, 1]}).to_parquet(bad / "no_label.parquet")
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": ["cat", "dog", "cat"]}).to_parquet(bad / "string_labels.parquet")
    pd.DataFrame({"a": [1.0, 2.0], "name": ["x", "y"], "label": [0, 1]}).to_parquet(bad / "text_feature.parquet")
    (bad / "garbage.parquet").write_bytes(b"PAR1 but not really\n" * 10)
    missing = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(images[0]), None, Image.fromarray(images[2])], "label": [0, 1, 2]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)}))
    missing.save_to_disk(str(bad / "missing_image"))
    datasets.Dataset.from_dict({"a": [1.0, 2.0], "label": ["cat", "dog"]}).save_to_disk(str(bad / "hf_strings"))
    datasets.Dataset.from_dict({"a": [1.0, 2.0], "label": [0, -1]}, features=datasets.Features(
        {"a": datasets.Value("float32"), "label": datasets.ClassLabel(names=["a", "b"])})
    ).save_to_disk(str(bad / "unlabelled"))
    outside = datasets.Dataset.from_dict({"image": [{"bytes": None, "path": "/etc/hostname"}] * 2, "label": [0, 1]},
                                         features=datasets.Features({"image": datasets.Image(decode=False),
                                                                     "label": datasets.Value("int64")}))
    outside.to_parquet(str(bad / "image_outside.parquet"))
    (root / "not_a_dataset").mkdir()
    (root / "not_a_dataset" / "notes.txt").write_text("hello")
    return root


# ------------------------------------------------------------------ the library

def test_saved_image_dataset_keeps_class_names_rows_and_pixels(root):
    images, target = _digits()
    ds = load_file(root / "hf" / "train")
    assert ds.kind == "image" and ds.X.shape == (N_TRAIN, 1, 8, 8)
    assert ds.classes == tuple(NAMES) and ds.y.tolist() == target[:N_TRAIN].tolist()
    assert ds.ids.tolist() == list(range(N_TRAIN)) and ds.sources[7] == "row 7" and ds.source(7) == "row 7"
    np.testing.assert_allclose(ds.X[:, 0], images[:N_TRAIN] / 255.0, atol=1e-6)
    assert not ds.truth_known  # the labels of a user's data are given ones, never truth

    same = load_file(root / "images.parquet")  # the same data written by datasets' to_parquet
    assert same.classes == ds.classes and np.array_equal(same.X, ds.X) and same.fingerprint() == ds.fingerprint()


def test_feature_columns_a_classlabel_and_an_embedding(root):
    ds = load_file(root / "hf_features")
    assert ds.kind == "features" and ds.X.shape == (N_TRAIN, 12)
    assert ds.classes == tuple(NAMES)  # the one ClassLabel column is the label when there is no 'label'
    assert ds.feature_names == tuple([f"p{k}" for k in range(8)] + [f"emb_{j}" for j in range(4)])


def test_parquet_ids_come_from_the_id_column_or_the_index(root):
    ds = load_file(root / "rows.parquet")
    assert ds.ids[:3].tolist() == [1000, 1001, 1002] and ds.classes == tuple(NAMES)  # categorical = ClassLabel
    assert ds.X.shape == (N_TRAIN, 64) and "id" not in ds.feature_names
    indexed = load_file(root / "indexed.parquet")
    assert indexed.ids[:2].tolist() == [500, 501] and indexed.sources[1] == "row 1"
    assert indexed.classes == tuple(str(c) for c in range(10)) and indexed.X.shape == (N_TRAIN, 64)


def test_splits_of_one_dataset_and_a_class_mismatch(root, tmp_path):
    s = load_splits(root / "hf" / "train", root / "hf" / "test")
    assert (s.train.n, s.test.n) == (N_TRAIN, N_TEST) and s.test.classes == tuple(NAMES)
    held = load_splits(root / "images.parquet")  # no test set: a seeded share is held out
    assert held.train.n + held.test.n == N_TRAIN and held.test.sources[0].startswith("row ")
    other = _image_dataset(_digits()[0][:20], _digits()[1][:20])
    other = other.cast_column("label", datasets.ClassLabel(names=[n.upper() for n in NAMES]))
    other.save_to_disk(str(tmp_path / "upper"))
    with pytest.raises(OgdashError, match="differ from the training set's"):
        load_splits(root / "hf" / "train", tmp_path / "upper")


BAD = [  # (path under the root, what the one-line message says)
    ("bad/no_label.parquet", r"missing the 'label' column"),
    ("bad/string_labels.parquet", r"must be integer class indices 0..K-1; 3 of 3 are not \(the first at row 0\)"),
    ("bad/hf_strings", r"must be integer class indices.*are not \(the first at row 0\)"),
    ("bad/text_feature.parquet", r"feature columns must be numeric; \['name'\]"),
    ("bad/garbage.parquet", r"is not a readable Parquet file"),
    ("bad/missing_image", r"row 1: the image is missing"),
    ("bad/image_outside.parquet", r"row 0: the image '/etc/hostname' is not embedded and lies outside"),
    ("bad/unlabelled", r"unlabelled rows \(ClassLabel -1\)"),
    ("hfdict", r"holds a DatasetDict with splits \['test', 'train'\]; give one split's folder, e\.g\. .*train"),
    ("not_a_dataset", r"is a folder but not a dataset saved with datasets' save_to_disk"),
    ("bad/absent.parquet", r"file not found"),
]


@pytest.mark.parametrize("name,message", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_say_what_to_do_in_one_line(root, name, message, capsys):
    with pytest.raises(OgdashError, match=message) as e:
        load_splits(root / name, root / "hf" / "test")
    assert "\n" not in str(e.value)
    code = main(["scan", "--train", str(root / name), "--test", str(root / "hf" / "test"), "--model", "logreg",
                 "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------ the CLI

@pytest.mark.parametrize("train,test", [("hf/train", "images_test.parquet"), ("rows.parquet", "rows_test.parquet")])
def test_scan_reads_both_formats_and_names_rows(root, tmp_path, train, test, capsys):
    out = tmp_path / "scores.csv"
    model = ["--model", "cnn", "--epochs", "2"] if train.startswith("hf") else ["--model", "logreg", "--epochs", "20"]
    code = main(["scan", "--train", str(root / train), "--test", str(root / test), *model, "--budget", "10",
                 "--out", str(out), "--json", "--no-cache"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and (result["n_train"], result["n_test"], result["n_flagged"]) == (N_TRAIN, N_TEST, 10)
    scores = pd.read_csv(out)
    expected_ids = list(range(N_TRAIN)) if train.startswith("hf") else list(range(1000, 1000 + N_TRAIN))
    assert scores["id"].tolist() == expected_ids and scores["source"].tolist()[:2] == ["row 0", "row 1"]


# ------------------------------------------------------------------ the Data & model page

@pytest.fixture
def data_page(root, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(root))
    monkeypatch.setenv("OGDASH_DECISIONS", str(root / "decisions.sqlite"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["model_config"] = {"kind": "cnn", "seed": 0, "epochs": 2}
    at.run()
    at.switch_page("views/data.py").run()
    assert not at.exception, at.exception
    return at


def _use(at, train, test=""):
    next(w for w in at.text_input if w.label == "…or training path").set_value(train)
    next(w for w in at.text_input if w.label == "…or test path").set_value(test)
    next(b for b in at.button if b.label == "Use these files").click().run()
    assert not at.exception, at.exception
    return at


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_data_page_takes_a_dataset_folder_and_parquet(data_page):
    at = _use(data_page, "hf/train", "images_test.parquet")
    assert not at.error, [e.value for e in at.error]
    assert any(seen(s.value) == "files: train" for s in at.subheader)
    assert (_metric(at, "Training samples"), _metric(at, "Test samples"), _metric(at, "Classes")) == ("150", "60", "10")
    chart = json.dumps([c.proto.spec for c in at.get("plotly_chart")])
    assert "zero" in chart and "nine" in chart  # the ClassLabel names, not 0..9
    next(b for b in at.button if b.label == "Train model").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(m.label == "Test accuracy" for m in at.metric)

    at = _use(at, "rows.parquet")  # Parquet of feature rows, no test set: a share is held out and listed
    assert not at.error and _metric(at, "Training samples") == "120" and _metric(at, "Test samples") == "30"


def test_data_page_says_what_is_wrong_with_a_dataset(data_page):
    at = _use(data_page, "hfdict")
    assert [e.value for e in at.error] and "holds a DatasetDict" in seen(at.error[0].value)
    at = _use(at, "bad/missing_image")
    assert "row 1: the image is missing" in seen(at.error[0].value)
    at = _use(at, "../elsewhere")
    assert "outside the data root" in seen(at.error[0].value)
