"""The Review gallery's parts: its filters (show, given and suggested class, status, search), the class-pair
summary of the flags, which samples match, the keyboard focus, and what each card shows beside its sample.

Everything computed (search, neighbours, class pairs, z-scores, suggestions) comes from the scan; this module
only chooses and draws.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import plots
from dashboard.escape import md
from dashboard.gallery import CardInfo
from dashboard.state import SHOW, STATUS, bound, view
from ogdash.core.errors import OgdashError
from ogdash.core.words import plural
from ogdash.pipeline import Scan, top_pairs

FOCUS = "review_focus"  # the sample id the keys act on (or "last": the page's last card)
PAIR_PILLS = 20  # class pairs offered as filters; the matrix (up to MATRIX_MAX classes) shows them all
MATRIX_MAX = 20


def filters(train, sources: dict) -> None:
    """Show, given label, suggested label, status, and the search box; each kept in the view (and the address)."""
    names = lambda c: train.classes[c]  # noqa: E731
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    bound("show", c1.radio, "Show", SHOW, format_func=sources.get, horizontal=True)
    bound("classes", c2.multiselect, "Given label", range(train.n_classes), format_func=names)
    bound("suggested", c3.multiselect, "Suggested label", range(train.n_classes), format_func=names,
          help="the label a last layer that never saw the sample's label gives it")
    if view()["status"] not in STATUS:  # "edit", from the fine-tuning examples' review: not a status of this data
        view()["status"] = "all"
    bound("status", c4.selectbox, "Status", STATUS)
    inside = " or words in the text" if train.kind == "text" else ""
    bound("q", st.text_input, "Find a sample", icon=":material/search:",
          placeholder=f"a file name, line 7, row 7, id 12{inside} (searches all training samples)")


def _pair_code(g: int, s: int) -> str:
    return f"{g}>{s}"


def _take_pair() -> None:
    """The pill a person chose (or cleared) becomes the given and suggested class filters."""
    code = st.session_state.get("_pair")
    g, s = ([int(x)] for x in code.split(">")) if code else ([], [])
    view().update(classes=g, suggested=s, gpage=1)


def class_pairs(scan: Scan, train) -> None:
    """Where the flags fall, given → suggested class: the most common pairs as filters, and the whole matrix."""
    matrix = scan.class_pairs()
    pairs = top_pairs(matrix, PAIR_PILLS)
    if not pairs:
        return
    v, names = view(), train.classes
    codes = [_pair_code(g, s) for g, s, _ in pairs]
    label = {_pair_code(g, s): f"{names[g]} → {names[s]} · {n}" for g, s, n in pairs}
    now = _pair_code(v["classes"][0], v["suggested"][0]) if len(v["classes"]) == len(v["suggested"]) == 1 else None
    st.session_state["_pair"] = now if now in codes else None
    left = int(np.count_nonzero(matrix)) - len(pairs)
    st.pills("Flags by given → suggested class (choose one to see those cards)", codes, format_func=label.get,
             key="_pair", on_change=_take_pair,
             help="Like cleanlab's confident joint, for the flags: how many flagged samples have each given label and "
                  "each suggested label. Given = suggested: flagged, but the suggestion agrees with the label."
                  + (f" {plural(left, 'smaller pair')} not listed; filter by the class boxes." if left > 0 else ""))
    if train.n_classes <= MATRIX_MAX:
        with st.expander("All pairs as a matrix"):
            st.plotly_chart(plots.flag_pairs_heatmap(matrix, names), width="stretch")


def matching(scan: Scan, flags: np.ndarray, scores: np.ndarray, decided: dict, clash: set) -> np.ndarray:
    """Training positions the gallery shows, most detrimental first: a search's matches among all samples (else
    the flagged, the plot's selection or all), then the class, suggestion and status filters."""
    train, v = scan.train, view()
    if v["q"].strip():
        pos = scan.find(v["q"])
    elif v["show"] == "selection":
        selected = np.asarray(v["sel"], dtype=np.int64)
        pos = train.positions(selected[np.isin(selected, train.ids)])  # a link may name ids of other data
    else:
        pos = np.flatnonzero(flags) if v["show"] == "flagged" else np.arange(train.n)
    pos = pos[np.argsort(-scores[pos], kind="stable")]
    if v["classes"]:
        pos = pos[np.isin(train.y[pos], v["classes"])]
    if v["suggested"]:
        pos = pos[np.isin(scan.suggested()[pos], v["suggested"])]
    if v["status"] == "conflict":
        pos = pos[np.isin(train.ids[pos], list(clash))]
    elif v["status"] != "all":
        now = np.array([decided.get(int(i), {"decision": "undecided"})["decision"] for i in train.ids[pos]])
        pos = pos[now == v["status"]] if len(pos) else pos
    return pos


def what_matches(n: int, shown: int) -> str:
    v = view()
    where = f" “{md(v['q'].strip())}” among all training samples" if v["q"].strip() else ""
    return (f"{plural(n, 'sample')} match{'es' if n == 1 else ''}{where}; showing {shown}. "
            "Scores: higher = more detrimental.")


# ---------------------------------------------------------------- the keyboard's card

def focused(ids: list[int], decided: dict) -> int | None:
    """The card the keys act on: the one chosen before if shown, else the page's first undecided, else its first."""
    want = st.session_state.get(FOCUS)
    if want == "last" and ids:
        return ids[-1]
    if want in ids:
        return want
    return next((i for i in ids if i not in decided), ids[0] if ids else None)


def focus_after(sid: int, ids: list[int]) -> None:
    """After a decision on ``sid``: the keys move to the next card of the page (the page's first when it was the
    last one)."""
    if sid in ids and ids.index(sid) + 1 < len(ids):
        st.session_state[FOCUS] = ids[ids.index(sid) + 1]
    else:
        st.session_state[FOCUS] = None


def step(ids: list[int], now: int | None, by: int, n_pages: int) -> None:
    """Next (``by`` = 1) or previous (-1) card; past the page's end, the next or previous page."""
    v = view()
    at = ids.index(now) if now in ids else -1
    to = at + by
    if 0 <= to < len(ids):
        st.session_state[FOCUS] = ids[to]
    elif to >= len(ids) and v["gpage"] < n_pages:
        v["gpage"], st.session_state[FOCUS] = v["gpage"] + 1, None
    elif to < 0 and v["gpage"] > 1:
        v["gpage"], st.session_state[FOCUS] = v["gpage"] - 1, "last"


# ---------------------------------------------------------------- what each card shows

def card_infos(scan: Scan, shown: np.ndarray, suggest, scores, decided: dict, everyone: dict, clash: set,
               history, me: str, refused: str, focus: int | None, error: tuple | None) -> list[CardInfo]:
    """One ``CardInfo`` per shown position: labels, decisions, history, neighbours and unusual features."""
    train = scan.train
    positions = [int(p) for p in shown]
    try:
        near, (_, space) = scan.neighbours(positions), scan.feature_space()
    except OgdashError:  # no feature rows to compare (a model without them): the cards go without
        near, space = {}, ""
    unusual = scan.unusual_features(positions)
    past = {int(i): rows.to_dict("records") for i, rows in history.groupby("sample_id")} if len(history) else {}
    infos = []
    for p in positions:
        sid = int(train.ids[p])
        rows = everyone.get(sid, [])
        mine = next((r for r in rows if r["reviewer"] == me), None) if me and not refused else None
        infos.append(CardInfo(p, suggest[p], float(scores[p]), decided.get(sid), rows, sid in clash,
                              past.get(sid, []), near.get(p), space, unusual.get(p, []), refused,
                              error[1] if error and error[0] == sid else "", sid == focus and not refused, mine))
    return infos
