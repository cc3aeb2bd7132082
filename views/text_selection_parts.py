"""The Text data selection page's helpers: the paper's Figure 3 (test accuracy per epoch), the results' summary,
and the hand-over of the rows to the review gallery."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.state import whole_table
from ogdash.data.spec import DataSpec
from ogdash.experiments import textselect as ts
from ogdash.experiments.textselect import ALL_ROW, CLEAN_ROW, METHOD_KEYS, ROW_LABELS

# ---------------------------------------------------------------- Figure 3

COLORS = {
    "og_iforest": "#d62728", "og_l1": "#ff7f0e", "og_l2": "#e377c2",
    "tracin": "#1f77b4", "lissa": "#17becf", "datainf": "#2ca02c", "self_lissa": "#9467bd",
    "self_datainf": "#8c564b", "random": "#7f7f7f", ALL_ROW: "#444444", CLEAN_ROW: "#000000",
}
# The sentence encoder the page embeds texts with (ogdash.experiments.textselect.ENCODERS); tests pick a tiny one.
ENCODER = "minilm"
DASHED = {ALL_ROW: "dash", CLEAN_ROW: "dot", "random": "dashdot"}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def curves_figure(curves: pd.DataFrame, title: str = "Test accuracy per epoch", height: int = 460) -> go.Figure:
    """Mean test accuracy (%) per epoch for each row, with a ±1 std band over seeds.

    curves: columns method, seed, epoch, accuracy (0-1), as ``SelectionResult.curves``.
    """
    fig = go.Figure()
    order = [k for k in (CLEAN_ROW, ALL_ROW, *METHOD_KEYS) if k in set(curves["method"])]
    for key in order:
        part = curves[curves["method"] == key]
        g = part.groupby("epoch")["accuracy"]
        mean, std = 100 * g.mean(), 100 * g.std(ddof=0).fillna(0.0)
        x = list(mean.index)
        color = COLORS.get(key, "#333333")
        if len(part["seed"].unique()) > 1:
            fig.add_trace(go.Scatter(x=x + x[::-1], y=list(mean + std) + list((mean - std)[::-1]), fill="toself",
                                     fillcolor=_rgba(color, 0.12), line=dict(width=0), hoverinfo="skip",
                                     showlegend=False, legendgroup=key))
        fig.add_trace(go.Scatter(x=x, y=list(mean), mode="lines+markers", name=ROW_LABELS[key], legendgroup=key,
                                 line=dict(color=color, width=2.5 if key == "og_iforest" else 1.6,
                                           dash=DASHED.get(key, "solid")),
                                 marker=dict(size=5), customdata=list(std),
                                 hovertemplate=f"{ROW_LABELS[key]}<br>epoch %{{x}}: %{{y:.1f}}% ± %{{customdata:.1f}}"
                                               "<extra></extra>"))
    fig.update_layout(title=dict(text=title, font_size=14), height=height, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="epoch", yaxis_title="test accuracy (%)", legend=dict(font_size=11),
                      hovermode="closest")
    fig.update_xaxes(dtick=1)
    return fig


# ---------------------------------------------------------------- the results and the hand-over

def show_results(result, splits, note: str, enc_seconds: float, keep: float, epochs: int, n_seeds: int,
                 finetune: str) -> None:
    """Figure 3 (test accuracy per epoch, mean ± std), the summary table and its download."""
    summary = result.summary()
    train = splits.train
    st.subheader("Test accuracy per epoch (Figure 3)")
    st.caption(note)
    m = st.columns(4)
    m[0].metric("Training texts", f"{train.n:,}")
    m[1].metric("Truly mislabeled", f"{int(train.noisy.sum()):,}")
    m[2].metric("Kept per method", f"{int(round(keep * train.n)):,}")
    m[3].metric("Encoding", "cached" if enc_seconds == 0 else f"{enc_seconds:.1f} s",
                help="Wall time to embed every training and test text; 0 when the embeddings came from the disk cache.")
    st.plotly_chart(curves_figure(result.curves, f"Keep {keep:.0%}, {epochs} epochs, {n_seeds} seed(s), "
                                     f"{'LoRA-tuned encoder' if finetune == 'lora' else 'frozen encoder'}: mean ± std"),
                    width="stretch", key="ts_curves")

    st.subheader("Summary")
    whole_table(ts.format_summary(summary))
    st.caption(
        f"Mean ± std over {n_seeds} seed(s). Final: test accuracy after the last epoch; best: the highest over epochs "
        "(what the paper's CIFAR script reports). Kept truly mislabeled: how many of the kept training samples carry a "
        f"flipped label ({train.noisy.mean():.0%} of a random selection, by construction). Seconds: for a method, the "
        "time to score every training sample from the trained model, gradients and curvature included; for the two "
        "reference rows, the "
        "training time. Influence rows use the training set as the reference set; LiSSA uses "
        + ("the Gauss-Newton curvature of the LoRA + head gradients (damped as DataInf does)." if finetune == "lora"
           else "the head's exact Hessian.")
    )
    st.download_button("Curves (.csv)", result.curves.to_csv(index=False).encode(), "text_selection_curves.csv",
                       "text/csv", key="ts_download")


def review_link(source: str, data, noise: float, data_seed: int, n_train, n_test, encoder: str, head: str) -> None:
    """Make this text data and a head on its embeddings the active data and model, for the review gallery."""
    st.subheader("Review these rows")
    st.markdown("Open this data in the review gallery: each card shows the text, its given label and the model's "
                "suggestion, and your decisions go to the same decision store as images.")
    if st.button("Review these rows in the gallery", key="ts_review"):
        # a CSV goes under "path", which a config read back from the URL must resolve under the data root
        st.session_state["data_spec"] = DataSpec(
            "text", name=ts.ROTTEN_TOMATOES if source == "builtin" else None,
            path=None if source == "builtin" else data, noise_rate=noise, seed=data_seed, n_train=n_train,
            n_test=n_test, encoder=encoder)
        st.session_state["model_config"] = {"kind": head, "seed": 0, "hidden": [128]}
        st.session_state["ts_review_set"] = True
    if st.session_state.get("ts_review_set"):
        st.success("The text data and a head on its embeddings are now the active data and model. Extract gradients "
                   "on the Gradient space page, then open Review.")
        c = st.columns(2)
        try:
            c[0].page_link("views/gradient_space.py", label="Gradient space", icon=":material/scatter_plot:")
            c[1].page_link("views/review.py", label="Review", icon=":material/fact_check:")
        except Exception:  # the page run on its own (no navigation): links are not available
            pass
