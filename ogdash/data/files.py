"""Your own data: ``.npz`` and ``.csv`` files, validated at the boundary.

- ``.npz``: arrays ``X`` (n, d), (n, H, W) or (n, C, H, W) and ``y`` (n,) integer
  labels; optionally ``y_true`` (n,) and ``classes`` (K,) strings. Loaded with
  ``allow_pickle=False``: object arrays are refused, never unpickled.
- ``.csv``: numeric feature columns plus a ``label`` column; optionally ``true_label``
  and an ``id`` column of unique integers.
- ``.parquet`` and Hugging Face dataset folders: ``ogdash.data.tables``.

Sample ids are the CSV's ``id`` column when it has one, else the 0-based row numbers
(array index for ``.npz``). Each sample keeps its source ("line 7" of the CSV, as a
spreadsheet numbers it with the header on line 1; "index 12" of the arrays), so a
flagged sample can be found again in the file. Images with values above 1 are taken
to be 0..255 and scaled to [0, 1]. True labels are known only when the file holds them.
Sizes are checked before anything is read in full (``ogdash.data.limits``): an ``.npz``
member's shape from its header, a CSV's columns from its header row.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.data.dataset import Dataset, Splits, make_dataset, split_off
from ogdash.data.columns import feature_array, labels_array
from ogdash.data.limits import check_csv, check_npz
from ogdash.data.mapped import map_npz_member


def _read_npz(path: Path):
    check_npz(path, mapped=("X",))  # from the members' headers: a small file must not decompress into gigabytes
    X = map_npz_member(path, "X")  # an uncompressed float32 X is mapped at its offset, never read
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "X" or X is None}
    except ValueError as e:
        raise OgdashError(f"{path}: holds object arrays, which ogdash refuses to unpickle; save plain numeric arrays.") from e
    except Exception as e:  # zip errors, truncated files
        raise OgdashError(f"{path}: is not a readable .npz file ({type(e).__name__}); save it with numpy.savez.") from e
    if X is not None:
        arrays["X"] = X
    for key in ("X", "y"):
        if key not in arrays:
            raise OgdashError(f"{path}: missing array {key!r}; an .npz needs 'X' and 'y' (found {sorted(arrays)}).")
    return _arrays(arrays)


def _arrays(arrays: dict):
    """The loader's tuple from arrays ``X``, ``y`` and optional ``y_true``, ``classes``."""
    classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else None
    n = len(arrays["y"])
    return arrays["X"], arrays["y"], arrays.get("y_true"), classes, None, [f"index {i}" for i in range(n)], None


ARRAY_FILES = ("X", "y", "y_true", "classes")


def is_arrays_folder(path) -> bool:
    """Whether ``path`` is a folder of ``.npy`` files: ``X.npy`` and ``y.npy`` (and optionally ``y_true.npy``,
    ``classes.npy``), the arrays an ``.npz`` holds."""
    path = Path(path)
    return path.is_dir() and (path / "X.npy").is_file() and (path / "y.npy").is_file()


def _read_npy_folder(path: Path):
    """A folder of ``.npy`` files (``is_arrays_folder``): X mapped when it is C-ordered float32, the rest read."""
    from ogdash.data.limits import check_elements, check_mapped
    from ogdash.data.mapped import mappable, npy_header, read_npy

    arrays = {}
    for name in ARRAY_FILES:
        f = path / f"{name}.npy"
        if not f.is_file():
            continue
        shape, fortran, dtype, _ = npy_header(f)
        count, map_it = int(np.prod(shape, dtype=object)), name == "X" and mappable(shape, fortran, dtype)
        if map_it:
            check_mapped(count, f"array {name!r} of shape {shape}", f)
        else:
            check_elements(count, f"array {name!r} of shape {shape}", f, max(1, dtype.itemsize))
        arrays[name] = read_npy(f, map_it)
    return _arrays(arrays)


def _read_csv(path: Path):
    import pandas as pd

    check_csv(path)  # columns and rows x columns from the header and the line count, before parsing
    try:
        df = pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError as e:
        raise OgdashError(f"{path}: is not UTF-8 text; re-save the CSV with UTF-8 encoding.") from e
    except Exception as e:
        raise OgdashError(f"{path}: cannot be read as CSV ({_first_line(e)}); save it as comma-separated text "
                          "with a header row.") from e
    if "label" not in df.columns:
        raise OgdashError(f"{path}: missing the 'label' column; name the column of class indices 'label' in the "
                          "header row.")  # never echo the file's content: it may not be a CSV at all
    if len(df) == 0:
        raise OgdashError(f"{path}: has zero samples; give a file with at least one row besides the header.")
    feats = [c for c in df.columns if c not in ("label", "true_label", "id")]
    if not feats:
        raise OgdashError(f"{path}: has no feature columns besides 'label'; add numeric feature columns.")
    bad = [i + 1 for i, c in enumerate(df.columns) if c in feats and df[c].dtype.kind not in "iufb"]
    if bad:  # positions, not the header's names: a file that is not a CSV of features may hold anything there
        where = ", ".join(map(str, bad[:5])) + (", …" if len(bad) > 5 else "")
        raise OgdashError(f"{path}: feature columns must be numeric; {len(bad):,} are not (column"
                          f"{'s' if len(bad) > 1 else ''} {where}, counting from 1), so encode or drop them.")
    y_true = df["true_label"].to_numpy() if "true_label" in df.columns else None
    lines = np.arange(len(df)) + 2  # a spreadsheet's row numbers: the header is line 1
    ids = None
    if "id" in df.columns:
        ids = df["id"].to_numpy()
        if ids.dtype.kind not in "iu" or len(np.unique(ids)) != len(ids):
            raise OgdashError(f"{path}: the 'id' column must hold unique whole numbers; rename it to use it as a "
                              "feature, or fix the duplicates.")
    sources = [f"line {n}" for n in lines.tolist()]
    return df[feats].to_numpy(), df["label"].to_numpy(), y_true, None, ids, sources, feats


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:120]


def load_file(path, name: str | None = None, n_classes: int | None = None,
              classes=None) -> Dataset:
    """Load one ``.npz``, ``.csv`` or ``.parquet`` file (or a saved dataset folder) as a Dataset; raises OgdashError on bad input."""
    path = Path(path)
    if is_arrays_folder(path):
        X, y, y_true, file_classes, ids, sources, feature_names = _read_npy_folder(path)
        return _dataset(path, name, n_classes, classes, X, y, y_true, file_classes, ids, sources, feature_names)
    if path.suffix.lower() == ".parquet" or path.is_dir():  # Parquet and Hugging Face datasets: ogdash.data.tables
        from ogdash.data.tables import load_table

        return load_table(path, name, n_classes, classes)
    if not path.is_file():
        raise OgdashError(f"file not found: {path}; check the path (relative paths start at the data root).")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        X, y, y_true, file_classes, ids, sources, feature_names = _read_npz(path)
    elif suffix == ".csv":
        X, y, y_true, file_classes, ids, sources, feature_names = _read_csv(path)
    else:
        raise OgdashError(f"{path}: unsupported file type {suffix!r}; use .npz, .csv, .parquet or a dataset folder.")
    return _dataset(path, name, n_classes, classes, X, y, y_true, file_classes, ids, sources, feature_names)


def _dataset(path, name, n_classes, classes, X, y, y_true, file_classes, ids, sources, feature_names) -> Dataset:
    """The arrays a reader found, checked, as a Dataset."""
    X = feature_array(X, path)
    y = labels_array(y, "labels", path, sources.__getitem__)
    y_true = None if y_true is None else labels_array(y_true, "true labels", path, sources.__getitem__)
    if len(X) != len(y):
        raise OgdashError(f"{path}: X has {len(X)} rows but y has {len(y)}; give exactly one label per row of X.")
    if len(y) == 0:
        raise OgdashError(f"{path}: has zero samples; give a file with at least one row.")
    classes = classes or file_classes
    k = len(classes) if classes else (n_classes or int(max(y.max(), -1 if y_true is None else y_true.max())) + 1)
    if y.max() >= k or (y_true is not None and y_true.max() >= k):
        found = int(max(y.max(), -1 if y_true is None else y_true.max()))
        raise OgdashError(f"{path}: labels must be in 0..{k - 1} (one per class in 'classes'); found {found}; "
                          "fix the labels or list every class.")
    classes = tuple(classes) if classes else tuple(str(i) for i in range(k))
    return make_dataset(name or path.stem, X, y, classes, y_true=y_true, ids=ids, sources=sources,
                        feature_names=feature_names if X.ndim == 2 else None)


def load_splits(train, test=None, val=None, test_share: float = 0.2, seed: int = 0) -> Splits:
    """Load train/test(/val) files and check that they agree on shape and classes.

    Without a test file, a seeded ``test_share`` of the training file is held out as the
    test set (its samples keep their ids and sources, and are never scored).
    """
    tr = load_file(train, "train")
    if test is None:
        _check_split_copy(tr, test_share, train)
        tr, held = split_off(tr, test_share, seed)
        return Splits(_check_classes(tr, train), held, None if val is None else _matching(val, "val", tr))
    _check_classes(tr, train)
    return Splits(tr, _matching(test, "test", tr), None if val is None else _matching(val, "val", tr))


def _check_split_copy(tr: Dataset, share: float, path) -> None:
    """Holding a test share out of memory-mapped features copies the rest into memory: refused above the
    in-memory cap, with the way round it (a test file keeps them mapped)."""
    from ogdash.data.limits import max_elements
    from ogdash.data.mapped import is_mapped

    values = int(round((1 - share) * tr.n)) * int(np.prod(tr.X.shape[1:]))
    if is_mapped(tr.X) and values > max_elements():
        raise OgdashError(f"{path}: holding out a test share would copy {values:,} memory-mapped feature values "
                          f"into memory, over the limit of {max_elements():,} (OGDASH_MAX_ELEMENTS); give a test file "
                          "(--test) so the features stay mapped, or raise OGDASH_MAX_ELEMENTS.")


def _check_classes(tr: Dataset, path) -> Dataset:
    if tr.n_classes < 2 or len(np.unique(tr.y)) < 2:
        raise OgdashError(f"{path}: the training labels hold a single class; add samples of at least one other class.")
    return tr


def _matching(path, name: str, tr: Dataset) -> Dataset:
    """Another file of the same features and classes as the training set."""
    probe = load_file(path, name)
    if probe.X.shape[1:] != tr.X.shape[1:]:
        raise OgdashError(f"{path}: samples have shape {probe.X.shape[1:]} but training samples have "
                          f"{tr.X.shape[1:]}; give files with the same features.")
    if probe.y.max() >= tr.n_classes:
        raise OgdashError(f"{path}: has class {int(probe.y.max())}, unseen in training (classes "
                          f"0..{tr.n_classes - 1}); drop those samples or add the class to the training set.")
    return load_file(path, name, classes=tr.classes)


def resolve_under(root, user_path) -> Path:
    """Resolve a path typed by a user so that it stays inside ``root`` (symlinks included).

    An empty path is an error: it would otherwise name the whole data root.
    """
    if not str(user_path).strip():
        raise OgdashError("the path is empty; type a file or folder under the data root.")
    root = Path(root).resolve()
    p = Path(os.path.expanduser(str(user_path)))
    target = (p if p.is_absolute() else root / p).resolve()
    if target != root and root not in target.parents:
        raise OgdashError(f"{user_path}: is outside the data root {root}; put it under the data root.")
    return target
