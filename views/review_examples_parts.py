"""The Review page's fine-tuning examples (issue 29): the LLM influence page's flagged examples as text cards.

The cards are the gallery's (dashboard/gallery.py, kind "prompt": prompt and completion side by side), with the
same reviewer rules, keys, undo, history and pages as the data's review; the decisions are ``keep``, ``remove``,
``unsure`` and ``edit`` (a corrected completion), saved through ``ogdash.experiments.llm_review`` under the file's
fingerprint. The download is the cleaned file in the input's own record format.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard.card_kinds import PromptCards
from dashboard.escape import error, md
from dashboard.gallery import Actions, CardInfo, card
from dashboard.handoff import shared
from dashboard.state import EXAMPLE_STATUS, bound, decisions_path, sync_url, view
from ogdash.core.errors import OgdashError
from ogdash.core.words import plural
from ogdash.experiments.llm_review import TEXT_DECISIONS, FlaggedExamples, cleaned_jsonl, record, record_many
from ogdash.exports import csv_bytes
from ogdash.review import DecisionStore
from views.review_gallery_parts import FOCUS, focus_after, focused, step
from views.review_parts import WATCH_SECONDS, conflict_ids, decider, reviewer, saved

SOURCES = {"data": "Data & model's data", "llm": "Fine-tuning examples (LLM influence page)"}
PAGE_SIZE = 12
PER_ROW = 2  # prompt and completion side by side need half the page each


def _switch() -> None:
    """Another source: its gallery starts at its first page, unfiltered."""
    view().update(review=st.session_state["_review"], gpage=1, status="all", show="flagged", q="")
    st.session_state[FOCUS] = None


def source() -> str:
    """What the Review page reviews: the data ("data"), or the LLM page's fine-tuning examples ("llm"), offered
    only once the LLM page has flagged some (or a link names them)."""
    v = view()
    if not v["ft"]:
        return "data"
    st.session_state["_review"] = v["review"]
    st.radio("Review", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="_review", on_change=_switch)
    return v["review"]


def page() -> None:
    """The fine-tuning examples' review: reviewer, filters, cards, counts and the cleaned download."""
    st.markdown("Fine-tuning examples flagged on the **LLM influence** page, most detrimental first (**higher score "
                "= more detrimental**). Read the prompt and completion side by side and decide **keep**, **remove**, "
                "**unsure** (keys **K**, **X**, **U**; **N** next, **Z** undo) or **edit** the completion; every "
                "decision is saved at once, with who made it and when, and can be undone. The cleaned JSONL below "
                "leaves out the removed examples and carries the edited completions.")
    examples = shared()
    if examples is None:
        st.info("These fine-tuning examples are no longer held by the app (it restarted since they were flagged). "
                "Run them again on the **LLM influence** page (their gradients come from the disk cache); the "
                "decisions saved so far are kept.")
        st.page_link("views/llm_influence.py", label="LLM influence", icon=":material/forum:")
        return
    try:
        store = DecisionStore(decisions_path())
    except OgdashError as e:
        error(e)
        return
    reviewer()
    _gallery(examples, store)
    _exports(store, examples)  # outside the gallery's timer: a download redrawn under a click would lose it


def _matching(examples: FlaggedExamples, decided: dict, clash: set) -> np.ndarray:
    v = view()
    pos = examples.order(flagged_only=v["show"] != "all", query=v["q"])
    if v["status"] == "conflict":
        return pos[np.isin(examples.data.sample_ids[pos], list(clash))]
    if v["status"] != "all" and len(pos):
        now = np.array([decided.get(int(i), {"decision": "undecided"})["decision"]
                        for i in examples.data.sample_ids[pos]])
        pos = pos[now == v["status"]]
    return pos


def _filters(examples: FlaggedExamples) -> None:
    v = view()
    if v["show"] not in ("flagged", "all"):  # "selection" belongs to the data's gradient plot
        v["show"] = "flagged"
    if v["status"] not in EXAMPLE_STATUS:  # "relabel" has no meaning here
        v["status"] = "all"
    n, flagged = examples.data.n, int(examples.flags.sum())
    c1, c2 = st.columns([3, 1])
    shows = {"flagged": f"Flagged: the top {flagged} by {examples.detector or 'the detrimental score'} (change the "
                        "budget on the LLM influence page)", "all": f"All {n:,} training examples"}
    bound("show", c1.radio, "Show", list(shows), format_func=shows.get, horizontal=True)
    bound("status", c2.selectbox, "Status", EXAMPLE_STATUS)
    bound("q", st.text_input, "Find an example", icon=":material/search:",
          placeholder="an id, line 7, or words in a prompt or completion (searches all training examples)")


@st.fragment(run_every=WATCH_SECONDS)
def _gallery(examples: FlaggedExamples, store: DecisionStore) -> None:
    """Filters, cards, counts and the download: a decision reruns only this part of the page, and so does a timer
    every ``WATCH_SECONDS`` (other reviewers' decisions show without a reload)."""
    data, dataset, v = examples.data, examples.dataset, view()
    ds = PromptCards(examples)
    me, refused = decider()  # the box above the fragment holds the name
    problem = st.session_state.pop("review_error", None)
    if "review_note" in st.session_state:
        st.toast(st.session_state.pop("review_note"), icon=":material/undo:")
    st.subheader(f"{md(data.name)}: {plural(int(examples.flags.sum()), 'flagged example')} of {data.n:,}")
    _filters(examples)
    current = store.current(dataset)
    decided = {int(r.sample_id): r._asdict() for r in current.itertuples()}
    everyone = {int(i): rows.to_dict("records") for i, rows in store.by_reviewer(dataset).groupby("sample_id")}
    clash = conflict_ids(store.conflicts(dataset))
    pos = _matching(examples, decided, clash)

    n_pages = max(1, -(-len(pos) // PAGE_SIZE))
    v["gpage"] = min(v["gpage"], n_pages)
    c = st.columns([1, 2, 3], vertical_alignment="bottom")
    number = bound("gpage", c[0].number_input, f"Page (of {n_pages})", 1, n_pages)
    shown = pos[(number - 1) * PAGE_SIZE: number * PAGE_SIZE]
    ids = [int(i) for i in data.sample_ids[shown]]
    now = focused(ids, decided)
    where = f" “{md(v['q'].strip())}” among all training examples" if v["q"].strip() else ""
    c[1].caption(f"{plural(len(pos), 'example')} match{'es' if len(pos) == 1 else ''}{where}; showing "
                 f"{len(shown)}. Scores: higher = more detrimental.")
    keys = c[2].container(horizontal=True, gap="small")
    keys.button("Previous", on_click=step, args=(ids, now, -1, n_pages), shortcut="P", icon=":material/arrow_back:")
    keys.button("Next", on_click=step, args=(ids, now, 1, n_pages), shortcut="N", icon=":material/arrow_forward:")
    last = store.last_action(dataset, me) if me and not refused else []
    keys.button("Undo my last decision" if len(last) <= 1 else f"Undo my last {plural(len(last), 'decision')}",
                on_click=_undo_last, args=(store, examples), shortcut="Z", icon=":material/undo:",
                disabled=not len(last), help="withdraw your latest decision (a bulk action: all of it)")
    if problem and (problem[0] is None or problem[0] not in ids):
        st.error(problem[1])
    if len(shown) == 0:
        st.info("No examples match these filters.")
    else:
        open_ = [i for i in ids if i not in decided]  # bulk actions never overwrite
        b = st.columns([1, 1, 2])
        for col, name in zip(b, ("keep", "remove")):
            col.button(f"{name.capitalize()} the undecided", on_click=_decide_many, args=(store, data, open_, name),
                       disabled=not open_ or bool(refused), key=f"bulk_{name}",
                       help=f"{name} every undecided card on this page; decided cards stay as they are")
        if refused:
            b[2].markdown(f":red[**Decisions are off:**] {md(refused)}")
        history = store.history(dataset, sample_ids=ids, with_undone=True)
        past = {int(i): rows.to_dict("records") for i, rows in history.groupby("sample_id")} if len(history) else {}
        actions = Actions(lambda sid, d, text=None: _decide(store, data, sid, d, text, ids),
                          lambda sid: _undo(store, examples, sid))
        for row in range(0, len(shown), PER_ROW):
            for col, p in zip(st.columns(PER_ROW), shown[row:row + PER_ROW]):
                sid = int(data.sample_ids[p])
                rows = everyone.get(sid, [])
                mine = next((r for r in rows if r["reviewer"] == me), None) if me and not refused else None
                info = CardInfo(int(p), None, float(examples.scores[p]), decided.get(sid), rows, sid in clash,
                                past.get(sid, []), refused=refused, focus=sid == now and not refused, mine=mine,
                                error=problem[1] if problem and problem[0] == sid else "")
                with col:
                    card(ds, info, actions)
    st.divider()
    _counts(current, data)
    sync_url()  # a fragment rerun does not reach app.py's sync: keep the address in step here


def _decide(store, data, sid: int, decision: str, text, ids) -> None:
    if saved(lambda me: record(store, data, sid, decision, me, new_completion=text), sid):
        focus_after(sid, list(ids))


def _decide_many(store, data, sample_ids, decision: str) -> None:
    saved(lambda me: record_many(store, data, sample_ids, decision, me))


def _undone(examples: FlaggedExamples, rows) -> None:
    if len(rows):
        sid = int(rows.iloc[0]["sample_id"])
        where = examples.data.sources[examples.data.position(sid)]
        st.session_state["review_note"] = (f"Undid {rows.iloc[0]['decision']} on {where}" if len(rows) == 1
                                           else f"Undid {plural(len(rows), 'decision')}")
        st.session_state[FOCUS] = sid


def _undo(store, examples: FlaggedExamples, sid: int) -> None:
    saved(lambda me: _undone(examples, store.undo(examples.dataset, sid, me)), sid)


def _undo_last(store, examples: FlaggedExamples) -> None:
    saved(lambda me: _undone(examples, store.undo_last(examples.dataset, me)))


def _counts(current, data) -> None:
    st.subheader("Decisions so far")
    counts = current[current["sample_id"].isin(data.sample_ids)]["decision"].value_counts()
    for col, name in zip(st.columns(len(TEXT_DECISIONS)), TEXT_DECISIONS):
        col.metric(name, int(counts.get(name, 0)))


def _exports(store: DecisionStore, examples: FlaggedExamples) -> None:
    st.subheader("Export")
    data = examples.data
    row = st.container(horizontal=True)
    row.download_button("Cleaned JSONL (.jsonl)", lambda: cleaned_jsonl(data, store), on_click="ignore",
                        file_name=f"{data.name}.reviewed.jsonl", mime="application/jsonl")

    def decisions() -> bytes:
        history = store.history(examples.dataset)
        where = dict(zip(data.sample_ids.tolist(), data.sources))
        history.insert(1, "source", [where.get(int(s), "") for s in history["sample_id"]])
        return csv_bytes(history)

    row.download_button("Decisions (.csv)", decisions, file_name="decisions.csv", mime="text/csv",
                        on_click="ignore")
    st.caption(f"The cleaned file is {md(data.name)} in its own record format ({data.kind} records) as JSON lines: "
               "removed examples left out, edited completions written in; keep, unsure and undecided examples "
               "as they were.")
