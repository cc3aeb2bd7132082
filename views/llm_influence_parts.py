"""Figures and tables for the LLM influence page (plotly / pandas; no analysis logic here).

Influence is always "higher = more influential"; heatmaps order test prompts (rows) and
training prompts (columns) by class, as the paper's Figure 4 does, with lines between
classes, and label the colour bar from low to high influence.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ogdash.experiments.llm_prompts import METHODS, PAPER_TABLE3, LLMInfluence

SCALES = {
    "rank": "rank within each test prompt's row (0 = least, 1 = most influential)",
    "zscore": "z-score within each row",
    "raw": "raw influence values",
}
COLORSCALE = "Viridis"  # dark = low influence, bright = high, as in Figure 4


def scale_rows(M: np.ndarray, how: str = "rank") -> np.ndarray:
    """Make rows comparable for display: each test prompt's influence scale differs."""
    M = np.asarray(M, dtype=np.float64)
    if how == "raw":
        return M
    if how == "zscore":
        sd = M.std(axis=1, keepdims=True)
        return (M - M.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    # average ranks, so that the tied class blocks of outlier gradients stay one colour
    ranks = pd.DataFrame(M.T).rank(method="average").to_numpy().T
    return (ranks - 1) / max(M.shape[1] - 1, 1)


def _class_axis(labels: np.ndarray, classes) -> tuple[list[float], list[str], list[float]]:
    """Tick positions at the middle of each class block, their names, and block boundaries."""
    mids, names, bounds = [], [], []
    for c, name in enumerate(classes):
        where = np.flatnonzero(labels == c)
        if len(where):
            mids.append(float(where.mean()))
            names.append(_short(name))
            bounds.append(where.max() + 0.5)
    return mids, names, bounds[:-1]


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def influence_heatmap(result: LLMInfluence, method: str, scale: str = "rank") -> go.Figure:
    """Test prompts (rows) x training prompts (columns), both in class order (Figure 4)."""
    b = result.benchmark
    Z = scale_rows(result.matrices[method], scale)
    fig = go.Figure(go.Heatmap(
        z=Z, colorscale=COLORSCALE,
        colorbar=dict(title=dict(text="influence", side="right"), tickvals=[np.nanmin(Z), np.nanmax(Z)],
                      ticktext=["low", "high"]),
        hovertemplate="test #%{y} · train #%{x}<br>value %{z:.3g}<extra></extra>"))
    _decorate(fig, b.train.labels, b.test.labels, b.classes)
    fig.update_layout(title=f"{METHODS[method]}: influence of each training prompt on each test prompt",
                      xaxis_title="training prompts (by class)", yaxis_title="test prompts (by class)")
    return fig


def class_heatmap(result: LLMInfluence, method: str, scale: str = "rank") -> go.Figure:
    """Test prompts (rows) x classes (columns): each class's influence on each test prompt."""
    b = result.benchmark
    Z = scale_rows(result.by_class[method], scale)
    names = [_short(c) for c in b.classes]
    fig = go.Figure(go.Heatmap(
        z=Z, x=names, colorscale=COLORSCALE,
        colorbar=dict(title=dict(text="influence", side="right"), tickvals=[np.nanmin(Z), np.nanmax(Z)],
                      ticktext=["low", "high"]),
        hovertemplate="test #%{y} · class %{x}<br>value %{z:.3g}<extra></extra>"))
    mids, ticks, bounds = _class_axis(b.test.labels, b.classes)
    fig.update_yaxes(tickvals=mids, ticktext=ticks, autorange="reversed")
    for y in bounds:
        fig.add_hline(y=y, line_width=1, line_color="white")
    fig.update_layout(title=f"{METHODS[method]}: influence of each class on each test prompt",
                      xaxis_title="training class", yaxis_title="test prompts (by class)", height=520,
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


def _decorate(fig: go.Figure, y_train, y_test, classes) -> None:
    xm, xt, xb = _class_axis(np.asarray(y_train), classes)
    ym, yt, yb = _class_axis(np.asarray(y_test), classes)
    fig.update_xaxes(tickvals=xm, ticktext=xt, tickangle=-45)
    fig.update_yaxes(tickvals=ym, ticktext=yt, autorange="reversed")
    for x in xb:
        fig.add_vline(x=x, line_width=1, line_color="white")
    for y in yb:
        fig.add_hline(y=y, line_width=1, line_color="white")
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=50, b=10))


def metrics_table(result: LLMInfluence) -> pd.DataFrame:
    """Our AUC / recall (mean ± std over test prompts) beside the paper's Table 3."""
    paper = PAPER_TABLE3.get(result.benchmark.task, {})
    k = int(np.bincount(result.benchmark.train.labels).max())
    rows = []
    for m, d in result.metrics.items():
        p = paper.get(m)
        rows.append({
            "method": METHODS[m],
            "AUC (this run)": f"{d['auc_mean']:.3f} ± {d['auc_std']:.3f}",
            f"recall@{k} (this run)": f"{d['recall_mean']:.3f} ± {d['recall_std']:.3f}",
            "AUC (published, Llama-2-13B)": f"{p[0]:.3f} ± {p[1]:.3f}" if p else "–",
            "recall@90 (published, Llama-2-13B)": f"{p[2]:.3f} ± {p[3]:.3f}" if p else "–",
        })
    return pd.DataFrame(rows)


def timings_table(result: LLMInfluence) -> pd.DataFrame:
    """Seconds per stage of one LLM influence run."""
    order = ["load_model", "frozen_prefix", "finetune", "gradients", *METHODS]
    names = {"load_model": "load model", "frozen_prefix": "frozen layers (once per prompt)",
             "finetune": "LoRA fine-tuning", "gradients": "per-prompt gradients", **METHODS}
    rows = [{"stage": names.get(s, s), "wall s": round(result.seconds[s], 2),
             "CPU s": round(result.cpu_seconds.get(s, 0.0), 2),
             "from cache": "yes" if result.cached.get(s) else ""}
            for s in order if s in result.seconds]
    return pd.DataFrame(rows)


def top_table(result: LLMInfluence, method: str, test_index: int, k: int = 10) -> pd.DataFrame:
    """The k most influential training prompts for one test prompt, with class and score."""
    b = result.benchmark
    top = result.top_k(method, test_index, k)
    own = b.test.labels[test_index]
    return pd.DataFrame({
        "rank": np.arange(1, len(top) + 1),
        "id": [b.train.ids[j] for j in top],
        "class": [b.classes[b.train.labels[j]] for j in top],
        "same class": ["✓" if b.train.labels[j] == own else "" for j in top],
        "influence": result.matrices[method][test_index, top],
        "prompt + completion": [b.train.text(j) for j in top],
    })


def prompt_choices(result: LLMInfluence) -> list[int]:
    """Positions of the test prompts, for a select box."""
    return list(range(result.benchmark.test.n))


def prompt_label(result: LLMInfluence, t: int) -> str:
    """A short label of test prompt ``t``: its id and (shortened) class."""
    b = result.benchmark
    return f"{b.test.ids[t]} · {_short(b.classes[b.test.labels[t]], 30)}"
