"""Row chunks of big arrays, read and written without holding them whole.

A million samples with a thousand classes make n x C arrays of 4 GB (float32): the stages keep
them in memory-mapped cache files and pass over them in chunks of about ``CHUNK_VALUES`` values.
Touched pages of a file mapping count in the process's resident memory until the kernel evicts
them, so :func:`blocks` and :func:`write` hand each chunk's pages back (``madvise(MADV_DONTNEED)``:
the file and the page cache keep the data, written pages included) once it is copied out or
written: a pass over a 10 GB file then holds one chunk, not 10 GB. Arrays in memory pass through
unchanged.
"""
from __future__ import annotations

import mmap
from typing import Iterator

import numpy as np

CHUNK_VALUES = 1 << 24  # values per chunk: 64 MB of float32, large enough for fast matrix products


def rows_per_chunk(width: int, values: int = CHUNK_VALUES) -> int:
    """Rows of ``width`` values that make one chunk (at least 256)."""
    return max(256, values // max(1, int(width)))


def spans(n: int, width: int = 1, values: int = CHUNK_VALUES) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges covering ``n`` rows of ``width`` values, one chunk each."""
    step = rows_per_chunk(width, values)
    for start in range(0, n, step):
        yield start, min(start + step, n)


def width_of(a) -> int:
    """Values per row of an array (1 for a vector)."""
    return int(np.prod(a.shape[1:], dtype=np.int64)) if a.ndim > 1 else 1


def _mapping(a):
    """The shared file mapping under ``a`` (an ``np.memmap`` or a view of one), or None (memory, copy-on-write)."""
    obj, mode = a, None
    while obj is not None and not isinstance(obj, mmap.mmap):
        if isinstance(obj, np.memmap):
            mode = obj.mode if mode is None else mode
        obj = getattr(obj, "base", None)
    return obj if obj is not None and mode in ("r", "r+", "w+", "readonly", "readwrite", "write") else None


def release(a, start: int = 0, stop: int | None = None) -> None:
    """Hand back this process's pages of rows ``start:stop`` of a memory-mapped array (a no-op in memory).

    The data stays in the file (and in the page cache while memory allows); a later read maps it again."""
    mm = _mapping(a)
    if mm is None or a.ndim == 0 or not a.flags.c_contiguous and not (a.ndim > 1 and a[0].flags.c_contiguous):
        return
    stop = len(a) if stop is None else stop
    if stop <= start:
        return
    base = np.frombuffer(mm, dtype=np.uint8, count=1).ctypes.data
    first = a.ctypes.data + start * a.strides[0] - base
    end = a.ctypes.data + (stop - 1) * a.strides[0] + a.itemsize * width_of(a) - base
    lo = max(0, first - first % mmap.PAGESIZE)
    hi = min(len(mm), end)
    if hi > lo:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def blocks(a, dtype=None, values: int = CHUNK_VALUES) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, rows) of ``a`` chunk by chunk; each block is a copy (as ``dtype`` when given) and a mapped
    array's pages are handed back as soon as it is copied."""
    for start, stop in spans(len(a), width_of(a), values):
        block = np.array(a[start:stop], dtype=dtype or a.dtype)
        release(a, start, stop)
        yield start, stop, block


def write(out, start: int, rows) -> None:
    """``out[start:start + len(rows)] = rows``, handing a mapped file's pages back once written."""
    out[start:start + len(rows)] = rows
    release(out, start, start + len(rows))


def moments(a, values: int = CHUNK_VALUES) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (population, as ``a.std(0)``) of a 2-D array, in float64, one pass in
    chunks (Chan et al.'s pairwise update, so a large mean costs no precision)."""
    n_seen, mean, m2 = 0, None, None
    for _, _, block in blocks(a, np.float64, values):
        b = block.reshape(len(block), -1)
        m, c = b.mean(0), len(b)
        q = ((b - m) ** 2).sum(0)
        if mean is None:
            n_seen, mean, m2 = c, m, q
            continue
        delta, total = m - mean, n_seen + c
        mean = mean + delta * c / total
        m2 = m2 + q + delta ** 2 * n_seen * c / total
        n_seen = total
    if mean is None:
        raise ValueError("moments of an empty array")
    return mean, np.sqrt(m2 / n_seen)


def argmax_rows(a, values: int = CHUNK_VALUES) -> np.ndarray:
    """``a.argmax(1)`` of a 2-D array, chunk by chunk."""
    out = np.empty(len(a), dtype=np.int64)
    for start, stop, block in blocks(a, None, values):
        out[start:stop] = block.argmax(1)
    return out
