import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from ogdash.errors import OgdashError
from ogdash.review import DECISIONS, DecisionStore
from ogdash.ui.gallery import card
from ogdash.ui.state import active_gradients, active_model, active_scores, active_splits, decisions_path, keep

PAGE_SIZE = 12

st.title("Review")
st.markdown("Suspected mislabels, most detrimental first. Decide **keep**, **remove**, **relabel** or **unsure**; "
            "every decision is saved at once (SQLite), with who made it and when. Nothing is relabelled unless a "
            "person says so.")

splits = active_splits()
pair = active_gradients() if splits is not None and active_model() is not None else None
if pair is None:
    st.info("Extract gradients on the **Gradient space** page first: the gallery is ordered by their scores.")
    st.page_link("views/gradient_space.py", label="Gradient space", icon=":material/scatter_plot:")
    st.stop()
train = splits.train
grads, _ = pair
flags = st.session_state.get("flags", {"detector": "iforest", "budget": 0.05, "ids": None})
try:
    scores = active_scores(flags["detector"])
except OgdashError as e:
    st.error(str(e))
    st.stop()

try:
    store = DecisionStore(decisions_path())
except OgdashError as e:
    st.error(str(e))
    st.stop()
dataset = train.fingerprint()

keep("_reviewer", st.session_state.get("reviewer", ""))
reviewer = st.text_input("Reviewer name", key="_reviewer", placeholder="who is deciding? (set once per session)")
st.session_state["reviewer"] = reviewer.strip()


def decide(sample_id, decision, new_label=None):
    if not st.session_state.get("reviewer"):
        st.session_state["review_error"] = "Enter your reviewer name first; nothing was saved."
        return
    try:
        store.record(dataset, sample_id, decision, st.session_state["reviewer"], new_label=new_label)
    except OgdashError as e:
        st.session_state["review_error"] = str(e)


def decide_many(ids, decision):
    if not st.session_state.get("reviewer"):
        st.session_state["review_error"] = "Enter your reviewer name first; nothing was saved."
        return
    try:
        store.record_many(dataset, [{"sample_id": int(i), "decision": decision} for i in ids], st.session_state["reviewer"])
    except OgdashError as e:
        st.session_state["review_error"] = str(e)


if "review_error" in st.session_state:
    st.error(st.session_state.pop("review_error"))

sources = {"flagged": f"Flagged by {flags['detector']} at budget {flags['budget']:.0%}",
           "selection": f"Selected on the gradient plot ({len(st.session_state.get('selection', []))})",
           "all": "All training samples"}
keep("_source", "selection" if st.session_state.get("selection") else "flagged")
c1, c2, c3 = st.columns([2, 1, 1])
source = c1.radio("Show", list(sources), format_func=sources.get, key="_source", horizontal=True)
classes = c2.multiselect("Given label", range(train.n_classes), format_func=lambda c: train.classes[c])
status = c3.selectbox("Status", ["all", "undecided", *DECISIONS])

if source == "flagged" and flags.get("ids") is not None:
    ids = np.asarray(flags["ids"], dtype=np.int64)
elif source == "selection":
    ids = np.asarray(st.session_state.get("selection", []), dtype=np.int64)
else:
    ids = train.ids
pos = train.positions(ids) if len(ids) else np.zeros(0, dtype=np.int64)
pos = pos[np.argsort(-scores[pos], kind="stable")]
current = store.current(dataset).set_index("sample_id")
decided = {int(i): row for i, row in current.iterrows()}
if classes:
    pos = pos[np.isin(train.y[pos], classes)]
if status != "all":
    st_of = np.array([decided[int(i)]["decision"] if int(i) in decided else "undecided" for i in train.ids[pos]])
    pos = pos[st_of == status]

n_pages = max(1, -(-len(pos) // PAGE_SIZE))
c1, c2 = st.columns([1, 3])
page = c1.number_input(f"Page (of {n_pages})", 1, n_pages, 1)
shown = pos[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
c2.caption(f"{len(pos)} samples match; showing {len(shown)}. Scores: higher = more detrimental.")
if len(shown) == 0:
    st.info("No samples match these filters.")
else:
    b1, b2, _ = st.columns([1, 1, 3])
    b1.button("Keep all on this page", on_click=decide_many, args=(train.ids[shown].tolist(), "keep"))
    b2.button("Remove all on this page", on_click=decide_many, args=(train.ids[shown].tolist(), "remove"))
    cols = st.columns(3)
    for k, p in enumerate(shown):
        with cols[k % 3]:
            d = decided.get(int(train.ids[p]))
            card(train, int(p), grads.probs[p], float(scores[p]), None if d is None else d.to_dict(), decide)

st.divider()
st.subheader("Decisions so far")
counts = current["decision"].value_counts().reindex(list(DECISIONS), fill_value=0) if len(current) else None
cols = st.columns(5)
for col, name in zip(cols, DECISIONS):
    col.metric(name, 0 if counts is None else int(counts[name]))
if train.noisy is not None and len(current):
    reviewed = train.positions(current.index.to_numpy())
    acted = train.positions(current.index[current["decision"].isin(["remove", "relabel"])].to_numpy())
    cols[4].metric("truly mislabeled among reviewed", f"{int(train.noisy[reviewed].sum())} / {len(reviewed)}")
    st.caption(f"Of the {len(acted)} samples marked remove or relabel, {int(train.noisy[acted].sum())} were truly "
               "mislabeled (known because the noise was injected).")

st.subheader("Export")
tmp = Path(tempfile.mkdtemp(prefix="ogdash-export-"))
e = st.columns(4)
for col, fmt in zip(e[:2], ("csv", "json")):
    col.download_button(f"Decisions (.{fmt})", store.export(dataset, tmp / f"decisions.{fmt}").read_bytes(),
                        file_name=f"decisions.{fmt}", disabled=not len(current))
for col, fmt in zip(e[2:], ("csv", "json")):
    col.download_button(f"Cleaned labels (.{fmt})",
                        store.export_cleaned(dataset, train.ids, train.y, tmp / f"cleaned.{fmt}").read_bytes(),
                        file_name=f"cleaned_labels.{fmt}")
st.caption("Cleaned labels apply only your decisions: relabel gives the new label, remove leaves the label empty; "
           "keep, unsure and undecided samples keep their given label.")
