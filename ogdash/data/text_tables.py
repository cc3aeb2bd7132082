"""Your labelled texts: a CSV/TSV, a Parquet file or a saved Hugging Face dataset with a text column and a
label column, read and checked at the boundary, then embedded by a sentence encoder (``ogdash.data.encoders``).

- **Text**: the ``text`` column, or the one you name (``--text-column``, the Data page's field). Empty
  texts are refused; a text longer than ``OGDASH_MAX_TEXT_CHARS`` characters (default 10,000) is cut to
  that length, and the splits' notes say how many were.
- **Labels**: the ``label`` column (in Parquet/HF also the one ``ClassLabel`` column): class indices
  0..K-1, or class names, which become indices in sorted order (``fresh`` = 0, ``rotten`` = 1), the
  training file's; a test or validation file with a name the training file lacks is refused. A
  ``ClassLabel`` or pandas categorical brings its own names and order. ``true_label`` is optional truth.
- **Identity**: the ``id`` column (unique whole numbers), else (Parquet/HF) the saved pandas index,
  else the row number from 0; each text's source is ``line N`` of a CSV (the header is line 1, as a
  spreadsheet counts) or ``row N`` of a Parquet file or dataset.
- **Size** is checked before a file is parsed: its bytes of text and its rows' embeddings against
  ``OGDASH_MAX_ELEMENTS`` (``ogdash.data.limits``), a CSV's columns against ``OGDASH_MAX_COLUMNS``.

The encoder is fitted (TF-IDF) on the training texts only, after any test share is held out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ogdash.core.cache import DiskCache
from ogdash.core.env import env_int
from ogdash.core.errors import OgdashError
from ogdash.core.progress import Progress
from ogdash.data.dataset import Dataset, Splits, make_dataset, split_off
from ogdash.data.limits import count_lines, csv_header, max_elements

TEXT_COLUMN = "text"
TEXT_SUFFIXES = (".csv", ".tsv")
DEFAULT_MAX_TEXT_CHARS = 10_000
NOMINAL_DIM = 384  # values per embedded text, for the size check before reading (MiniLM's width)
_WHOLE = re.compile(r"[+-]?\d+(\.0*)?")


def max_text_chars() -> int:
    """Characters one text may have before it is cut ($OGDASH_MAX_TEXT_CHARS, default 10,000)."""
    return env_int("OGDASH_MAX_TEXT_CHARS", DEFAULT_MAX_TEXT_CHARS)


@dataclass
class TextTable:
    """One file's texts and raw labels, as read."""

    path: Path
    texts: list[str]
    labels: np.ndarray  # whole numbers, or names (objects)
    true: np.ndarray | None
    names: tuple[str, ...] | None  # class names the file itself declares (a ClassLabel, a categorical)
    ids: np.ndarray | None
    sources: list[str]
    truncated: int = 0
    first_truncated: str = ""


# ---------------------------------------------------------------- is it text?

def _sep(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def is_text_table(path, text_column: str | None = None) -> bool:
    """Whether the table at ``path`` is to be read as texts: a column was named, it is a ``.tsv``, or it has
    a ``text`` column (read from its header, schema or features only)."""
    path = Path(path)
    if text_column or path.suffix.lower() == ".tsv":
        return True
    try:
        return TEXT_COLUMN in _columns(path)
    except (OgdashError, OSError, ValueError):
        return False  # the table loader says what is wrong with it


def _columns(path: Path) -> list[str]:
    if path.is_dir():
        import json

        info = path / "dataset_info.json"
        features = json.loads(info.read_text(encoding="utf-8")).get("features", {}) if info.is_file() else {}
        return list(features) if isinstance(features, dict) else []
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if path.suffix.lower() in TEXT_SUFFIXES:
        return [c.lstrip("\ufeff") for c in csv_header(path, _sep(path))]
    return []


# ---------------------------------------------------------------- reading one file

def _check_size(path: Path, n_bytes: int, rows: int) -> None:
    """Refuse a table whose text or embeddings would be too large, before it is parsed."""
    cap = max_elements()
    if n_bytes > cap:
        raise OgdashError(f"{path}: holds {n_bytes:,} bytes of text, over the limit of {cap:,} (OGDASH_MAX_ELEMENTS, "
                          "one value a byte); use fewer texts, or raise OGDASH_MAX_ELEMENTS.")
    if rows * NOMINAL_DIM > cap:
        raise OgdashError(f"{path}: {rows:,} texts would embed into {rows * NOMINAL_DIM:,} values, over the limit "
                          f"of {cap:,} (OGDASH_MAX_ELEMENTS); use fewer texts, or raise OGDASH_MAX_ELEMENTS.")


def _names(columns) -> str:
    shown = [repr(str(c)[:30]) for c in list(columns)[:6]]
    return ", ".join(shown) + (", …" if len(columns) > 6 else "")


def read_text_table(path, text_column: str | None = None) -> TextTable:
    """One text table as read (texts checked and capped, labels not yet mapped); OgdashError on bad input."""
    path = Path(path)
    column = text_column or TEXT_COLUMN
    if path.is_dir() or path.suffix.lower() == ".parquet":
        table = _read_arrow(path, column)
    elif path.suffix.lower() in TEXT_SUFFIXES:
        table = _read_csv(path, column)
    else:
        raise OgdashError(f"{path}: a text table is a .csv, .tsv or .parquet file or a saved dataset folder; "
                          f"got {path.suffix or 'no suffix'!r}.")
    empty = [i for i, t in enumerate(table.texts) if not t.strip()]
    if empty:
        raise OgdashError(f"{path}: {len(empty):,} empty text(s) in column {column!r} (the first at "
                          f"{table.sources[empty[0]]}); fill them in or drop those rows.")
    cap = max_text_chars()
    long = [i for i, t in enumerate(table.texts) if len(t) > cap]
    for i in long:
        table.texts[i] = table.texts[i][:cap]
    table.truncated, table.first_truncated = len(long), table.sources[long[0]] if long else ""
    return table


def _read_csv(path: Path, column: str) -> TextTable:
    import pandas as pd

    if not path.is_file():
        raise OgdashError(f"file not found: {path}; check the path (relative paths start at the data root).")
    csv_header(path, _sep(path))  # the column cap, from the header line alone
    _check_size(path, path.stat().st_size, max(0, count_lines(path) - 1))
    try:
        # every cell as written: a text "NA" stays a text, a label "07" stays a label
        df = pd.read_csv(path, sep=_sep(path), dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise OgdashError(f"{path}: is not UTF-8 text; re-save the file with UTF-8 encoding.") from None
    except Exception as e:  # noqa: BLE001 (ParserError, EmptyDataError, csv.Error: any parse failure)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise OgdashError(f"{path}: cannot be read as {'TSV' if _sep(path) == chr(9) else 'CSV'} ({first}); save it "
                          "with a header row and quote texts that hold the separator or line breaks.") from None
    _require_columns(path, list(df.columns), column)
    if len(df) == 0:
        raise OgdashError(f"{path}: has zero rows besides the header; give at least one labelled text.")
    sources = [f"line {i + 2}" for i in range(len(df))]  # the header is line 1, as a spreadsheet numbers rows
    labels = df["label"].to_numpy(object)
    missing = np.flatnonzero([not str(v).strip() for v in labels])
    if len(missing):
        raise OgdashError(f"{path}: {len(missing):,} row(s) have no label (the first at {sources[missing[0]]}); "
                          "label every row or drop those rows.")
    true = df["true_label"].to_numpy(object) if "true_label" in df.columns else None
    ids = None
    if "id" in df.columns:
        try:
            ids = df["id"].astype(np.int64).to_numpy()
        except (ValueError, OverflowError):
            ids = None
        if ids is None or len(np.unique(ids)) != len(ids):
            raise OgdashError(f"{path}: the 'id' column must hold unique whole numbers; rename it, or fix the "
                              "duplicates.")
    return TextTable(path, df[column].tolist(), _whole_or_names(labels), None if true is None else
                     _whole_or_names(true), None, ids, sources)


def _require_columns(path: Path, columns: list[str], column: str) -> None:
    if column not in columns:
        hint = "" if column != TEXT_COLUMN else "; name the column of texts with --text-column (the Data page's " \
                                                "'Text column')"
        raise OgdashError(f"{path}: has no text column {column!r} (its columns: {_names(columns)}){hint}.")
    if "label" not in columns:
        raise OgdashError(f"{path}: missing the 'label' column; name the column of classes 'label' in the header.")


def _whole_or_names(values: np.ndarray) -> np.ndarray:
    """Labels as written: int64 when every one is a whole number (``7``, ``7.0``), else the names as strings."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    text = [str(v).strip() for v in values]
    if all(_WHOLE.fullmatch(t) for t in text):
        return np.array([int(float(t)) for t in text], np.int64)
    return np.array(text, object)


def _read_arrow(path: Path, column: str) -> TextTable:
    """A Parquet file or a save_to_disk folder, through the table loader's readers."""
    import pyarrow as pa

    from ogdash.data import tables

    if path.is_dir():
        n_bytes = sum(p.stat().st_size for p in path.glob("*.arrow"))
        table, features = tables._read_dataset_folder(path)
        rows = table.num_rows
    else:
        if not path.is_file():
            raise OgdashError(f"file not found: {path}; check the path (relative paths start at the data root).")
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as e:  # noqa: BLE001 (ArrowInvalid, OSError: not Parquet, truncated)
            raise OgdashError(f"{path}: is not a readable Parquet file ({type(e).__name__}); write it with "
                              "pandas.DataFrame.to_parquet or datasets' to_parquet.") from None
        n_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        rows = meta.num_rows
    _check_size(path, n_bytes, rows)
    if not path.is_dir():
        table, features, _ = tables._read_parquet(path)  # a table with a text column is never mapped
    if column not in table.column_names:
        _require_columns(path, table.column_names, column)
    col = table[column]
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise OgdashError(f"{path}: column {column!r} holds {col.type}, not text; name the column of texts.")
    if table.num_rows == 0:
        raise OgdashError(f"{path}: has zero rows; give at least one labelled text.")
    sources = [f"row {i}" for i in range(table.num_rows)]
    texts = [t if t is not None else "" for t in col.to_pylist()]
    label_col = tables._label_column(table, features, path)
    values, names = tables._label_values(table, features, label_col, path)
    true = None
    if "true_label" in table.column_names and label_col != "true_label":
        true = _whole_or_names(np.asarray(tables._plain_labels(table, "true_label", features, path), object))
    ids, _ = tables._ids(table, path)
    labels = np.asarray(values).astype(np.int64) if names else _whole_or_names(np.asarray(values, object))
    return TextTable(path, texts, labels, true, names, ids, sources)


# ---------------------------------------------------------------- labels

def class_names(table: TextTable) -> tuple[tuple[str, ...], bool]:
    """(class names, whether labels are names) of a training table: its declared names, the indices' range
    0..max, or its label names sorted."""
    if table.names:
        return table.names, False
    values = [table.labels] + ([table.true] if table.true is not None else [])
    if all(v.dtype.kind == "i" for v in values):
        top = max(int(v.max()) for v in values)
        return tuple(str(i) for i in range(top + 1)), False
    return tuple(sorted({str(x) for v in values for x in v.tolist()})), True


def label_indices(table: TextTable, values: np.ndarray, classes: tuple[str, ...], by_name: bool,
                  what: str = "labels") -> np.ndarray:
    """``values`` of ``table`` as indices into ``classes``; OgdashError names the first value that is not one."""
    path = table.path
    if table.names and tuple(table.names) != tuple(classes):
        raise OgdashError(f"{path}: class names {list(table.names)[:5]} differ from the training file's "
                          f"{list(classes)[:5]}; give splits of one dataset.")
    if by_name:
        index = {c: i for i, c in enumerate(classes)}
        out = np.array([index.get(str(v), -1) for v in values.tolist()], np.int64)
        bad = np.flatnonzero(out < 0)
        if len(bad):
            raise OgdashError(f"{path}: {what} {str(values[bad[0]])[:40]!r} (at {table.sources[bad[0]]}) is not a "
                              f"class of the training file ({', '.join(classes[:8])}); drop those rows or add the "
                              "class to the training file.")
        return out
    if values.dtype.kind != "i":
        first = next(v for v in values.tolist() if not _WHOLE.fullmatch(str(v)))
        raise OgdashError(f"{path}: {what} must be class indices 0..{len(classes) - 1} as in the training file; "
                          f"found {str(first)[:40]!r}.")
    bad = np.flatnonzero((values < 0) | (values >= len(classes)))
    if len(bad):
        raise OgdashError(f"{path}: {what} must be class indices 0..{len(classes) - 1} (the training file's); "
                          f"found {int(values[bad[0]])} at {table.sources[bad[0]]}.")
    return values.astype(np.int64)


def to_dataset(name: str, table: TextTable, classes: tuple[str, ...], by_name: bool) -> Dataset:
    """The table as a Dataset whose X is empty until the texts are embedded."""
    y = label_indices(table, table.labels, classes, by_name)
    y_true = None if table.true is None else label_indices(table, table.true, classes, by_name, "true labels")
    return make_dataset(name, np.zeros((len(y), 0), np.float32), y, classes, y_true=y_true, ids=table.ids,
                        texts=table.texts, sources=table.sources)


def _with_x(ds: Dataset, X: np.ndarray) -> Dataset:
    return make_dataset(ds.name, X, ds.y, ds.classes, y_true=ds.y_true, ids=ds.ids, texts=ds.texts,
                        sources=ds.sources)


# ---------------------------------------------------------------- splits

def load_text_files(train, test=None, val=None, text_column: str | None = None, encoder: str = "minilm",
                    test_share: float = 0.2, seed: int = 0, within=None, cache: DiskCache | None = None,
                    progress: Progress = None) -> Splits:
    """Train/test(/val) text tables, embedded: X = the encoder's embeddings (the training file's classes).

    Without a test file a seeded ``test_share`` of the training file is held out (not scored). The
    encoder (``ogdash.data.encoders.table_encoder``) is fitted, where it fits, on the training texts
    only; embeddings are cached per text and encoder in ``cache``. The splits' ``notes`` say which
    encoder, how the class names map to indices, and how many texts were cut to the length cap.
    """
    from ogdash.data.embeddings import embed_cached
    from ogdash.data.encoders import table_encoder

    first = read_text_table(train, text_column)
    classes, by_name = class_names(first)
    tables = [first] + [None if p is None else read_text_table(p, text_column) for p in (test, val)]
    tr = to_dataset("train", first, classes, by_name)
    te = None if tables[1] is None else to_dataset("test", tables[1], classes, by_name)
    va = None if tables[2] is None else to_dataset("val", tables[2], classes, by_name)
    if te is None:
        tr, te = split_off(tr, test_share, seed)
    enc = table_encoder(encoder, tr.texts, within)
    parts = [d for d in (tr, te, va) if d is not None]
    X, seconds = embed_cached(enc, [t for d in parts for t in d.texts], cache, progress)
    bounds = np.cumsum([0] + [d.n for d in parts])
    tr, te, *rest = [_with_x(d, X[a:b]) for d, a, b in zip(parts, bounds[:-1], bounds[1:])]
    notes = [f"Texts embedded by {enc.name} ({X.shape[1]} dimensions)"
             + (f" in {seconds:.0f} s." if seconds >= 1 else "; from the cache." if seconds == 0 else ".")]
    if by_name:
        notes.append("Class names in sorted order: " + ", ".join(f"{c} = {i}" for i, c in enumerate(classes[:20]))
                     + (", …" if len(classes) > 20 else "") + ".")
    for t in tables:
        if t is not None and t.truncated:
            notes.append(f"{t.path.name}: {t.truncated:,} text(s) longer than {max_text_chars():,} characters were "
                         f"cut to that length (OGDASH_MAX_TEXT_CHARS), the first at {t.first_truncated}.")
    return Splits(tr, te, rest[0] if rest else None, notes=tuple(notes))
