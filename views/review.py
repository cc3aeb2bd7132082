"""Review: suspected mislabels as cards, most detrimental first; every decision saved at once."""
import numpy as np
import streamlit as st

from dashboard.escape import error
from dashboard.gallery import card
from dashboard.scan import active_scan, loaded
from dashboard.state import (
    SHOW,
    STATUS,
    bound,
    budget_words,
    data_spec,
    decisions_path,
    sync_url,
    view,
)
from ogdash.core.errors import OgdashError
from ogdash.pipeline import DETECTORS
from ogdash.review import DecisionStore
from views.review_parts import (
    conflict_ids,
    decision_counts,
    exports,
    import_decisions,
    reviewer,
)

PAGE_SIZE = 12

st.title("Review")
st.markdown("Suspected mislabels, most detrimental first (**higher score = more detrimental**). Decide **keep**, "
            "**remove**, **relabel** or **unsure**; every decision is saved at once (SQLite), with who made it and "
            "when. Nothing is relabelled unless a person says so.")

scan = active_scan()
splits = loaded(scan)
grads = scan.gradients(compute=False) if splits is not None else None
if grads is None:
    st.info("Extract gradients on the **Gradient space** page first: the gallery is ordered by their scores.")
    st.page_link("views/gradient_space.py", label="Gradient space", icon=":material/scatter_plot:")
    st.stop()
train = splits.train
try:
    scores, flags = scan.scores(), scan.flags()
    suggest = scan.probabilities()
    store = DecisionStore(decisions_path())
except OgdashError as e:
    error(e)
    st.stop()
dataset = train.fingerprint()
v = view()
me, refused = reviewer()  # the signed-in identity, or the name typed here when sign-in is off


def saved(write) -> None:
    """Run one write to the store; a problem is shown on the next run and nothing is lost."""
    if refused:
        st.session_state["review_error"] = refused
        return
    try:
        write()
    except OgdashError as e:
        st.session_state["review_error"] = str(e)


def decide(sample_id, decision, new_label=None):
    saved(lambda: store.record(dataset, sample_id, decision, me, new_label=new_label, n_classes=train.n_classes))


def decide_many(records):
    saved(lambda: store.record_many(dataset, records, me, n_classes=train.n_classes))


@st.fragment
def gallery():
    """Filters, cards, counts and exports: a decision reruns only this part of the page."""
    if "review_error" in st.session_state:
        error(st.session_state.pop("review_error"))
    sources = {"flagged": f"Flagged: top {int(flags.sum())} by {DETECTORS[v['detector']].split(' (')[0]} "
                          f"({budget_words()}; change both on Gradient space)",
               "selection": f"Selected on the gradient plot ({len(v['sel'])})",
               "all": "All training samples"}
    c1, c2, c3 = st.columns([2, 1, 1])
    show = bound("show", c1.radio, "Show", SHOW, format_func=sources.get, horizontal=True)
    classes = bound("classes", c2.multiselect, "Given label", range(train.n_classes),
                    format_func=lambda c: train.classes[c])
    status = bound("status", c3.selectbox, "Status", STATUS)

    selected = np.asarray(v["sel"], dtype=np.int64)
    selected = selected[np.isin(selected, train.ids)]  # a link may name ids of other data
    pos = {"flagged": np.flatnonzero(flags), "all": np.arange(train.n), "selection": train.positions(selected)}[show]
    pos = pos[np.argsort(-scores[pos], kind="stable")]
    current = store.current(dataset)
    decided = {int(r.sample_id): r._asdict() for r in current.itertuples()}
    mine = store.by_reviewer(dataset)
    who = {int(i): rows.to_dict("records") for i, rows in mine.groupby("sample_id")}  # who decided what
    conflicts = store.conflicts(dataset)
    clash = conflict_ids(conflicts)
    if classes:
        pos = pos[np.isin(train.y[pos], classes)]
    if status == "conflict":
        pos = pos[np.isin(train.ids[pos], list(clash))]
    elif status != "all":
        st_of = np.array([decided.get(int(i), {"decision": "undecided"})["decision"] for i in train.ids[pos]])
        pos = pos[st_of == status]

    n_pages = max(1, -(-len(pos) // PAGE_SIZE))
    v["gpage"] = min(v["gpage"], n_pages)  # fewer pages after a filter changed
    c1, c2 = st.columns([1, 3])
    page = bound("gpage", c1.number_input, f"Page (of {n_pages})", 1, n_pages)
    shown = pos[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    c2.caption(f"{len(pos)} samples match; showing {len(shown)}. Scores: higher = more detrimental.")
    if len(shown) == 0:
        st.info("No samples match these filters.")
    else:
        open_ = [int(i) for i in train.ids[shown] if int(i) not in decided]  # bulk actions never overwrite
        suggested = dict(zip(train.ids[shown].tolist(), suggest[shown].argmax(1).tolist()))
        given = dict(zip(train.ids[shown].tolist(), train.y[shown].tolist()))
        accept = [{"sample_id": i, "decision": "keep"} if suggested[i] == given[i] else
                  {"sample_id": i, "decision": "relabel", "new_label": suggested[i]} for i in open_]
        b = st.columns([1, 1, 2, 1])
        b[0].button("Keep the undecided", on_click=decide_many, args=([{"sample_id": i, "decision": "keep"} for i in open_],),
                    disabled=not open_, help="keep every undecided card on this page; decided cards stay as they are")
        b[1].button("Remove the undecided", on_click=decide_many, disabled=not open_,
                    args=([{"sample_id": i, "decision": "remove"} for i in open_],),
                    help="remove every undecided card on this page; decided cards stay as they are")
        b[2].button("Accept the suggested label for the undecided", on_click=decide_many, args=(accept,),
                    disabled=not open_, help="relabel each undecided card on this page to its suggestion (kept when "
                                             "the suggestion is its given label); decided cards stay as they are")
        cols = st.columns(3)
        for k, p in enumerate(shown):
            with cols[k % 3]:
                card(train, int(p), suggest[p], float(scores[p]), decided.get(int(train.ids[p])), decide,
                     who.get(int(train.ids[p]), []), int(train.ids[p]) in clash)

    st.divider()
    decision_counts(current, train, conflicts)
    exports(store, dataset, train, current, data_spec(), flags, scores, suggest, v["detector"], conflicts)
    import_decisions(store, dataset, train.n_classes)
    sync_url()  # a fragment rerun does not reach app.py's sync: keep the address in step here


gallery()
