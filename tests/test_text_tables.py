"""Tables of texts (issue #28): CSV/TSV/Parquet/dataset folders with a text and a label column, through the one
DataSpec and Scan; encoders (TF-IDF fitted on the training texts, a local safetensors folder); the CLI; the
cleaned-CSV export; Trim & retrain; the sample data. The tiny hashing encoder keeps most tests to seconds."""
from __future__ import annotations

import csv
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data.encoders import (
    LocalEncoder,
    MiniLMEncoder,
    TfidfEncoder,
    _minilm_tokenizer,
    tiny_bert,
)
from ogdash.data.spec import DataSpec
from ogdash.data.text_tables import is_text_table
from ogdash.exports import cleaned_csv
from ogdash.pipeline import Scan, ScanSettings
from ogdash.review import DecisionStore

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
GOOD = ["a wonderful moving film", "great acting and a smart script", "funny warm and brilliant",
        "a delight from start to finish", "beautiful clever storytelling", "superb touching performances"]
BAD = ["a dull boring mess", "terrible script and awful acting", "tedious lifeless and flat",
       "a waste of time", "clumsy stupid and bland", "painfully bad from the start"]


def reviews(n: int, seed: int = 0, start: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(start, start + n):
        good = i % 2 == 0
        texts.append(" ".join(rng.choice(GOOD if good else BAD, 2)) + f" (review {i})")
        labels.append("pos" if good else "neg")
    return texts, labels


def write_csv(path: Path, header, rows, sep=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=sep, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path):
    texts, labels = reviews(60)
    train = write_csv(tmp_path / "train.csv", ["text", "label"], zip(texts, labels))
    texts, labels = reviews(30, seed=1, start=100)
    test = write_csv(tmp_path / "test.csv", ["text", "label"], zip(texts, labels))
    return train, test


def hashing(train, test=None, **kw) -> DataSpec:
    return DataSpec.from_paths(train, test, encoder="hashing", **kw)


# ---------------------------------------------------------------- reading

def test_a_text_csv_is_texts_with_named_classes_lines_and_notes(files):
    train, test = files
    assert is_text_table(train) and not is_text_table(SAMPLES / "digits.csv")
    splits = hashing(train, test).load()
    tr = splits.train
    assert tr.kind == "text" and tr.X.shape == (60, 64) and splits.test.X.shape == (30, 64)
    assert tr.classes == ("neg", "pos")  # names in sorted order, shown in the notes
    assert tr.texts[0].endswith("(review 0)") and tr.source(0) == "line 2" and tr.source(59) == "line 61"
    assert tr.ids.tolist() == list(range(60))  # the row number: cleaned_csv matches rows by it
    assert tr.y[0] == 1 and tr.y[1] == 0
    assert any("neg = 0, pos = 1" in n for n in splits.notes)
    assert any("hashing-bow-64" in n for n in splits.notes)


def test_tsv_a_named_text_column_an_id_column_and_class_indices(tmp_path):
    texts, labels = reviews(40)
    rows = [(1000 + i, t, int(lab == "pos")) for i, (t, lab) in enumerate(zip(texts, labels))]
    path = write_csv(tmp_path / "t.tsv", ["id", "review", "label"], rows, sep="\t")
    with pytest.raises(OgdashError, match="no text column 'text'.*--text-column"):
        hashing(path).load()
    splits = hashing(path, text_column="review").load()
    tr = splits.train
    assert tr.classes == ("0", "1") and not any("sorted order" in n for n in splits.notes)
    assert set(tr.ids.tolist()) <= set(range(1000, 1040)) and splits.test.n == 8  # 20% held out, not scored
    assert tr.source(0).startswith("line ")


def test_parquet_and_a_saved_dataset_with_a_classlabel(tmp_path):
    datasets = pytest.importorskip("datasets")
    texts, labels = reviews(40)
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["pos", "neg"])})
    ds = datasets.Dataset.from_dict({"text": texts, "label": [0 if lab == "pos" else 1 for lab in labels]},
                                    features=features)
    ds.to_parquet(str(tmp_path / "t.parquet"))
    ds.save_to_disk(str(tmp_path / "t_hf"))
    for path in (tmp_path / "t.parquet", tmp_path / "t_hf"):
        assert is_text_table(path)
        splits = hashing(path, path).load()
        tr = splits.train
        assert tr.kind == "text" and tr.classes == ("pos", "neg")  # the ClassLabel's own order
        assert tr.source(3) == "row 3" and tr.texts[3] == texts[3] and tr.y[3] == (labels[3] == "neg")


def test_bad_text_tables_say_what_is_wrong_in_one_line(tmp_path, files, monkeypatch):
    train, _ = files
    texts, labels = reviews(20)
    cases = {
        "empty": (["text", "label"], [(t if i != 4 else "  ", lab) for i, (t, lab) in enumerate(zip(texts, labels))],
                  r"1 empty text\(s\) in column 'text' \(the first at line 6\)"),
        "no_label": (["text", "label"], [(t, lab if i != 2 else "") for i, (t, lab) in enumerate(zip(texts, labels))],
                     r"1 row\(s\) have no label \(the first at line 4\)"),
        "no_label_column": (["text", "target"], zip(texts, labels), r"missing the 'label' column"),
    }
    for name, (header, rows, needle) in cases.items():
        with pytest.raises(OgdashError, match=needle) as err:
            hashing(write_csv(tmp_path / f"{name}.csv", header, rows)).load()
        assert "\n" not in str(err.value)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"text,label\n" + "".join(f"caf\xe9 {t},{lab}\n" for t, lab in zip(texts, labels))
                      .encode("latin-1"))
    with pytest.raises(OgdashError, match="not UTF-8"):
        hashing(latin).load()
    unseen = write_csv(tmp_path / "unseen.csv", ["text", "label"], [(t, "meh" if i == 3 else lab) for i, (t, lab)
                                                                    in enumerate(zip(texts, labels))])
    with pytest.raises(OgdashError, match=r"'meh' \(at line 5\) is not a class of the training file \(neg, pos\)"):
        hashing(train, unseen).load()
    with pytest.raises(OgdashError, match="has no text column"):  # a text setting on a numeric table
        DataSpec.from_paths(SAMPLES / "digits.csv", encoder="tfidf").load()
    monkeypatch.setenv("OGDASH_MAX_ELEMENTS", "1000")
    with pytest.raises(OgdashError, match="OGDASH_MAX_ELEMENTS"):  # refused before it is parsed
        hashing(train).load()


def test_texts_over_the_length_cap_are_cut_with_a_note(files, monkeypatch):
    train, test = files
    monkeypatch.setenv("OGDASH_MAX_TEXT_CHARS", "25")
    splits = hashing(train, test).load()
    assert max(map(len, splits.train.texts)) == 25
    note = next(n for n in splits.notes if "OGDASH_MAX_TEXT_CHARS" in n)
    assert "train.csv: 60 text(s) longer than 25 characters were cut" in note and "the first at line 2" in note


# ---------------------------------------------------------------- the data choice

def test_the_data_choice_round_trips_through_a_link(files, tmp_path):
    train, test = files
    spec = DataSpec("files", train=str(train), test=str(test), text_column="text", encoder="tfidf")
    assert DataSpec.from_dict(spec.to_dict(), tmp_path) == spec
    assert spec.texts and not DataSpec("files", train=str(SAMPLES / "digits.csv")).texts
    assert "encoder" not in DataSpec("files", train="x.csv").to_dict()  # a numeric table's link names no encoder
    with pytest.raises(OgdashError, match="outside the data root"):  # an encoder folder from a link: under the root
        DataSpec.from_dict({**spec.to_dict(), "encoder": "/etc"}, tmp_path)
    with pytest.raises(OgdashError, match="not a setting of source builtin"):
        DataSpec.from_dict({"source": "builtin", "name": "digits", "encoder": "tfidf"})


# ---------------------------------------------------------------- encoders

def test_tfidf_is_fitted_on_the_training_texts_only_and_cached_per_corpus(files, tmp_path):
    train, test = files
    cache = DiskCache(tmp_path / "cache")
    spec = DataSpec.from_paths(train, test, encoder="tfidf")
    first = spec.load(cache)
    tr, te = first.train, first.test
    enc = TfidfEncoder(tr.texts)
    vocabulary = enc._fit()[0].vocabulary_
    assert "100" not in vocabulary and "review" in vocabulary  # test texts' words (review 100...) never fitted
    assert np.allclose(enc.encode(te.texts), te.X, atol=1e-5)
    again = spec.load(cache)
    assert any("from the cache" in n for n in again.notes)  # embedded once per text and training corpus
    other = DataSpec.from_paths(train, encoder="tfidf").load(cache)  # a fifth held out: another training corpus
    assert TfidfEncoder(other.train.texts).name != enc.name


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    """A sentence-transformers-style folder: a tiny random BERT saved as safetensors, with CLS pooling."""
    folder = tmp_path_factory.mktemp("encoders") / "my_encoder"
    tok = _minilm_tokenizer(MiniLMEncoder.folder())
    tiny_bert(tok).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    return folder


def test_a_local_encoder_folder_from_safetensors(files, encoder_folder):
    train, test = files
    splits = DataSpec.from_paths(train, test, encoder=str(encoder_folder)).load()
    assert splits.train.X.shape == (60, 32)
    enc = LocalEncoder(encoder_folder)
    assert enc.pooling == "cls" and not enc.normalize and enc.name.startswith("local-my_encoder-cls")
    assert np.allclose(enc.encode(list(splits.test.texts)), splits.test.X, atol=1e-5)
    root = Path(os.path.commonpath([train, encoder_folder]))  # a link's paths: under the data root
    spec = DataSpec.from_dict({"source": "files", "train": str(train.relative_to(root)),
                               "encoder": str(encoder_folder.relative_to(root))}, root)
    assert spec.encoder == str(encoder_folder.resolve()) and spec.load().train.X.shape[1] == 32


class Payload:
    """A pickle that would leave a marker file if anything ever unpickled it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_or_missing_encoders_are_refused_never_run_or_downloaded(files, tmp_path):
    train, _ = files
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Payload(tmp_path / "pwned")}))
    with pytest.raises(OgdashError, match=r"no \.safetensors weights \(it holds pytorch_model\.bin, pickled"):
        DataSpec.from_paths(train, encoder=str(folder)).load()
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(OgdashError, match="never downloads"):
        DataSpec.from_paths(train, encoder="sentence-transformers/all-mpnet-base-v2").load()


# ---------------------------------------------------------------- the scan, the CLI, exports and retraining

def test_the_cli_scans_a_text_csv_and_names_each_line(files, tmp_path, capsys):
    from ogdash.cli.main import main

    train, test = files
    out = tmp_path / "scores.csv"
    code = main(["scan", "--train", str(train), "--test", str(test), "--model", "logreg", "--budget", "auto",
                 "--out", str(out), "--json", "--encoder", "hashing", "--epochs", "5", "--no-cache"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_train"] == 60 and result["classes"] == ["neg", "pos"]
    assert any("neg = 0, pos = 1" in n for n in result["notes"])
    df = pd.read_csv(out)
    assert df["source"].tolist()[:2] == ["line 2", "line 3"] and df["text"].iloc[0].endswith("(review 0)")
    assert set(df["given_class"]) == {"neg", "pos"}
    code = main(["scan", "--train", str(train), "--model", "logreg", "--text-column", "body", "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "no text column 'body'" in err and len(err.splitlines()) == 1


def test_the_pipeline_scores_texts_and_the_export_keeps_the_file(files, tmp_path):
    train, test = files
    spec = hashing(train, test)
    scan = Scan(spec, "logreg", ScanSettings(budget=0.1))
    res = scan.result()
    assert len(res.scores) == 60 and res.flags.sum() == 6 and res.grads.acts.shape == (60, 64)
    ds = scan.train
    store = DecisionStore(tmp_path / "d.sqlite")
    store.record(ds.fingerprint(), 3, "relabel", "ann", new_label=0)
    store.record(ds.fingerprint(), 5, "remove", "ann")
    out = cleaned_csv(train, ds, store.current(ds.fingerprint())).decode().splitlines()
    before = train.read_text().splitlines()
    assert out[0] == "text,label,decision,clean_label"
    assert out[4] == before[4] + ",relabel,neg" and out[6] == before[6] + ",remove,"
    assert out[2] == before[2] + ",," + before[2].rsplit(",", 1)[1]


def test_trim_and_retrain_on_texts(files):
    from ogdash.models import ModelSpec
    from ogdash.retrain import compare, fixes_from_flags

    train, test = files
    spec = hashing(train, test)
    scan = Scan(spec, ModelSpec("mlp", epochs=5), ScanSettings(budget=0.1))
    res = scan.result()
    P = scan.probabilities()
    fixes = fixes_from_flags(scan.train, res.flags, P.argmax(1), P.max(1), actions=("remove", "relabel"))
    c = compare(scan.splits(), ModelSpec("mlp", epochs=5), fixes, [0])
    labels = [r["label"] for r in c.to_rows()]
    assert len(labels) >= 3 and all(0 <= r["accuracy_mean"] <= 1 for r in c.to_rows())


# ---------------------------------------------------------------- the sample data

def test_the_sample_reviews_and_their_planted_flips():
    flipped = pd.read_csv(SAMPLES / "reviews_flipped.csv")
    table = pd.read_csv(SAMPLES / "reviews.csv", dtype=str, keep_default_na=False)
    assert len(table) == 600 and len(flipped) == 36 and set(table["label"]) == {"fresh", "plot", "rotten"}
    assert (flipped["given"] != flipped["true"]).all()
    rows = [int(s.split()[1]) - 2 for s in flipped["path_or_id"]]  # "line N": the header is line 1
    assert table["label"].iloc[rows].tolist() == flipped["given"].tolist()
    splits = DataSpec.from_paths(SAMPLES / "reviews.csv", SAMPLES / "reviews_test.csv", encoder="hashing").load()
    assert splits.train.n == 600 and splits.test.n == 200
    assert [splits.train.source(r) for r in rows] == flipped["path_or_id"].tolist()


# ---------------------------------------------------------------- the pages

def test_a_text_csv_through_the_data_page_gradient_space_and_review(files, monkeypatch):
    """Data page (typed path, text column, TF-IDF) -> a head on the embeddings -> gradients -> quote cards,
    a decision and the byte-for-byte export of the user's file."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    train, _ = files
    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(train.parent))
    monkeypatch.setenv("OGDASH_DECISIONS", str(train.parent / "decisions.sqlite"))
    monkeypatch.setenv("OGDASH_CACHE", str(train.parent / "cache"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["model_config"] = {"kind": "cnn", "seed": 0}  # a model texts cannot take: replaced
    at.run()
    at.switch_page("views/data.py").run()
    next(w for w in at.text_input if w.label == "…or training path").set_value("train.csv")
    next(w for w in at.text_input if w.label == "…or test path").set_value("test.csv")
    next(w for w in at.text_input if w.label == "Text column (tables of texts)").set_value("text")
    next(w for w in at.selectbox if w.label == "Encoder (tables of texts)").set_value("tfidf")
    next(b for b in at.button if b.label == "Use these files").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    spec = at.session_state["data_spec"]
    assert (spec.text_column, spec.encoder, spec.texts) == ("text", "tfidf", True)
    assert json.loads(at.query_params["data"][0] if isinstance(at.query_params["data"], list)
                      else at.query_params["data"])["encoder"] == "tfidf"  # the link keeps the text settings
    captions = re.sub(r"\\([^\w\s]|_)", r"\1", " ".join(c.value for c in at.caption))  # escaped Markdown, as read
    assert "neg = 0, pos = 1" in captions and "tfidf-lsa" in captions
    shown = at.dataframe[0].value
    assert list(shown.columns) == ["source", "label", "text"] and shown["source"].iloc[0] == "line 2"
    arch = next(w for w in at.selectbox if w.label == "Architecture")
    assert arch.options == ["Logistic regression", "MLP"] and arch.value == "logreg"
    next(b for b in at.button if b.label == "Train model").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.switch_page("views/gradient_space.py").run()
    next(b for b in at.button if b.label == "Extract gradients").click().run()
    assert not at.exception, at.exception
    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    quotes = [m.value for m in at.markdown if m.value.startswith("> ")]
    assert quotes and "review" in quotes[0]
    next(w for w in at.text_input if w.label == "Reviewer name").set_value("ann").run()
    remove = [b for b in at.button if b.key and b.key.startswith("remove_")]
    remove[0].click().run()
    assert not at.exception and next(m for m in at.metric if m.label == "remove").value == "1"
    assert any(b.label == "Your CSV with clean_label" for b in at.get("download_button"))
