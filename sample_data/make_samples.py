"""(Re)generate sample_data/ from scikit-learn's bundled handwritten digits.

Run from the repository root:  python sample_data/make_samples.py

Everything is seeded (numpy default_rng(0)) and written without timestamps, so a
rerun reproduces the committed files byte for byte. The digits are the UCI
"Optical Recognition of Handwritten Digits" test set (CC BY 4.0), shipped
inside scikit-learn: no download.
"""
import csv
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent
# plausible confusions: the wrong class a deliberately mislabelled digit gets
CONFUSE = {0: 6, 1: 7, 2: 3, 3: 8, 4: 9, 5: 6, 6: 5, 7: 1, 8: 3, 9: 4}
N_FOLDER, N_FOLDER_TEST = 30, 10     # images per class
N_CSV, N_CSV_TEST = 400, 150         # rows
N_MISFILED, N_FLIPPED = 12, 20
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]  # the Parquet's ClassLabel


def write_png(path, pixels):
    """8x8 values 0..16 -> 32x32 8-bit grey PNG (nearest neighbour), no metadata."""
    img = np.kron(pixels, np.ones((4, 4))) * 255 / 16
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(img).astype(np.uint8)).save(path, format="PNG", compress_level=9)


def write_parquet(path, indices, labels, pixels):
    """A Hugging Face-style Parquet file (datasets' own writer): id, 8x8 PNG images, a ClassLabel with names."""
    import datasets

    def png(p):
        buf = io.BytesIO()
        Image.fromarray(np.round(p * 255 / 16).astype(np.uint8)).save(buf, format="PNG", compress_level=9)
        return {"bytes": buf.getvalue(), "path": None}

    features = datasets.Features({"id": datasets.Value("int64"), "image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=NAMES)})
    ds = datasets.Dataset.from_dict({"id": [int(i) for i in indices], "image": [png(pixels[i]) for i in indices],
                                     "label": [int(c) for c in labels]}, features=features)
    ds.to_parquet(str(path))


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main():
    rng = np.random.default_rng(0)
    d = load_digits()
    pixels, target = d.images.astype(int), d.target.astype(int)

    # per class: 30 images for the folder, 10 for the clean test folder; the rest feed the CSVs
    folder, folder_test, rest = [], [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(target == c))
        folder.append(np.sort(idx[:N_FOLDER]))
        folder_test += list(idx[N_FOLDER:N_FOLDER + N_FOLDER_TEST])
        rest += list(idx[N_FOLDER + N_FOLDER_TEST:])
    rest = rng.permutation(rest)
    csv_rows = np.sort(rest[:N_CSV])
    csv_test_rows = np.sort(rest[N_CSV:N_CSV + N_CSV_TEST])

    # misfile 12 folder images: one of every class, plus a second one of two classes
    classes = list(range(10)) + sorted(rng.choice(10, N_MISFILED - 10, replace=False).tolist())
    misfiled = {}
    for c in range(10):
        for i in rng.choice(folder[c], classes.count(c), replace=False):
            misfiled[int(i)] = CONFUSE[c]

    # flip 20 CSV labels: two rows of every class
    flipped = {}
    for c in range(10):
        for i in rng.choice(csv_rows[target[csv_rows] == c], N_FLIPPED // 10, replace=False):
            flipped[int(i)] = CONFUSE[c]

    for sub in ("digits_folder", "digits_test"):
        shutil.rmtree(OUT / sub, ignore_errors=True)
    for i in np.concatenate(folder):
        write_png(OUT / "digits_folder" / str(misfiled.get(int(i), target[i])) / f"digit_{i:04d}.png", pixels[i])
    for i in folder_test:
        write_png(OUT / "digits_test" / str(target[i]) / f"digit_{i:04d}.png", pixels[i])

    # the same images as the folders, as Parquet with a ClassLabel: the 12 misfiled keep their wrong class
    train_idx = np.concatenate(folder)
    write_parquet(OUT / "digits_images.parquet", train_idx, [misfiled.get(int(i), target[i]) for i in train_idx], pixels)
    write_parquet(OUT / "digits_images_test.parquet", folder_test, [target[i] for i in folder_test], pixels)

    header = ["id"] + [f"pixel_{k}" for k in range(64)] + ["label"]
    write_csv(OUT / "digits.csv", header,
              [[1000 + i, *pixels[i].ravel(), flipped.get(int(i), target[i])] for i in csv_rows])
    write_csv(OUT / "digits_test.csv", header,
              [[1000 + i, *pixels[i].ravel(), target[i]] for i in csv_test_rows])

    wrong = [("digits_folder", f"{g}/digit_{i:04d}.png", g, target[i]) for i, g in sorted(misfiled.items())]
    wrong += [("digits.csv", 1000 + i, g, target[i]) for i, g in sorted(flipped.items())]
    wrong += [("digits_images.parquet", i, g, target[i]) for i, g in sorted(misfiled.items())]
    write_csv(OUT / "misfiled.csv", ["file", "path_or_id", "given", "true"], wrong)
    print(f"{len(misfiled)} misfiled images, {len(flipped)} flipped CSV rows")
    for row in wrong:
        print(*row, sep=",")


if __name__ == "__main__":
    main()
