"""Plotly figures the pages draw. Every point carries its stable sample id in ``customdata[0]``.

Class names and sources come from users' folders and files: Plotly reads a few HTML tags in
legends, ticks and hovers (``<a href>`` becomes a link), so every such string is escaped.
"""
from __future__ import annotations

import functools

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from dashboard.escape import html

PALETTE = qualitative.Plotly + qualitative.D3


# Above this many samples the gradient plot draws every flagged one and a seeded random sample of the others.
PLOT_CAP = 20_000
# Up to this many classes each has its own legend entry (a trace); above it one trace holds them all.
LEGEND_MAX = 20


def plot_sample(flags: np.ndarray, cap: int = PLOT_CAP, seed: int = 0) -> np.ndarray:
    """Sorted positions the gradient plot draws: all of them up to ``cap``; above it every flagged one while they
    fill at most half the cap (past that a seeded random ``cap // 2`` of them: a 5% budget at a million samples
    flags 50,000, and drawn all they would hide the others), and a seeded random sample of the others filling the
    cap. Each sample has a fixed random rank, so a budget change keeps the same sample of the others, less those
    now flagged."""
    flags = np.asarray(flags, dtype=bool)
    n = len(flags)
    if n <= cap:
        return np.arange(n)
    by_rank = _by_rank(n, seed)
    in_order = flags[by_rank]
    flagged, others = by_rank[in_order], by_rank[~in_order]
    flagged = flagged[:max(cap // 2, cap - len(others))]
    return np.sort(np.concatenate([flagged, others[:cap - len(flagged)]]))


@functools.lru_cache(maxsize=4)
def _by_rank(n: int, seed: int) -> np.ndarray:
    """Positions 0..n-1 in a seeded random order (each sample's fixed rank), made once per n and seed: a budget
    change at a million samples then costs two boolean selections, not a sort."""
    out = np.empty(n, dtype=np.int64)
    out[np.random.default_rng(seed).permutation(n)] = np.arange(n)
    out.flags.writeable = False
    return out


def sample_note(flags: np.ndarray, shown: np.ndarray) -> str:
    """What the plot leaves out, or "" when it draws every sample."""
    flags = np.asarray(flags, dtype=bool)
    if len(shown) == len(flags):
        return ""
    n_flagged, drawn = int(flags.sum()), int(flags[shown].sum())
    which = f"all {n_flagged:,} flagged" if drawn == n_flagged else f"a random {drawn:,} of the {n_flagged:,} flagged"
    return (f"Showing {which} and a random {len(shown) - drawn:,} of the {len(flags) - n_flagged:,} others "
            f"({len(shown):,} of {len(flags):,} samples; the plot draws at most {PLOT_CAP:,}, at most half of them "
            "flagged when there are more). Scores, flags, the histogram and the review gallery cover every sample.")


def _colorscale() -> list:
    """A stepwise colour scale: value k (0..len(PALETTE)-1) is ``PALETTE[k]``, so colours travel as small ints."""
    k = len(PALETTE)
    return [[pos, c] for i, c in enumerate(PALETTE) for pos in (i / k, (i + 1) / k)]


def gradient_scatter(coords, ids, given, predicted, scores, flags, classes, axis_title: str, sources=None,
                     shown=None) -> go.Figure:
    """Gradient space: WebGL points coloured by given label, flagged samples drawn as black-ringed crosses.

    Only the positions ``shown`` are drawn (default: all; see ``plot_sample``). Each point carries
    ``customdata = [sample id, score]`` (numbers, sent as binary); its hover text names the source
    (file path, CSV line), the given and the predicted label. Up to ``LEGEND_MAX`` classes each
    has a trace and a legend entry; above that one trace holds them all, coloured by label.
    """
    shown = np.arange(len(ids)) if shown is None else np.asarray(shown)
    ids, given, predicted = np.asarray(ids)[shown], np.asarray(given)[shown], np.asarray(predicted)[shown]
    xy, scores, flags = np.asarray(coords, dtype=np.float32)[shown], np.asarray(scores)[shown], np.asarray(flags)[shown]
    names = [html(c) for c in classes]
    # [id, score] as JSON numbers (ids beyond 2**53, which JavaScript would round, as strings). Not a typed
    # (binary) array: a selected point's row of one would come back as {"0": id, "1": score}, not a list.
    exact = len(ids) == 0 or int(np.abs(ids).max()) < 2**53
    custom = np.empty((len(ids), 2), dtype=object)
    custom[:, 0] = ids.tolist() if exact else ids.astype(str).tolist()
    custom[:, 1] = np.round(scores.astype(np.float64), 4).tolist()
    # the hover's line breaks live in the template, once, not in every point's strings
    where = (np.char.add("id ", ids.astype(str)).astype(object) if sources is None else
             np.asarray([f"{html(sources[p])}, id {i}" for p, i in zip(shown.tolist(), ids.tolist())], dtype=object))
    labels = np.asarray([f"given {names[g]}, predicted {names[p]}" for g, p in zip(given.tolist(), predicted.tolist())],
                        dtype=object)
    hover = "%{text}<br>%{hovertext}<br>score %{customdata[1]:.4f} (higher = more detrimental)<extra></extra>"
    colour = (given % len(PALETTE)).astype(np.int8)
    scale = dict(colorscale=_colorscale(), cmin=-0.5, cmax=len(PALETTE) - 0.5, showscale=False)  # k: mid-band k
    fig = go.Figure()
    per_class = len(classes) <= LEGEND_MAX
    for c in (np.unique(given) if per_class else [None]):
        m = ~flags if c is None else (given == c) & ~flags
        name = f"samples ({len(classes)} classes; colour: given label)" if c is None else names[c]
        marker = dict(size=6, opacity=0.6, **(dict(color=colour[m], **scale) if c is None
                                               else dict(color=PALETTE[c % len(PALETTE)])))
        fig.add_trace(go.Scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, customdata=custom[m],
                                   text=where[m], hovertext=labels[m], hovertemplate=hover, marker=marker))
    many = flags.sum() > 1000  # smaller crosses, so thousands of them leave the other points visible
    fig.add_trace(go.Scattergl(x=xy[flags, 0], y=xy[flags, 1], mode="markers", name="flagged",
                               customdata=custom[flags], text=where[flags], hovertext=labels[flags],
                               hovertemplate=hover,
                               marker=dict(size=7 if many else 10, symbol="x", color=colour[flags], **scale,
                                           line=dict(width=1 if many else 1.5, color="black"))))
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=30, b=10), dragmode="select",
                      legend_title_text="given label" if per_class else "", title=axis_title, title_font_size=13,
                      legend=dict(orientation="v") if per_class else dict(orientation="h", y=-0.05))
    return fig


def with_selection(fig: go.Figure, ids) -> go.Figure:
    """A copy of the gradient plot with the points whose sample id (``customdata[0]``) is in ``ids`` drawn as
    selected (the others dimmed), as a box or lasso leaves them: a reload shows the selection it keeps."""
    ids = {int(i) for i in ids}
    out = go.Figure(fig)
    for trace in out.data:
        custom = trace.customdata if trace.customdata is not None else []
        trace.selectedpoints = [k for k, row in enumerate(custom) if int(row[0]) in ids]
    return out


def score_histogram(scores, threshold: float, n_flagged: int, bins: int = 60) -> go.Figure:
    """Histogram of the scores with the flagging threshold (higher = more detrimental), binned here: the browser
    gets ``bins`` bars, not one value per sample."""
    scores = np.asarray(scores, dtype=np.float64)
    counts, edges = np.histogram(scores[np.isfinite(scores)], bins=bins)
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#636EFA",
                           name="samples", customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                           hovertemplate="%{customdata[0]:.4g} to %{customdata[1]:.4g}: %{y} samples<extra></extra>"))
    fig.add_vline(x=threshold, line_color="crimson", line_dash="dash",
                  annotation_text=f"budget cut: top {n_flagged}", annotation_position="top")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), showlegend=False, bargap=0,
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


def flag_pairs_heatmap(matrix, classes) -> go.Figure:
    """Flagged samples by given class (rows) and suggested class (columns), each cell's count written in it."""
    classes = [html(c) for c in classes]
    z = np.asarray(matrix)
    text = np.where(z > 0, z.astype(str), "")
    fig = go.Figure(go.Heatmap(z=z, x=list(classes), y=list(classes), colorscale="Reds", text=text,
                               texttemplate="%{text}", showscale=False,
                               hovertemplate="given %{y} → suggested %{x}: %{z} flagged<extra></extra>"))
    fig.update_layout(height=60 + 26 * len(classes), margin=dict(l=10, r=10, t=10, b=10), xaxis_title="suggested",
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
