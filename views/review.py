"""Review: suspected mislabels as cards, most detrimental first; every decision saved at once, undoable."""
import streamlit as st

from dashboard.escape import error, md
from dashboard.gallery import Actions, card, said
from dashboard.scan import active_scan, loaded
from dashboard.state import bound, budget_words, data_spec, decisions_path, sync_url, view
from ogdash.core.errors import OgdashError
from ogdash.core.words import plural
from ogdash.pipeline import DETECTORS
from ogdash.review import DecisionStore
from views.review_examples_parts import page as examples_page
from views.review_examples_parts import source as review_source
from views.review_gallery_parts import (
    FOCUS,
    card_infos,
    class_pairs,
    filters,
    focus_after,
    focused,
    matching,
    step,
    what_matches,
)
from views.review_parts import (
    WATCH_SECONDS,
    conflict_ids,
    decision_counts,
    exports,
    import_decisions,
    reviewer,
    saved,
)

PAGE_SIZE = 12

st.title("Review")
if review_source() == "llm":  # the LLM influence page's fine-tuning examples, as text cards
    examples_page()
    st.stop()
st.markdown("Suspected mislabels, most detrimental first (**higher score = more detrimental**). Decide **keep**, "
            "**remove**, **relabel** or **unsure** (keys **K**, **X**, **L**, **U** on the highlighted card, **N** "
            "next, **Z** undo); every decision is saved at once (SQLite), with who made it and when, and can be "
            "undone. Nothing is relabelled unless a person says so.")

scan = active_scan()
splits = loaded(scan)
grads = scan.gradients(compute=False) if splits is not None else None
if grads is None:
    st.info("Extract gradients on the **Gradient space** page first: the gallery is ordered by their scores.")
    st.page_link("views/gradient_space.py", label="Gradient space", icon=":material/scatter_plot:")
    st.stop()
train = splits.train
try:
    scores, flags, suggest = scan.scores(), scan.flags(), scan.probabilities()
    store = DecisionStore(decisions_path())
except OgdashError as e:
    error(e)
    st.stop()
dataset = train.fingerprint()
v = view()
me, refused = reviewer()  # the signed-in identity, or the name typed here when sign-in is off


def decide(sid, decision, new_label=None, ids=()):
    if saved(lambda me: store.record(dataset, sid, decision, me, new_label=new_label, n_classes=train.n_classes),
             sid):
        focus_after(sid, list(ids))  # the keys move on to the next card


def decide_many(records):
    saved(lambda me: store.record_many(dataset, records, me, n_classes=train.n_classes))


def undone(rows) -> None:
    if len(rows):
        first = rows.iloc[0].to_dict()
        where = train.source(int(train.positions([first["sample_id"]])[0])) if first["sample_id"] in train.ids else ""
        st.session_state["review_note"] = (f"Undid {said(train, first)} on {where or 'id ' + str(first['sample_id'])}"
                                           if len(rows) == 1 else f"Undid {plural(len(rows), 'decision')}")
        st.session_state[FOCUS] = int(first["sample_id"])


def undo(sid):
    saved(lambda me: undone(store.undo(dataset, sid, me)), sid)


def undo_last():
    saved(lambda me: undone(store.undo_last(dataset, me)))


@st.fragment(run_every=WATCH_SECONDS)
def gallery():
    """Filters, cards, counts and exports: a decision reruns only this part of the page, and so does a timer every
    ``WATCH_SECONDS``, which draws other reviewers' decisions (and conflicts) without a reload."""
    problem = st.session_state.pop("review_error", None)
    if "review_note" in st.session_state:
        st.toast(st.session_state.pop("review_note"), icon=":material/undo:")
    detector = DETECTORS[v["detector"]].split(" (")[0]
    filters(train, {"flagged": f"Flagged: top {int(flags.sum())} by {detector} ({budget_words()}; change both on "
                               "Gradient space)",
                    "selection": f"Selected on the gradient plot ({len(v['sel'])})", "all": "All training samples"})
    class_pairs(scan, train)
    current = store.current(dataset)
    decided = {int(r.sample_id): r._asdict() for r in current.itertuples()}
    everyone = {int(i): rows.to_dict("records") for i, rows in store.by_reviewer(dataset).groupby("sample_id")}
    conflicts = store.conflicts(dataset)
    clash = conflict_ids(conflicts)
    pos = matching(scan, flags, scores, decided, clash)

    n_pages = max(1, -(-len(pos) // PAGE_SIZE))
    v["gpage"] = min(v["gpage"], n_pages)  # fewer pages after a filter changed
    c = st.columns([1, 2, 3], vertical_alignment="bottom")
    page = bound("gpage", c[0].number_input, f"Page (of {n_pages})", 1, n_pages)
    shown = pos[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    ids = [int(i) for i in train.ids[shown]]
    now = focused(ids, decided)
    c[1].caption(what_matches(len(pos), len(shown)))
    keys = c[2].container(horizontal=True, gap="small")
    keys.button("Previous", on_click=step, args=(ids, now, -1, n_pages), shortcut="P", icon=":material/arrow_back:")
    keys.button("Next", on_click=step, args=(ids, now, 1, n_pages), shortcut="N", icon=":material/arrow_forward:")
    last = store.last_action(dataset, me) if me and not refused else []
    keys.button("Undo my last decision" if len(last) <= 1 else f"Undo my last {plural(len(last), 'decision')}",
                on_click=undo_last, shortcut="Z", icon=":material/undo:", disabled=not len(last),
                help="withdraw your latest decision (a bulk action: all of it); the history keeps it, marked undone")
    if problem and (problem[0] is None or problem[0] not in ids):
        st.error(problem[1])
    if len(shown) == 0:
        st.info("No samples match these filters.")
    else:
        open_ = [i for i in ids if i not in decided]  # bulk actions never overwrite
        accept = [{"sample_id": i, "decision": "keep"} if int(suggest[p].argmax()) == int(train.y[p]) else
                  {"sample_id": i, "decision": "relabel", "new_label": int(suggest[p].argmax())}
                  for p, i in zip(shown, ids) if i in open_]
        b = st.columns([1, 1, 2, 1])
        off = not open_ or bool(refused)
        b[0].button("Keep the undecided", on_click=decide_many, args=([{"sample_id": i, "decision": "keep"}
                                                                       for i in open_],), disabled=off,
                    help="keep every undecided card on this page; decided cards stay as they are")
        b[1].button("Remove the undecided", on_click=decide_many, disabled=off,
                    args=([{"sample_id": i, "decision": "remove"} for i in open_],),
                    help="remove every undecided card on this page; decided cards stay as they are")
        b[2].button("Accept the suggested label for the undecided", on_click=decide_many, args=(accept,),
                    disabled=off, help="relabel each undecided card on this page to its suggestion (kept when "
                                       "the suggestion is its given label); decided cards stay as they are")
        if refused:
            b[3].markdown(f":red[**Decisions are off:**] {md(refused)}")
        history = store.history(dataset, sample_ids=ids, with_undone=True)
        actions = Actions(lambda sid, d, label=None: decide(sid, d, label, ids), undo)
        infos = card_infos(scan, shown, suggest, scores, decided, everyone, clash, history, me, refused, now, problem)
        for row in range(0, len(infos), 3):  # row by row: the next card (N) is the one to the right
            for col, info in zip(st.columns(3), infos[row:row + 3]):
                with col:
                    card(train, info, actions)

    st.divider()
    decision_counts(current, train, conflicts)
    sync_url()  # a fragment rerun does not reach app.py's sync: keep the address in step here


gallery()
# outside the gallery's timer (a download or an upload redrawn under a click would lose it)
exports(store, dataset, train, data_spec(), flags, scores, suggest, v["detector"])
import_decisions(store, dataset, train.n_classes)
