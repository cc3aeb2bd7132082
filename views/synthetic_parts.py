"""The Synthetic demo page's helpers: the paper's Figure 1 panels, the study's runs behind Streamlit's cache,
and the page's longer prose.

Figure 1: A/E training set, B/F test set, C/G influence (Eq. 1) of every training sample, D/H
gradient space with a detector's flags. Class 0 is red and class 1 blue, as in the paper; a flipped
training sample is a cross. Every point carries its stable sample id in ``customdata[0]``. The runs
are keyed by plain values only: budget, detector and label variant are not arguments of
:func:`analysis`, so changing them never retrains (flags and metrics come from its scores).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ogdash.core.cache import DiskCache
from ogdash.experiments import synthetic as study

# ---------------------------------------------------------------- Figure 1: the four panels

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


# ---------------------------------------------------------------- the computations, behind Streamlit's cache

@st.cache_data(show_spinner=False, max_entries=64)
def analysis(dataset, seed, flip_mode, n_flips, preset, epochs):
    """The trained case and every method's scores (``study.analyse``)."""
    case = study.synthetic_case(dataset, seed, flip_mode, n_flips, preset, epochs)
    return study.analyse(case, DiskCache())


@st.cache_data(show_spinner=False, max_entries=512)
def seed_rows(dataset, seed, flip_mode, n_flips, preset, epochs, budget_pct, label_variant, post_trim):
    """Table 1's rows of one seed. Retrains on trimmed sets; the disk cache keys each on the trimmed data,
    so methods that flag the same samples (and reruns after a restart) share one model."""
    result = analysis(dataset, seed, flip_mode, n_flips, preset, epochs)
    return study.seed_rows(result, budget_pct / 100, label_variant, DiskCache(), post_trim)


@st.cache_data(show_spinner=False, max_entries=64)
def trim_retrain(dataset, seed, flip_mode, n_flips, preset, epochs, method, budget_pct):
    """Retrain without one method's flags: the summary and the trimmed samples' table."""
    result = analysis(dataset, seed, flip_mode, n_flips, preset, epochs)
    report, trimmed = study.trim_report(result, method, budget_pct / 100, "given", DiskCache())
    return report.summary, trimmed


def table1(dataset, seeds, flip_mode, n_flips, preset, epochs, budget_pct, variant, post_trim, model_name):
    """Table 1 over ``seeds`` (mean ± std), with a progress bar while it runs."""
    bar = st.progress(0.0, text="Table 1")
    rows = []
    for i, s in enumerate(seeds):
        bar.progress(i / len(seeds), text=f"Table 1: seed {s} ({i + 1} of {len(seeds)}), training and scoring")
        analysis(dataset, s, flip_mode, n_flips, preset, epochs)
        bar.progress((i + 0.5) / len(seeds), text=f"Table 1: seed {s} ({i + 1} of {len(seeds)}), "
                                                  + ("retraining on each trimmed set" if post_trim else "flags"))
        rows += seed_rows(dataset, s, flip_mode, n_flips, preset, epochs, budget_pct, variant, post_trim)
    bar.empty()
    return study.summarise(rows, dataset, model_name, variant)


# ---------------------------------------------------------------- the prose

INTRO = (
    "The paper's toy experiment, rerun in your browser. A few training labels are flipped on purpose, a small "
    "model is trained on the noisy labels, and every method gives each training sample a score "
    "(**higher = more detrimental**). Each method flags the same number of samples, the *budget*. Because we "
    "know which labels were flipped, we can count how many flags are right, and retrain without the flagged "
    "samples to see what removing them is worth on an untouched test set."
)

CONCLUSIONS = (
    "- **Flipped samples are outliers in gradient space.** A flipped sample is fitted badly, so its loss gradient "
    "is long and points away from the crowd: in panel D/H most crosses sit apart, and detectors that never form "
    "a Hessian (IsolationForest, or just the gradient's norm) flag most of them.\n"
    "- **On the blobs almost every score finds the far-side flips**, influence included: a convex model is the "
    "easy case. **On the half-moons the scores that weigh a sample against the whole training set's gradient** "
    "(Eq. 1 with the exact Hessian, TracIn, LiSSA, DataInf; panel G) miss most flips, and trimming by them can "
    "lower test accuracy. Scores that look at each sample's own gradient (its size, its self-influence, how "
    "isolated it is) find most of them.\n"
    "- **Which labels the label-quality baselines see matters.** Fed the given labels they are as good as the "
    "gradient detectors on these toy problems; fed the model's own predictions, as in the paper's released code, "
    "they flag uncertain samples near the boundary rather than the flipped ones.\n"
    "- **Read the spread, not one run.** A trim moves test accuracy by a few points at most here, about as much as "
    "changing the seed; use several seeds before trusting a difference. Uniform flips are harder for every method, "
    "and the paper's 2-2-2-1 net collapses on some seeds (a warning says so)."
)


def figure1_caption(result, letters: str, detector_name: str) -> str:
    """What panels C and D (or G and H) show for this case, the Hessian's damping included."""
    damping = (f" The Hessian is not positive definite here (eigenvalues {result.hessian_eigen_range[0]:.3g} to "
               f"{result.hessian_eigen_range[1]:.3g}), so {result.hessian_damping:.3g}·I is added before inverting "
               "it." if result.hessian_damping else "")
    return (
        f"{letters[2]}: influence of Eq. (1) with the exact Hessian over all of the model's parameters and the "
        f"training set as the reference set; the dashed line is where the budget would cut.{damping} "
        f"{letters[3]}: {result.layout_note}. Orange = flagged by {detector_name}; × = truly flipped. "
        "OneClassSVM learns what normal looks like from 100 extra clean samples drawn from the same generator "
        "with another seed (never the training or test set)."
    )


def table1_caption(dataset: str, seeds: list[int], n_flagged: int, predicted: bool) -> str:
    """How Table 1 was measured, and how it compares with the paper's published table."""
    published = ("The two 'Published' columns are the paper's own Table 1 (half-moons, its 2-2-2-1 MLP, its "
                 "own data, one run); they are quoted, not measured here, and are not comparable number for number. "
                 "The paper has no OneClassSVM row in this experiment."
                 if dataset == "moons" else
                 "The paper publishes no table for the blobs case, so its columns say 'not published'.")
    return (
        f"Measured on {len(seeds)} seed(s) ({seeds[0]}–{seeds[-1]}), mean ± std. Every method flags the top "
        f"{n_flagged} scores. Detection accuracy: share of all training samples where flagged = "
        "truly flipped; precision and recall are over the flipped samples. Post-trim: test accuracy after removing "
        "the flagged samples and retraining from the same initialisation. Seconds: time to compute the score from "
        "the trained model on this machine, including the gradients or Hessian it needs (not the training). "
        "Label-quality rows are fed the "
        + ("model's predicted labels, as in the paper's released code. " if predicted else "given noisy labels. ")
        + "Influence rows use all parameters' gradients and the training set as the reference set; outlier-gradient "
        "rows use the last layer's gradient. Confidence-weighted entropy follows cleanlab exactly, clipping "
        "included: a sample predicted with probability exactly 1 gets its worst score, which is why it can differ "
        "from the other two (for two classes those rank alike). " + published
    )
