"""What one page hands another: the LLM influence page's flagged fine-tuning examples, reviewed on the Review page.

The LLM page puts its latest ``FlaggedExamples`` (its file, scores, flags and groups) in the process memo under the
examples' key, and the key (a hash, never a path) in the view, so the Review page finds them in the same session,
after a reload, and from a shared link while the app runs. After an app restart the key finds nothing: the Review
page says so, and a run on the LLM page (its gradients come from the disk cache) hands them over again.
"""
from __future__ import annotations

from dashboard.state import stages, view
from ogdash.experiments.llm_review import FlaggedExamples

PREFIX = "flagged-examples:"


def share(flagged: FlaggedExamples) -> None:
    """Make ``flagged`` the examples the Review page offers."""
    key = flagged.key
    if PREFIX + key not in stages():  # a rerun with the same flags: nothing to size and store again
        stages().put(PREFIX + key, flagged)
    view()["ft"] = key


def shared() -> FlaggedExamples | None:
    """The examples the view names, if this app still holds them."""
    key = view()["ft"]
    return stages().get(PREFIX + key) if key else None
