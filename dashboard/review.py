"""The Review page's lower half: how the decisions stand, and the downloads built from them when clicked."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import streamlit as st

from ogdash.data.dataset import Dataset
from ogdash.exports import cleaned_csv, csv_bytes, folder_changes, with_sources
from ogdash.labelstudio import label_config, make_tasks
from ogdash.review import DECISIONS, DecisionStore


def decision_counts(current, train: Dataset) -> None:
    """One metric per decision; with known truth, how many reviewed samples were truly mislabeled."""
    st.subheader("Decisions so far")
    counts = current["decision"].value_counts()
    cols = st.columns(5)
    for col, name in zip(cols, DECISIONS):
        col.metric(name, int(counts.get(name, 0)))
    if train.truth_known and len(current):  # injected noise: the truth is known, so say how the review went
        known = current[current["sample_id"].isin(train.ids)]
        acted = known.loc[known["decision"].isin(["remove", "relabel"]), "sample_id"].to_numpy()
        cols[4].metric("truly mislabeled among reviewed",
                       f"{int(train.noisy[train.positions(known['sample_id'].to_numpy())].sum())} / {len(known)}")
        st.caption(f"Of the {len(acted)} samples marked remove or relabel, "
                   f"{int(train.noisy[train.positions(acted)].sum())} were truly mislabeled (known because the noise "
                   "was injected).")


def exports(store: DecisionStore, dataset: str, train: Dataset, current, cfg: dict, flags: np.ndarray,
            scores: np.ndarray, suggest: np.ndarray, detector: str) -> None:
    """Download buttons whose files are built when clicked, from the store as it is then (a decision stays fast)."""
    st.subheader("Export")
    history = lambda: with_sources(store.history(dataset), train)  # noqa: E731
    now = lambda: store.current(dataset)  # noqa: E731
    e = st.columns(4)
    e[0].download_button("Decisions (.csv)", lambda: csv_bytes(history()), file_name="decisions.csv",
                         disabled=not len(current))
    e[1].download_button("Decisions (.json)", lambda: history().astype(object).where(history().notna(), None)
                         .to_json(orient="records", indent=1), file_name="decisions.json", disabled=not len(current))
    if cfg["source"] == "files" and str(cfg["train"]).lower().endswith(".csv"):
        e[2].download_button("Your CSV with clean_label", lambda: csv_bytes(cleaned_csv(cfg["train"], train, now())),
                             file_name=f"{Path(cfg['train']).stem}_cleaned.csv")
        st.caption("Your training CSV as given, with `decision` and `clean_label` columns: the new label for "
                   "relabel, empty for remove, the given label otherwise.")
    elif cfg["source"] == "imagefolder":
        e[2].download_button("Folder changes (.csv)", lambda: csv_bytes(folder_changes(train, now())),
                             file_name="folder_changes.csv", disabled=not len(current))
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
    with st.expander("Label Studio: the labelling config for that import file (README, \"Label Studio\")"):
        st.code(label_config(train), language="xml")
