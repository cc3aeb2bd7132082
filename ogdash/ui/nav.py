"""The dashboard's pages, in navigation order: one place that app.py and the home page read."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PageInfo:
    path: str
    title: str
    icon: str
    blurb: str


PAGES = [
    PageInfo("pages/home.py", "Home", ":material/home:", "What ogdash is and where to start."),
]


def existing_pages() -> list[PageInfo]:
    return [p for p in PAGES if (ROOT / p.path).is_file()]
