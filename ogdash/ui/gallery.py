"""The review gallery's card: one suspect sample with its labels, score and decision buttons."""
from __future__ import annotations

import numpy as np
import streamlit as st

BADGE = {"keep": ":green[keep]", "remove": ":red[remove]", "relabel": ":orange[relabel]", "unsure": ":gray[unsure]"}


def card(ds, pos: int, probs: np.ndarray, score: float, decision: dict | None, on_decide) -> None:
    """Draw sample ``pos`` of ``ds``; ``on_decide(sample_id, decision, new_label)`` records a choice."""
    sid = int(ds.ids[pos])
    given, suggested = int(ds.y[pos]), int(np.argmax(probs))
    view = ds.view(pos)
    with st.container(border=True):
        if ds.kind == "image":
            st.image(view, clamp=True, width="stretch")
        elif ds.kind == "text":
            st.markdown(f"> {view}")
        else:
            st.code(np.array2string(np.asarray(view), precision=3, max_line_width=40), language=None)
        st.markdown(f"**id {sid}** · score {score:.3f}  \n"
                    f"given **{ds.classes[given]}** · model suggests **{ds.classes[suggested]}** ({probs[suggested]:.0%})")
        if decision:
            label = f" → {ds.classes[int(decision['new_label'])]}" if decision["decision"] == "relabel" else ""
            st.markdown(f"decided: {BADGE[decision['decision']]}{label} ({decision['reviewer']})")
        else:
            st.caption("undecided")
        b = st.columns(3)
        b[0].button("Keep", key=f"keep_{sid}", on_click=on_decide, args=(sid, "keep", None), width="stretch")
        b[1].button("Remove", key=f"remove_{sid}", on_click=on_decide, args=(sid, "remove", None), width="stretch")
        b[2].button("Unsure", key=f"unsure_{sid}", on_click=on_decide, args=(sid, "unsure", None), width="stretch")
        r = st.columns([2, 1])
        target = r[0].selectbox("Relabel to", range(ds.n_classes), index=suggested, key=f"to_{sid}",
                                format_func=lambda c: ds.classes[c], label_visibility="collapsed")
        r[1].button("Relabel", key=f"relabel_{sid}", on_click=lambda: on_decide(sid, "relabel", int(st.session_state[f"to_{sid}"])),
                    width="stretch", help=f"relabel to the class chosen on the left (now {ds.classes[target]})")
