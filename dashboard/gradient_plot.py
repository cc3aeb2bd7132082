"""The Gradient space page's heavy parts, memoised so a control change after extraction reruns in well under a second.

The layout is memoised and kept on disk (a restart loads it; UMAP at 50,000 samples takes about a minute),
with a progress bar while it is computed. The scatter is drawn from a sample above ``plots.PLOT_CAP``
points; the score histogram is binned here, not in the browser.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import plots
from dashboard.active import active_model, active_model_key, layer_choice
from dashboard.state import disk_cache, memo, progress_bar, view
from ogdash.core.cache import cache_key
from ogdash.engine.layout2d import UMAP_FIT_MAX, cached_layout


def layout_label(method: str, n: int) -> str:
    if method == "pca":
        return "PCA"
    return f"UMAP (fitted on a random {UMAP_FIT_MAX:,}, slower)" if n > UMAP_FIT_MAX else "UMAP (slower)"


def active_layout(grads, train, method: str) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and the axes' description of the active gradients: memoised, else from the disk cache,
    else computed (UMAP with a progress bar)."""
    key = cache_key("layout", active_model_key(), layer_choice(), method)
    hit = memo(key)
    if hit is not None:
        return hit

    def compute():
        from ogdash.engine.settings import GradientSettings
        from ogdash.pipeline import gradients_key

        # the gradients' own cache key (data, weights, layer): a restart finds the layout again
        disk_key = gradients_key(active_model(), train, GradientSettings(layer_choice()))
        if method == "pca":
            with st.spinner("Computing the PCA layout…"):
                return cached_layout(grads, method, disk_cache(), disk_key)
        bar, cb = progress_bar(f"Computing the UMAP layout of {train.n:,} samples (kept on disk: once per model)")
        try:
            return cached_layout(grads, method, disk_cache(), disk_key, progress=cb)
        finally:
            bar.empty()
    return memo(key, compute)


def scores_key(*more) -> str:
    """A memo key for what follows from the active scores (and ``more``, e.g. the budget)."""
    return cache_key("from_scores", active_model_key(), layer_choice(), view()["detector"], *more)


def metrics(flags, scores, noisy) -> dict:
    """``detection_metrics`` of the active flags, memoised per detector and budget."""
    from ogdash.detect.metrics import detection_metrics

    return memo(scores_key("metrics", view()["budget"]), lambda: detection_metrics(flags, scores, noisy))


def histogram(scores, flags):
    """The score histogram with the budget's cut (binned on the server, memoised)."""
    return memo(scores_key("histogram", view()["budget"]),
                lambda: plots.score_histogram(scores, float(np.min(scores[flags])), int(flags.sum())))


def selected_ids(event) -> list[int]:
    """The sample ids of the points a box or lasso selected (``customdata[0]``), sorted."""
    out = set()
    for p in (event.selection.points if event else []):
        c = p.get("customdata")
        c = c.get("0") if isinstance(c, dict) else (c[0] if isinstance(c, (list, tuple)) and c else None)
        if c is not None:  # a typed array's row arrives as {"0": id, ...}; the plot sends lists
            out.add(int(c))
    return sorted(out)


def scatter(coords, axis: str, train, predicted, scores, flags):
    """The gradient plot (every flagged sample, a seeded sample of the others above the cap) and its caption."""
    def build():
        shown = plots.plot_sample(flags)
        fig = plots.gradient_scatter(coords, train.ids, train.y, predicted, scores, flags, train.classes, axis,
                                     train.sources, shown)
        note = plots.sample_note(flags, shown)
        if len(train.classes) > plots.LEGEND_MAX:
            note += (" " if note else "") + (f"{len(train.classes)} classes: colours repeat every "
                                             f"{len(plots.PALETTE)}, so the legend lists the points, not each class; "
                                             "hover a point for its labels.")
        return fig, note
    return memo(scores_key("scatter", view()["budget"], view()["layout"]), build)
