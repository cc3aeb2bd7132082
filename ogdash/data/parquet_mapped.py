"""A Parquet file of embeddings too large to read into memory: its features written once, batch by batch, into a
float32 ``.npy`` under the cache, then memory-mapped.

Parquet is compressed and column-oriented, so unlike an uncompressed ``.npz`` it cannot be mapped as it lies.
A million 256-wide embeddings are 256 million values, five times the in-memory cap (``OGDASH_MAX_ELEMENTS``):
read whole (as ``ogdash.data.tables`` does below the cap) they would be refused. A table that is labels plus
numeric features (numeric columns, or fixed-length numeric list columns, the usual way an embedding is stored)
is streamed instead: ``pyarrow``'s batches are converted to float32 rows and written into
``<cache>/parquet_features/<key>/X.npy`` (the key names the file's path and stamp, so a rewritten file is
converted again), written into a temporary name and renamed, so a half-written conversion is never mapped. The
labels, true labels and ids are small and read whole by the table reader's own rules. The mapped array is
capped by ``OGDASH_MAX_MAPPED_ELEMENTS`` and needs that much free disk under the cache, both checked before
anything is written; a file whose features would decode into more than ``MAX_EXPANSION`` times its size (a
small file of repeated values) is left to the in-memory cap, which refuses it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ogdash.core import chunks
from ogdash.core.cache import cache_key, default_cache_dir, file_stamp
from ogdash.core.errors import OgdashError
from ogdash.data.limits import check_mapped, max_elements, parquet_size

RESERVED = ("label", "true_label", "id")
# Embeddings hardly compress (float32 of a million x 256: 1.02 GB decoded from a 1.04 GB file); a file that decodes
# into more than this many times its size is a decompression bomb, not embeddings, and is not converted.
MAX_EXPANSION = 64


def _feature_columns(schema, features: dict) -> list[tuple[str, int, bool]] | None:
    """[(column, values per row, whether a list)] when every column besides the labels and ids is numeric or a numeric list
    (its width from the type when fixed, else 0: found while reading); None for any other table (images, text,
    a ClassLabel besides the label), which the in-memory reader handles and caps."""
    import pyarrow as pa

    pandas_index = {c for c in ((schema.pandas_metadata or {}).get("index_columns") or []) if isinstance(c, str)}
    out = []
    for field in schema:
        name, t = field.name, field.type
        if name in RESERVED or name in pandas_index:
            continue
        spec = features.get(name)
        if isinstance(spec, dict) and spec.get("_type") in ("ClassLabel", "Image"):
            return None
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            out.append((name, 1, False))
        elif (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and \
                (pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)):
            out.append((name, t.list_size if pa.types.is_fixed_size_list(t) else 0, True))
        else:
            return None
    return out or None


def _first_widths(pf, columns: list[tuple[str, int, bool]], path) -> list[tuple[str, int, bool]]:
    """Fill in the width of each variable-length list column from its first row."""
    out = []
    for name, width, is_list in columns:
        if is_list and width == 0:
            first = next(pf.iter_batches(batch_size=1, columns=[name]))[name]
            if first.null_count:
                raise OgdashError(f"{path}: list column {name!r} has missing rows; give every row the same number "
                                  "of values.")
            width = len(first[0])
        out.append((name, width, is_list))
    return out


def _block(batch, columns: list[tuple[str, int, bool]], path) -> np.ndarray:
    """One batch's feature columns as float32 rows, each list column spread into ``width`` features."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for name, width, is_list in columns:
        col = batch[name]
        if col.null_count:
            raise OgdashError(f"{path}: column {name!r} has missing values; remove or impute them.")
        if not is_list:
            parts.append(col.to_numpy(zero_copy_only=False).astype(np.float32)[:, None])
            continue
        if not pa.types.is_fixed_size_list(col.type):
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths.min() != width or lengths.max() != width):
                raise OgdashError(f"{path}: list column {name!r} has rows of different lengths; give every row "
                                  "the same number of values.")
        values = col.flatten()
        if values.null_count:
            raise OgdashError(f"{path}: list column {name!r} has missing values; remove or impute them.")
        parts.append(values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), width))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def converted_path(path) -> Path:
    """Where the float32 rows of ``path`` go: named by its resolved path and its stamp."""
    path = Path(path).resolve()
    return default_cache_dir() / "parquet_features" / cache_key(str(path), file_stamp(path)) / "X.npy"


def map_parquet(path, pf, features: dict) -> tuple[np.memmap, list[str]] | None:
    """(X memory-mapped, feature names) of a Parquet file of labels and numeric features whose values exceed the
    in-memory cap; None when it fits in memory or is another kind of table (the in-memory reader then reads or
    refuses it)."""
    values, nbytes = parquet_size(pf.metadata)
    columns = _feature_columns(pf.schema_arrow, features)
    if columns is None or values <= max_elements() and nbytes <= 8 * max_elements():
        return None
    columns = _first_widths(pf, columns, path)
    n, d = pf.metadata.num_rows, sum(w for _, w, _ in columns)
    if n * d * 4 > MAX_EXPANSION * Path(path).stat().st_size:
        return None  # a small file of repeated values standing for millions: refused by the in-memory cap instead
    check_mapped(n * d, f"features of {n:,} rows x {d:,} values", path)
    names = [f for c, w, is_list in columns for f in ([f"{c}_{j}" for j in range(w)] if is_list else [c])]
    target = converted_path(path)
    if target.is_file():
        try:
            return np.load(target, mmap_mode="r"), names
        except (OSError, ValueError):
            shutil.rmtree(target.parent, ignore_errors=True)  # damaged: converted again below
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent.parent).free
    if n * d * 4 > free:
        raise OgdashError(f"{path}: converting its {n:,} x {d:,} features for memory-mapping needs "
                          f"{n * d * 4 / 2**30:.1f} GB under {target.parent.parent}, which has {free / 2**30:.1f} GB "
                          "free; free disk space or point OGDASH_CACHE at a larger disk.")
    tmp = Path(tempfile.mkdtemp(dir=target.parent.parent, prefix=".partial-"))
    try:
        out = np.lib.format.open_memmap(tmp / "X.npy", mode="w+", dtype=np.float32, shape=(n, d))
        start = 0
        rows = chunks.rows_per_chunk(d)
        for batch in pf.iter_batches(batch_size=rows, columns=[c for c, _, _ in columns]):
            block = _block(batch, columns, path)
            chunks.write(out, start, block)
            start += len(block)
        if start != n:
            raise OgdashError(f"{path}: holds {start:,} rows where its footer declares {n:,}; write it again.")
        out.flush()
        del out
        try:
            os.replace(tmp, target.parent)
        except OSError:  # another process converted it first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return np.load(target, mmap_mode="r"), names
