"""Plotly figures for the text data-selection page (the paper's Figure 3). No Streamlit here."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ogdash.experiments.textselect import ALL_ROW, CLEAN_ROW, METHOD_KEYS, ROW_LABELS

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
