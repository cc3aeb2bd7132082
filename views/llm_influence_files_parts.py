"""The LLM influence page's "your data" mode: your fine-tuning files and model, the detrimental examples with a
budget and the cleaned export, the re-fine-tune with its control, the heatmap by group and the typed query.

Analysis lives in ``ogdash.experiments.llm_*``; this module draws it (plotly, pandas) and holds the widgets.
Influence: higher = more influential; detrimental score: higher = more detrimental.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.escape import error, html, md
from dashboard.handoff import share
from dashboard.state import data_root, decisions_path, disk_cache, progress_bar, view
from dashboard.uploads import stage_upload, widget_limit_mb
from ogdash.core.errors import OgdashError
from ogdash.data.files import resolve_under
from ogdash.experiments import llm_files as lf
from ogdash.experiments.llm_budget import suggest_prompt_budget
from ogdash.experiments.llm_review import FlaggedExamples, cleaned_jsonl, current, review_table
from ogdash.exports import csv_bytes
from ogdash.models.llm import MODEL_CHOICES, FinetuneSettings, LoraSettings
from views.llm_influence_parts import COLORSCALE, SCALES, scale_rows

RUN = "llm_files_run"
TYPES = ["jsonl", "json", "csv", "parquet"]
CLUSTERS = "(gradient clusters)"


# --------------------------------------------------------------------------- the run form


def _path_or_upload(typed: str, upload) -> str | None:
    if typed.strip():
        return str(resolve_under(data_root(), typed.strip()))
    return stage_upload(upload)


def run_form() -> None:
    """Files, model and settings; Run extracts the gradients (cached) and keeps the run in the session."""
    with st.form("llm_files_form"):
        c1, c2 = st.columns(2)
        train = c1.text_input("Training file (under the data root)", placeholder="sample_data/instructions.jsonl",
                              help=f"JSONL, CSV, Parquet or a datasets folder, resolved under {data_root()}.")
        test = c2.text_input("Test file (optional)", placeholder="sample_data/instructions_test.jsonl")
        u1, u2 = st.columns(2)
        up_train = u1.file_uploader("…or upload the training file", type=TYPES, max_upload_size=widget_limit_mb())
        up_test = u2.file_uploader("…or upload the test file", type=TYPES, max_upload_size=widget_limit_mb())
        m1, m2, m3 = st.columns(3)
        kind = m1.selectbox("Model", [*MODEL_CHOICES, "folder"],
                            format_func=lambda k: MODEL_CHOICES.get(k, "a local Hugging Face model folder"),
                            key="llm_files_model")
        folder = m2.text_input("Model folder (for a local model)", placeholder="models/my-llama")
        adapter = m3.text_input("LoRA adapter folder (optional, used as it is)", placeholder="adapters/mine")
        with st.expander("Settings (CPU defaults)"):
            a1, a2, a3, a4 = st.columns(4)
            epochs = a1.number_input("Fine-tuning epochs", 0, 50, 1, key="llm_files_epochs")
            lora_layers = a2.number_input("LoRA in the last N layers (0 = all)", 0, 200, 4, key="llm_files_lora")
            max_length = a3.number_input("Token cap per example", 16, 4096, 128, key="llm_files_maxlen")
            proj = a4.number_input("Gradient width (0 = no projection)", 0, 65_536, lf.PROJ_DIM, key="llm_files_proj")
            seed = st.number_input("Seed", 0, 10_000, 0, key="llm_files_seed")
            st.caption("LoRA rank 8, alpha 32 on q_proj and v_proj (without an adapter of your own); batch 16, "
                       "learning rate 1e-3; the loss covers the completion. Gradients of the last LoRA layer, "
                       "stored in the disk cache as float16 and read memory-mapped.")
        go_ = st.form_submit_button("Run on my files", type="primary")
    if not go_:
        return
    try:
        train_path = _path_or_upload(train, up_train)
        if train_path is None:
            raise OgdashError("Give a training file: a path under the data root, or an upload.")
        test_path = _path_or_upload(test, up_test)
        spec = kind if kind != "folder" else str(resolve_under(data_root(), folder.strip() or "."))
        adapter_path = str(resolve_under(data_root(), adapter.strip())) if adapter.strip() else None
        settings = lf.FileSettings(model=spec, adapter=adapter_path, proj_dim=int(proj) or None, seed=int(seed),
                                   lora=LoraSettings(layers=int(lora_layers) or None),
                                   finetune=FinetuneSettings(epochs=int(epochs), max_length=int(max_length),
                                                             loss_on="completion", seed=int(seed)))
        bar, report = progress_bar("Your files")
        run = lf.extract(train_path, test_path, settings, disk_cache(), progress=report)
        bar.empty()
        st.session_state[RUN] = run
        for key in ("llm_files_refine", "llm_files_query"):
            st.session_state.pop(key, None)
    except OgdashError as e:
        error(e)


def the_run():
    return st.session_state.get(RUN)


# --------------------------------------------------------------------------- summary and groups


def summary(run: lf.FileRun) -> None:
    t = run.train
    st.subheader(f"{md(t.name)}: {t.n:,} training / {run.test.n if run.test else 0:,} test examples")
    who = md(run.settings.model) + (f" with the adapter {md(run.settings.adapter)}" if run.settings.adapter
                                    else ", LoRA fine-tuned here")
    st.caption(f"{t.kind} records from {t.format}; {who}; {run.grad_dim:,} gradient coordinates"
               + (f" (projected from {run.full_dim:,})" if run.grad_dim < run.full_dim else "")
               + ("; gradients read from the cache" if run.cached.get("gradients") else ""))
    for note in run.notes:
        st.info(md(note))
    with st.expander("Timings"):
        st.dataframe(pd.DataFrame([{"stage": k, "wall s": round(v, 2), "CPU s": round(run.cpu_seconds.get(k, 0), 2)}
                                   for k, v in run.seconds.items()]), hide_index=True)


def group_choice(run: lf.FileRun) -> lf.Grouping:
    """The grouping the heatmap and Outlier Gradient use: a column the person picks, else gradient clusters."""
    cols = [c for c in run.train.columns.columns if 1 < run.train.column(c).nunique() <= 50]
    pick = st.selectbox("Group training examples by", [*cols, CLUSTERS], key="llm_files_group",
                        help="A column of your file (at most 50 distinct values), or k-means clusters of the "
                             "gradients when there is none.")
    return lf.grouping(run, None if pick == CLUSTERS else pick)


# --------------------------------------------------------------------------- detrimental examples


def detrimental(run: lf.FileRun, groups: lf.Grouping) -> tuple[np.ndarray, np.ndarray]:
    """The detector and budget widgets, the flagged list and the exports; returns (scores, flags)."""
    detectors = [d for d in lf.DETECTORS if d != "less" or run.test is not None]
    det = st.selectbox("Detrimental score", detectors, format_func=lf.DETECTORS.get, key="llm_files_detector")
    scores = lf.detrimental(run, det, groups)
    by_group = (groups.labels, groups.names) if det == "align" else (None, None)
    est = suggest_prompt_budget(scores, *by_group, seed=run.settings.seed)
    st.markdown(f"**Suggested budget:** {md(est.describe(warning=False))}")
    if not est.reliable:
        st.warning(md(est.warning))
    start = int(round(est.fraction * run.train.n)) or max(1, round(0.05 * run.train.n))
    count = st.number_input("Flag this many examples (the highest scores)", 1, run.train.n, start,
                            key=f"llm_files_budget_{det}",
                            help="Starts at the suggested budget; at 5% when no group's scores separate.")
    flags = lf.flag_top(scores, int(count))
    examples = FlaggedExamples(run.train, scores, flags, groups, lf.DETECTOR_NAMES[det])
    share(examples)  # the Review page's "Fine-tuning examples" (dashboard/handoff.py)
    if st.button(f"Review the {int(flags.sum())} flagged examples as cards", icon=":material/fact_check:",
                 key="llm_files_to_review", help="On the Review page: prompt and completion side by side; keep, "
                 "remove, edit the completion or unsure; the cleaned JSONL."):
        view().update(review="llm", gpage=1, status="all", show="flagged", q="")
        st.switch_page("views/review.py")
    table = review_table(run.train, scores, flags, groups)
    st.dataframe(table[table["flagged"]].drop(columns=["sample_id", "flagged"]), hide_index=True, width="stretch",
                 column_config={"score": st.column_config.NumberColumn("score (higher = more detrimental)",
                                                                       format="%.4g")})
    st.caption("Every training example's score is in the scores download. Review the flagged examples as cards "
               "on the Review page (button above); the decisions saved there (keep, remove, edit the completion) "
               "give the reviewed download.")
    e1, e2, e3 = st.columns(3)
    e1.download_button("Scores (.csv)", lambda: csv_bytes(table.drop(columns=["sample_id"])), file_name="scores.csv",
                       mime="text/csv", on_click="ignore")
    e2.download_button("Without the flagged (.jsonl)", lambda: cleaned_jsonl(run.train, removed=np.flatnonzero(flags)),
                       file_name=f"{run.train.name}.cleaned.jsonl", mime="application/jsonl", on_click="ignore")
    try:
        from ogdash.review import DecisionStore

        store = DecisionStore(decisions_path())
        decided = current(store, run.train)
    except OgdashError as e:
        error(e)
        decided = None
    if decided is not None and len(decided):
        counts = decided["decision"].value_counts().to_dict()
        e3.download_button("With the review decisions (.jsonl)", lambda: cleaned_jsonl(run.train, store),
                           file_name=f"{run.train.name}.reviewed.jsonl", mime="application/jsonl", on_click="ignore",
                           help="Decisions saved for this file: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return scores, flags


# --------------------------------------------------------------------------- re-fine-tune


def refine(run: lf.FileRun, flags: np.ndarray) -> None:
    from ogdash.experiments.llm_refinetune import refinetune

    if run.test is None:
        st.info("Give a test file to measure a re-fine-tune on it.")
        return
    seeds = st.number_input("Seeds", 1, 10, 3, key="llm_files_seeds",
                            help="Each seed fine-tunes all three arms from the same fresh adapter.")
    if st.button(f"Re-fine-tune without the {int(flags.sum())} flagged examples", key="llm_files_refine_go"):
        try:
            bar, report = progress_bar("Re-fine-tune")
            r = refinetune(run, np.flatnonzero(flags), seeds=range(int(seeds)), cache=disk_cache(), progress=report)
            bar.empty()
            st.session_state["llm_files_refine"] = r
        except OgdashError as e:
            error(e)
    r = st.session_state.get("llm_files_refine")
    if r is None:
        st.caption("Fine-tunes again without the flagged examples, beside the unchanged file and beside as many "
                   "random removals, with the same seeds and the same number of steps; measured on the test file.")
        return
    st.markdown(f"**Verdict:** {md(r.verdict())}")
    rows = pd.DataFrame(r.to_rows())
    keep = ["label", "n_train", "loss_mean", "loss_std"] + (["exact_mean"] if rows["exact_mean"].notna().all() else [])
    st.dataframe(rows[keep].rename(columns={"label": "fine-tuned on", "n_train": "examples",
                                            "loss_mean": "held-out loss (mean)", "loss_std": "± (over seeds)",
                                            "exact_mean": "exact match"}), hide_index=True, width="stretch")
    if r.exact_note:
        st.caption(md(r.exact_note))
    st.caption(f"{len(r.seeds)} seed(s), {r.steps} optimiser steps per fine-tune.")


# --------------------------------------------------------------------------- heatmap


def group_heatmap(run: lf.FileRun, method: str, groups: lf.Grouping, scale: str) -> go.Figure:
    """Test prompts (rows, by their group where known) x groups of training examples: mean influence."""
    V = lf.group_view(lf.influence(run, method, groups), groups)
    order = np.argsort(groups.test_labels, kind="stable") if groups.test_labels is not None else np.arange(len(V))
    Z = scale_rows(V, scale)[order]
    ids = [html(run.test.ids[t]) for t in order]
    names = [html(n) for n in groups.names]
    fig = go.Figure(go.Heatmap(
        z=Z, x=names, y=ids, colorscale=COLORSCALE,
        colorbar=dict(title=dict(text="influence", side="right"), tickvals=[np.nanmin(Z), np.nanmax(Z)],
                      ticktext=["low", "high"]),
        hoverinfo="skip"))
    # a heatmap's cells cannot be selected; an invisible marker on each one can (it carries the hover, since
    # plotly clicks the point it hovers), and says which cell it is
    rows, cols = np.meshgrid(np.arange(len(ids)), np.arange(groups.n_groups), indexing="ij")
    fig.add_trace(go.Scatter(x=[names[c] for c in cols.ravel()], y=[ids[r] for r in rows.ravel()], mode="markers",
                             marker=dict(size=14, opacity=0.01, symbol="square"), showlegend=False,
                             customdata=np.stack([order[rows.ravel()], cols.ravel(), Z.ravel()], axis=1),
                             hovertemplate="test %{y} · group %{x}<br>value %{customdata[2]:.3g}<br>"
                                           "click: its examples below<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showticklabels=len(ids) <= 60)
    fig.update_layout(title=f"{lf.METHODS[method]}: mean influence of each group on each test prompt",
                      xaxis_title=f"training examples, grouped by {html(groups.source)}", yaxis_title="test prompts",
                      height=min(900, 220 + 14 * len(ids)), margin=dict(l=10, r=10, t=50, b=10))
    return fig


def heatmap(run: lf.FileRun, groups: lf.Grouping) -> None:
    if run.test is None:
        st.info("Give a test file for the heatmap; or type a prompt in the next tab.")
        return
    c1, c2 = st.columns(2)
    method = c1.radio("Method", list(lf.METHODS), format_func=lf.METHODS.get, horizontal=True,
                      key="llm_files_method")
    scale = c2.radio("Colour scale", list(SCALES), format_func=SCALES.get, key="llm_files_scale")
    with st.spinner("Influence of every training example on every test prompt…"):
        fig = group_heatmap(run, method, groups, scale)
    event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode="points",
                            key=f"llm_files_heat_{method}")
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
        getattr(getattr(event, "selection", None), "points", [])
    if points and "customdata" in points[0]:  # a click on a cell opens its examples below (once per click)
        data = points[0]["customdata"]  # a list, or an object keyed "0", "1", ... as it comes back from the browser
        values = [data[k] for k in sorted(data, key=int)] if isinstance(data, dict) else list(np.ravel(data))
        cell = (int(values[0]), int(values[1]))
        if st.session_state.get("llm_files_cell_clicked") != cell:
            st.session_state["llm_files_cell_clicked"] = cell
            st.session_state["llm_files_cell_test"], st.session_state["llm_files_cell_group"] = cell
    d1, d2 = st.columns(2)
    t = d1.selectbox("Test prompt", range(run.test.n), key="llm_files_cell_test",
                     format_func=lambda i: f"{run.test.ids[i]} · {run.test.prompts[i][:60]}")
    g = d2.selectbox("Group", range(groups.n_groups), key="llm_files_cell_group", format_func=groups.names.__getitem__)
    st.markdown(f"**Prompt:** {md(run.test.prompts[t])}  \n**Expected completion:** {md(run.test.completions[t])}")
    row = lf.influence(run, method, groups)[t]
    members = np.flatnonzero(groups.labels == g)
    order = [j for j in lf.ranking(run, method, row, groups) if groups.labels[j] == g][:20]
    st.caption(f"The {len(order)} most influential of the {len(members)} training examples in "
               f"{md(groups.names[g])} on this test prompt (influence: higher = more influential).")
    st.dataframe(pd.DataFrame({"id": [run.train.ids[j] for j in order], "source": [run.train.sources[j] for j in order],
                               "influence": row[order], "prompt": [run.train.prompts[j] for j in order],
                               "completion": [run.train.completions[j] for j in order]}),
                 hide_index=True, width="stretch")


# --------------------------------------------------------------------------- typed query


@st.cache_resource(show_spinner="Loading the model and its adapter…", max_entries=1)
def _engine(_run, grads_key: str, _groups, group_source: str):
    from ogdash.experiments.llm_query import QueryEngine

    return QueryEngine(_run, disk_cache(), groups=_groups)


def query(run: lf.FileRun, groups: lf.Grouping) -> None:
    with st.form("llm_files_query_form"):
        prompt = st.text_area("Prompt", key="llm_files_prompt",
                              placeholder="Solve the following math problem. A rectangular garden has a length of "
                                          "12 meters and a width of 7 meters. What is its area? ->")
        completion = st.text_input("The completion you saw (optional; default: the model's own)",
                                   key="llm_files_completion")
        q1, q2 = st.columns(2)
        methods = q1.multiselect("Methods", list(lf.METHODS), default=list(lf.DEFAULT_METHODS),
                                 format_func=lf.METHODS.get, key="llm_files_qmethods")
        k = q2.slider("Top k", 1, 50, 10, key="llm_files_k")
        ask = st.form_submit_button("Find the influential training examples")
    if ask:
        try:
            if not methods:
                raise OgdashError("Choose at least one method.")
            engine = _engine(run, run.grads_key, groups, groups.source)
            st.session_state["llm_files_query"] = engine.query(prompt, completion or None, methods, k, groups)
        except OgdashError as e:
            error(e)
    res = st.session_state.get("llm_files_query")
    if res is None:
        return
    said = "the model's own completion" if res.generated else "the completion you gave"
    st.markdown(f"**Scored:** {md(res.prompt)} → **{md(res.completion.strip())}** ({said}; loss {res.loss:.3f}; "
                f"{res.seconds:.2f} s)")
    for tab, (m, table) in zip(st.tabs([lf.METHODS[m] for m in res.tables]), res.tables.items()):
        with tab:
            st.dataframe(table, hide_index=True, width="stretch")
            st.caption(md(lf.METHOD_HELP[m]))


def render() -> None:
    """The whole "your data" mode."""
    st.markdown("Bring your own fine-tuning set (JSONL, CSV, Parquet or a datasets folder; `prompt` + "
                "`completion`, or chat `messages`) and, optionally, your own model folder and LoRA adapter. "
                "**Detrimental score: higher = more detrimental. Influence: higher = more influential.**")
    run_form()
    run = the_run()
    if run is None:
        st.info("Give your training file (and a test file for the heatmap and the re-fine-tune) and press **Run "
                "on my files**. `sample_data/instructions.jsonl` is a small example with 20 planted wrong "
                "completions (README, \"Your own fine-tuning data\").")
        return
    summary(run)
    try:
        groups = group_choice(run)
        tabs = st.tabs(["Detrimental examples", "Re-fine-tune", "Heatmap", "Typed query"], key="llm_files_tabs")
        with tabs[0]:
            _, flags = detrimental(run, groups)
        with tabs[1]:
            refine(run, flags)
        with tabs[2]:
            heatmap(run, groups)
        with tabs[3]:
            query(run, groups)
    except OgdashError as e:
        error(e)
