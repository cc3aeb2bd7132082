"""Text data selection (Section 6) on a tiny subset with the in-code hashing encoder: seconds, no downloads."""
import argparse
import json

import numpy as np
import pytest

from ogdash.cli import text as text_cli
from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data import text as text_data
from ogdash.experiments import textselect as ts
from ogdash.data.encoders import HashingEncoder

POS = ["a wonderful moving film", "great acting and a smart script", "funny warm and brilliant",
       "a delight from start to finish", "beautiful and clever storytelling", "superb touching performances"]
NEG = ["a dull boring mess", "terrible script and awful acting", "tedious lifeless and flat",
       "a waste of time", "clumsy stupid and bland", "painfully bad from the start"]


def tiny_corpus(n=160, seed=0):
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for i in range(n):
        label = i % 2
        pool = POS if label else NEG
        words = " ".join(rng.choice(pool, 2)) + f" review {i}"
        texts.append(words)
        y.append(label)
    return texts, np.array(y), ("rotten", "fresh")


@pytest.fixture
def splits():
    texts, y, classes = tiny_corpus()
    sp, note = text_data.split_texts("tiny", texts, y, classes, noise=0.2, seed=0, n_train=120, n_test=40)
    return text_data.encode_splits(sp, HashingEncoder(32))[0]


def test_rotten_tomatoes_loads_from_the_installed_package():
    path = text_data.rotten_tomatoes_path()
    assert path.name == "rotten_tomatoes_corpus_full.csv.bz2"
    texts, y, classes = text_data.load_rotten_tomatoes()
    assert classes == ("rotten", "fresh")
    assert len(texts) == len(set(texts)) > 10_000  # deduplicated fresh/rotten snippets
    assert set(np.unique(y)) == {0, 1}


def test_split_injects_noise_in_training_only():
    texts, y, classes = tiny_corpus()
    sp, note = text_data.split_texts("tiny", texts, y, classes, noise=0.25, seed=3, n_train=100, n_test=40)
    assert sp.train.n == 100 and sp.test.n == 40
    assert int(sp.train.noisy.sum()) == 25 and not sp.test.noisy.any()
    assert not set(sp.train.ids) & set(sp.test.ids)
    assert sp.train.kind == "text" and sp.train.texts[0] == texts[sp.train.ids[0]]
    again, _ = text_data.split_texts("tiny", texts, y, classes, noise=0.25, seed=3, n_train=100, n_test=40)
    assert np.array_equal(again.train.y, sp.train.y)  # seeded
    assert "25 mislabeled" in note
    with pytest.raises(OgdashError, match="ask for fewer"):
        text_data.split_texts("tiny", texts, y, classes, n_train=150, n_test=40)


def test_csv_with_and_without_true_labels(tmp_path):
    texts, y, _ = tiny_corpus(60)
    import pandas as pd

    names = np.where(y == 1, "pos", "neg")
    pd.DataFrame({"text": texts, "label": names}).to_csv(tmp_path / "a.csv", index=False)
    t, lab, truth, classes = text_data.load_text_csv(tmp_path / "a.csv")
    assert classes == ("neg", "pos") and truth is None and np.array_equal(lab, y)
    noisy = names.copy()
    noisy[:6] = np.where(noisy[:6] == "pos", "neg", "pos")
    pd.DataFrame({"text": texts, "label": noisy, "true_label": names}).to_csv(tmp_path / "b.csv", index=False)
    sp, note, _ = ts.load_text_splits(str(tmp_path / "b.csv"), encoder=HashingEncoder(16))
    assert "given noisy labels" in note
    assert int(sp.train.noisy.sum()) + int((sp.test.y != np.array([names[i] == "pos" for i in sp.test.ids])).sum()) <= 6
    pd.DataFrame({"words": texts}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(OgdashError, match="missing column"):
        text_data.load_text_csv(tmp_path / "c.csv")


def test_embeddings_are_cached_by_content(tmp_path):
    calls = []

    class Counting(HashingEncoder):
        def encode(self, texts, progress=None):
            calls.append(len(texts))
            return super().encode(texts, progress)

    cache, enc = DiskCache(tmp_path), Counting(16)
    X1, s1 = text_data.embed(enc, ["a b", "c d"], cache)
    X2, s2 = text_data.embed(enc, ["a b", "c d"], cache)
    assert calls == [2] and s2 == 0.0 and np.allclose(X1, X2)
    text_data.embed(enc, ["a b", "c e"], cache)
    assert calls == [2, 1]  # cached per text: only the new one is encoded
    assert np.allclose(np.linalg.norm(X1, axis=1), 1)


def test_kept_mask_keeps_the_lowest_scores():
    s = np.array([5.0, 1.0, 3.0, 0.0, 4.0, 2.0, 9.0, 8.0, 7.0, 6.0])
    kept = ts.kept_mask(s, 0.7)
    assert kept.sum() == 7 and not kept[[6, 7, 8]].any()


def test_pipeline_every_method(splits):
    r = ts.run_selection(splits, epochs=3, seeds=[0, 1], lissa_iterations=50)
    summary = r.summary()
    assert summary["method"].tolist() == [ts.ALL_ROW, ts.CLEAN_ROW, *ts.METHOD_KEYS]
    assert set(r.curves["epoch"]) == {1, 2, 3}
    assert len(r.curves) == (2 + len(ts.METHOD_KEYS)) * 2 * 3
    assert (summary.loc[summary["method"].isin(ts.METHOD_KEYS), "kept"] == 84).all()  # round(0.7 * 120)
    assert summary.set_index("method").loc[ts.CLEAN_ROW, "kept_mislabeled"] == 0
    assert ((summary["final"] >= 0) & (summary["final"] <= 100)).all()
    assert set(r.scores) == set(ts.METHOD_KEYS) and all(len(v) == 120 for v in r.scores.values())
    table = ts.format_summary(summary)
    assert table["Method"].tolist()[2:] == [m.label for m in ts.METHODS]
    # the same seed gives the same curve: runs on different subsets differ by their data only
    again = ts.run_selection(splits, methods=["og_l2"], epochs=3, seeds=[0], ceiling=False)
    a = r.curves.query("method == 'og_l2' and seed == 0")["accuracy"].to_numpy()
    assert np.allclose(again.curves.query("method == 'og_l2'")["accuracy"].to_numpy(), a)


def test_outlier_gradients_find_flipped_labels_on_separable_text(splits):
    # a separable toy corpus: flipped samples have the largest head gradients
    r = ts.run_selection(splits, methods=["og_l2", "random"], keep=0.7, epochs=15, seeds=[0], ceiling=False)
    rows = r.runs.set_index("method")
    assert rows.loc["og_l2", "kept_mislabeled"] < rows.loc["random", "kept_mislabeled"]


def test_mlp_head(splits):
    r = ts.run_selection(splits, methods=["og_iforest", "self_lissa"], epochs=2, seeds=[0], head="mlp",
                         lissa_iterations=20)
    assert len(r.summary()) == 4


@pytest.mark.parametrize("kw, match", [(dict(keep=1.2), "keep"), (dict(methods=["nope"]), "unknown method"),
                                       (dict(epochs=0), "epochs"), (dict(seeds=[]), "seed")])
def test_bad_inputs(splits, kw, match):
    with pytest.raises(OgdashError, match=match):
        ts.run_selection(splits, **kw)


def test_cli(tmp_path, capsys):
    import pandas as pd

    texts, y, _ = tiny_corpus(120)
    pd.DataFrame({"text": texts, "label": y}).to_csv(tmp_path / "t.csv", index=False)
    p = argparse.ArgumentParser()
    text_cli.add_textselect_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["textselect", "--data", str(tmp_path / "t.csv"), "--encoder", "hashing", "--epochs", "2",
                         "--seeds", "1", "--methods", "og_iforest,random", "--quiet", "--cache", str(tmp_path / "c")])
    out = text_cli.run_textselect(args)
    json.dumps(out, default=str)
    assert [r["method"] for r in out["rows"]] == [ts.ALL_ROW, ts.CLEAN_ROW, "og_iforest", "random"]
    assert len(out["mean_curves"]["random"]) == 2 and out["n_mislabeled"] == round(0.2 * out["n_train"])
    assert "Random" in text_cli.format_textselect(out)
    with pytest.raises(SystemExit):
        p.parse_args(["textselect", "--data", "x", "--methods", "bogus"])
    args.data = str(tmp_path / "missing.csv")
    with pytest.raises(OgdashError, match="neither"):
        text_cli.run_textselect(args)
