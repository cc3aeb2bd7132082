"""The decision store: what people decided about flagged training samples.

Conventions
-----------
- One SQLite file (WAL mode) holds every decision ever saved, append-only. A row is
  keyed by dataset fingerprint (str), sample id (int, the stable id from loading to
  export) and reviewer (str), with a UTC timestamp (ISO-8601, microseconds, so text
  order is time order).
- Decisions are ``keep``, ``remove``, ``relabel`` (with ``new_label``, a class index
  >= 0, below the class count where the caller knows it), ``unsure`` and ``edit`` (with
  ``new_text``, a corrected text such as a fine-tuning example's completion;
  ``ogdash.experiments.llm_review``). The *current* decision for a sample is the latest one
  across reviewers; equal times are broken by insertion order.
- "Latest" is the server's time: each row also records when this store received it
  (``received``). A decision made here is stamped then; an imported one keeps the time its
  file claims as data (``timestamp``) but ranks at the earlier of that claim and its
  receipt, so a file dated ahead (within ``CLOCK_SKEW``) never outranks a decision made
  after the import, and an old import never outranks the decisions made before it.
- Reviewer names are one line of printable text (no control characters: a carriage
  return in a name would start a new line in a spreadsheet). An import by a signed-in
  person (``importer``) records that person as the reviewer of every row; the name the
  file gives is kept in the note.
- Each operation opens its own short-lived connection and writes in one short
  ``BEGIN IMMEDIATE`` transaction with a 30 s busy timeout, so Streamlit reruns
  (threads) and several processes can save at once. ``record_many`` is atomic.
- Only explicit human decisions change labels: ``keep``, ``unsure`` and undecided
  samples keep their given label.
- Several reviewers may decide the same sample; :meth:`DecisionStore.by_reviewer` keeps each
  one's latest and :meth:`DecisionStore.conflicts` lists the samples where those differ.
- Undo never deletes: a reviewer withdraws their own decisions (their last action, or their
  latest decision on one sample) by adding rows to a second append-only table, ``undone``.
  Every reading skips withdrawn decisions, so the sample falls back to the decision before
  (anyone's) or to undecided; ``history(with_undone=True)`` still shows them, marked.
- Imports never reorder history: a row dated in the future (beyond ``CLOCK_SKEW``)
  would outrank every decision made until then, so the whole file is refused; sample
  ids and labels must fit SQLite's 64-bit integers.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import operator
import os
import sqlite3
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ogdash.core.errors import OgdashError

DECISIONS = ("keep", "remove", "relabel", "unsure", "edit")
CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of this machine's clock an imported timestamp may be


def default_store_path() -> Path:
    """Where decisions live unless told otherwise: ``$OGDASH_DECISIONS``, else ~/.local/share/ogdash/decisions.sqlite.

    Apart from the cache, so clearing or moving the cache keeps every decision.
    """
    return Path(os.environ.get("OGDASH_DECISIONS") or Path.home() / ".local" / "share" / "ogdash" / "decisions.sqlite")

_INT64 = (-(2**63), 2**63 - 1)
_FIELDS = ["dataset", "sample_id", "decision", "new_label", "reviewer", "timestamp", "note", "new_text"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL, sample_id INTEGER NOT NULL, decision TEXT NOT NULL,
    new_label INTEGER, reviewer TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
    timestamp TEXT NOT NULL, new_text TEXT);
CREATE INDEX IF NOT EXISTS decisions_by_sample ON decisions (dataset, sample_id);
CREATE TABLE IF NOT EXISTS undone (
    id INTEGER PRIMARY KEY AUTOINCREMENT, decision INTEGER NOT NULL UNIQUE, reviewer TEXT NOT NULL,
    timestamp TEXT NOT NULL);
"""
_STANDING = "id NOT IN (SELECT decision FROM undone)"  # decisions nobody withdrew
# One action: the rows one write saved share their receive time (rows from before ``received`` are one each).
_ACTION = "COALESCE(received, '#' || id)"
# The time a decision ranks at: the time it claims, but never later than when this store received it
# (``received`` is NULL in stores written before it existed: then the claimed time, as before).
_RANK = "MIN(timestamp, COALESCE(received, timestamp))"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _missing(value) -> bool:
    return value is None or value is pd.NA or value == "" or (isinstance(value, float) and math.isnan(value))


def _as_int(value, what: str) -> int:
    number = _whole(value, what)
    if not _INT64[0] <= number <= _INT64[1]:
        raise OgdashError(f"{what} {_short(value)} is out of range; pass a whole number of at most 19 digits.")
    return number


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(value, what: str) -> int:
    if isinstance(value, bool):
        raise OgdashError(f"{what} must be an integer, not {value!r}; pass a whole number.")
    try:
        return operator.index(value)
    except TypeError:
        pass
    try:  # CSV text and whole floats such as "3" or 3.0
        number = float(value)
        if number.is_integer():
            return int(number)
    except (TypeError, ValueError, OverflowError):
        pass
    raise OgdashError(f"{what} must be an integer, not {_short(value)}; pass a whole number.")


def _imported_stamp(value, row: int, name: str, now: datetime) -> str:
    """An imported timestamp as UTC ISO-8601 text; refused when unreadable, out of range or in the future."""
    try:
        stamp = datetime.fromisoformat(str(value))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        stamp = stamp.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # 9999-12-31T23:59:59-05:00 overflows on the way to UTC
        raise OgdashError(f"Row {row} of {name} has a bad timestamp; use ISO-8601 within years 1..9999.") from None
    if stamp > now + CLOCK_SKEW:
        raise OgdashError(f"Row {row} of {name} is dated {stamp:%Y-%m-%d %H:%M} UTC, in the future; it would outrank "
                          "every later decision, so nothing was imported. Fix the clock that wrote it, or the date.")
    return stamp.isoformat(timespec="microseconds")


def check_reviewer(name) -> str:
    """A reviewer name, stripped: one line of printable text, at most 200 characters; OgdashError says why not."""
    if not isinstance(name, str) or not name.strip():
        raise OgdashError("The reviewer name is empty; enter who made this decision.")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise OgdashError("The reviewer name holds a control character (a line break, tab or similar); type "
                          "the name on one line.")
    if len(name.strip()) > 200:
        raise OgdashError("The reviewer name is longer than 200 characters; give a shorter name.")
    return name.strip()


def _validate(sample_id, decision, reviewer, new_label, note, n_classes: int | None = None, new_text=None) -> tuple:
    """Check one decision and return it as (sample_id, decision, new_label, reviewer, note, new_text)."""
    if decision not in DECISIONS:
        raise OgdashError(f"Unknown decision {_short(decision)}; use one of {', '.join(DECISIONS)}.")
    reviewer = check_reviewer(reviewer)
    if decision == "relabel":
        if _missing(new_label):
            raise OgdashError("A relabel decision needs new_label; pass the corrected class index.")
        new_label = _as_int(new_label, "new_label")
        if new_label < 0:
            raise OgdashError(f"new_label {new_label} is negative; pass a class index >= 0.")
        if n_classes is not None and new_label >= n_classes:
            raise OgdashError(f"new_label {_short(new_label)} is not a class of this data (0..{n_classes - 1}); "
                              "relabel to one of its classes.")
    elif not _missing(new_label):
        raise OgdashError("new_label is only for relabel decisions; drop it or use decision='relabel'.")
    else:
        new_label = None
    if decision == "edit":
        if _missing(new_text) or not isinstance(new_text, str) or not new_text.strip():
            raise OgdashError("An edit decision needs new_text; pass the corrected text (not empty).")
    elif not _missing(new_text):
        raise OgdashError("new_text is only for edit decisions; drop it or use decision='edit'.")
    else:
        new_text = None
    note = "" if _missing(note) else str(note)
    return _as_int(sample_id, "sample_id"), decision, new_label, reviewer, note, new_text


def _check_dataset(dataset) -> str:
    if not isinstance(dataset, str) or not dataset:
        raise OgdashError("The dataset fingerprint is empty; pass the dataset's content hash.")
    return dataset


def _add_column(con, name: str) -> None:
    """Give a store written before column ``name`` existed that column; its old rows keep NULL there (for
    ``received``: rank at their claimed time; for ``new_text``: not an edit)."""
    if name in {row[1] for row in con.execute("PRAGMA table_info(decisions)")}:
        return
    try:
        con.execute(f"ALTER TABLE decisions ADD COLUMN {name} TEXT")
    except sqlite3.OperationalError as exc:  # another process added it a moment ago
        if "duplicate column" not in str(exc):
            raise


class DecisionStore:
    """Append-only store of review decisions in one SQLite file at ``path``.

    Opening a file that is not an SQLite database raises :class:`OgdashError` and
    leaves the file untouched.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OgdashError(f"cannot create the folder for the decision store {self.path} ({exc.strerror}); "
                              "set OGDASH_DECISIONS to a writable path.") from None
        try:
            with self._connect() as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
                _add_column(con, "received")  # stores written before these columns existed keep their rows
                _add_column(con, "new_text")
        except sqlite3.DatabaseError as exc:
            raise OgdashError(
                f"{self.path} is not a readable decision store ({exc}); "
                "move it aside or choose another file."
            ) from None

    @contextlib.contextmanager
    def _connect(self):
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            # In WAL mode NORMAL keeps every transaction atomic and survives a crashed
            # process; only a power cut may lose the last few commits.
            con.execute("PRAGMA synchronous=NORMAL")
            yield con
        finally:
            con.close()

    def _insert(self, rows: list[tuple], skip_existing: bool = False) -> int:
        """Write rows of _FIELDS in one transaction, each received now; return how many were added."""
        received = _now()
        marks = ", ".join("?" * (len(_FIELDS) + 1))
        sql = f"INSERT INTO decisions ({', '.join(_FIELDS)}, received) VALUES ({marks})"
        if skip_existing:  # imports: the same decision saved twice is one decision
            sql = (f"INSERT INTO decisions ({', '.join(_FIELDS)}, received) SELECT {marks} "
                   "WHERE NOT EXISTS (SELECT 1 FROM decisions WHERE dataset = ? AND sample_id = ? "
                   "AND decision = ? AND new_label IS ? AND reviewer = ? AND timestamp = ? AND note = ? "
                   "AND new_text IS ?)")
            rows = [row + (received,) + row for row in rows]
        else:
            rows = [row + (received,) for row in rows]
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                before = con.total_changes
                con.executemany(sql, rows)
                added = con.total_changes - before
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return added

    def record(self, dataset: str, sample_id: int, decision: str, reviewer: str,
               new_label: int | None = None, note: str = "", n_classes: int | None = None,
               new_text: str | None = None) -> None:
        """Save one decision for ``sample_id`` in ``dataset`` by ``reviewer``, stamped now (UTC); a relabel must
        name a class below ``n_classes`` when it is given, an edit carries ``new_text``."""
        sid, dec, label, who, note, text = _validate(sample_id, decision, reviewer, new_label, note, n_classes,
                                                     new_text)
        self._insert([(_check_dataset(dataset), sid, dec, label, who, _now(), note, text)])

    def record_many(self, dataset: str, records: Iterable[Mapping] | pd.DataFrame, reviewer: str,
                    n_classes: int | None = None) -> int:
        """Save many decisions in one transaction: all are stored or none is.

        ``records`` holds mappings (or DataFrame rows) with ``sample_id``, ``decision`` and
        optionally ``new_label``, ``new_text`` and ``note``. Returns the number of decisions saved.
        """
        dataset = _check_dataset(dataset)
        if isinstance(records, pd.DataFrame):
            records = records.to_dict("records")
        stamp = _now()
        rows = []
        for r in records:
            if "sample_id" not in r or "decision" not in r:
                raise OgdashError("Each record needs 'sample_id' and 'decision'; add the missing keys.")
            sid, dec, label, who, note, text = _validate(r["sample_id"], r["decision"], reviewer, r.get("new_label"),
                                                         r.get("note", ""), n_classes, r.get("new_text"))
            rows.append((dataset, sid, dec, label, who, stamp, note, text))
        return self._insert(rows)

    def _query(self, sql: str, params: tuple) -> pd.DataFrame:
        with self._connect() as con:
            frame = pd.read_sql_query(sql, con, params=params)
        frame["new_label"] = frame["new_label"].astype("Int64")
        frame["new_text"] = frame["new_text"].astype("string")
        return frame

    def history(self, dataset: str, sample_id: int | None = None, sample_ids: Iterable[int] | None = None,
                with_undone: bool = False) -> pd.DataFrame:
        """Every standing decision for ``dataset`` (or one sample, or the samples ``sample_ids``), oldest first.

        Columns: sample_id, decision, new_label (Int64, <NA> unless relabel), reviewer, timestamp, note,
        new_text (string, <NA> unless edit).
        ``with_undone``: withdrawn decisions too, and a boolean column ``undone`` saying which.
        """
        where, params = "dataset = ?", (_check_dataset(dataset),)
        if sample_id is not None:
            where, params = where + " AND sample_id = ?", params + (_as_int(sample_id, "sample_id"),)
        if sample_ids is not None:
            ids = sorted({_as_int(i, "sample_id") for i in sample_ids})
            where += f" AND sample_id IN ({', '.join('?' * len(ids))})" if ids else " AND 0"
            params += tuple(ids)
        if not with_undone:
            return self._query(f"SELECT {', '.join(_FIELDS[1:])} FROM decisions WHERE {where} AND {_STANDING} "
                               f"ORDER BY {_RANK}, id", params)
        frame = self._query(f"SELECT {', '.join(_FIELDS[1:])}, id IN (SELECT decision FROM undone) AS undone "
                            f"FROM decisions WHERE {where} ORDER BY {_RANK}, id", params)
        frame["undone"] = frame["undone"].astype(bool)
        return frame

    def current(self, dataset: str) -> pd.DataFrame:
        """The latest decision per sample across reviewers, sorted by sample_id.

        Same columns as :meth:`history`.
        """
        cols = ", ".join(_FIELDS[1:])
        return self._query(
            f"SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY sample_id "
            f"ORDER BY {_RANK} DESC, id DESC) AS rank FROM decisions WHERE dataset = ? AND {_STANDING}) "
            "WHERE rank = 1 ORDER BY sample_id", (_check_dataset(dataset),))

    def by_reviewer(self, dataset: str) -> pd.DataFrame:
        """Each reviewer's latest decision per sample, sorted by sample_id then reviewer.

        Same columns as :meth:`history`. With one reviewer this is :meth:`current`; with several it
        shows who decided what, since :meth:`current` keeps only the latest across reviewers.
        """
        cols = ", ".join(_FIELDS[1:])
        return self._query(
            f"SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY sample_id, reviewer "
            f"ORDER BY {_RANK} DESC, id DESC) AS rank FROM decisions WHERE dataset = ? AND {_STANDING}) "
            "WHERE rank = 1 ORDER BY sample_id, reviewer", (_check_dataset(dataset),))

    def conflicts(self, dataset: str) -> pd.DataFrame:
        """Samples on which reviewers disagree: their latest decisions differ (relabel to different
        classes counts as different).

        One row per reviewer of each such sample, with the columns of :meth:`by_reviewer`, sorted by
        sample_id then reviewer; empty when everyone agrees. A reviewer who later changes their mind
        to agree resolves the conflict.
        """
        mine = self.by_reviewer(dataset)
        verdict = (mine["decision"] + ":" + mine["new_label"].astype("string").fillna("") + ":"
                   + mine["new_text"].fillna(""))
        differs = verdict.groupby(mine["sample_id"]).transform("nunique") > 1
        return mine[differs].reset_index(drop=True)

    # ---------------------------------------------------------------- undo

    def _withdraw(self, pick: str, params: tuple, reviewer: str) -> pd.DataFrame:
        """Withdraw, in one transaction, the standing decisions of ``reviewer`` that ``pick`` (SQL selecting
        decision ids) names; return them (columns of :meth:`history`), empty when there were none."""
        reviewer = check_reviewer(reviewer)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                ids = [row[0] for row in con.execute(pick, params)]
                rows = con.execute(f"SELECT {', '.join(_FIELDS[1:])} FROM decisions WHERE id IN "
                                   f"({', '.join('?' * len(ids))}) ORDER BY id", ids).fetchall() if ids else []
                con.executemany("INSERT INTO undone (decision, reviewer, timestamp) VALUES (?, ?, ?)",
                                [(i, reviewer, _now()) for i in ids])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        frame = pd.DataFrame(rows, columns=_FIELDS[1:])
        frame["new_label"] = frame["new_label"].astype("Int64")
        return frame

    def undo_last(self, dataset: str, reviewer: str) -> pd.DataFrame:
        """Withdraw ``reviewer``'s last action on ``dataset``: their latest standing decision, with every decision
        saved in the same write (a bulk action is one action). Returns what was withdrawn (empty: nothing)."""
        mine = f"dataset = ? AND reviewer = ? AND {_STANDING}"
        return self._withdraw(
            f"SELECT id FROM decisions WHERE {mine} AND {_ACTION} = (SELECT {_ACTION} FROM decisions "
            f"WHERE {mine} ORDER BY id DESC LIMIT 1)", (_check_dataset(dataset), reviewer) * 2, reviewer)

    def undo(self, dataset: str, sample_id: int, reviewer: str) -> pd.DataFrame:
        """Withdraw ``reviewer``'s latest standing decision on ``sample_id``; returns it (empty: there was none)."""
        return self._withdraw(
            f"SELECT id FROM decisions WHERE dataset = ? AND sample_id = ? AND reviewer = ? AND {_STANDING} "
            "ORDER BY id DESC LIMIT 1", (_check_dataset(dataset), _as_int(sample_id, "sample_id"), reviewer),
            reviewer)

    def last_action(self, dataset: str, reviewer: str) -> pd.DataFrame:
        """What :meth:`undo_last` would withdraw now (columns of :meth:`history`)."""
        mine = f"dataset = ? AND reviewer = ? AND {_STANDING}"
        return self._query(
            f"SELECT {', '.join(_FIELDS[1:])} FROM decisions WHERE {mine} AND {_ACTION} = (SELECT {_ACTION} FROM "
            f"decisions WHERE {mine} ORDER BY id DESC LIMIT 1) ORDER BY id", (_check_dataset(dataset), reviewer) * 2)

    def export(self, dataset: str, path: str | Path, current_only: bool = False) -> Path:
        """Write the history (or only current decisions) of ``dataset`` to a .csv or .json file."""
        frame = self.current(dataset) if current_only else self.history(dataset)
        frame.insert(0, "dataset", dataset)
        return _write_table(frame, path)

    def import_(self, path: str | Path, dataset: str | None = None, importer: str | None = None,
                n_classes: int | None = None) -> int:
        """Add the decisions in an :meth:`export` file; return how many were new.

        ``dataset`` overrides the file's dataset column. ``importer`` (the signed-in person importing):
        every row is recorded as theirs, with the file's reviewer name kept in its note, since a file
        can name anyone. ``n_classes``: relabel targets must be classes of the data. Decisions
        already in the store (same fields and timestamp) are skipped, so importing a file twice
        changes nothing. A file with any bad row (a timestamp in the future, an id out of range, a
        class the data lacks) is refused whole: nothing is imported.
        """
        if importer is not None:
            importer = check_reviewer(importer)
        path = Path(path)
        try:
            if path.suffix.lower() == ".csv":
                with open(path, newline="", encoding="utf-8") as f:
                    table = list(csv.DictReader(f))
            elif path.suffix.lower() == ".json":
                table = json.loads(path.read_text(encoding="utf-8"))
            else:
                raise OgdashError(f"Cannot import {path.name}; choose a .csv or .json decisions export.")
        except (OSError, ValueError, csv.Error, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
            if isinstance(exc, OgdashError):
                raise
            raise OgdashError(f"Could not read {path.name} ({type(exc).__name__}); choose a decisions export "
                              "file.") from None
        if not isinstance(table, list) or not all(isinstance(r, dict) for r in table):
            raise OgdashError(f"{path.name} is not a list of decisions; choose a file made by export.")
        rows, now = [], datetime.now(timezone.utc)
        for n, r in enumerate(table, start=1):
            missing = {"sample_id", "decision", "reviewer", "timestamp"} - set(r)
            if dataset is None and "dataset" not in r:
                missing.add("dataset")
            if missing:
                raise OgdashError(f"Row {n} of {path.name} lacks {sorted(missing)}; "
                                  "choose a file made by export or pass dataset=.")
            try:
                sid, dec, label, who, note, text = _validate(r["sample_id"], r["decision"], r["reviewer"],
                                                             r.get("new_label"), r.get("note", ""), n_classes,
                                                             r.get("new_text"))
            except OgdashError as e:
                raise OgdashError(f"Row {n} of {path.name}: {e}") from None
            if importer is not None and who != importer:  # the file's name is a claim: kept, not trusted
                note, who = f"{note}{' · ' if note else ''}file's reviewer: {who}", importer
            stamp = _imported_stamp(r["timestamp"], n, path.name, now)
            rows.append((_check_dataset(dataset or r["dataset"]), sid, dec, label, who, stamp, note, text))
        return self._insert(rows, skip_existing=True)

    def cleaned_labels(self, dataset: str, ids, given_labels, drop_removed: bool = False) -> pd.DataFrame:
        """Apply the current decisions to the given labels.

        Returns one row per id (in the order given) with columns id, given_label,
        decision (<NA> when undecided) and label: ``new_label`` for relabel, <NA> for
        remove (or the row dropped when ``drop_removed``), the given label otherwise.
        Decisions for ids not in ``ids`` are ignored.
        """
        ids = [_as_int(i, "sample id") for i in ids]
        labels = [_as_int(y, "given label") for y in given_labels]
        if len(ids) != len(labels):
            raise OgdashError(f"Got {len(ids)} ids but {len(labels)} labels; pass one label per id.")
        if len(set(ids)) != len(ids):
            raise OgdashError("The sample ids contain duplicates; pass each sample once.")
        cur = self.current(dataset).set_index("sample_id")
        out = pd.DataFrame({"id": ids, "given_label": pd.array(labels, dtype="Int64")})
        out["decision"] = out["id"].map(cur["decision"]).astype("string")
        out["label"] = out["given_label"]
        relabel = (out["decision"] == "relabel").fillna(False)
        out.loc[relabel, "label"] = out.loc[relabel, "id"].map(cur["new_label"]).astype("Int64")
        removed = (out["decision"] == "remove").fillna(False)
        out.loc[removed, "label"] = pd.NA
        return out[~removed].reset_index(drop=True) if drop_removed else out

    def export_cleaned(self, dataset: str, ids, given_labels, path: str | Path,
                       drop_removed: bool = False) -> Path:
        """Write :meth:`cleaned_labels` to a .csv or .json file (empty/null label = removed)."""
        return _write_table(self.cleaned_labels(dataset, ids, given_labels, drop_removed), path)


def _plain(value):
    """JSON fallback for numpy scalars."""
    return value.item() if hasattr(value, "item") else str(value)


def _write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise OgdashError(f"Cannot export to {path.name}; use a file name ending in .csv or .json.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        from ogdash.exports import csv_bytes

        path.write_bytes(csv_bytes(frame))  # a cell starting with = + - @ never runs as a spreadsheet formula
    else:
        records = [{k: (None if v is pd.NA else v) for k, v in row.items()}
                   for row in frame.astype(object).to_dict("records")]
        path.write_text(json.dumps(records, indent=1, default=_plain), encoding="utf-8")
    return path
