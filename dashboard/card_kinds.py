"""How a review card shows one kind of sample: one renderer per kind of data (image, text, feature row).

A renderer draws the sample itself (``body``) and its nearest neighbours (``neighbours``: positions and
similarities from one class). The card around them (labels, score, decisions) is the same for every kind
(dashboard/gallery.py); a new kind of data adds a renderer to ``KINDS``. Fine-tuning examples (kind "prompt",
:class:`PromptCards`) show their prompt and completion side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from dashboard.escape import md

FOLD = 320  # characters of a text shown before "more"
SNIPPET = 110  # characters of a neighbour's text


def feature_names(ds) -> list[str]:
    return list(ds.feature_names or [f"x{j}" for j in range(int(np.prod(ds.X.shape[1:])))])


def feature_table(ds, positions) -> pd.DataFrame:
    """Feature rows of ``ds`` at ``positions`` with their column names, indexed by source."""
    positions = list(positions)
    rows = ds.X[positions].reshape(len(positions), -1)
    return pd.DataFrame(rows, columns=feature_names(ds), index=[ds.source(p) for p in positions])


def snippet(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n].rstrip() + "…"


# ---------------------------------------------------------------- images

def image_body(ds, pos: int, info) -> None:
    st.image(ds.view(pos), clamp=True, width=200)


def image_neighbours(ds, positions, sims) -> None:
    st.image([ds.view(int(p)) for p in positions], clamp=True, width=56,
             caption=[f"{s:.2f}" for s in sims])


# ---------------------------------------------------------------- text

def folded(text: str, more: str = "more", lines: bool = False) -> None:
    """A text as a quote, cut at ``FOLD`` characters with the whole of it (its lines kept) in an expander;
    ``lines``: a short text keeps its lines too (a chat prompt's turns)."""
    text = str(text)
    if len(text) <= FOLD:
        if lines and "\n" in text.strip():
            st.markdown("  \n".join(f"> {md(line)}" for line in text.strip().splitlines()))
        else:
            st.markdown(f"> {md(' '.join(text.split())) or '(empty)'}")
        return
    st.markdown(f"> {md(snippet(text, FOLD))}")
    with st.expander(more):
        st.markdown("  \n".join(md(line) for line in text.splitlines()))


def text_body(ds, pos: int, info) -> None:
    folded(ds.view(pos))


def text_neighbours(ds, positions, sims) -> None:
    st.markdown("\n".join(f"- {md(snippet(ds.view(int(p)), SNIPPET))} · {s:.2f}" for p, s in zip(positions, sims)))


# ---------------------------------------------------------------- feature rows

def feature_body(ds, pos: int, info) -> None:
    """The features most unusual for the given class (z-scores against it), then the whole row folded."""
    names = feature_names(ds)
    if info.unusual:  # a small Markdown table: a page of cards draws it at once, where a data grid each would not
        lines = ["| feature | value | class mean | z |", "|---|--:|--:|--:|"]
        lines += [f"| {md(names[u['feature']])} | {u['value']:.4g} | {u['mean']:.4g} | {u['z']:+.1f} |"
                  for u in info.unusual]
        st.caption(f"Most unusual for class **{md(ds.classes[int(ds.y[pos])])}** (z: distance from the class mean "
                   "in its standard deviations; |z| ≥ 3 is rare)")
        st.markdown("\n".join(lines))
    # drawn only when opened (a rerun of the gallery): twelve data grids would slow every decision's redraw
    whole = st.expander(f"All {len(names)} features", key=f"row_{int(ds.ids[pos])}", on_change="rerun")
    if whole.open:
        row = feature_table(ds, [pos]).T.reset_index()
        row.columns = ["feature", "value"]
        whole.dataframe(row, hide_index=True, width="stretch", height=min(35 * (len(row) + 1) + 3, 320),
                        column_config={"value": st.column_config.NumberColumn(format="%.4g")})


def feature_neighbours(ds, positions, sims) -> None:
    st.markdown(" · ".join(f"{md(ds.source(int(p)))} ({s:.2f})" for p, s in zip(positions, sims)))


# ---------------------------------------------------------------- fine-tuning examples


@dataclass(frozen=True, eq=False)
class PromptCards:
    """A review's fine-tuning examples (``ogdash.experiments.llm_review.FlaggedExamples``) as a card reads a data
    set: ``ids`` the stable sample ids, ``sources`` where each example is in its file ("line 7")."""

    examples: object
    kind: str = "prompt"

    @property
    def ids(self):
        return self.examples.data.sample_ids

    @property
    def sources(self):
        return self.examples.data.sources

    def completion(self, pos: int) -> str:
        return self.examples.data.completions[pos]

    def group(self, pos: int) -> str:
        return self.examples.group(pos)

    def name(self, pos: int) -> str:
        """The example's ``id`` in its file ("" when it has none: then its line names it)."""
        data = self.examples.data
        return "" if data.ids[pos] == data.sources[pos] else data.ids[pos]


def prompt_body(ds: PromptCards, pos: int, info) -> None:
    """Prompt and completion side by side (each folded when long), and the corrected completion when the standing
    decision is an edit."""
    data = ds.examples.data
    left, right = st.columns(2)
    with left:
        st.caption("Prompt")
        folded(data.prompts[pos], "whole prompt", lines=True)
    with right:
        st.caption("Completion")
        folded(data.completions[pos], "whole completion")
        d = info.decision
        if d and d["decision"] == "edit":
            st.caption(f"Edited completion ({md(d['reviewer'])})")
            folded(d["new_text"], "whole edit")


def no_neighbours(ds, positions, sims) -> None:
    """Fine-tuning examples have no neighbour search on their cards."""


@dataclass(frozen=True)
class Kind:
    """How one kind of sample is drawn: ``body(ds, pos, info)`` and ``neighbours(ds, positions, similarities)``."""

    body: Callable
    neighbours: Callable


KINDS = {"image": Kind(image_body, image_neighbours), "text": Kind(text_body, text_neighbours),
         "features": Kind(feature_body, feature_neighbours), "prompt": Kind(prompt_body, no_neighbours)}
