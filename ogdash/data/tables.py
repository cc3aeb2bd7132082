"""Parquet files and Hugging Face datasets saved on disk, validated at the boundary.

- ``.parquet``: read with pyarrow. A file written by ``datasets`` (``Dataset.to_parquet``)
  carries its features in the schema metadata, so its ``ClassLabel`` names and ``Image``
  columns are known; a pandas categorical label column counts as a ``ClassLabel``.
- a folder written by ``Dataset.save_to_disk``: read with ``datasets.load_from_disk``
  (Arrow files and JSON; nothing is unpickled). A ``DatasetDict`` folder holds one
  folder per split: give the split's folder.

Columns:
- the labels: ``label``, else the one ``ClassLabel`` column. Integer class indices, or
  a ``ClassLabel``/categorical whose names become the class names; other values are refused.
- the inputs: the ``Image`` column (or a column of ``{bytes, path}`` structs) when there
  is one, decoded with Pillow (all images of one size; values 0..255 scaled to [0, 1]);
  else every numeric column, and fixed-length numeric list columns (embeddings) spread
  into one feature per value.
- optional: ``true_label`` (known truth) and ``id`` (unique whole numbers).

Sample ids are the ``id`` column, else the dataset's own index (a pandas index saved in
the Parquet file), else the 0-based row numbers; each sample's source is ``row 7``, the
position at which ``ds[7]`` or ``pandas.read_parquet(...).iloc[7]`` finds it.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Dataset, make_dataset
from ogdash.data.columns import feature_array, labels_array
from ogdash.data.limits import check_elements, check_image_pixels, check_parquet, check_table
from ogdash.data.saved_folder import check_saved_folder

RESERVED = ("label", "true_label", "id")


def load_table(path, name: str | None = None, n_classes: int | None = None, classes=None) -> Dataset:
    """Load a ``.parquet`` file or a ``save_to_disk`` dataset folder as a Dataset; raises OgdashError on bad input.

    ``classes`` (the training set's class names) must match the file's own ``ClassLabel``
    names when it has them.
    """
    path = Path(path)
    mapped = None
    if path.is_dir():
        table, features = _read_dataset_folder(path)
    elif path.is_file() and path.suffix.lower() == ".parquet":
        table, features, mapped = _read_parquet(path)
    elif path.suffix.lower() == ".parquet":
        raise OgdashError(f"file not found: {path}; check the path (relative paths start at the data root).")
    else:
        raise OgdashError(f"{path}: is neither a .parquet file nor a dataset folder; use .npz, .csv, .parquet "
                          "or a folder written by datasets' save_to_disk.")
    if table.num_rows == 0:
        raise OgdashError(f"{path}: has zero samples; give a dataset with at least one row.")
    if mapped is None:
        check_table(table, path)  # every value, list items included, before any column becomes an array
    label_col = _label_column(table, features, path)
    y, file_classes = _label_values(table, features, label_col, path)
    row = "row {}".format
    y = labels_array(y, "labels", path, row)
    y_true = None
    if "true_label" in table.column_names and label_col != "true_label":
        y_true = labels_array(_plain_labels(table, "true_label", features, path), "true labels", path, row)
    ids, index_col = _ids(table, path)
    used = {label_col, "true_label", "id", index_col}
    image_col = _image_column(table, features)
    if mapped is not None:  # embeddings too many to read: converted once into a float32 file and mapped
        X, feature_names = mapped
    elif image_col is not None:
        X, feature_names = _images(table[image_col], path, _base_folder(path)), None
    else:
        other = [c for c in table.column_names if c not in used and _kind(features, c) != "ClassLabel"]
        X, feature_names = _numeric(table, other, path)  # another ClassLabel (a coarse label) is no feature
    X = feature_array(X, path)
    if classes and file_classes and tuple(classes) != tuple(file_classes):
        raise OgdashError(f"{path}: class names {list(file_classes)[:5]} differ from the training set's "
                          f"{list(classes)[:5]}; give splits of one dataset, with the same ClassLabel names.")
    classes = classes or file_classes
    top = int(max(y.max(), -1 if y_true is None else y_true.max()))
    k = len(classes) if classes else (n_classes or top + 1)
    if top >= k:
        raise OgdashError(f"{path}: labels must be in 0..{k - 1} (one per class); found {top}; "
                          "fix the labels or list every class.")
    classes = tuple(classes) if classes else tuple(str(i) for i in range(k))
    sources = [f"row {i}" for i in range(table.num_rows)]
    return make_dataset(name or path.stem, X, y, classes, y_true=y_true, ids=ids, sources=sources,
                        feature_names=feature_names if X.ndim == 2 else None)


# ---------------------------------------------------------------- reading

def _read_parquet(path: Path):
    """(table, Hugging Face features, mapped): the whole table, or, for labels and numeric features over the
    in-memory cap, the table of its label and id columns and ``(X mapped, feature names)``
    (``ogdash.data.parquet_mapped``)."""
    import pyarrow.parquet as pq

    from ogdash.data.parquet_mapped import RESERVED as SMALL, map_parquet

    unreadable = (f"{path}: is not a readable Parquet file ({{}}); write it with pandas.DataFrame.to_parquet or "
                  "datasets' to_parquet.")
    try:
        pf = pq.ParquetFile(path)
        features = _hf_features(pf.schema_arrow.metadata or {})
        mapped = map_parquet(path, pf, features)
        if mapped is None:
            check_parquet(path)  # values and bytes from the footer: a small file must not decode into gigabytes
            return pq.read_table(path), features, None
        index = [c for c in (pf.schema_arrow.pandas_metadata or {}).get("index_columns") or [] if isinstance(c, str)]
        small = [c for c in pf.schema_arrow.names if c in SMALL or c in index]
        return pq.read_table(path, columns=small), features, mapped
    except OgdashError:
        raise
    except Exception as e:  # ArrowInvalid, OSError: not Parquet, truncated
        raise OgdashError(unreadable.format(type(e).__name__)) from e


def _hf_features(meta: dict) -> dict:
    """The ``datasets`` features a Parquet file's schema metadata carries (ClassLabel names, Image columns)."""
    if b"huggingface" not in meta:
        return {}
    try:
        features = json.loads(meta[b"huggingface"])["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}


def _read_dataset_folder(path: Path):
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if (p / "state.json").is_file())
        example = "train" if "train" in splits or not splits else splits[0]
        raise OgdashError(f"{path}: holds a DatasetDict with splits {splits}; give one split's folder, "
                          f"e.g. {path / example}.")
    if not (path / "state.json").is_file():
        raise OgdashError(f"{path}: is a folder but not a dataset saved with datasets' save_to_disk (no state.json); "
                          "for class sub-folders of images use the image-folder loader.")
    try:
        import datasets
    except ModuleNotFoundError:
        raise OgdashError("reading a Hugging Face dataset folder needs the 'datasets' package; "
                          "install it with pip install 'ogdash[tables]'.") from None
    check_saved_folder(path)  # data files inside the folder, known dtypes, rows x columns: before datasets reads it
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise OgdashError(f"{path}: is not a readable saved dataset ({type(e).__name__}); save it again with "
                          "Dataset.save_to_disk.") from e
    if not isinstance(ds, datasets.Dataset):
        raise OgdashError(f"{path}: holds a {type(ds).__name__}; give the folder of one split.")
    return ds.with_format("arrow")[:], ds.features.to_dict()


def _base_folder(path: Path) -> Path:
    """Where relative image paths in the data are looked up: the dataset folder, or the Parquet file's folder."""
    return path if path.is_dir() else path.parent


# ---------------------------------------------------------------- columns

def _kind(features: dict, col: str) -> str | None:
    spec = features.get(col)
    return spec.get("_type") if isinstance(spec, dict) else None


def _label_column(table, features: dict, path) -> str:
    if "label" in table.column_names:
        return "label"
    named = [c for c in table.column_names if _kind(features, c) == "ClassLabel"]
    if len(named) == 1:
        return named[0]
    also = f" (ClassLabel columns: {named})" if named else ""
    raise OgdashError(f"{path}: missing the 'label' column{also}; name the column of class indices 'label'.")


def _label_values(table, features: dict, col: str, path):
    """The label column as an array, and the class names when the data names them (ClassLabel, categorical)."""
    import pyarrow as pa

    column = table[col]
    if _kind(features, col) == "ClassLabel":
        names = features[col].get("names")
        if not names:
            raise OgdashError(f"{path}: the ClassLabel of {col!r} has no names; give it names=[...].")
        return _plain_labels(table, col, features, path), tuple(str(n) for n in names)
    if pa.types.is_dictionary(column.type):  # a pandas categorical: its categories are the class names
        column = column.combine_chunks()
        names = tuple(str(v) for v in column.dictionary.to_pylist())
        codes = column.indices.to_numpy(zero_copy_only=False)
        if column.null_count:
            raise OgdashError(f"{path}: {col!r} has {column.null_count} missing label(s); label every row.")
        return codes, names
    return _plain_labels(table, col, features, path), None


def _plain_labels(table, col: str, features: dict, path) -> np.ndarray:
    column = table[col]
    if column.null_count:
        raise OgdashError(f"{path}: {col!r} has {column.null_count} missing label(s); label every row.")
    values = column.to_numpy(zero_copy_only=False)
    if _kind(features, col) == "ClassLabel" and values.dtype.kind in "iu" and len(values) and values.min() < 0:
        raise OgdashError(f"{path}: {col!r} has unlabelled rows (ClassLabel -1); drop them or label them.")
    return values


def _ids(table, path):
    """(ids or None, the column they came from): the ``id`` column, else a pandas index saved in the file."""
    if "id" in table.column_names:
        ids = table["id"].to_numpy(zero_copy_only=False)
        if ids.dtype.kind not in "iu" or len(np.unique(ids)) != len(ids):
            raise OgdashError(f"{path}: the 'id' column must hold unique whole numbers; rename it to use it as a "
                              "feature, or fix the duplicates.")
        return ids, "id"
    pandas_meta = table.schema.pandas_metadata or {}
    index = pandas_meta.get("index_columns") or []
    if len(index) == 1:
        if isinstance(index[0], str) and index[0] in table.column_names:
            ids = table[index[0]].to_numpy(zero_copy_only=False)
            if ids.dtype.kind in "iu" and len(np.unique(ids)) == len(ids):
                return ids, index[0]
            return None, index[0]  # a non-integer index (names, dates) is not a sample id, nor a feature
        if isinstance(index[0], dict) and index[0].get("kind") == "range":
            r = index[0]
            ids = np.arange(r["start"], r["stop"], r["step"], dtype=np.int64)
            if len(ids) == table.num_rows:
                return ids, None
    return None, None


def _image_column(table, features: dict) -> str | None:
    import pyarrow as pa

    typed = [c for c in table.column_names if _kind(features, c) == "Image"]
    if typed:
        return typed[0]
    for c in table.column_names:
        t = table[c].type
        if pa.types.is_struct(t) and {t.field(i).name for i in range(t.num_fields)} == {"bytes", "path"}:
            return c
    return None


def _images(column, path, base: Path) -> np.ndarray:
    """(n, H, W) grey or (n, H, W, 3) colour values 0..255, as (n, C, H, W) float32."""
    from PIL import Image, UnidentifiedImageError
    from PIL.Image import DecompressionBombError

    @contextlib.contextmanager
    def _opened(raw: bytes, row: int, path):  # header read, pixels not yet; or one line naming the row
        try:
            with Image.open(io.BytesIO(raw)) as im:
                yield im
        except OgdashError:
            raise
        except (UnidentifiedImageError, DecompressionBombError, OSError, SyntaxError, ValueError) as e:
            raise OgdashError(f"{path}: row {row}: the image is not readable ({type(e).__name__}); fix or "
                              "remove that row.") from e

    raws, modes, sizes = [], set(), set()
    for row, cell in enumerate(column.to_pylist()):  # every header first (size, mode): the caps need no pixel
        raws.append(_image_bytes(cell, row, path, base))
        with _opened(raws[-1], row, path) as im:
            check_image_pixels(f"{path}: row {row}", *im.size)
            modes.add(im.mode)
            sizes.add(im.size)
    sizes = sorted(sizes)
    if len(sizes) > 1:
        raise OgdashError(f"{path}: images have different sizes ({sizes[0][0]}x{sizes[0][1]} and "
                          f"{sizes[-1][0]}x{sizes[-1][1]}); resize them to one size first.")
    gray = modes <= {"L", "1", "I", "I;16", "F"}
    (width, height), channels = sizes[0], 1 if gray else 3
    check_elements(len(raws) * channels * width * height, f"{len(raws):,} images of {channels} channel(s) at "
                   f"{width}x{height}", path)
    X = np.empty((len(raws), channels, height, width), np.float32)
    for row, raw in enumerate(raws):  # decoded one at a time, straight into the array
        with _opened(raw, row, path) as im:
            pixels = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.float32)
        X[row] = pixels[None] if gray else np.transpose(pixels, (2, 0, 1))
    if X.max() <= 1.0:  # decoded pixels are 0..255 even when all are 0 or 1: the loader scales only above 1
        X = X / 255.0
    return X


def _image_bytes(cell, row: int, path, base: Path) -> bytes:
    """The encoded image of one cell: its embedded bytes, or a file inside the dataset's folder."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return cell["bytes"]
        ref = cell.get("path")
        if ref:
            target = (base / ref).resolve() if not Path(ref).is_absolute() else Path(ref).resolve()
            if base.resolve() not in target.parents:
                raise OgdashError(f"{path}: row {row}: the image {ref!r} is not embedded and lies outside "
                                  f"{base}; embed the images (save_to_disk does) or keep them beside the data.")
            if not target.is_file():
                raise OgdashError(f"{path}: row {row}: the image file {ref!r} is missing; embed the images "
                                  "or restore the file.")
            return target.read_bytes()
    raise OgdashError(f"{path}: row {row}: the image is missing; give every row an image or drop that row.")


def _numeric(table, columns: list[str], path):
    """Numeric columns (and fixed-length numeric list columns) as an (n, d) array and the feature names."""
    import pyarrow as pa

    if not columns:
        raise OgdashError(f"{path}: has no feature columns besides the labels; add numeric feature columns "
                          "or an image column.")
    parts, names, bad = [], [], []
    for c in columns:
        t = table[c].type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            if table[c].null_count:
                raise OgdashError(f"{path}: column {c!r} has missing values; remove or impute them.")
            parts.append(table[c].to_numpy(zero_copy_only=False).astype(np.float64)[:, None])
            names.append(c)
        elif (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and \
                (pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)):
            rows = table[c].to_pylist()
            widths = {len(r) if r is not None else -1 for r in rows}
            if len(widths) != 1 or -1 in widths:
                raise OgdashError(f"{path}: list column {c!r} has rows of different lengths or missing rows; "
                                  "give every row the same number of values.")
            block = np.asarray(rows, dtype=np.float64)
            parts.append(block)
            names += [f"{c}_{j}" for j in range(block.shape[1])]
        else:
            bad.append(c)
    if bad:
        raise OgdashError(f"{path}: feature columns must be numeric; {bad[:3]} are not, so encode or drop them.")
    return np.concatenate(parts, axis=1), names
