"""The process memo, bounded, and keys that see a file change.

Heavy objects (datasets, models, gradients, layouts) are shared by every page and
browser tab through one process-wide memo. Every distinct link can add entries, so the
memo is a least-recently-used map with two caps: at most ``OGDASH_MEMO_ENTRIES``
entries (default 64) and about ``OGDASH_MEMO_MB`` of arrays, tensors and models
(default 2048). The newest entry is always kept, however large, so a page that just
computed something can use it; older ones make room. Arrays memory-mapped from the disk
cache are not counted: the system can drop their pages at any time.

A key that names a file also carries the file's stamp (``ogdash.core.cache.file_stamp``:
size, modification and change times, inode; for a folder, those of every file in it), so
a rewritten file is loaded again, never served from the memo.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections import OrderedDict

import numpy as np

from ogdash.core.cache import file_stamp
from ogdash.core.env import env_int

DEFAULT_ENTRIES = 64
DEFAULT_MB = 2048
PATH_FIELDS = ("train", "test", "val", "path", "noisy_labels", "weights", "encoder")  # encoder: a folder, or a name


class Memo:
    """A thread-safe LRU map of computed values, capped by entry count and by bytes (``sizeof``)."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES, max_bytes: int = DEFAULT_MB << 20):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "Memo":
        return cls(env_int("OGDASH_MEMO_ENTRIES", DEFAULT_ENTRIES), env_int("OGDASH_MEMO_MB", DEFAULT_MB) << 20)

    def get(self, key: str, compute=None):
        """The value for ``key`` (now the most recently used); on a miss ``compute()`` if given, else None."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        if compute is None:
            return None
        value = compute()  # outside the lock: computing can take minutes, other tabs must not wait
        self.put(key, value)
        return value

    def put(self, key: str, value) -> None:
        size = sizeof(value)
        with self._lock:
            self._items[key] = (value, size)
            self._items.move_to_end(key)
            while len(self._items) > 1 and (len(self._items) > self.max_entries or self.nbytes > self.max_bytes):
                self._items.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self._items.values())

    def __contains__(self, key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def sizeof(obj, _seen: set | None = None, _depth: int = 0) -> int:
    """About how many bytes ``obj`` keeps alive: arrays, tensors, models, dataclasses, containers, strings.

    Shared buffers are counted once; memory-mapped arrays count 0 (their pages belong to a file).
    """
    seen = set() if _seen is None else _seen
    if _depth > 8 or obj is None or isinstance(obj, (bool, int, float, complex)):
        return 0
    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        if isinstance(base, np.memmap) or isinstance(obj, np.memmap) or id(base) in seen:
            return 0
        seen.add(id(base))
        size = base.nbytes
        if obj.dtype.hasobject:
            size += sum(sizeof(v, seen, _depth + 1) for v in obj.ravel()[:10_000])
        return size
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, (str, bytes, bytearray)):
        return sys.getsizeof(obj)
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() in seen:
                return 0
            seen.add(storage.data_ptr())
            return storage.nbytes()
        if isinstance(obj, torch.nn.Module):
            return sum(sizeof(t, seen, _depth + 1) for t in obj.state_dict(keep_vars=True).values())
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(obj, (pandas.DataFrame, pandas.Series)):
        return int(np.sum(obj.memory_usage(deep=True)))
    if isinstance(obj, dict):
        return sum(sizeof(k, seen, _depth + 1) + sizeof(v, seen, _depth + 1) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sys.getsizeof(obj) + sum(sizeof(v, seen, _depth + 1) for v in obj)
    if dataclasses.is_dataclass(obj):
        return sum(sizeof(getattr(obj, f.name, None), seen, _depth + 1) for f in dataclasses.fields(obj))
    if hasattr(obj, "__dict__"):
        return sys.getsizeof(obj) + sizeof(vars(obj), seen, _depth + 1)
    return sys.getsizeof(obj)


# ---------------------------------------------------------------- keys that see a file change

_STAMPS: dict[str, tuple[float, object]] = {}
STAMP_SECONDS = 2.0  # a folder's stamp lists every file: one listing serves the many keys of one run


def stamp(path) -> object:
    """``file_stamp(path)``: a file's is read afresh (one stat); a folder's, which lists every file in it, is
    remembered for a couple of seconds (a run asks for the same keys many times)."""
    if not os.path.isdir(path):
        return file_stamp(path)
    now = time.monotonic()
    hit = _STAMPS.get(str(path))
    if hit is not None and now - hit[0] < STAMP_SECONDS:
        return hit[1]
    value = file_stamp(path)
    if len(_STAMPS) > 1024:
        _STAMPS.clear()
    _STAMPS[str(path)] = (now, value)
    return value


def file_keyed(cfg: dict) -> dict:
    """``cfg`` with the stamp of every file or folder it names, for memo keys: a rewritten file changes the key."""
    stamps = {f: stamp(cfg[f]) for f in PATH_FIELDS if isinstance(cfg.get(f), str) and cfg[f]}
    return {**cfg, "_files": stamps} if stamps else cfg
