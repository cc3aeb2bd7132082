"""The review gallery's card: one suspect sample with where it came from, its labels, score and decision buttons."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard.escape import md

BADGE = {"keep": ":green[keep]", "remove": ":red[remove]", "relabel": ":orange[relabel]", "unsure": ":gray[unsure]"}


def feature_table(ds, positions) -> pd.DataFrame:
    """Feature rows of ``ds`` at ``positions`` with their column names, indexed by source."""
    positions = list(positions)
    names = ds.feature_names or [f"x{j}" for j in range(int(np.prod(ds.X.shape[1:])))]
    rows = ds.X[positions].reshape(len(positions), -1)
    return pd.DataFrame(rows, columns=list(names), index=[ds.source(p) for p in positions])


def valid_label(ds, label) -> int | None:
    """``label`` as a class index of ``ds``, or None when it is not one (a stored relabel to a class this data
    lacks, say from an import made before imports were checked)."""
    try:
        label = int(label)
    except (TypeError, ValueError, OverflowError):
        return None
    return label if 0 <= label < ds.n_classes else None


def _target(ds, d: dict) -> str:
    """Where a relabel decision sends the sample: its class name, or a marked bad label (never an IndexError)."""
    label = valid_label(ds, d["new_label"])
    if label is None:
        return f" → :red[**not a class of this data** ({md(str(d['new_label'])[:24])})]"
    return f" → {md(ds.classes[label])}"


def _said(ds, d: dict) -> str:
    return d["decision"] + (_target(ds, d) if d["decision"] == "relabel" else "")


def card(ds, pos: int, probs: np.ndarray, score: float, decision: dict | None, on_decide,
         everyone: list[dict] = (), conflict: bool = False) -> None:
    """Draw sample ``pos`` of ``ds``; ``probs`` (C,) give its suggested label; ``on_decide(sample_id, decision,
    new_label)`` records a choice; ``everyone`` holds each reviewer's latest decision on it, ``conflict`` says
    they differ."""
    sid = int(ds.ids[pos])
    given, suggested = int(ds.y[pos]), int(np.argmax(probs))
    view = ds.view(pos)
    with st.container(border=True, key=f"card_{sid}"):
        if ds.kind == "image":
            st.image(view, clamp=True, width="stretch")
        elif ds.kind == "text":
            st.markdown(f"> {md(view)}")
        else:
            table = feature_table(ds, [pos]).T.reset_index()
            table.columns = ["feature", "value"]
            st.dataframe(table, hide_index=True, width="stretch", height=min(35 * (len(table) + 1) + 3, 213),
                         column_config={"value": st.column_config.NumberColumn(format="%.4g")})
        where = f"**{md(ds.sources[pos])}** · id {sid}" if ds.sources is not None else f"**id {sid}**"
        st.markdown(f"{where} · score {score:.3f}  \n"
                    f"given **{md(ds.classes[given])}** · suggested **{md(ds.classes[suggested])}** "
                    f"({probs[suggested]:.0%})", help="The suggestion comes from the last layer refitted without this "
                    "sample, so a wrong label the model memorised is not echoed back.")
        if decision:
            label = _target(ds, decision) if decision["decision"] == "relabel" else ""
            st.markdown(f"decided: {BADGE[decision['decision']]}{label} ({md(decision['reviewer'])})")
            if len(everyone) > 1:  # who decided what, when several did
                mark = ":red[**conflict**] · " if conflict else ""
                st.markdown(mark + " · ".join(f"{md(d['reviewer'])}: {_said(ds, d)}" for d in everyone))
        else:
            st.caption("undecided")
        b = st.columns(3)
        b[0].button("Keep", key=f"keep_{sid}", on_click=on_decide, args=(sid, "keep", None), width="stretch")
        b[1].button("Remove", key=f"remove_{sid}", on_click=on_decide, args=(sid, "remove", None), width="stretch")
        b[2].button("Unsure", key=f"unsure_{sid}", on_click=on_decide, args=(sid, "unsure", None), width="stretch")
        r = st.columns([2, 1])
        start = valid_label(ds, decision["new_label"]) if decision and decision["decision"] == "relabel" else None
        start = suggested if start is None else start
        box = f"to_{sid}_{start}"  # a new decision redraws the box at its label
        target = r[0].selectbox("Relabel to", range(ds.n_classes), index=start, key=box,
                                format_func=lambda c: ds.classes[c], label_visibility="collapsed")
        r[1].button("Relabel", key=f"relabel_{sid}", on_click=lambda: on_decide(sid, "relabel", int(st.session_state[box])),
                    width="stretch", help=f"relabel to the class chosen on the left (now {md(ds.classes[target])})")
