"""Caps on how far one input may grow in memory, checked before the input is read.

A small file can stand for a huge array: a 232 KB ``.npz`` of zeros decompresses to
240 million values, six 8000x8000 PNGs weigh 1.2 MB on disk, a 3 MB CSV can have
300,000 columns. Each reader asks here first, from what is cheap to learn (an
``.npz`` member's header, a CSV's header line, an image's size), and refuses with a
message that names the limit and the setting that changes it:

- ``OGDASH_MAX_ELEMENTS`` (default 50,000,000): values in one array, as loaded
  (an ``.npz`` member, a CSV's rows x columns, an image folder's
  images x channels x size x size, a Parquet file's values from its footer, a
  dataset folder's rows x columns, a table's images x channels x width x height
  from each image's header, a CIFAR batch's array from the shape its pickle
  declares). 50 million float32 values are 200 MB; bytes are capped at 8 bytes a
  value (a Parquet file's uncompressed size, a wide dtype).
- ``OGDASH_MAX_COLUMNS`` (default 10,000): columns in a CSV's header row.
- ``OGDASH_MAX_MAPPED_ELEMENTS`` (default 4,000,000,000): values in a features array that is
  memory-mapped rather than read (``ogdash.data.mapped``: an uncompressed ``.npz`` member or a
  ``.npy`` file of C-ordered float32). A mapped file costs address space and disk reads, not
  memory: the stages pass over it in chunks and keep what they derive from it (gradient factors,
  probabilities) in memory-mapped cache files too. It cannot be a bomb either: the file must hold
  every byte its header declares. So its cap bounds the work and the disk the cache will take
  (the gradient factors and held-out probabilities grow with rows x classes: 12 GB for a
  million rows of 256 features and 1,000 classes, from a 1 GB file), not memory; the default
  admits 16 GB of float32 (ImageNet's 1.28 million x 2,048 features are 10 GB). Everything read into memory (labels, a compressed
  member, another dtype) stays under ``OGDASH_MAX_ELEMENTS``.

A malformed or non-positive setting means the default.
"""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from ogdash.core.env import env_int
from ogdash.core.errors import OgdashError

DEFAULT_MAX_ELEMENTS = 50_000_000
DEFAULT_MAX_COLUMNS = 10_000
DEFAULT_MAX_MAPPED_ELEMENTS = 4_000_000_000


def max_elements() -> int:
    """Values one loaded array may hold ($OGDASH_MAX_ELEMENTS, default 50,000,000)."""
    return env_int("OGDASH_MAX_ELEMENTS", DEFAULT_MAX_ELEMENTS)


def max_columns() -> int:
    """Columns a CSV may have ($OGDASH_MAX_COLUMNS, default 10,000)."""
    return env_int("OGDASH_MAX_COLUMNS", DEFAULT_MAX_COLUMNS)


def max_mapped_elements() -> int:
    """Values one memory-mapped features array may hold ($OGDASH_MAX_MAPPED_ELEMENTS, default 4,000,000,000)."""
    return env_int("OGDASH_MAX_MAPPED_ELEMENTS", DEFAULT_MAX_MAPPED_ELEMENTS)


def check_mapped(count: int, what: str, where) -> None:
    """Refuse a memory-mapped array of ``count`` values above ``OGDASH_MAX_MAPPED_ELEMENTS``."""
    cap = max_mapped_elements()
    if count > cap:
        raise OgdashError(f"{where}: {what} holds {count:,} values, over the limit of {cap:,} for a memory-mapped "
                          "features file (OGDASH_MAX_MAPPED_ELEMENTS); use less data, or raise "
                          "OGDASH_MAX_MAPPED_ELEMENTS (the disk cache takes several times the file: rows x classes arrays).")


def check_bytes(nbytes: int, what: str, where) -> None:
    """Refuse ``nbytes`` of data above the byte cap (8 bytes for each value the element cap allows)."""
    cap = max_elements()
    if nbytes > cap * 8:
        raise OgdashError(f"{where}: {what} would take {nbytes / 2**20:,.0f} MB, over the limit of "
                          f"{cap * 8 / 2**20:,.0f} MB (8 bytes for each of OGDASH_MAX_ELEMENTS = {cap:,} values); "
                          "use less data, or raise OGDASH_MAX_ELEMENTS.")


def check_elements(count: int, what: str, where, itemsize: int = 4) -> None:
    """Refuse ``count`` values (of ``itemsize`` bytes) above the cap; ``what`` says what they are."""
    cap = max_elements()
    # a wide dtype (strings of a million characters) is as costly as many values: count bytes too, as float64
    if count > cap or count * itemsize > cap * 8:
        raise OgdashError(f"{where}: {what} would hold {count:,} values ({count * itemsize / 2**20:,.0f} MB), over "
                          f"the limit of {cap:,} (OGDASH_MAX_ELEMENTS); use less data or a smaller size, or raise "
                          "OGDASH_MAX_ELEMENTS.")


# ---------------------------------------------------------------- .npz

def npz_headers(path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{array name: (shape, dtype)} of an ``.npz``, read from each member's ``.npy`` header, never
    decompressing the data. Raises OgdashError when the file is not a readable ``.npz``."""
    path = Path(path)
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                out[info.filename[:-4]] = (tuple(int(s) for s in shape), np.dtype(dtype))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, RuntimeError) as e:
        raise OgdashError(f"{path}: is not a readable .npz file ({type(e).__name__}); save it with numpy.savez.") from e
    return out


def check_npz(path, mapped: tuple[str, ...] = ()) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The member headers of an ``.npz``, each checked against the element cap (and object arrays refused);
    a member named in ``mapped`` that can be memory-mapped (``ogdash.data.mapped``) is checked against the
    mapped cap instead: it will not be read."""
    from ogdash.data.mapped import mappable, npz_member_header

    headers = npz_headers(path)
    for name, (shape, dtype) in headers.items():
        if dtype.hasobject:
            raise OgdashError(f"{path}: holds object arrays, which ogdash refuses to unpickle; save plain numeric "
                              "arrays.")
        count = int(np.prod(shape, dtype=object))
        found = npz_member_header(path, name) if name in mapped else None
        if found is not None and mappable(*found[:3]):
            check_mapped(count, f"array {name!r} of shape {shape}", path)
        else:
            check_elements(count, f"array {name!r} of shape {shape}", path, max(1, dtype.itemsize))
    return headers


# ---------------------------------------------------------------- CSV

def csv_header(path, sep: str = ",") -> list[str]:
    """The column names of a CSV's header row, refused when there are more than ``max_columns()``;
    reads the first line only (and no more of it than the cap can need)."""
    path = Path(path)
    cap = max_columns()
    limit = 4096 + 256 * cap  # characters: generous for the cap's columns with long names
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            line = f.readline(limit)
    except OSError as e:
        raise OgdashError(f"{path}: cannot be read ({e.strerror}); check the file.") from e
    too_long = len(line) >= limit and not line.endswith("\n")
    names = next(csv.reader([line], delimiter=sep), []) if line else []
    if too_long or len(names) > cap:
        count = f"{len(names):,}" if not too_long else f"more than {len(names):,}"
        raise OgdashError(f"{path}: has {count} columns, over the limit of {cap:,} (OGDASH_MAX_COLUMNS); "
                          "keep the columns you need, or raise OGDASH_MAX_COLUMNS.")
    return names


def count_lines(path, block: int = 1 << 20) -> int:
    """Line ends in a file, read in blocks (no parsing): ``\\n``, ``\\r\\n`` and a lone ``\\r`` each count once,
    as the CSV parser splits lines (a file with carriage returns only is as many rows as one with newlines)."""
    n, last = 0, b""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            n += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            if last == b"\r" and chunk[:1] == b"\n":  # a \r\n split between two blocks is one line end
                n -= 1
            last = chunk[-1:]
    return n


def check_csv(path, sep: str = ",") -> list[str]:
    """A CSV's header names, after checking its columns and its rows x columns against the caps."""
    names = csv_header(path, sep)
    check_elements(max(0, count_lines(path) - 1) * len(names), f"a table of {len(names):,} columns", path, 8)
    return names


# ---------------------------------------------------------------- Parquet and Arrow tables

def check_parquet(path) -> None:
    """A Parquet file's values and uncompressed bytes, from its footer alone (nothing decoded), against the caps:
    a 49 KB file of repeated values can stand for millions of them."""
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise OgdashError("reading Parquet needs the 'pyarrow' package; install it with pip install "
                          "'ogdash[tables]'.") from None
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as e:  # ArrowInvalid, OSError: not Parquet, truncated
        raise OgdashError(f"{path}: is not a readable Parquet file ({type(e).__name__}); write it with "
                          "pandas.DataFrame.to_parquet or datasets' to_parquet.") from e
    values, nbytes = parquet_size(meta)
    what = f"a table of {meta.num_rows:,} rows and {meta.num_columns:,} columns"
    check_elements(values, what, path)
    check_bytes(nbytes, f"{what}, uncompressed,", path)


def parquet_size(meta) -> tuple[int, int]:
    """(values, uncompressed bytes) a Parquet file's footer declares: every column chunk's values (a list
    column's items each count), at least rows x columns."""
    values = nbytes = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            values += max(chunk.num_values, 0)
            nbytes += max(chunk.total_uncompressed_size, 0)
    return max(values, meta.num_rows * meta.num_columns), nbytes


def arrow_values(table) -> int:
    """Values an Arrow table holds: one per row and column, and every item of a list column (an embedding),
    counted from the offsets, not the data."""
    import pyarrow as pa

    total = 0
    for column in table.columns:
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or \
                pa.types.is_fixed_size_list(column.type):
            total += sum(len(chunk.flatten()) for chunk in column.chunks) + len(column)
        else:
            total += len(column)
    return total


def check_table(table, where) -> None:
    """An Arrow table's values (``arrow_values``) against the cap, before any column becomes a numpy array."""
    check_elements(arrow_values(table), f"a table of {table.num_rows:,} rows and {table.num_columns:,} columns",
                   where)


# ---------------------------------------------------------------- images

def check_image_pixels(path, width: int, height: int) -> None:
    """Refuse one image above Pillow's decompression-bomb size (it would only warn below twice that)."""
    from PIL import Image

    cap = Image.MAX_IMAGE_PIXELS
    if cap and width * height > cap:
        raise OgdashError(f"{path}: is {width}x{height} pixels, over the limit of {cap:,} pixels per image; "
                          "shrink it first.")
