"""Tests for the decision store (ogdash.review)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ogdash.core.errors import OgdashError
from ogdash.review import DecisionStore

REPO = Path(__file__).resolve().parents[1]
DS = "fp-abc123"

# Child processes load ogdash.review without running ogdash/__init__.py, so they stay
# light whatever the package later re-exports (torch, sklearn, ...).
CHILD_PRELUDE = f"""
import sys, types, time, os
pkg = types.ModuleType("ogdash"); pkg.__path__ = [{str(REPO / "ogdash")!r}]
sys.modules["ogdash"] = pkg
from ogdash.review import DecisionStore
"""


def _child(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD_PRELUDE + code, *map(str, args)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"timed out waiting for {path.name}"
        time.sleep(0.01)


@pytest.fixture
def store(tmp_path):
    return DecisionStore(tmp_path / "cache" / "decisions.sqlite")


def test_record_current_history(store):
    store.record(DS, 3, "keep", "ana")
    store.record(DS, 7, "relabel", "ana", new_label=2, note="looks like a 2")
    store.record(DS, 3, "remove", "ben")  # later decision by another reviewer wins
    store.record("other-dataset", 3, "keep", "ana")

    cur = store.current(DS)
    assert list(cur.columns) == ["sample_id", "decision", "new_label", "reviewer", "timestamp", "note", "new_text"]
    assert cur["sample_id"].tolist() == [3, 7]
    assert cur["decision"].tolist() == ["remove", "relabel"]
    assert cur["reviewer"].tolist() == ["ben", "ana"]
    assert pd.isna(cur["new_label"].iloc[0]) and cur["new_label"].iloc[1] == 2
    assert cur["timestamp"].str.endswith("+00:00").all()

    hist = store.history(DS)
    assert len(hist) == 3
    assert store.history(DS, sample_id=3)["decision"].tolist() == ["keep", "remove"]
    assert store.current("other-dataset")["decision"].tolist() == ["keep"]
    assert store.current("never-seen").empty


def test_last_decision_wins_back_and_forth(store):
    store.record(DS, 1, "remove", "ana")
    store.record(DS, 1, "keep", "ben")
    store.record(DS, 1, "unsure", "ana")
    cur = store.current(DS)
    assert cur[["decision", "reviewer"]].values.tolist() == [["unsure", "ana"]]
    assert len(store.history(DS, 1)) == 3


@pytest.mark.parametrize("kwargs", [
    dict(decision="delete"),
    dict(decision="relabel"),                 # missing new_label
    dict(decision="relabel", new_label=-1),
    dict(decision="relabel", new_label=1.5),
    dict(decision="relabel", new_label="cat"),
    dict(decision="keep", new_label=3),       # new_label only with relabel
    dict(reviewer=""),
    dict(reviewer="   "),
    dict(sample_id="x"),
    dict(dataset=""),
])
def test_validation_errors(store, kwargs):
    args = dict(dataset=DS, sample_id=0, decision="keep", reviewer="ana") | kwargs
    with pytest.raises(OgdashError):
        store.record(**args)
    assert store.history(DS).empty


def test_record_many_validates_before_writing(store):
    with pytest.raises(OgdashError):
        store.record_many(DS, [{"sample_id": 1, "decision": "keep"},
                               {"sample_id": 2, "decision": "relabel"}], "ana")
    assert store.history(DS).empty
    assert store.record_many(DS, pd.DataFrame({"sample_id": [1, 2], "decision": ["keep", "relabel"],
                                               "new_label": [None, 4]}), "ana") == 2
    assert store.current(DS)["new_label"].tolist()[1] == 4


def test_decisions_survive_restart(tmp_path):
    path = tmp_path / "decisions.sqlite"
    DecisionStore(path).record(DS, 5, "relabel", "ana", new_label=1)
    again = DecisionStore(path)
    assert again.current(DS)[["sample_id", "decision", "new_label"]].values.tolist() == [[5, "relabel", 1]]


def test_corrupt_file_raises_and_is_kept(tmp_path):
    path = tmp_path / "decisions.sqlite"
    junk = b"this is not a database, it is someone's notes\n" * 200
    path.write_bytes(junk)
    with pytest.raises(OgdashError, match="not a readable decision store"):
        DecisionStore(path)
    assert path.read_bytes() == junk


def test_two_processes_save_at_once(tmp_path):
    path, go = tmp_path / "decisions.sqlite", tmp_path / "go"
    DecisionStore(path)  # create the file once, as the app would
    code = """
db, go, reviewer, ready = sys.argv[1:5]
store = DecisionStore(db)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(500):
    store.record("fp", i, "remove" if i % 2 else "keep", reviewer)
"""
    kids = [_child(code, path, go, who, tmp_path / f"ready-{who}") for who in ("ana", "ben")]
    for who in ("ana", "ben"):
        _wait_for(tmp_path / f"ready-{who}")
    go.touch()
    for kid in kids:
        out, err = kid.communicate(timeout=60)
        assert kid.returncode == 0, err
    hist = DecisionStore(path).history("fp")
    assert len(hist) == 1000
    assert hist.groupby("reviewer").size().to_dict() == {"ana": 500, "ben": 500}


def test_kill_during_bulk_save_keeps_batches_atomic(tmp_path):
    path, started = tmp_path / "decisions.sqlite", tmp_path / "started"
    batch = 5000
    code = """
db, started, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = DecisionStore(db)
rows = [{"sample_id": i, "decision": "relabel", "new_label": i % 10, "note": "bulk"} for i in range(batch)]
store.record_many("fp", rows, "bot")
open(started, "w").close()
while True:
    store.record_many("fp", rows, "bot")
"""
    kid = _child(code, path, started, batch)
    try:
        _wait_for(started)
        time.sleep(0.5)
    finally:
        os.kill(kid.pid, signal.SIGKILL)
        kid.communicate(timeout=10)
    assert kid.returncode == -signal.SIGKILL

    store = DecisionStore(path)
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n = len(store.history("fp"))
    assert n >= batch and n % batch == 0
    store.record("fp", 0, "keep", "ana")  # still writable
    assert len(store.history("fp")) == n + 1


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_export_import_round_trip(tmp_path, store, suffix):
    store.record(DS, 1, "keep", "ana")
    store.record(DS, 2, "relabel", "ana", new_label=0, note='says "zero", clearly')
    store.record(DS, 1, "remove", "ben")
    store.record_many(DS, [{"sample_id": 3, "decision": "unsure"}], "ben")
    out = store.export(DS, tmp_path / f"decisions{suffix}")

    fresh = DecisionStore(tmp_path / "fresh.sqlite")
    assert fresh.import_(out) == 4
    pd.testing.assert_frame_equal(fresh.current(DS), store.current(DS))
    pd.testing.assert_frame_equal(fresh.history(DS), store.history(DS))
    assert fresh.import_(out) == 0  # importing twice changes nothing
    pd.testing.assert_frame_equal(fresh.current(DS), store.current(DS))

    assert fresh.import_(out, dataset="renamed") == 4
    assert fresh.current("renamed")["decision"].tolist() == ["remove", "relabel", "unsure"]


def test_import_rejects_bad_files(tmp_path, store):
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,decision\n1,keep\n")
    with pytest.raises(OgdashError):
        store.import_(bad)
    with pytest.raises(OgdashError):
        store.import_(tmp_path / "decisions.txt")
    with pytest.raises(OgdashError):
        store.export(DS, tmp_path / "decisions.parquet")


def test_cleaned_labels(tmp_path, store):
    ids, given = [10, 11, 12, 13, 14], [0, 1, 2, 1, 0]
    store.record(DS, 10, "relabel", "ana", new_label=5)
    store.record(DS, 11, "remove", "ana")
    store.record(DS, 12, "unsure", "ana")
    store.record(DS, 13, "remove", "ana")
    store.record(DS, 13, "keep", "ben")   # overrides the removal
    store.record(DS, 99, "remove", "ana")  # not among ids: ignored

    out = store.cleaned_labels(DS, ids, given)
    assert list(out.columns) == ["id", "given_label", "decision", "label"]
    assert out["id"].tolist() == ids
    assert out["given_label"].tolist() == given
    assert out["decision"].fillna("").tolist() == ["relabel", "remove", "unsure", "keep", ""]
    assert out["label"].astype(object).where(out["label"].notna(), None).tolist() == [5, None, 2, 1, 0]

    kept = store.cleaned_labels(DS, ids, given, drop_removed=True)
    assert kept["id"].tolist() == [10, 12, 13, 14]
    assert kept["label"].tolist() == [5, 2, 1, 0]

    for suffix in (".csv", ".json"):
        path = store.export_cleaned(DS, ids, given, tmp_path / f"clean{suffix}")
        back = pd.read_csv(path) if suffix == ".csv" else pd.read_json(path)
        assert back["id"].tolist() == ids
        assert back["label"].isna().tolist() == [False, True, False, False, False]

    with pytest.raises(OgdashError):
        store.cleaned_labels(DS, [1, 2], [0])
    with pytest.raises(OgdashError):
        store.cleaned_labels(DS, [1, 1], [0, 0])


def test_no_decisions_means_given_labels(store):
    out = store.cleaned_labels(DS, [0, 1], [3, 4])
    assert out["label"].tolist() == [3, 4]
    assert out["decision"].isna().all()


def test_by_reviewer_and_conflicts(store):
    store.record(DS, 1, "remove", "ana")
    store.record(DS, 1, "keep", "ben")  # ana and ben disagree on 1
    store.record(DS, 2, "relabel", "ana", new_label=3)
    store.record(DS, 2, "relabel", "ben", new_label=4)  # same decision, different class: a conflict
    store.record(DS, 3, "keep", "ana")
    store.record(DS, 3, "keep", "ben")  # agree
    store.record(DS, 4, "remove", "ana")
    store.record(DS, 4, "keep", "ben")
    store.record(DS, 4, "keep", "ana")  # ana changed her mind: agreed again
    store.record(DS, 5, "unsure", "ana")  # one reviewer only
    store.record("other", 1, "relabel", "cy", new_label=1)

    mine = store.by_reviewer(DS)
    assert list(mine.columns) == list(store.history(DS).columns)
    assert list(zip(mine["sample_id"], mine["reviewer"], mine["decision"])) == [
        (1, "ana", "remove"), (1, "ben", "keep"), (2, "ana", "relabel"), (2, "ben", "relabel"),
        (3, "ana", "keep"), (3, "ben", "keep"), (4, "ana", "keep"), (4, "ben", "keep"), (5, "ana", "unsure")]

    clash = store.conflicts(DS)
    assert list(clash.columns) == list(mine.columns)
    assert list(zip(clash["sample_id"], clash["reviewer"])) == [(1, "ana"), (1, "ben"), (2, "ana"), (2, "ben")]
    assert clash["new_label"].tolist()[2:] == [3, 4]
    assert store.conflicts("other").empty and store.conflicts("nothing-yet").empty


def test_undo_withdraws_my_last_action_and_the_sample_falls_back(store):
    store.record(DS, 1, "keep", "ann")
    store.record(DS, 1, "remove", "bob")
    store.record_many(DS, [{"sample_id": 2, "decision": "keep"}, {"sample_id": 3, "decision": "unsure"}], "ann")
    assert store.last_action(DS, "ann")["sample_id"].tolist() == [2, 3]  # a bulk action is one action
    assert store.undo_last(DS, "ann")["sample_id"].tolist() == [2, 3]
    assert store.current(DS)[["sample_id", "decision", "reviewer"]].values.tolist() == [[1, "remove", "bob"]]
    assert len(store.conflicts(DS)) == 2  # ann keep vs bob remove
    assert store.undo(DS, 1, "bob")["decision"].tolist() == ["remove"]
    assert store.current(DS)[["sample_id", "decision", "reviewer"]].values.tolist() == [[1, "keep", "ann"]]
    assert store.conflicts(DS).empty and store.by_reviewer(DS)["reviewer"].tolist() == ["ann"]
    assert store.undo(DS, 1, "bob").empty  # bob has nothing left there, and never withdraws ann's
    assert store.undo_last(DS, "ann")["sample_id"].tolist() == [1]  # the next undo walks further back
    assert store.current(DS).empty and store.history(DS).empty and store.undo_last(DS, "ann").empty
    full = store.history(DS, with_undone=True)
    assert full["undone"].tolist() == [True] * 4 and full["sample_id"].tolist() == [1, 1, 2, 3]
    store.record(DS, 2, "relabel", "ann", new_label=4)  # deciding again after an undo
    assert store.history(DS, sample_ids=[2, 99])[["decision", "new_label"]].values.tolist() == [["relabel", 4]]
    assert store.history(DS, sample_ids=[]).empty


def test_undo_in_a_store_written_before_receive_times(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:  # the schema before decisions recorded when they were received
        con.executescript("CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, "
                          "sample_id INTEGER NOT NULL, decision TEXT NOT NULL, new_label INTEGER, reviewer TEXT "
                          "NOT NULL, note TEXT NOT NULL DEFAULT '', timestamp TEXT NOT NULL);")
        con.executemany("INSERT INTO decisions (dataset, sample_id, decision, reviewer, timestamp) VALUES "
                        "(?, ?, ?, ?, ?)", [(DS, 1, "keep", "ann", "2025-01-01T00:00:00+00:00"),
                                            (DS, 2, "keep", "ann", "2025-01-01T00:00:01+00:00")])
    store = DecisionStore(path)
    assert store.undo_last(DS, "ann")["sample_id"].tolist() == [2]  # one old row at a time, never all of them
    assert store.current(DS)["sample_id"].tolist() == [1]
def test_edit_decisions_carry_a_new_text(store, tmp_path):
    """An edit (a corrected completion of a fine-tuning example) stores its text, exports and imports it back."""
    store.record(DS, 4, "edit", "ana", new_text=" Answer: 42")
    store.record_many(DS, [{"sample_id": 5, "decision": "edit", "new_text": "fixed"},
                           {"sample_id": 6, "decision": "remove"}], "ben")
    cur = store.current(DS)
    assert cur[["sample_id", "decision"]].values.tolist() == [[4, "edit"], [5, "edit"], [6, "remove"]]
    assert cur["new_text"].tolist()[:2] == [" Answer: 42", "fixed"] and pd.isna(cur["new_text"].iloc[2])
    for bad in (dict(decision="edit"), dict(decision="edit", new_text="  "), dict(decision="keep", new_text="x")):
        with pytest.raises(OgdashError, match="new_text"):
            store.record(DS, 1, reviewer="ana", **bad)
    store.record(DS, 4, "edit", "ben", new_text=" Answer: 41")  # another text for the same example: a conflict
    assert set(store.conflicts(DS)["reviewer"]) == {"ana", "ben"}
    for suffix in ("csv", "json"):
        out = store.export(DS, tmp_path / f"d.{suffix}")
        other = DecisionStore(tmp_path / f"other_{suffix}.sqlite")
        assert other.import_(out) == 4 and other.import_(out) == 0
        assert other.current(DS)["new_text"].tolist()[:2] == [" Answer: 41", "fixed"]


def test_a_store_from_before_edits_gains_the_column_and_keeps_its_rows(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript("""CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL,
            sample_id INTEGER NOT NULL, decision TEXT NOT NULL, new_label INTEGER, reviewer TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '', timestamp TEXT NOT NULL);""")
        con.execute("INSERT INTO decisions (dataset, sample_id, decision, reviewer, timestamp) "
                    "VALUES ('ds', 1, 'remove', 'ana', '2026-01-01T00:00:00+00:00')")
    store = DecisionStore(path)
    store.record("ds", 2, "edit", "ana", new_text="better")
    assert store.current("ds")[["sample_id", "decision"]].values.tolist() == [[1, "remove"], [2, "edit"]]
