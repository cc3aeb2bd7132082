"""Features read memory-mapped: an uncompressed ``.npz`` member at its offset inside the zip, or a ``.npy`` file.

Precomputed embeddings are the common input at a million samples (a backbone run once, elsewhere or by
``ogdash extract``), and a 2,048-wide float32 file of ImageNet's 1.28 million images is 10 GB, more than
half of a 24 GB machine. ``numpy.savez`` stores its members uncompressed, so the ``X`` member's bytes lie
in the file as they are: it is mapped at its offset instead of read, and the stages pass over it in
chunks (``ogdash.core.chunks``), so it costs address space and disk reads, not memory. Only C-ordered
float32 arrays are mapped (what the stages compute with); anything else is read into memory, under
``OGDASH_MAX_ELEMENTS`` as before (``ogdash.data.limits``). A mapped array is capped by
``OGDASH_MAX_MAPPED_ELEMENTS`` instead, and its file must hold every byte its header declares.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from ogdash.core.errors import OgdashError

MAPPABLE = np.dtype(np.float32)


def _header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of the ``.npy`` header at ``f``'s position; ``f`` is left at the data."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype)


def mappable(shape, fortran: bool, dtype) -> bool:
    """Whether an array of this header is mapped rather than read: C-ordered float32 with at least one row."""
    return np.dtype(dtype) == MAPPABLE and not fortran and len(shape) >= 2 and shape[0] > 0


def _memmap(path: Path, offset: int, shape: tuple, dtype: np.dtype) -> np.memmap:
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    size = path.stat().st_size
    if offset + nbytes > size:
        raise OgdashError(f"{path}: is truncated: its header declares {nbytes:,} bytes of features from byte "
                          f"{offset:,}, but the file has {size:,}; write it again.")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def npz_member_header(path, name: str):
    """(shape, fortran, dtype, data offset) of an uncompressed ``.npz`` member, or None when it is compressed,
    encrypted or absent (such a member can only be read, not mapped)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(f"{name}.npy")
    except KeyError:
        return None
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise OgdashError(f"{path}: is not a readable .npz file ({type(e).__name__}); save it with numpy.savez.") \
            from e
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise ValueError("no local file header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            shape, fortran, dtype = _header(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as e:
        raise OgdashError(f"{path}: is not a readable .npz file ({type(e).__name__}); save it with numpy.savez.") \
            from e
    return shape, fortran, dtype, offset


def map_npz_member(path, name: str) -> np.memmap | None:
    """The member ``name`` of an ``.npz`` mapped at its offset inside the zip, or None when it cannot be mapped
    (compressed, not C-ordered float32): read it then."""
    found = npz_member_header(path, name)
    if found is None or not mappable(*found[:3]):
        return None
    shape, _, dtype, offset = found
    return _memmap(Path(path), offset, shape, dtype)


def npy_header(path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran, dtype, data offset) of a ``.npy`` file, from its header alone."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = _header(f)
            return shape, fortran, dtype, f.tell()
    except (OSError, ValueError, EOFError) as e:
        raise OgdashError(f"{path}: is not a readable .npy file ({type(e).__name__}); save it with numpy.save.") \
            from e


def read_npy(path, map_it: bool) -> np.ndarray:
    """A ``.npy`` file: mapped when ``map_it`` (its header must be ``mappable``), else read (never unpickled)."""
    path = Path(path)
    shape, fortran, dtype, offset = npy_header(path)
    if dtype.hasobject:
        raise OgdashError(f"{path}: holds objects, which ogdash refuses to unpickle; save a plain numeric array.")
    if map_it:
        return _memmap(path, offset, shape, dtype)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise OgdashError(f"{path}: is not a readable .npy file ({type(e).__name__}); save it with numpy.save.") \
            from e


def is_mapped(X) -> bool:
    """Whether an array lies in a file mapping (an ``np.memmap`` or a view of one)."""
    obj = X
    while obj is not None:
        if isinstance(obj, np.memmap):
            return True
        obj = getattr(obj, "base", None)
    return False
