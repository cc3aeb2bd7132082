"""The review gallery's card: one suspect sample, where it came from, its labels, score, nearest neighbours, its
decision history and the decision controls.

The sample itself is drawn by its kind's renderer (dashboard/card_kinds.py); everything else is the same for
every kind, except that a fine-tuning example (kind "prompt") has a group instead of given and suggested labels,
and an edit-completion box instead of relabel. Controls are never live when a click would not be saved: without a
reviewer (or for one not on the reviewers list) they are disabled and the card says why, and a write that failed
is shown on its card.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import streamlit as st

from dashboard.card_kinds import KINDS, SNIPPET, feature_table, snippet  # noqa: F401  (feature_table: Data page)
from dashboard.escape import md

BADGE = {"keep": ":green[keep]", "remove": ":red[remove]", "relabel": ":orange[relabel]", "unsure": ":gray[unsure]",
         "edit": ":blue[edit]"}
# The focused card's keys (Streamlit reserves C and R): keep, remove, unsure, relabel.
KEYS = {"keep": "K", "remove": "X", "unsure": "U", "relabel": "L"}


@dataclass
class CardInfo:
    """What a card shows beside the sample: ``probs`` (C,) held-out class probabilities (their argmax is the
    suggestion), ``score`` (higher = more detrimental), the current ``decision`` and each reviewer's latest
    (``everyone``), whether they ``conflict``, the sample's ``history`` (with undone rows), its ``neighbours``
    ({"given"|"suggested": (positions, similarities)}) in ``space``, a feature row's ``unusual`` features,
    ``refused`` (why decisions are off; "" when on), a failed write's ``error``, ``focus`` (the keys act
    here) and ``mine`` (this reviewer's standing decision, which Undo withdraws)."""

    pos: int
    probs: np.ndarray
    score: float
    decision: dict | None = None
    everyone: list = field(default_factory=list)
    conflict: bool = False
    history: list = field(default_factory=list)
    neighbours: dict | None = None
    space: str = ""
    unusual: list = field(default_factory=list)
    refused: str = ""
    error: str = ""
    focus: bool = False
    mine: dict | None = None


@dataclass(frozen=True)
class Actions:
    """What the card's controls call: ``decide(sample_id, decision, new_label)`` and ``undo(sample_id)``."""

    decide: Callable
    undo: Callable


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


def said(ds, d: dict) -> str:
    """A decision in words: ``keep``, ``relabel → 7``, ``edit → “the new completion…”``."""
    if d["decision"] == "edit":
        return f"edit → “{md(snippet(d.get('new_text') or '', SNIPPET))}”"
    return d["decision"] + (_target(ds, d) if d["decision"] == "relabel" else "")


def _neighbours(ds, info: CardInfo, given: int, suggested: int) -> None:
    if not info.neighbours:
        return
    kind = KINDS[ds.kind]
    for which, label in (("given", given), ("suggested", suggested)):
        found = info.neighbours.get(which)
        if found is None or not len(found[0]):
            continue
        st.caption(f"Closest labelled **{md(ds.classes[label])}** ({which})",
                   help=f"The nearest training samples given the label {md(ds.classes[label])} in {info.space}, "
                        "with their cosine similarity to this one (1: the same direction).")
        kind.neighbours(ds, *found)


def _history(ds, info: CardInfo) -> None:
    if not info.history:
        return
    with st.expander(f"History ({len(info.history)})"):
        lines = []
        for h in info.history:
            line = f"{str(h['timestamp'])[:19].replace('T', ' ')} · {md(h['reviewer'])} · {said(ds, h)}"
            lines.append(f"- ~~{line}~~ (undone)" if h.get("undone") else f"- {line}")
        st.markdown("\n".join(lines))


def card(ds, info: CardInfo, actions: Actions) -> None:
    """Draw training sample ``info.pos`` of ``ds`` with its labels, score, neighbours, history and controls."""
    pos = info.pos
    sid = int(ds.ids[pos])
    labelled = ds.kind != "prompt"  # a fine-tuning example has a group and a completion, not a class
    with st.container(border=True, key=f"card_{sid}"):
        if info.focus:  # the keys' card stands out (an outline, so the layout does not move)
            st.html(f"<style>.st-key-card_{sid} {{outline: 3px solid #ff4b4b; outline-offset: 2px;}}</style>")
            relabel = f"**{KEYS['relabel']}** relabel · " if labelled else ""
            st.caption(f"⌨ Keys act on this card: **{KEYS['keep']}** keep · **{KEYS['remove']}** remove · "
                       f"{relabel}**{KEYS['unsure']}** unsure · **N** next · **Z** undo")
        KINDS[ds.kind].body(ds, pos, info)
        where = f"**{md(ds.sources[pos])}** · id {sid}" if ds.sources is not None else f"**id {sid}**"
        if labelled:
            given, suggested = int(ds.y[pos]), int(np.argmax(info.probs))
            st.markdown(f"{where} · score {info.score:.3f}  \n"
                        f"given **{md(ds.classes[given])}** · suggested **{md(ds.classes[suggested])}** "
                        f"({info.probs[suggested]:.0%})", help="The suggestion comes from the last layer refitted "
                        "without this sample, so a wrong label the model memorised is not echoed back.")
            _neighbours(ds, info, given, suggested)
        else:
            group, name = ds.group(pos), ds.name(pos)  # the file's own id, where it has one
            where = f"**{md(ds.sources[pos])}**" + (f" · {md(name)}" if name else "")
            st.markdown(f"{where} · score {info.score:.3f}" + (f" · group **{md(group)}**" if group else ""),
                        help="Score: higher = more detrimental (the LLM influence page's detrimental score).")
            suggested = None
        decision = info.decision
        if decision:
            label = _target(ds, decision) if decision["decision"] == "relabel" else ""
            st.markdown(f"decided: {BADGE[decision['decision']]}{label} ({md(decision['reviewer'])})")
            if len(info.everyone) > 1:  # who decided what, when several did
                mark = ":red[**conflict**] · " if info.conflict else ""
                st.markdown(mark + " · ".join(f"{md(d['reviewer'])}: {said(ds, d)}" for d in info.everyone))
        else:
            st.caption("undecided")
        _controls(ds, info, actions, sid, suggested)
        _history(ds, info)


def _controls(ds, info: CardInfo, actions: Actions, sid: int, suggested: int) -> None:
    """Keep / remove / unsure / relabel or edit (and undo), disabled with the reason beside them when a click would
    not be saved; the focused card's buttons carry the keyboard shortcuts."""
    off, keys = bool(info.refused), (KEYS if info.focus and not info.refused else {})
    row = st.container(horizontal=True, gap="small")  # wraps rather than cut a label short (a key hint widens it)
    for name in ("keep", "remove", "unsure"):
        row.button(name.capitalize(), key=f"{name}_{sid}", on_click=actions.decide, args=(sid, name, None),
                   disabled=off, shortcut=keys.get(name))
    if suggested is None:
        _edit(ds, info, actions, sid, off)
    else:
        _relabel(ds, info, actions, sid, suggested, off, keys)
    if info.refused:
        st.markdown(f":red[**Decisions are off:**] {md(info.refused)}")
    elif info.mine:
        st.button(f"Undo my {info.mine['decision']}", key=f"undo_{sid}", on_click=actions.undo, args=(sid,),
                  type="tertiary", icon=":material/undo:", help="withdraw your latest decision on this sample; "
                  "it goes back to the decision before (anyone's) or to undecided, and the history keeps both")
    if info.error:
        st.error(info.error)


def _edit(ds, info: CardInfo, actions: Actions, sid: int, off: bool) -> None:
    """A fine-tuning example's corrected completion: a box holding the standing edit (else the completion) and a
    button that saves it as an ``edit`` decision."""
    decision = info.decision
    start = decision["new_text"] if decision and decision["decision"] == "edit" else ds.completion(info.pos)
    box = f"edit_{sid}_{len(info.history)}"  # a new decision redraws the box with the text it stands at
    with st.expander("Edit the completion", expanded=bool(decision and decision["decision"] == "edit")):
        st.text_area("Corrected completion", value=start, key=box, disabled=off, height=110)
        st.button("Save the edit", key=f"save_edit_{sid}", disabled=off,
                  on_click=lambda: actions.decide(sid, "edit", st.session_state[box]),
                  help="saves an edit decision: the cleaned JSONL carries this completion instead")


def _relabel(ds, info: CardInfo, actions: Actions, sid: int, suggested: int, off: bool, keys: dict) -> None:
    r = st.columns([3, 2], vertical_alignment="bottom")
    decision = info.decision
    start = valid_label(ds, decision["new_label"]) if decision and decision["decision"] == "relabel" else None
    start = suggested if start is None else start
    box = f"to_{sid}_{start}"  # a new decision redraws the box at its label
    target = r[0].selectbox("Relabel to", range(ds.n_classes), index=start, key=box, disabled=off,
                            format_func=lambda c: ds.classes[c], label_visibility="collapsed")
    r[1].button("Relabel", key=f"relabel_{sid}", on_click=lambda: actions.decide(sid, "relabel",
                                                                                  int(st.session_state[box])),
                disabled=off, shortcut=keys.get("relabel"),
                help=f"relabel to the class chosen on the left (now {md(ds.classes[target])})")
