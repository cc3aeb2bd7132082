"""Review decisions on fine-tuning examples, and the cleaned file they give.

A prompt file is a dataset for the decision store (``ogdash.review.DecisionStore``) like any other: its key is
``PromptData.fingerprint()``, each example's id is its stable ``sample_id`` and its place in the file its
``source`` ("line 7"). Decisions are ``keep``, ``remove``, ``unsure`` and ``edit`` (a corrected completion in
``new_text``); ``relabel`` has no meaning for text and is refused here. The cleaned copy drops the removed
examples and writes the edited completions into the records, in the input's own record format
(``prompt``/``completion`` or chat ``messages``), as JSON lines.

What a review page calls (text cards: prompt and completion side by side):

- :func:`review_table` for the cards (flagged first, with score, group and source);
- :func:`record` when a reviewer decides (``edit`` with the new completion);
- :func:`current` for the decisions shown on the cards;
- :func:`cleaned_jsonl` for the download, and :func:`applied` for the re-fine-tune's removed / edited examples.

:class:`FlaggedExamples` is what a review of one run shows: the file, its scores and flags, its groups; its ``key``
names it (a hash, never a path), so a page's address can say which review it shows.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ogdash.core.cache import cache_key
from ogdash.core.errors import OgdashError
from ogdash.data.prompt_files import PromptData, cleaned_records, jsonl_bytes
from ogdash.review import DecisionStore

TEXT_DECISIONS = ("keep", "remove", "edit", "unsure")
EDIT_MAX_CHARS = 20_000  # an edited completion longer than this is refused: about 5,000 tokens, past any token cap


@dataclass(frozen=True, eq=False)
class FlaggedExamples:
    """One run's fine-tuning examples as a review shows them: ``data``, every example's ``scores`` (n,), higher =
    more detrimental, the ``flags`` (n,) under the chosen budget, the ``groups`` (a ``Grouping``: ``labels`` into
    ``names``, or None) and ``detector``, the score in words."""

    data: PromptData
    scores: np.ndarray
    flags: np.ndarray
    groups: object = None
    detector: str = ""

    def __post_init__(self):
        if len(self.scores) != self.data.n or len(self.flags) != self.data.n:
            raise OgdashError(f"{self.data.name}: {self.data.n} examples but {len(self.scores)} scores and "
                              f"{len(self.flags)} flags.")

    @property
    def key(self) -> str:
        """A short hash of the examples, scores, flags, groups and detector: the same review gives the same key."""
        h = hashlib.sha256(np.asarray(self.scores, dtype=np.float64).tobytes())
        h.update(np.asarray(self.flags, dtype=bool).tobytes())
        if self.groups is not None:
            h.update(np.asarray(self.groups.labels, dtype=np.int64).tobytes())
        names = None if self.groups is None else list(self.groups.names)
        return cache_key("flagged-examples", self.data.fingerprint(), h.hexdigest(), names, self.detector)

    @property
    def dataset(self) -> str:
        return dataset_key(self.data)

    def group(self, position: int) -> str:
        """The group name of the example at ``position`` ("" without groups)."""
        return "" if self.groups is None else str(self.groups.names[int(self.groups.labels[position])])

    def order(self, flagged_only: bool = True, query: str = "") -> np.ndarray:
        """Positions to review, most detrimental first: the flagged ones, or all; with a ``query``, the examples
        that match it among all (:func:`find`)."""
        if query.strip():
            pos = find(self.data, query)
        else:
            pos = np.flatnonzero(self.flags) if flagged_only else np.arange(self.data.n)
        return pos[np.argsort(-np.asarray(self.scores)[pos], kind="stable")]


def find(data: PromptData, query: str) -> np.ndarray:
    """Positions of the examples whose line ("line 7", exactly) is ``query``, or whose id, prompt or completion
    holds it (case-insensitive)."""
    q = " ".join(query.split()).lower()
    hit = [i for i in range(data.n) if q == data.sources[i].lower() or q in data.ids[i].lower()
           or q in data.prompts[i].lower() or q in data.completions[i].lower()]
    return np.asarray(hit, dtype=np.int64)


def dataset_key(data: PromptData) -> str:
    """The decision store's key of a prompt file: the fingerprint of its examples."""
    return data.fingerprint()


def review_table(data: PromptData, scores=None, flags=None, groups=None) -> pd.DataFrame:
    """One row per example for text cards: sample_id, id, source, score, flagged, group, prompt, completion;
    flagged first, then by score (higher = more detrimental), else in file order."""
    table = pd.DataFrame({"sample_id": data.sample_ids, "id": list(data.ids), "source": list(data.sources)})
    if scores is not None:
        table["score"] = np.asarray(scores, dtype=np.float64)
    if flags is not None:
        table["flagged"] = np.asarray(flags, dtype=bool)
    if groups is not None:
        table["group"] = [groups.names[g] for g in groups.labels]
    table["prompt"], table["completion"] = list(data.prompts), list(data.completions)
    keys = [c for c in ("flagged", "score") if c in table]
    return table.sort_values(keys, ascending=False, kind="stable").reset_index(drop=True) if keys else table


def record(store: DecisionStore, data: PromptData, sample_id: int, decision: str, reviewer: str,
           new_completion: str | None = None, note: str = "") -> None:
    """Save one reviewer's decision on one example (``edit`` needs ``new_completion``)."""
    if decision not in TEXT_DECISIONS:
        raise OgdashError(f"Unknown decision {decision!r} for a fine-tuning example; use one of "
                          f"{', '.join(TEXT_DECISIONS)}.")
    data.position(sample_id)  # refuses an id the file does not have
    if decision == "edit" and isinstance(new_completion, str) and len(new_completion) > EDIT_MAX_CHARS:
        raise OgdashError(f"The edited completion is {len(new_completion):,} characters, over the "
                          f"{EDIT_MAX_CHARS:,} a review keeps; shorten it (nothing was saved).")
    store.record(dataset_key(data), int(sample_id), decision, reviewer, note=note,
                 new_text=new_completion if decision == "edit" else None)


def record_many(store: DecisionStore, data: PromptData, sample_ids, decision: str, reviewer: str) -> int:
    """The same decision (not ``edit``) for many examples, in one transaction; returns how many were saved."""
    if decision not in TEXT_DECISIONS or decision == "edit":
        raise OgdashError(f"a bulk decision must be one of keep, remove, unsure; got {decision!r}.")
    for sid in sample_ids:
        data.position(sid)
    return store.record_many(dataset_key(data), [{"sample_id": int(s), "decision": decision} for s in sample_ids],
                             reviewer)


def current(store: DecisionStore, data: PromptData) -> pd.DataFrame:
    """The latest decision per example (the store's ``current``) with each example's position and source."""
    cur = store.current(dataset_key(data))
    pos = {int(s): i for i, s in enumerate(data.sample_ids)}
    cur = cur[cur["sample_id"].astype("int64").isin(list(pos))].copy()
    cur.insert(1, "position", [pos[int(s)] for s in cur["sample_id"]])
    cur.insert(2, "source", [data.sources[p] for p in cur["position"]])
    return cur.reset_index(drop=True)


def applied(store: DecisionStore, data: PromptData) -> tuple[list[int], dict[int, str]]:
    """(removed positions, {position: edited completion}) from the current decisions; ``relabel`` is refused."""
    cur = current(store, data)
    if (cur["decision"] == "relabel").any():
        raise OgdashError("a relabel decision has no meaning for a fine-tuning example; decide keep, remove or edit.")
    removed = sorted(cur.loc[cur["decision"] == "remove", "position"].astype(int).tolist())
    edited = cur[cur["decision"] == "edit"]
    return removed, {int(p): str(t) for p, t in zip(edited["position"], edited["new_text"])}


def cleaned_jsonl(data: PromptData, store: DecisionStore | None = None, removed=(), edits=None) -> bytes:
    """The cleaned file as JSON lines in the input's record format: from the store's current decisions, or from
    ``removed`` positions and ``edits`` given directly (e.g. every flagged example removed)."""
    if store is not None:
        removed, edits = applied(store, data)
    return jsonl_bytes(cleaned_records(data, removed, edits))
