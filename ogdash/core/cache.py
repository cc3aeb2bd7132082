"""A content-addressed disk cache for expensive stages (models, gradients, scores, layouts).

Each entry is a folder ``<root>/<stage>/<key>/`` of ``.npy`` files plus a
``meta.json`` written last that records every file's SHA-256. An entry is used only
when ``meta.json`` exists and every checksum matches, so a crash mid-write, a
truncated or a corrupted file is recomputed, never loaded. Entries are written into
a temporary folder and renamed into place, so readers never see half an entry.
Arrays load memory-mapped: a restart reads gradients without copying them.

Keys come from ``cache_key(...)`` over content hashes (dataset fingerprint, model
weights hash) and parameters, so changing the data, the weights, the layer or the
projection seed gives a new key.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np


def default_cache_dir() -> Path:
    return Path(os.environ.get("OGDASH_CACHE", Path.home() / ".cache" / "ogdash"))


def cache_key(*parts) -> str:
    """A short stable hash of strings, numbers, tuples and None."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- what a file is, cheaply and exactly

MAX_STAMP_ENTRIES = 100_000  # files and folders a folder's stamp lists at most (/ linked in stops here)


def file_stamp(path) -> tuple | None:
    """What changes when a file changes, without reading it: (size, mtime_ns, ctime_ns, inode).

    A folder's stamp is a hash over the relative path and stamp of every file below it
    (symlinks followed, as the loaders follow them, but each folder visited once by its
    device and inode, so a link to a folder above it ends instead of looping; at most
    ``MAX_STAMP_ENTRIES`` files and folders, then the stamp says it stopped there); a missing path gives
    None. Memo keys that name a file carry its stamp, so a rewritten file is never served
    from a memo.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_dir():
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    h = hashlib.sha256()
    seen, count = set(), 0
    for folder, dirs, files in os.walk(path, followlinks=True):
        try:
            here = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (here.st_dev, here.st_ino) in seen:  # reached again through a link: a loop, or a second way in
            dirs[:] = []
            continue
        if count + len(seen) >= MAX_STAMP_ENTRIES:
            return (st.st_mtime_ns, h.hexdigest()[:24], f"first {MAX_STAMP_ENTRIES:,} entries")
        seen.add((here.st_dev, here.st_ino))
        dirs.sort()
        for name in sorted(files):
            count += 1
            if count + len(seen) > MAX_STAMP_ENTRIES:
                return (st.st_mtime_ns, h.hexdigest()[:24], f"first {MAX_STAMP_ENTRIES:,} entries")
            f = Path(folder) / name
            h.update(f"{f.relative_to(path)}\0{file_stamp(f)}\0".encode())
    return (st.st_mtime_ns, h.hexdigest()[:24])


_DIGESTS: dict[tuple, str] = {}


def file_digest(path, root=None) -> str:
    """SHA-256 of a file's whole content, computed once per (path, stamp).

    Remembered in this process and on disk under ``root/file_digests`` (``root``: the
    cache folder), so a restart does not hash tens of GB of weights again; a file that
    changes gets a new stamp and is hashed again.
    """
    path = Path(path).resolve()
    stamp = file_stamp(path)
    if stamp is None:
        raise FileNotFoundError(path)
    memo = (str(path), *stamp)
    if memo in _DIGESTS:
        return _DIGESTS[memo]
    record = Path(root if root is not None else default_cache_dir()) / "file_digests" / f"{cache_key(*memo)}.json"
    try:
        saved = json.loads(record.read_text())
        if saved.get("file") == list(memo) and re.fullmatch(r"[0-9a-f]{64}", saved.get("sha256", "")):
            _DIGESTS[memo] = saved["sha256"]
            return saved["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = _sha256(path)
    _DIGESTS[memo] = digest
    with contextlib.suppress(OSError):  # a read-only cache only costs the next process a hash
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"file": list(memo), "sha256": digest}))
        os.replace(tmp, record)
    return digest


class DiskCache:
    """Arrays on disk under ``root``, one folder per (stage, key)."""

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def load(self, stage: str, key: str, mmap: bool = True, verify: bool = True) -> dict | None:
        """The arrays stored under (stage, key), or None when missing or damaged.

        verify=False skips the checksums: only for an entry this process has just written (and hashed)."""
        folder = self.entry(stage, key)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            out = {}
            for name, digest in meta["files"].items():
                # word characters and inner dots (a state dict's "body.0.weight"): never a path out of the entry
                if not isinstance(name, str) or not re.fullmatch(r"\w+(\.\w+)*", name):
                    return None
                path = folder / f"{name}.npy"
                if verify and _sha256(path) != digest:
                    return None
                out[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            out.update(meta.get("scalars", {}))
            return out
        except (OSError, ValueError, KeyError):
            return None

    @contextlib.contextmanager
    def writer(self, stage: str, key: str) -> Iterator["EntryWriter"]:
        """Write an entry piece by piece (arrays may be filled in place, memory-mapped);
        it becomes visible, atomically, only when the block ends without an error."""
        final = self.entry(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            w = EntryWriter(tmp)
            yield w
            w.close()
            if final.exists():  # a damaged or concurrent entry: replace it
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def save(self, stage: str, key: str, arrays: dict) -> Path:
        """Store numpy arrays (and JSON scalars) atomically under (stage, key)."""
        with self.writer(stage, key) as w:
            for name, value in arrays.items():
                w.put(name, value)
        return self.entry(stage, key)

    def get_or_compute(self, stage: str, key: str, compute: Callable[[], dict]) -> dict:
        """Load (stage, key) if it is intact; otherwise compute, store and return it."""
        hit = self.load(stage, key)
        if hit is not None:
            return hit
        value = compute()
        self.save(stage, key, value)
        return value

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class EntryWriter:
    """Collects one cache entry in a temporary folder (see ``DiskCache.writer``)."""

    def __init__(self, folder: Path):
        self.folder, self.scalars, self.names, self._open = folder, {}, [], []

    def array(self, name: str, shape: tuple, dtype=np.float32) -> np.ndarray:
        """A writable memory-mapped array that will be stored as ``name``."""
        arr = np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+", dtype=dtype, shape=tuple(shape))
        self.names.append(name)
        self._open.append(arr)
        return arr

    def put(self, name: str, value) -> None:
        if isinstance(value, np.ndarray):
            np.save(self.folder / f"{name}.npy", value, allow_pickle=False)
            self.names.append(name)
        else:
            self.scalars[name] = value

    def close(self) -> None:
        for arr in self._open:
            arr.flush()
        self._open.clear()
        files = {name: _sha256(self.folder / f"{name}.npy") for name in self.names}
        (self.folder / "meta.json").write_text(json.dumps({"files": files, "scalars": self.scalars}))
