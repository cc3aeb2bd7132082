"""The Gradient space page's heavy parts, memoised so a control change after extraction reruns in well under a second.

The layout is the scan's (memoised and kept on disk: a restart loads it; UMAP at 50,000 samples takes about a
minute), with a progress bar while it is computed. The scatter is drawn from a sample above ``plots.PLOT_CAP``
points; the score histogram is binned here, not in the browser.
"""
from __future__ import annotations

import numpy as np

from dashboard import plots
from dashboard.state import memo, progress_bar, view
from ogdash.core.cache import cache_key
from ogdash.pipeline import UMAP_FIT_MAX, Scan


def layout_label(method: str, n: int) -> str:
    if method == "pca":
        return "PCA"
    return f"UMAP (fitted on a random {UMAP_FIT_MAX:,}, slower)" if n > UMAP_FIT_MAX else "UMAP (slower)"


def layout_of(scan: Scan, method: str) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and the axes' description of the scan's gradients (UMAP with a progress bar)."""
    if method == "pca" or memo(scan.key("layout", method)) is not None:
        return scan.layout(method)
    bar, cb = progress_bar(f"Computing the UMAP layout of {scan.train.n:,} samples (kept on disk: once per model)")
    try:
        return scan.layout(method, progress=cb)
    finally:
        bar.empty()


def histogram(scan: Scan, scores, flags):
    """The score histogram with the budget's cut (binned on the server, memoised)."""
    return memo(scan.key("histogram", view()["detector"], view()["budget"]),
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


def scatter(scan: Scan, coords, axis: str, predicted, scores, flags):
    """The gradient plot (every flagged sample, a seeded sample of the others above the cap) and its caption."""
    train = scan.train

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
    v = view()
    fig, note = memo(scan.key("scatter", v["detector"], v["budget"], v["layout"]), build)
    if not v["sel"]:
        return fig, note
    chosen = memo(scan.key("scatter", v["detector"], v["budget"], v["layout"], cache_key(v["sel"])),
                  lambda: plots.with_selection(fig, v["sel"]))  # the box or lasso a reload keeps, drawn again
    return chosen, note
