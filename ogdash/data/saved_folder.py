"""What a ``save_to_disk`` dataset folder may hold, checked before ``datasets.load_from_disk`` reads it.

``load_from_disk`` trusts the folder's JSON: ``state.json`` lists the Arrow files to read
(``_data_files``), joined to the folder as given, so ``../`` reaches files outside the data
root; ``dataset_info.json`` describes each column, and a ``Value(dtype=NAME)`` is turned into
an Arrow type by calling ``pyarrow.NAME()``, whatever NAME is. Here, before that:

- every data file is a plain ``.arrow`` file name that resolves (symlinks included) inside
  the folder, and exists;
- every feature is of a known kind (``Value``, ``ClassLabel``, ``Image``, lists and arrays
  of them) and every dtype a known Arrow type name;
- the format it was saved with is one of ``datasets``' own;
- the rows in the Arrow files (read from their record batches, memory-mapped, no values
  copied) times the columns fit ``OGDASH_MAX_ELEMENTS``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ogdash.core.errors import OgdashError
from ogdash.data.limits import check_elements

MAX_JSON_BYTES = 4 << 20  # state.json and dataset_info.json: a few KB as datasets writes them
DTYPES = {"null", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
          "float32", "float64", "string", "large_string", "binary", "large_binary", "date32", "date64"}
TIMED = re.compile(r"(timestamp\[(s|ms|us|ns)(, tz=[A-Za-z0-9/_+\-:]+)?\]|duration\[(s|ms|us|ns)\]|"
                   r"time32\[(s|ms)\]|time64\[(us|ns)\])")
KINDS = {"Value", "ClassLabel", "Image", "Sequence", "List", "LargeList", "Array2D", "Array3D", "Array4D",
         "Array5D"}
FORMATS = {None, "arrow", "numpy", "np", "pandas", "pd", "torch", "pt", "python"}


def _json(path: Path, where):
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise OgdashError(f"{where}: {path.name} is over {MAX_JSON_BYTES >> 20} MB; save the dataset again "
                              "with save_to_disk.")
        return json.loads(path.read_text(encoding="utf-8"))
    except OgdashError:
        raise
    except (OSError, ValueError, RecursionError) as e:
        raise OgdashError(f"{where}: {path.name} is not readable JSON ({type(e).__name__}); save the dataset "
                          "again with save_to_disk.") from None


def data_files(folder: Path) -> list[Path]:
    """The Arrow files ``state.json`` lists, each resolved inside ``folder``; OgdashError names the first that is
    not (by its position in the list, never by its content)."""
    state = _json(folder / "state.json", folder)
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list) or not files:
        raise OgdashError(f"{folder}: state.json lists no data files; save the dataset again with save_to_disk.")
    if state.get("_format_type") not in FORMATS:
        raise OgdashError(f"{folder}: state.json names an unknown format; save the dataset again with "
                          "save_to_disk.")
    home, out = os.path.realpath(folder), []
    for i, entry in enumerate(files):
        name = entry.get("filename") if isinstance(entry, dict) else None
        target = os.path.realpath(os.path.join(home, name)) if isinstance(name, str) and name else ""
        if not target.endswith(".arrow") or os.path.dirname(target) != home or not os.path.isfile(target):
            raise OgdashError(f"{folder}: data file {i + 1} of state.json is not an .arrow file inside the dataset "
                              "folder; save the dataset again with save_to_disk (a folder's files stay inside it).")
        out.append(Path(target))
    return out


def check_features(spec, folder, where: str = "features") -> None:
    """Every feature in ``dataset_info.json``'s ``features`` is of a known kind with a known dtype."""
    if isinstance(spec, list):
        for item in spec:
            check_features(item, folder, where)
        return
    if not isinstance(spec, dict):
        raise OgdashError(f"{folder}: dataset_info.json describes a column oddly; save the dataset again.")
    kind = spec.get("_type")
    if kind is None:  # a dict of named features
        for value in spec.values():
            check_features(value, folder, where)
        return
    if kind not in KINDS:
        raise OgdashError(f"{folder}: dataset_info.json has a feature ogdash does not read; keep Value, ClassLabel, "
                          "Image and lists of them.")
    if kind == "ClassLabel" and spec.get("names_file") is not None:  # datasets would read that file's lines
        raise OgdashError(f"{folder}: dataset_info.json's ClassLabel names a file; give the names themselves.")
    dtype = spec.get("dtype")
    if "dtype" in spec and not (isinstance(dtype, str) and (dtype in DTYPES or TIMED.fullmatch(dtype))):
        raise OgdashError(f"{folder}: dataset_info.json names an unknown dtype; use an Arrow type such as int64, "
                          "float32 or string.")
    for key in ("feature", "features"):
        if key in spec:
            check_features(spec[key], folder, where)


def check_saved_folder(folder) -> None:
    """Check a ``save_to_disk`` folder as the module says; OgdashError says what is wrong."""
    import pyarrow as pa

    folder = Path(folder)
    files = data_files(folder)
    info = _json(folder / "dataset_info.json", folder) if (folder / "dataset_info.json").is_file() else {}
    check_features((info or {}).get("features") or {}, folder)
    rows = columns = 0
    for path in files:
        try:
            with pa.memory_map(str(path)) as source:
                reader = pa.ipc.open_stream(source)
                columns = max(columns, len(reader.schema))
                for batch in reader:  # batches from the memory map: headers read, values left on disk
                    rows += batch.num_rows
        except (OSError, pa.ArrowException) as e:
            raise OgdashError(f"{folder}: {path.name} is not a readable Arrow file ({type(e).__name__}); save the "
                              "dataset again with save_to_disk.") from None
    check_elements(rows * max(columns, 1), f"a dataset of {rows:,} rows and {columns:,} columns", folder)
