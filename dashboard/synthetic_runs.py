"""The synthetic demo's computations behind Streamlit's cache, keyed by plain values only.

Budget, detector and label variant are not arguments of :func:`analysis`, so changing
them never retrains: flags and metrics come from its scores.
"""
from __future__ import annotations

import streamlit as st

from ogdash.core.cache import DiskCache
from ogdash.experiments import synthetic as study


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
