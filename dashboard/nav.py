"""The dashboard's pages, in navigation order: one place that app.py and the home page read.

Page scripts live in ``views/``, not ``pages/``: Streamlit (1.67) treats a ``pages/``
folder beside the entry point as a legacy multipage app and then never runs
``app.py``, so ``st.navigation``, the shared sidebar and the URL state would be skipped
whenever a page is opened by its address.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def keep_cwd_off_path() -> None:
    """Take the current folder off ``sys.path`` unless it is the app's own folder.

    ``python -m streamlit run`` puts the folder it starts in on ``sys.path``; that folder is often the data
    root, where anyone who can add data could add a module that a link then names. Streamlit itself adds
    the app's folder (for ``dashboard/``), which stays. Your networks come from installed packages
    (``OGDASH_MODEL_MODULES``, README "Security"), never from the current folder.
    """
    cwd = os.path.realpath(os.getcwd())
    if cwd == str(ROOT):
        return
    sys.path[:] = [p for p in sys.path if p != "" and os.path.realpath(p) != cwd]


@dataclass(frozen=True)
class PageInfo:
    """One page: its file under views/, title, icon and URL path."""
    path: str
    title: str
    icon: str
    blurb: str


PAGES = [
    PageInfo("views/home.py", "Home", ":material/home:", "What ogdash is and where to start."),
    PageInfo("views/data.py", "Data & model", ":material/database:",
             "Pick a built-in dataset or bring your own files; train a model or load your weights."),
    PageInfo("views/gradient_space.py", "Gradient space", ":material/scatter_plot:",
             "Extract per-sample gradients, score them with a detector, see the outliers, select suspects."),
    PageInfo("views/review.py", "Review", ":material/fact_check:",
             "A gallery of suspected mislabels: keep, remove, relabel or mark unsure; export decisions."),
    PageInfo("views/retrain.py", "Trim & retrain", ":material/model_training:",
             "Trim flagged samples or apply your decisions, retrain, and compare test accuracy."),
    PageInfo("views/synthetic.py", "Synthetic demo", ":material/science:",
             "The paper's Figure 1 and Table 1, live: influence vs outlier gradients on toy data."),
    PageInfo("views/llm_influence.py", "LLM influence", ":material/forum:",
             "Which fine-tuning prompts influence a test prompt: LoRA gradients and heatmaps."),
    PageInfo("views/text_selection.py", "Text data selection", ":material/article:",
             "Keep the most beneficial 70% of noisy text data and fine-tune."),
]


def existing_pages() -> list[PageInfo]:
    """The pages whose files exist (a trimmed checkout may lack some)."""
    return [p for p in PAGES if (ROOT / p.path).is_file()]
