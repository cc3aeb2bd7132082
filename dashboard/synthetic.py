"""Plotly figures for the synthetic demo: the four panels of the paper's Figure 1 for one case.

A/E training set, B/F test set, C/G influence (Eq. 1) of every training sample, D/H gradient
space with a detector's flags. Class 0 is red and class 1 blue, as in the paper; a flipped
training sample is a cross. Every point carries its stable sample id in ``customdata[0]``.
No Streamlit here.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

CLASS_COLORS = ("#d62728", "#1f77b4")  # class 0 red, class 1 blue (the paper's Figure 1)
FLAG_COLOR = "#ff7f0e"
HEIGHT = 360
# Training epochs of the demo's models; None keeps each preset's own (tests set a shorter run).
EPOCHS: int | None = None


def _layout(fig: go.Figure, title: str, x: str, y: str, equal: bool = False) -> go.Figure:
    fig.update_layout(title=dict(text=title, font_size=14), height=HEIGHT, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0), xaxis_title=x, yaxis_title=y)
    if equal:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def _boundary(fig: go.Figure, boundary) -> None:
    """The model's decision boundary (p = 0.5) as one contour line."""
    if boundary is None:
        return
    gx, gy, prob = boundary
    fig.add_trace(go.Contour(x=gx, y=gy, z=prob, contours=dict(start=0.5, end=0.5, size=1, coloring="lines"),
                             colorscale=[[0, "#555"], [1, "#555"]], line=dict(width=1.5, dash="dot"), showscale=False, hoverinfo="skip",
                             name="decision boundary", showlegend=True))


def data_panel(X, y, ids, flipped=None, title: str = "", boundary=None, label_word: str = "label") -> go.Figure:
    """A scatter of 2-D samples coloured by ``y``; ``flipped`` samples (bool mask) drawn as crosses."""
    X, y, ids = np.asarray(X), np.asarray(y), np.asarray(ids)
    flipped = np.zeros(len(y), bool) if flipped is None else np.asarray(flipped, bool)
    fig = go.Figure()
    _boundary(fig, boundary)
    for c in (0, 1):
        for is_flip in (False, True):
            m = (y == c) & (flipped == is_flip)
            if not m.any() and is_flip:
                continue
            name = f"{label_word} {c}" + (" (flipped)" if is_flip else "")
            fig.add_trace(go.Scatter(
                x=X[m, 0], y=X[m, 1], mode="markers", name=name, customdata=ids[m, None],
                hovertemplate=f"id %{{customdata[0]}}<br>{name}<extra></extra>",
                marker=dict(color=CLASS_COLORS[c], size=11 if is_flip else 7, symbol="x" if is_flip else "circle",
                            opacity=1.0 if is_flip else 0.55, line=dict(width=0))))
    return _layout(fig, title, "x₁", "x₂", equal=True)


def influence_panel(scores, flipped, ids, n_flagged: int | None = None, title: str = "") -> go.Figure:
    """Influence score (higher = more detrimental) of every training sample against its position.

    Flipped samples are red crosses. With ``n_flagged`` a dashed line marks the budget cut:
    the samples above it are what this score would flag.
    """
    scores, flipped, ids = np.asarray(scores, float), np.asarray(flipped, bool), np.asarray(ids)
    pos = np.arange(len(scores))
    fig = go.Figure()
    for is_flip, name, color, symbol, size in ((False, "clean label", "#7f7f7f", "circle", 6),
                                               (True, "flipped label", CLASS_COLORS[0], "x", 10)):
        m = flipped == is_flip
        fig.add_trace(go.Scatter(x=pos[m], y=scores[m], mode="markers", name=name, customdata=ids[m, None],
                                 hovertemplate="id %{customdata[0]}<br>score %{y:.4g}<extra>" + name + "</extra>",
                                 marker=dict(color=color, symbol=symbol, size=size, opacity=0.9 if is_flip else 0.5)))
    if n_flagged:
        cut = float(np.sort(scores)[::-1][min(n_flagged, len(scores)) - 1])
        fig.add_hline(y=cut, line_color=FLAG_COLOR, line_dash="dash",
                      annotation_text=f"budget cut (top {n_flagged})", annotation_position="top left")
    return _layout(fig, title, "training sample", "influence score (higher = more detrimental)")


def gradient_panel(coords, flags, flipped, ids, scores=None, title: str = "", axes: str = "") -> go.Figure:
    """Gradient space: flagged samples orange, others grey; truly flipped samples are crosses."""
    coords, flags, flipped, ids = np.asarray(coords, float), np.asarray(flags, bool), np.asarray(flipped, bool), np.asarray(ids)
    scores = np.zeros(len(ids)) if scores is None else np.asarray(scores, float)
    fig = go.Figure()
    for is_flag in (False, True):
        for is_flip in (False, True):
            m = (flags == is_flag) & (flipped == is_flip)
            if not m.any():
                continue
            name = ("flagged" if is_flag else "not flagged") + (", flipped" if is_flip else ", clean")
            fig.add_trace(go.Scatter(
                x=coords[m, 0], y=coords[m, 1], mode="markers", name=name,
                customdata=np.stack([ids[m], np.round(scores[m], 4)], axis=1),
                hovertemplate="id %{customdata[0]}<br>detector score %{customdata[1]}<extra>" + name + "</extra>",
                marker=dict(color=FLAG_COLOR if is_flag else "#9e9e9e", symbol="x" if is_flip else "circle",
                            size=10 if is_flip else 7, opacity=0.95 if is_flag else 0.5)))
    x, y = ("gradient coordinate 1", "gradient coordinate 2") if not axes.startswith("PCA") else ("PC 1", "PC 2")
    fig = _layout(fig, title, x, y)
    if axes:
        fig.add_annotation(text=axes, xref="paper", yref="paper", x=0, y=1.0, yanchor="bottom", showarrow=False,
                           font=dict(size=10, color="#666"))
    return fig


def figure1(result, flags, detector_scores, detector_label: str, letters: str = "ABCD") -> list[go.Figure]:
    """The four panels of Figure 1 for one analysed case (an ``ogdash.experiments.synthetic.CaseResult``)."""
    case = result.case
    train, test = case.splits.train, case.splits.test
    noisy = train.noisy
    a, b, c, d = letters
    return [
        data_panel(train.X, train.y, train.ids, noisy, f"{a}. Training set (given labels; × = flipped)",
                   result.boundary),
        data_panel(test.X, test.y, test.ids, None, f"{b}. Test set (true labels; untouched)", result.boundary),
        influence_panel(result.scores["exact"], noisy, train.ids, int(np.sum(flags)),
                        f"{c}. Influence, Eq. (1), exact Hessian"),
        gradient_panel(result.layout, flags, noisy, train.ids, detector_scores,
                       f"{d}. Gradient space: {detector_label} flags", result.layout_note),
    ]
