"""Caps on how far one input may grow in memory, checked before the input is read.

A small file can stand for a huge array: a 232 KB ``.npz`` of zeros decompresses to
240 million values, six 8000x8000 PNGs weigh 1.2 MB on disk, a 3 MB CSV can have
300,000 columns. Each reader asks here first, from what is cheap to learn (an
``.npz`` member's header, a CSV's header line, an image's size), and refuses with a
message that names the limit and the setting that changes it:

- ``OGDASH_MAX_ELEMENTS`` (default 50,000,000): values in one array, as loaded
  (an ``.npz`` member, a CSV's rows x columns, an image folder's
  images x channels x size x size). 50 million float32 values are 200 MB.
- ``OGDASH_MAX_COLUMNS`` (default 10,000): columns in a CSV's header row.

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


def max_elements() -> int:
    """Values one loaded array may hold ($OGDASH_MAX_ELEMENTS, default 50,000,000)."""
    return env_int("OGDASH_MAX_ELEMENTS", DEFAULT_MAX_ELEMENTS)


def max_columns() -> int:
    """Columns a CSV may have ($OGDASH_MAX_COLUMNS, default 10,000)."""
    return env_int("OGDASH_MAX_COLUMNS", DEFAULT_MAX_COLUMNS)


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


def check_npz(path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The member headers of an ``.npz``, each checked against the element cap (and object arrays refused)."""
    headers = npz_headers(path)
    for name, (shape, dtype) in headers.items():
        if dtype.hasobject:
            raise OgdashError(f"{path}: holds object arrays, which ogdash refuses to unpickle; save plain numeric "
                              "arrays.")
        check_elements(int(np.prod(shape, dtype=object)), f"array {name!r} of shape {shape}", path,
                       max(1, dtype.itemsize))
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
    """Newlines in a file, read in blocks (no parsing)."""
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            n += chunk.count(b"\n")
    return n


def check_csv(path, sep: str = ",") -> list[str]:
    """A CSV's header names, after checking its columns and its rows x columns against the caps."""
    names = csv_header(path, sep)
    check_elements(max(0, count_lines(path) - 1) * len(names), f"a table of {len(names):,} columns", path, 8)
    return names


# ---------------------------------------------------------------- images

def check_image_pixels(path, width: int, height: int) -> None:
    """Refuse one image above Pillow's decompression-bomb size (it would only warn below twice that)."""
    from PIL import Image

    cap = Image.MAX_IMAGE_PIXELS
    if cap and width * height > cap:
        raise OgdashError(f"{path}: is {width}x{height} pixels, over the limit of {cap:,} pixels per image; "
                          "shrink it first.")
