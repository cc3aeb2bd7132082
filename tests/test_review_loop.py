"""The review loop on a user's own data, in the library: sample identity from the source, the user's splits,
truth only when it is known, and exports that can be applied to the user's files."""
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ogdash.core.errors import OgdashError
from ogdash.data.dataset import make_dataset, split_off
from ogdash.data.files import load_file, load_splits, resolve_under
from ogdash.data.folders import load_folder_splits, load_image_folder
from ogdash.exports import apply_folder_changes, cleaned_csv, csv_bytes, folder_changes, with_sources
from ogdash.review import DecisionStore

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
FOLDER, FOLDER_TEST = SAMPLES / "digits_folder", SAMPLES / "digits_test"


def misfiled(file: str) -> pd.DataFrame:
    table = pd.read_csv(SAMPLES / "misfiled.csv", dtype=str)
    return table[table["file"] == file]


def test_image_folder_samples_keep_their_paths_and_no_truth_is_made_up():
    ds = load_image_folder(FOLDER)
    assert ds.sources[0] == "0/" + sorted(p.name for p in (FOLDER / "0").iterdir())[0]
    assert all((FOLDER / s).is_file() for s in ds.sources)
    assert not ds.truth_known and ds.noisy is None


def test_a_test_folder_means_every_training_image_is_scored():
    splits = load_folder_splits(FOLDER, 16, test=FOLDER_TEST)
    assert splits.train.n == sum(1 for _ in FOLDER.rglob("*.png"))
    assert splits.test.n == sum(1 for _ in FOLDER_TEST.rglob("*.png"))
    assert splits.val is None and not splits.train.truth_known
    assert set(misfiled("digits_folder")["path_or_id"]) <= set(splits.train.sources)


def test_without_a_test_folder_a_share_is_held_out_and_listed():
    splits = load_folder_splits(FOLDER, 16, test_share=0.25, seed=3)
    n = sum(1 for _ in FOLDER.rglob("*.png"))
    assert splits.test.n == round(0.25 * n) and splits.train.n + splits.test.n == n
    assert not set(splits.train.sources) & set(splits.test.sources)
    again = load_folder_splits(FOLDER, 16, test_share=0.25, seed=3)
    assert again.test.sources == splits.test.sources  # seeded


def test_injected_noise_is_the_only_known_truth():
    splits = load_folder_splits(FOLDER, 16, test=FOLDER_TEST, noise_rate=0.2, seed=0)
    assert splits.train.truth_known and 0.15 < splits.train.noisy.mean() < 0.25


def test_test_folder_with_an_unknown_class_is_refused(tmp_path):
    (tmp_path / "cat").mkdir()
    src = next((FOLDER_TEST / "0").iterdir())
    (tmp_path / "cat" / src.name).write_bytes(src.read_bytes())
    with pytest.raises(OgdashError, match="class folder"):
        load_folder_splits(FOLDER, 16, test=tmp_path)


def test_csv_ids_and_lines_and_feature_names():
    ds = load_file(SAMPLES / "digits.csv")
    table = pd.read_csv(SAMPLES / "digits.csv")
    assert ds.ids.tolist() == table["id"].tolist()
    assert ds.sources[0] == "line 2" and ds.ids[0] == table["id"][0]
    assert ds.feature_names == tuple(c for c in table.columns if c not in ("id", "label"))
    assert not ds.truth_known


def test_csv_without_id_uses_the_row_and_npz_the_index(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    ds = load_file(tmp_path / "t.csv")
    assert ds.ids.tolist() == [0, 1] and ds.sources == ("line 2", "line 3")
    np.savez(tmp_path / "t.npz", X=np.zeros((3, 2)), y=np.array([0, 1, 0]))
    assert load_file(tmp_path / "t.npz").sources == ("index 0", "index 1", "index 2")


def test_csv_with_a_bad_id_column_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("id,a,label\n1,2,0\n1,4,1\n")
    with pytest.raises(OgdashError, match="'id' column"):
        load_file(tmp_path / "t.csv")


def test_files_without_a_test_set_hold_out_a_share():
    splits = load_splits(SAMPLES / "digits.csv", None, test_share=0.2, seed=0)
    assert splits.train.n + splits.test.n == 400 and splits.test.n == 80
    assert not set(splits.train.ids.tolist()) & set(splits.test.ids.tolist())


def test_split_off_refuses_a_share_that_leaves_nothing():
    ds = load_file(SAMPLES / "digits_test.csv")
    with pytest.raises(OgdashError):
        split_off(ds, 0.001)


def test_an_empty_path_is_an_error_not_the_data_root(tmp_path):
    with pytest.raises(OgdashError, match="empty"):
        resolve_under(tmp_path, "  ")


def decided(store, ds, decisions):
    fp = ds.fingerprint()
    for sid, decision, new in decisions:
        store.record(fp, sid, decision, "ann", new_label=new)
    return store.current(fp)


def _relabel_one_remove_one(tmp_path):
    """digits.csv with two of its planted flips decided: the first relabelled to its true class, the second removed."""
    ds = load_splits(SAMPLES / "digits.csv", SAMPLES / "digits_test.csv").train
    flipped = misfiled("digits.csv")
    first, second = int(flipped["path_or_id"].iloc[0]), int(flipped["path_or_id"].iloc[1])
    current = decided(DecisionStore(tmp_path / "d.sqlite"), ds,
                      [(first, "relabel", int(flipped["true"].iloc[0])), (second, "remove", None)])
    return ds, flipped, first, second, current


def test_cleaned_csv_is_the_users_table_with_a_clean_label(tmp_path):
    ds, flipped, first, second, current = _relabel_one_remove_one(tmp_path)
    out = pd.read_csv(io.BytesIO(cleaned_csv(SAMPLES / "digits.csv", ds, current)))
    original = pd.read_csv(SAMPLES / "digits.csv")
    assert out.drop(columns=["decision", "clean_label"]).equals(original)
    row = out.set_index("id")
    assert row.loc[first, "clean_label"] == int(flipped["true"].iloc[0]) and row.loc[first, "decision"] == "relabel"
    assert pd.isna(row.loc[second, "clean_label"]) and row.loc[second, "decision"] == "remove"
    untouched = row.drop(index=[first, second])
    assert (untouched["clean_label"] == untouched["label"]).all()
    assert with_sources(current, ds)["source"].str.startswith("line ").all()


def test_cleaned_csv_keeps_every_byte_of_the_file_but_the_new_cells(tmp_path):
    """Issue #26 item 9: the export rewrote 219 of 455 rows (9 -> 9.0). Every line of the user's file is kept
    byte for byte; only ',decision,clean_label' is added at its end."""
    ds, flipped, first, second, current = _relabel_one_remove_one(tmp_path)
    before = (SAMPLES / "digits.csv").read_bytes().decode().splitlines(keepends=True)
    after = cleaned_csv(SAMPLES / "digits.csv", ds, current).decode().splitlines(keepends=True)
    assert len(after) == len(before)
    assert after[0] == before[0].rstrip("\n") + ",decision,clean_label\n"
    changed = []
    for old, new in zip(before[1:], after[1:]):
        assert new.startswith(old.rstrip("\n") + ","), (old, new)
        label = old.rstrip("\n").split(",")[-1]
        if new != old.rstrip("\n") + f",,{label}\n":
            changed.append(int(old.split(",")[0]))
    assert sorted(changed) == sorted([first, second])

    # a messier file: CRLF endings, a byte-order mark, quoted cells with commas and line breaks, 9.0 and 9
    messy = tmp_path / "messy.csv"
    body = ['text,label', '"Hello, world",9.0', '"two\r\nlines",9', 'plain,3', '"=SUM(A1)",3']
    messy.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(body).encode() + b"\r\n")
    texts = make_dataset("m", np.zeros((4, 1)), [9, 9, 3, 3], [str(i) for i in range(10)])
    current = decided(DecisionStore(tmp_path / "m.sqlite"), texts, [(1, "relabel", 4), (3, "remove", None)])
    out = cleaned_csv(messy, texts, current)
    assert out.startswith(b"\xef\xbb\xbf")
    expected = ['text,label,decision,clean_label', '"Hello, world",9.0,,9.0', '"two\r\nlines",9,relabel,4',
                'plain,3,,3', '"=SUM(A1)",3,remove,']
    assert out[3:].decode() == "\r\n".join(expected) + "\r\n"


def test_folder_changes_apply_to_a_corrected_copy(tmp_path):
    splits = load_folder_splits(FOLDER, 16, test=FOLDER_TEST)
    ds = splits.train
    wrong = misfiled("digits_folder")
    by_path = {s: int(i) for s, i in zip(ds.sources, ds.ids)}
    moves = [(by_path[p], "relabel", ds.classes.index(t)) for p, t in zip(wrong["path_or_id"][:3], wrong["true"][:3])]
    kept = by_path[ds.sources[0]]
    current = decided(DecisionStore(tmp_path / "d.sqlite"), ds,
                      moves + [(by_path[wrong["path_or_id"].iloc[3]], "remove", None), (kept, "keep", None)])
    changes = folder_changes(ds, current)
    assert list(changes.columns) == ["path", "given", "decision", "new_label"] and len(changes) == 5
    assert set(wrong["path_or_id"][:4]) <= set(changes["path"])
    path = tmp_path / "folder_changes.csv"
    path.write_bytes(csv_bytes(changes))

    out = tmp_path / "corrected"
    counts = apply_folder_changes(path, FOLDER, out)
    n = sum(1 for _ in FOLDER.rglob("*.png"))
    assert counts == {"copied": n - 4, "relabelled": 3, "removed": 1}
    for p, t in zip(wrong["path_or_id"][:3], wrong["true"][:3]):
        assert (out / t / Path(p).name).is_file() and not (out / p).exists()
    assert not (out / wrong["path_or_id"].iloc[3]).exists()
    assert sum(1 for _ in FOLDER.rglob("*.png")) == n  # the user's folder is untouched

    # the command line does the same, and refuses to write over what exists
    cli = [sys.executable, "-m", "ogdash", "apply", str(path), "--folder", str(FOLDER)]
    done = subprocess.run(cli + ["--out", str(tmp_path / "again"), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and json.loads(done.stdout)["relabelled"] == 3
    again = subprocess.run(cli + ["--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "not empty" in again.stderr


def test_folder_changes_that_leave_the_folder_are_refused(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("path,given,decision,new_label\n../outside.png,1,remove,\n")
    with pytest.raises(OgdashError, match="not an image inside"):
        apply_folder_changes(path, FOLDER, tmp_path / "out")


def test_csv_exports_never_start_a_formula():
    text = csv_bytes(pd.DataFrame({"reviewer": ["=HYPERLINK(1)", "ann", "-1+2", "@x"], "n": [-1, 2, 3, 4]})).decode()
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["reviewer"] for r in rows] == ["'=HYPERLINK(1)", "ann", "'-1+2", "'@x"]
    assert [r["n"] for r in rows] == ["-1", "2", "3", "4"]  # numbers stay numbers
