"""Plotly figures the pages draw. Every point carries its stable sample id in ``customdata[0]``.

Class names and sources come from users' folders and files: Plotly reads a few HTML tags in
legends, ticks and hovers (``<a href>`` becomes a link), so every such string is escaped.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from dashboard.escape import html

PALETTE = qualitative.Plotly + qualitative.D3


def gradient_scatter(coords, ids, given, predicted, scores, flags, classes, axis_title: str, sources=None) -> go.Figure:
    """Gradient space: one WebGL trace per given label, flagged samples drawn as black-ringed crosses.

    The hover names each sample's source (file path, CSV line) beside its id.
    """
    fig = go.Figure()
    classes = [html(c) for c in classes]
    names = np.asarray(classes, dtype=object)
    where = np.asarray([f"id {i}" for i in ids] if sources is None else
                       [f"{html(src)} · id {i}" for src, i in zip(sources, ids)], dtype=object)
    custom = np.stack([ids, names[given], names[predicted], np.round(scores, 4), where], axis=1)
    hover = ("%{customdata[4]}<br>given %{customdata[1]}<br>predicted %{customdata[2]}"
             "<br>score %{customdata[3]} (higher = more detrimental)<extra></extra>")
    for c in np.unique(given):
        m = (given == c) & ~flags
        fig.add_trace(go.Scattergl(x=coords[m, 0], y=coords[m, 1], mode="markers", name=f"{classes[c]}",
                                   customdata=custom[m], hovertemplate=hover,
                                   marker=dict(size=6, opacity=0.6, color=PALETTE[c % len(PALETTE)])))
    fig.add_trace(go.Scattergl(x=coords[flags, 0], y=coords[flags, 1], mode="markers", name="flagged",
                               customdata=custom[flags], hovertemplate=hover,
                               marker=dict(size=10, symbol="x", color=[PALETTE[c % len(PALETTE)] for c in given[flags]],
                                           line=dict(width=1.5, color="black"))))
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=30, b=10), dragmode="select",
                      legend_title_text="given label", title=axis_title, title_font_size=13)
    return fig


def score_histogram(scores, threshold: float, n_flagged: int) -> go.Figure:
    """Histogram of the scores with the flagging threshold (higher = more detrimental)."""
    fig = go.Figure(go.Histogram(x=scores, nbinsx=60, marker_color="#636EFA", name="samples"))
    fig.add_vline(x=threshold, line_color="crimson", line_dash="dash",
                  annotation_text=f"budget cut: top {n_flagged}", annotation_position="top")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      xaxis_title="score (higher = more detrimental)", yaxis_title="samples")
    return fig


def confusion_heatmap(matrix, classes) -> go.Figure:
    classes = [html(c) for c in classes]
    fig = go.Figure(go.Heatmap(z=matrix, x=list(classes), y=list(classes), colorscale="Blues",
                               text=matrix, texttemplate="%{text}", hovertemplate="label %{y} → predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="predicted",
                      yaxis_title="given label", yaxis_autorange="reversed", xaxis_type="category",
                      yaxis_type="category")
    return fig


def label_counts(counts, classes) -> go.Figure:
    classes = [html(c) for c in classes]
    fig = go.Figure(go.Bar(x=list(classes), y=counts, marker_color="#636EFA"))
    fig.update_layout(height=240, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="given label", yaxis_title="samples",
                      xaxis_type="category")
    return fig


def accuracy_change(before, after, classes) -> go.Figure:
    """Per-class test accuracy before and after the trim (means over seeds)."""
    classes = [html(c) for c in classes]
    fig = go.Figure([go.Bar(x=list(classes), y=before, name="before", marker_color="#9aa5b1"),
                     go.Bar(x=list(classes), y=after, name="after", marker_color="#00a36c")])
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=10, b=10),
                      yaxis_title="test accuracy", xaxis_title="class", xaxis_type="category")
    return fig
