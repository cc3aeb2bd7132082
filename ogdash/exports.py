"""Review decisions in the forms a user can apply to their own data.

- ``with_sources``: any table of decisions, with where each sample came from.
- ``cleaned_csv``: the user's own CSV or TSV, byte for byte, plus ``decision`` and ``clean_label`` columns.
- ``folder_changes``: for an image folder, ``path,given,decision,new_label`` of each decided image;
  ``apply_folder_changes`` (the ``ogdash apply`` command) writes a corrected copy of the folder from it.
- ``csv_bytes``: a table as CSV text that a spreadsheet opens safely (every text cell quoted, no line of a
  cell runs as a formula).

The current decision of a sample is the latest one (``DecisionStore.current``).
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import shutil
from pathlib import Path

import pandas as pd

from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Dataset

CHANGE_COLUMNS = ["path", "given", "decision", "new_label"]


def with_sources(frame: pd.DataFrame, ds: Dataset) -> pd.DataFrame:
    """``frame`` (with a ``sample_id`` column) with a ``source`` column after it; unknown ids get ''."""
    where = dict(zip(ds.ids.tolist(), ds.source_list()))
    out = frame.copy()
    out.insert(out.columns.get_loc("sample_id") + 1, "source", [where.get(int(i), "") for i in out["sample_id"]])
    return out


def _current_by_id(current: pd.DataFrame) -> dict[int, tuple[str, int | None]]:
    return {int(r.sample_id): (r.decision, None if pd.isna(r.new_label) else int(r.new_label))
            for r in current.itertuples()}


def cleaned_csv(path, ds: Dataset, current: pd.DataFrame) -> bytes:
    """The CSV (or TSV) at ``path`` exactly as the user gave it, with ``decision`` and ``clean_label`` appended
    to every record.

    Every byte of the file is kept (quoting, number formats such as ``9`` or ``9.0``, line endings,
    a byte-order mark, texts with line breaks); only the two new cells are added at the end of each
    record. ``clean_label`` is the new class for relabel (by name, as ``ds.classes`` has it), empty for
    remove, and the row's own label cell otherwise. Rows are matched by the loader's ids (the ``id``
    column, else the row number from 0), so held-out rows keep their label and an empty decision.
    A new cell that a spreadsheet would run as a formula is prefixed with ``'``, as in ``csv_bytes``.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OgdashError(f"{path.name}: is not UTF-8 text; re-save it with UTF-8 encoding.") from None
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    decided = _current_by_id(current)
    out = [codecs.BOM_UTF8.decode("utf-8")] if raw.startswith(codecs.BOM_UTF8) else []
    header, row_number = None, 0
    for record, cells in _records(text, sep):
        if not cells:  # a blank line: not a record for the loaders either
            out.append(record)
            continue
        if header is None:
            header = cells
            if "label" not in header:
                raise OgdashError(f"{path.name}: has no 'label' column; is this the file the data was loaded from?")
            added = [_free_name(header, "decision"), _free_name(header, "clean_label")]
        else:
            sid = int(cells[header.index("id")]) if "id" in header else row_number
            row_number += 1
            decision, new = decided.get(sid, ("", None))
            label = cells[header.index("label")] if header.index("label") < len(cells) else ""
            added = [decision, ds.classes[new] if decision == "relabel" else "" if decision == "remove" else label]
        body = record.rstrip("\r\n")
        out.append(body + sep + _cells([_safe(c) for c in added], sep) + record[len(body):])
    return "".join(out).encode("utf-8")


def _records(text: str, sep: str):
    """(the record's exact text, its parsed cells) for each record; a quoted cell may span lines."""
    lines, consumed = text.splitlines(keepends=True), []

    def feed():
        for line in lines:
            consumed.append(line)
            yield line
    for cells in csv.reader(feed(), delimiter=sep):
        yield "".join(consumed), cells
        consumed.clear()


def _free_name(header: list[str], name: str) -> str:
    """``name``, or ``name_2``, ``name_3``... when the file already has such a column (an earlier export)."""
    k, out = 1, name
    while out in header:
        k += 1
        out = f"{name}_{k}"
    return out


def _safe(cell: str) -> str:
    return "'" + cell if cell[:1] in ("=", "+", "-", "@") else cell


def _cells(cells: list[str], sep: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, lineterminator="").writerow(cells)
    return buf.getvalue()


def folder_changes(ds: Dataset, current: pd.DataFrame) -> pd.DataFrame:
    """``path,given,decision,new_label`` (class names) for every decided sample of an image folder."""
    if ds.sources is None:
        raise OgdashError(f"{ds.name}: samples have no file paths; this export is for image folders.")
    pos = {int(i): p for p, i in enumerate(ds.ids.tolist())}
    rows = []
    for sid, (decision, new) in sorted(_current_by_id(current).items()):
        if sid in pos:
            p = pos[sid]
            valid = new is not None and 0 <= new < ds.n_classes  # a stored label this data lacks: left empty,
            rows.append((ds.sources[p], ds.classes[int(ds.y[p])], decision,  # so `ogdash apply` refuses that row
                         ds.classes[new] if decision == "relabel" and valid else ""))
    return pd.DataFrame(rows, columns=CHANGE_COLUMNS)


def apply_folder_changes(changes, folder, out) -> dict:
    """Copy image folder ``folder`` to ``out`` with the changes applied; ``folder`` is never modified.

    relabel: the image goes to its new class folder; remove: it is left out; keep, unsure
    and undecided images are copied as they are. Returns counts per action.
    """
    folder, out = Path(folder).resolve(), Path(out).resolve()
    if not folder.is_dir():
        raise OgdashError(f"image folder not found: {folder}.")
    if out.exists() and any(out.iterdir()):
        raise OgdashError(f"{out}: exists and is not empty; give a new folder for the corrected copy.")
    if out == folder or folder in out.parents:
        raise OgdashError(f"{out}: is inside the image folder; give a folder outside it.")
    table = pd.read_csv(changes, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = set(CHANGE_COLUMNS) - set(table.columns)
    if missing:
        raise OgdashError(f"{changes}: lacks column(s) {sorted(missing)}; use the folder-changes export.")
    plan = {}
    for r in table.itertuples():
        rel = Path(r.path)
        if rel.is_absolute() or ".." in rel.parts or not (folder / rel).is_file():
            raise OgdashError(f"{changes}: {r.path!r} is not an image inside {folder}; is this the right folder?")
        if r.decision == "relabel" and (not r.new_label or "/" in r.new_label or r.new_label.startswith(".")):
            raise OgdashError(f"{changes}: {r.path!r} is relabelled without a valid class name.")
        plan[rel.as_posix()] = (r.decision, r.new_label)
    counts = {"copied": 0, "relabelled": 0, "removed": 0}
    for src in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = src.relative_to(folder).as_posix()
        decision, new = plan.get(rel, ("", ""))
        if decision == "remove":
            counts["removed"] += 1
            continue
        dest = out / rel
        if decision == "relabel":
            dest = out / new / Path(rel).relative_to(Path(rel).parts[0])
            counts["relabelled"] += 1
        else:
            counts["copied"] += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    return counts


FORMULA = re.compile(r"(^|[\r\n])([=+\-@\t\uff1d\uff0b\uff0d\uff20])")  # at the start of the cell or of any line


def _neutral(value):
    """A text cell with a ' before every formula character that starts the cell or a line inside it (a
    spreadsheet starts a new row of input at a carriage return or newline inside a cell: ``ann\\r=cmd|...``);
    fullwidth forms too, which some spreadsheets read as the ASCII ones."""
    return FORMULA.sub(r"\1'\2", value) if isinstance(value, str) else value


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV text of ``frame`` that a spreadsheet opens safely: every text cell is quoted, and no line of any text
    cell starts a formula (= + - @, tab; see ``_neutral``). Numbers are written as they are."""
    safe = frame.copy()
    for col in safe.columns:
        if safe[col].dtype == object or pd.api.types.is_string_dtype(safe[col]):
            safe[col] = safe[col].map(_neutral)
    buf = io.StringIO()
    safe.rename(columns=lambda c: _neutral(str(c))).to_csv(buf, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return buf.getvalue().encode("utf-8")
