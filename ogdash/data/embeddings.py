"""Text embeddings cached per text, not per selection of texts.

A sentence encoder maps each text to a vector on its own, so the cache is a bank per
encoder: one row per distinct text, found by the text's hash. Any subset, in any order,
under any seed, is served from the bank, and only texts never seen before are encoded
(a link that changes the data seed used to re-encode up to 12,600 texts). The bank is a
disk cache entry, replaced atomically when it grows: a crash never leaves half of it.
"""
from __future__ import annotations

import hashlib
import time
from typing import Sequence

import numpy as np

from ogdash.core.cache import DiskCache, cache_key
from ogdash.core.progress import Progress

STAGE = "text_embedding_bank"


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """(n,) 16-byte digests of the texts (numpy ``S16``)."""
    return np.array([hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts], dtype="S16")


def texts_hash(texts: Sequence[str]) -> str:
    """A short content hash of a list of texts (order matters)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\x1f")
    return h.hexdigest()[:24]


def embed_cached(encoder, texts: Sequence[str], cache: DiskCache | None = None,
                 progress: Progress = None) -> tuple[np.ndarray, float]:
    """(embeddings (n, dim) float32 of ``texts`` in order, seconds spent encoding: 0 when all were cached).

    ``encoder`` has ``name`` and ``encode(texts, progress) -> (m, dim)``.
    """
    texts = list(texts)
    if cache is None:
        t = time.perf_counter()
        X = np.asarray(encoder.encode(texts, progress), np.float32)
        return X, time.perf_counter() - t
    key = cache_key("text-embedding-bank", encoder.name)
    bank = cache.load(STAGE, key, mmap=False)
    known = np.zeros(0, "S16") if bank is None else np.asarray(bank["hashes"], "S16")
    vectors = None if bank is None else np.asarray(bank["X"], np.float32)
    row = {h: i for i, h in enumerate(known.tolist())}
    hashes = text_hashes(texts)
    missing = [i for i, h in enumerate(hashes.tolist()) if h not in row]
    seconds = 0.0
    if missing:
        unique = list(dict.fromkeys(hashes[missing].tolist()))  # a text repeated in the data is encoded once
        first = {h: i for i, h in reversed(list(enumerate(hashes.tolist())))}
        t = time.perf_counter()
        new = np.asarray(encoder.encode([texts[first[h]] for h in unique], progress), np.float32)
        seconds = time.perf_counter() - t
        for h in unique:
            row[h] = len(row)
        if vectors is not None and vectors.shape[1:] != new.shape[1:]:  # the encoder changed under its name
            cache.save(STAGE, key, {"hashes": np.zeros(0, "S16"), "X": np.zeros((0, *new.shape[1:]), np.float32)})
            return embed_cached(encoder, texts, cache, progress)
        known = np.concatenate([known, np.array(unique, "S16")])
        vectors = new if vectors is None else np.concatenate([vectors, new])
        cache.save(STAGE, key, {"hashes": known, "X": vectors})
    elif progress is not None:
        progress(1.0, f"{len(texts):,} texts embedded before")
    return vectors[[row[h] for h in hashes.tolist()]], seconds
