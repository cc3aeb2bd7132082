"""How a review card shows one kind of sample: one renderer per kind of data (image, text, feature row).

A renderer draws the sample itself (``body``) and its nearest neighbours (``neighbours``: positions and
similarities from one class). The card around them (labels, score, decisions) is the same for every kind
(dashboard/gallery.py); a new kind of data, such as prompt/completion pairs, adds a renderer to ``KINDS``.
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


def _snippet(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n].rstrip() + "…"


# ---------------------------------------------------------------- images

def image_body(ds, pos: int, info) -> None:
    st.image(ds.view(pos), clamp=True, width=200)


def image_neighbours(ds, positions, sims) -> None:
    st.image([ds.view(int(p)) for p in positions], clamp=True, width=56,
             caption=[f"{s:.2f}" for s in sims])


# ---------------------------------------------------------------- text

def text_body(ds, pos: int, info) -> None:
    text = str(ds.view(pos))
    if len(text) <= FOLD:
        st.markdown(f"> {md(' '.join(text.split()))}")
        return
    st.markdown(f"> {md(_snippet(text, FOLD))}")
    with st.expander("more"):
        st.markdown(md(text))


def text_neighbours(ds, positions, sims) -> None:
    st.markdown("\n".join(f"- {md(_snippet(ds.view(int(p)), SNIPPET))} · {s:.2f}" for p, s in zip(positions, sims)))


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


@dataclass(frozen=True)
class Kind:
    """How one kind of sample is drawn: ``body(ds, pos, info)`` and ``neighbours(ds, positions, similarities)``."""

    body: Callable
    neighbours: Callable


KINDS = {"image": Kind(image_body, image_neighbours), "text": Kind(text_body, text_neighbours),
         "features": Kind(feature_body, feature_neighbours)}
