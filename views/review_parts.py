"""The Review page's helpers: who decides, how the decisions stand, conflicts, and the downloads built when clicked."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.auth import identity, is_admin, may_review, sign_in_on
from dashboard.escape import error, md
from dashboard.state import bound, view
from ogdash.core.errors import OgdashError
from ogdash.core.words import plural
from ogdash.data.dataset import Dataset
from ogdash.data.spec import DataSpec
from ogdash.exports import cleaned_csv, csv_bytes, folder_changes, with_sources
from ogdash.labelstudio import label_config, make_tasks
from ogdash.review import DECISIONS, DecisionStore, check_reviewer

WATCH_SECONDS = 5  # how often an open gallery redraws, so other reviewers' decisions and conflicts show on its cards
# (one fragment on a timer, the gallery itself: a second timed fragment beside it raced its clean-up in Streamlit
# 1.67, leaving a search's old cards on screen, streamlit#16708)


def decider() -> tuple[str, str]:
    """Who decides now, and why nobody may ("" when someone may), read afresh at each call: a click's callback
    asks at the moment it is saved, so a name cleared in the same moment saves nothing."""
    if sign_in_on():
        me = identity()
        if not may_review():
            return me, f"{me} is not on the reviewers list, so your clicks would not be saved. Ask an admin to add you."
        return me, ""
    name = view()["reviewer"].strip()
    if not name:
        return name, "type your reviewer name in the box at the top of this page first."
    try:
        return check_reviewer(name), ""
    except OgdashError as e:  # a line break or other control character: refused before anything is stored
        return name, str(e)


def saved(write, sid=None) -> bool:
    """Run ``write(reviewer)`` as whoever decides now; a refusal or problem is kept for the card ``sid`` (None:
    above the cards) to show on the next run."""
    me, refused = decider()  # at the moment of the click, not when the page was drawn
    try:
        if refused:
            raise OgdashError(f"Not saved: {refused}")
        write(me)
        return True
    except OgdashError as e:
        st.session_state["review_error"] = (sid, str(e))
        return False


def reviewer() -> tuple[str, str]:
    """The reviewer box (or the signed-in identity), and ``decider()``: the reason each card shows beside its
    disabled controls.

    With sign-in on it is the signed-in identity (no name box, nothing in the address); off, the
    name typed in the box, kept in the page's address.
    """
    if not sign_in_on():
        view()["reviewer"] = bound("reviewer", st.text_input, "Reviewer name",
                                   placeholder="who is deciding? (kept in the page's address)").strip()
    me, refused = decider()
    if sign_in_on():
        if refused:
            st.warning(f"Signed in as **{md(me)}**, who is not in the reviewers list: you can look but not decide.")
        else:
            st.caption(f"Deciding as **{md(me)}** (your sign-in); every decision records it.")
    elif refused and me:  # a name typed with a line break or similar: said where it was typed, and on each card
        error(refused)
    return me, refused


def conflict_ids(conflicts) -> set[int]:
    return {int(i) for i in conflicts["sample_id"]}


def decision_counts(current, train: Dataset, conflicts=None) -> None:
    """One metric per decision; with known truth, how many reviewed samples were truly mislabeled."""
    st.subheader("Decisions so far")
    counts = current["decision"].value_counts()
    cols = st.columns(5)
    for col, name in zip(cols, DECISIONS):
        col.metric(name, int(counts.get(name, 0)))
    if train.truth_known and len(current):  # injected noise: the truth is known, so say how the review went
        known = current[current["sample_id"].isin(train.ids)]
        acted = known.loc[known["decision"].isin(["remove", "relabel"]), "sample_id"].to_numpy()
        cols[4].metric("truly mislabeled", f"{int(train.noisy[train.positions(known['sample_id'].to_numpy())].sum())}"
                       f" / {len(known)}", help="of the reviewed samples, how many were truly mislabeled (known "
                                                "because the noise was injected)")
        wrong = int(train.noisy[train.positions(acted)].sum())
        st.caption(f"Of the {plural(len(acted), 'sample')} marked remove or relabel, {wrong:,} "
                   f"{plural(wrong, 'was', number=False)} truly mislabeled (known because the noise was injected).")
    if conflicts is not None and len(conflicts):
        n = len(conflict_ids(conflicts))
        st.warning(f"**{plural(n, 'conflict')}**: samples whose reviewers' latest decisions "
                   "differ. Choose Status \"conflict\" above to see them, or download them below.")


def exports(store: DecisionStore, dataset: str, train: Dataset, data: DataSpec, flags: np.ndarray,
            scores: np.ndarray, suggest: np.ndarray, detector: str) -> None:
    """Download buttons whose files are built when clicked, from the store as it is then (a decision stays fast).

    Drawn outside the gallery, whose timer redraws it every few seconds: a download button redrawn under a click
    loses the click. So they do not depend on what is decided (an export of nothing decided has only its header)."""
    st.subheader("Export")
    history = lambda: with_sources(store.history(dataset), train)  # noqa: E731
    now = lambda: store.current(dataset)  # noqa: E731
    e = [st.container(horizontal=True)] * 5  # one row that wraps: each label whole, never cut short
    e[0].download_button("Decisions (.csv)", lambda: csv_bytes(history()), file_name="decisions.csv")
    e[1].download_button("Decisions (.json)", lambda: history().astype(object).where(history().notna(), None)
                         .to_json(orient="records", indent=1), file_name="decisions.json")
    if data.source == "files" and str(data.train).lower().endswith((".csv", ".tsv")):
        e[2].download_button("Your CSV with clean_label", lambda: cleaned_csv(data.train, train, now()),
                             file_name=f"{Path(data.train).stem}_cleaned{Path(data.train).suffix.lower()}")
        st.caption("Your training file byte for byte, with `decision` and `clean_label` columns added: the new "
                   "label for relabel, empty for remove, the given label otherwise.")
    elif data.source == "imagefolder":
        e[2].download_button("Folder changes (.csv)", lambda: csv_bytes(folder_changes(train, now())),
                             file_name="folder_changes.csv")
        st.caption("`path,given,decision,new_label` for each decided image. `ogdash apply folder_changes.csv "
                   "--folder YOUR_FOLDER --out CORRECTED` writes a corrected copy (relabelled images moved, removed "
                   "ones left out); your folder is not touched.")
    else:
        cleaned = lambda: with_sources(store.cleaned_labels(dataset, train.ids, train.y)  # noqa: E731
                                       .rename(columns={"id": "sample_id"}), train)
        e[2].download_button("Cleaned labels (.csv)", lambda: csv_bytes(cleaned()), file_name="cleaned_labels.csv")
        st.caption("Cleaned labels apply only your decisions: relabel gives the new label, remove leaves the label "
                   "empty; keep, unsure and undecided samples keep their given label.")
    e[3].download_button("Flagged for Label Studio (.json)", lambda: json.dumps(make_tasks(
        train, train.ids[flags], suggest[flags].argmax(1), scores[flags], detector)),
        file_name="label_studio_tasks.json", disabled=not flags.any())
    e[4].download_button("Conflicts (.csv)", lambda: csv_bytes(with_sources(store.conflicts(dataset), train)),
                         file_name="conflicts.csv",
                         help="each reviewer's latest decision on every sample where reviewers disagree")
    with st.expander("Label Studio: the labelling config for that import file (README, \"Label Studio\")"):
        st.code(label_config(train), language="xml")


def import_decisions(store: DecisionStore, dataset: str, n_classes: int) -> None:
    """Admins only (with sign-in off, the one local user): add a decisions export (.csv/.json) to this data.

    With sign-in on every imported row is recorded as the signed-in admin's (a file can name anyone; its
    names are kept in the notes), and a relabel to a class this data lacks refuses the file."""
    if not is_admin():
        return
    importer = identity() if sign_in_on() else None
    with st.expander("Import decisions (admins)"):
        st.caption("A decisions export (.csv or .json) from this page or `ogdash`; its rows are added to this "
                   "data's decisions with their times" + (f", as decisions of **{md(importer)}** who imports them "
                   "(the reviewer names in the file are kept in the notes)" if importer else " and reviewers") +
                   ". Importing a file twice adds nothing.")
        up = st.file_uploader("Decisions file", type=["csv", "json"], key="import_decisions")
        if up is not None and st.button("Import", key="import_go"):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"import{Path(up.name).suffix.lower()}"
                path.write_bytes(up.getvalue())
                try:
                    added = store.import_(path, dataset=dataset, importer=importer, n_classes=n_classes)
                    st.success(f"Imported {added} new decisions.")
                except OgdashError as e:
                    error(e)
