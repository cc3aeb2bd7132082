"""Counts in words: "1 sample", "2 samples", "1,204 removals". One place, so no page says "1 samples"."""
from __future__ import annotations

_IRREGULAR = {"match": "matches", "was": "were", "is": "are", "has": "have", "this": "these"}


def plural(n: int, word: str, many: str | None = None, number: bool = True) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1: ``plural(1, "sample")`` is "1 sample", ``plural(3, "match")``
    "3 matches"; ``many`` names an irregular plural; ``number=False`` gives the word alone ("was"/"were")."""
    word = word if n == 1 else (many or _IRREGULAR.get(word) or word + "s")
    return f"{n:,} {word}" if number else word
