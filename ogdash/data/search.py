"""Find samples as a person names them: by id, by where they came from (a file name, ``line 7``, ``row 12``)
or, for text data, by words inside the text.

The index is built once per dataset: every source (and every text) lower-cased and joined into one string, so
a search over 50,000 texts is one scan of that string in C, not a Python loop over the samples.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ogdash.data.dataset import Dataset

MAX_QUERY = 200
_SEP = "\x00"
_NUMBERED = re.compile(r"^\s*(id|line|row|index)?\s*#?\s*(-?\d{1,19})\s*$", re.IGNORECASE)
_ROW = re.compile(r"^(line|row|index) \d+$")


@dataclass(frozen=True)
class SearchIndex:
    """Lower-cased sources (and texts) of a dataset, each joined with NUL into one string, with start offsets."""

    ids: np.ndarray
    sources: tuple[str, ...] | None
    blob: str
    starts: np.ndarray  # (m,) offset of each entry in ``blob``
    owner: np.ndarray  # (m,) the sample position of each entry
    named: np.ndarray  # (m,) whether the entry is a file name or a text (not "line 7": a bare number's digits count)

    @classmethod
    def of(cls, ds: Dataset) -> "SearchIndex":
        parts, owner, named = [], [], []
        for field in (ds.sources, ds.texts):
            if field is not None:
                parts += [str(t).replace(_SEP, " ").lower() for t in field]
                owner.append(np.arange(ds.n))
                named += [field is ds.texts or not _ROW.match(str(t)) for t in field]
        lengths = np.fromiter((len(p) + 1 for p in parts), dtype=np.int64, count=len(parts))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if parts else np.zeros(0, dtype=np.int64)
        return cls(np.asarray(ds.ids), ds.sources, _SEP.join(parts),
                   starts.astype(np.int64), np.concatenate(owner) if owner else np.zeros(0, dtype=np.int64),
                   np.asarray(named, dtype=bool))


def find_samples(ds: Dataset, query: str, index: SearchIndex | None = None) -> np.ndarray:
    """Sorted positions of the samples ``query`` names (case ignored; an empty query names none).

    ``id 12`` / ``line 7`` / ``row 7`` / ``index 7``: that sample id, or that source. A bare number: the sample
    with that id, the sources ``line N``, ``row N`` and ``index N``, and the file names and texts that hold the
    number. Anything else: the sources (file names) and texts that contain it."""
    query = (query or "").strip()[:MAX_QUERY]
    if not query:
        return np.zeros(0, dtype=np.int64)
    index = SearchIndex.of(ds) if index is None else index
    found = []
    number = _NUMBERED.match(query)
    if number:
        word, n = (number.group(1) or "").lower(), int(number.group(2))
        if word in ("", "id"):
            found.append(np.flatnonzero(index.ids == n))
        if word != "id" and index.sources is not None:
            names = {f"{w} {n}" for w in ((word,) if word else ("line", "row", "index"))}
            found.append(np.flatnonzero(np.fromiter((s in names for s in index.sources), dtype=bool,
                                                    count=len(index.sources))))
    if not number or not number.group(1):  # "line 7" names one sample; a bare "7" may also be in a file name
        hits = np.fromiter((m.start() for m in re.finditer(re.escape(query.lower().replace(_SEP, " ")), index.blob)),
                           dtype=np.int64)
        entry = np.searchsorted(index.starts, hits, side="right") - 1
        if number:  # digits inside "line 70" do not name line 7
            entry = entry[index.named[entry]]
        found.append(index.owner[entry])
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
