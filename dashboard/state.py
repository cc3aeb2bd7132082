"""What the pages share: the active data/model choice and a process-wide memo of heavy objects.

Heavy objects (datasets, models, gradients, scores, layouts) live in one
process-wide, bounded memo keyed by plain strings (``st.cache_resource`` holds it; dashboard/memo.py), so
every page and browser tab reuses them, and computing one can drive a progress bar
on the page that asked. Under it the ogdash disk cache makes an app restart cheap:
a model or gradients computed before are loaded, not recomputed.
"""
from __future__ import annotations

import json
import math
import os
import unicodedata
from pathlib import Path

import streamlit as st

from dashboard.memo import Memo
from ogdash.core.cache import DiskCache
from ogdash.core.errors import OgdashError
from ogdash.data.spec import DataSpec
from ogdash.review import check_reviewer, default_store_path

DEFAULT_DATA = DataSpec("builtin", name="digits", seed=0, noise_rate=0.2, noise_kind="uniform")
DEFAULT_MODEL = {"kind": "cnn", "seed": 0}
# A built-in case where label noise hurts and a fix pays (benchmarks/fixes.py, README "What a fix is worth").
PRESET_DATA = DataSpec("builtin", name="digits", seed=0, noise_rate=0.3, noise_kind="pairs")
PRESET_MODEL = {"kind": "cnn", "seed": 0, "epochs": 40}
PRESET_TEXT = ("digits with 30% of the labels flipped between digits people confuse (1↔7, 3↔8, 4↔9, 5↔6), and a "
               "CNN trained 40 epochs: the noise costs it about 18 points of test accuracy.")


@st.cache_resource(show_spinner=False)
def _memo() -> Memo:
    return Memo.from_env()  # bounded: least recently used entries go first (dashboard/memo.py)


def stages() -> Memo:
    """The process memo, where the active scan keeps its stages (dashboard/scan.py)."""
    return _memo()


def memo(key: str, compute=None):
    """The memoised value for ``key``; computes it with ``compute()`` on a miss (if given), else None."""
    return _memo().get(key, compute)


def disk_cache() -> DiskCache:
    """The disk cache under $OGDASH_CACHE (default ~/.cache/ogdash)."""
    return DiskCache()


def data_root() -> Path:
    """Paths typed in the UI must resolve under this folder ($OGDASH_DATA_ROOT, default: the working folder)."""
    return Path(os.environ.get("OGDASH_DATA_ROOT", os.getcwd())).resolve()


def decisions_path() -> Path:
    """The decision store (``ogdash.review.default_store_path``)."""
    return default_store_path()


def max_upload_mb() -> float:
    """The upload size limit in MB ($OGDASH_MAX_UPLOAD_MB, default 200; a malformed value means the default)."""
    try:
        limit = float(os.environ.get("OGDASH_MAX_UPLOAD_MB", 200))
    except ValueError:
        return 200.0
    return limit if math.isfinite(limit) and limit > 0 else 200.0


def check_upload_size(name: str, size: int, limit_mb: float | None = None) -> None:
    """Refuse an upload of ``size`` bytes above the limit, with a message that says what to do instead."""
    limit_mb = max_upload_mb() if limit_mb is None else limit_mb
    if size > limit_mb * 2**20:
        raise OgdashError(f"{name}: is {size / 2**20:.3g} MB, over the {limit_mb:.3g} MB upload limit; "
                          "put it under the data root and give its path instead.")


def _from_url(name: str):
    """The data (a ``DataSpec``) or model choice saved in the page's URL if it passes the link's checks
    (``DataSpec.from_dict``, dashboard/schema.py for the model), else None, with the reason kept for
    ``link_problems`` to show once."""
    from dashboard.schema import link_json, model_from_link

    text = st.query_params.get(name)
    if not text:
        return None
    try:
        cfg = link_json(text)  # size and nesting checked before the parser sees it
    except ValueError as e:
        st.session_state.setdefault("link_problems", []).append(
            f"The link's {name} settings were not used ({e}); the default is used instead.")
        return None
    try:
        if name == "data":
            return DataSpec.from_dict(cfg, data_root())
        return model_from_link(cfg, data_root())
    except OgdashError as e:
        why = (f"The link's data settings were not used ({str(e).rstrip('.')}); the default data is shown instead."
               if name == "data" else str(e))
        st.session_state.setdefault("link_problems", []).append(why)
    return None


def link_problems() -> list[str]:
    """Why this session's link was not used as it was, once (the next run shows nothing)."""
    return st.session_state.pop("link_problems", [])


def data_spec() -> DataSpec:
    """The active data choice: this session's, else the one in the URL (so a reload keeps it), else digits."""
    if "data_spec" not in st.session_state:
        st.session_state["data_spec"] = _from_url("data") or DEFAULT_DATA
    return st.session_state["data_spec"]


def model_config() -> dict:
    if "model_config" not in st.session_state:
        st.session_state["model_config"] = _from_url("model") or dict(DEFAULT_MODEL)
    return st.session_state["model_config"]


def choose_data(spec: DataSpec, model_cfg: dict | None = None) -> None:
    """Make ``spec`` the active data (and ``model_cfg`` the model); the view starts afresh and the page reruns,
    so the sidebar and the URL name the new choice at once."""
    st.session_state["data_spec"] = spec
    if model_cfg is not None:
        st.session_state["model_config"] = model_cfg
    view().update(sel=[], gpage=1, classes=[], suggested=[], q="")
    sync_url()
    st.rerun()


# ---------------------------------------------------------------- the view, kept in the URL
# Everything that defines what a page shows, beyond the data and the model. One dict per browser
# session, seeded from the URL when a session starts (a reload, a shared link), changed only by a
# person (``bound``'s on_change) or a page's own action, and written to the URL before and after every
# run (app.py), so reloading any page shows what was there. Values at their default are left out of
# the URL to keep links short.

BUDGET_RANGE = (0.01, 0.5)
SHOW = ("flagged", "selection", "all")
STATUS = ("all", "undecided", "keep", "remove", "relabel", "unsure", "conflict")
EXAMPLE_STATUS = ("all", "undecided", "keep", "remove", "edit", "unsure", "conflict")  # fine-tuning examples
REVIEWS = ("data", "llm")  # what the Review page reviews: the active data, or the LLM page's fine-tuning examples


SELECTION_IN_URL = 2_000  # a larger selection stays in the session only: its address would not fit a request line


def _ints(text: str) -> list[int]:
    out = [int(t) for t in text.split(",", 10_000) if t.strip()]
    if len(out) > 10_000 or any(not -(2**63) <= i < 2**63 for i in out):  # ids are int64
        raise ValueError(text[:40])
    return out


def _budget(text: str) -> float | str:
    """A fraction on the slider's grid, or 'auto': the suggested budget, used exactly (its count, not a rounding)."""
    if text == "auto":
        return "auto"
    b = round(float(text), 2)
    if not BUDGET_RANGE[0] <= b <= BUDGET_RANGE[1]:
        raise ValueError(text)
    return b


def budget_words() -> str:
    """The view's budget in words, for the pages that show its flags."""
    b = view()["budget"]
    return "the suggested budget" if b == "auto" else f"budget {b:.0%}"


def _one_of(choices):
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(text)
        return text
    return parse


def _detector(text: str) -> str:
    from ogdash.pipeline import DETECTORS

    return _one_of(DETECTORS)(text)


def _key(text: str) -> str:
    """A review's key (``FlaggedExamples.key``): 24 hex digits, nothing else."""
    if len(text) != 24 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(text[:40])
    return text


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise ValueError(text)
    return n


def _reviewer(text: str) -> str:
    """A reviewer name from the address: one line of printable text (a carriage return or other control character
    makes the whole value fall back to the default, empty)."""
    name = text.strip()[:80]
    return check_reviewer(name) if name else ""  # OgdashError is a ValueError: the default is used


def _line(limit: int):
    """One line of printable text of at most ``limit`` characters (a search, a typed path, a tab's name): what a
    person typed, shown again in its box; a path is checked against the data root only when it is used."""
    def parse(text: str) -> str:
        if len(text) > limit or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
            raise ValueError(text[:40])
        return text
    return parse


# The Data & model page's typed paths, kept in the address so a reload shows what was typed.
TYPED_PATHS = ("train_path", "test_path", "folder", "folder_test", "cifar", "cifar_labels")


def _view_fields() -> dict:
    """name -> (default, parse(text) -> value). Parsing failures fall back to the default."""
    from ogdash.pipeline import RECOMMENDED

    return {"layer": ("last", str), "detector": (RECOMMENDED, _detector), "budget": (0.05, _budget),
            "layout": ("pca", _one_of(("pca", "umap"))), "show": ("flagged", _one_of(SHOW)),
            "classes": ([], _ints), "suggested": ([], _ints), "status": ("all", _one_of(STATUS + ("edit",))),
            "q": ("", _line(200)), "gpage": (1, _positive), "reviewer": ("", _reviewer), "sel": ([], _ints),
            "tab": ("", _line(60)), "review": ("data", _one_of(REVIEWS)), "ft": ("", _key),
            **{name: ("", _line(1000)) for name in TYPED_PATHS}}


def _to_text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def view() -> dict:
    """This session's view: layer, detector, budget, layout, gallery filters and page, reviewer, selection."""
    if "view" not in st.session_state:
        v = {}
        for name, (default, parse) in _view_fields().items():
            text = st.query_params.get(name)
            try:
                v[name] = default if text is None else parse(text)
            except (ValueError, TypeError):
                v[name] = default
        st.session_state["view"] = v
    return st.session_state["view"]


def sync_url() -> None:
    """Write the active choice and the view into the URL, so a reload or a shared link opens the same screen.

    Called before the page runs and after it: a write after a page's ``st.stop()`` (or a run cut
    short by the next click) does not reach the browser, so the next run's first write makes up
    for it. The whole address is written each time; none is skipped as "already there".
    """
    params = {"data": json.dumps(data_spec().to_dict(), sort_keys=True),
              "model": json.dumps(model_config(), sort_keys=True)}
    v = view()
    for name, (default, _) in _view_fields().items():
        text = _to_text(v[name])
        if text != _to_text(default) and not (name == "sel" and len(v[name]) > SELECTION_IN_URL):
            params[name] = text
    st.query_params.from_dict(params)


def _follow(name: str) -> None:
    value = st.session_state[f"_{name}"]
    view()[name] = list(value) if isinstance(value, (list, tuple)) else value


def bound(name: str, widget, *args, shown=None, **kwargs):
    """Draw ``widget`` holding the view's ``name`` (or ``shown``, where the view holds what the widget cannot:
    the budget slider shows the suggested fraction while the view says 'auto').

    The view is the one truth: the widget is set from it on every run (Streamlit resets a page's
    widgets when the page is opened again), and only a person's change (``on_change``, which runs
    before the script) changes the view.
    """
    key = f"_{name}"
    st.session_state[key] = view()[name] if shown is None else shown
    return widget(*args, key=key, on_change=_follow, args=(name,), **kwargs)


def progress_bar(label: str):
    """A st.progress bar and the (fraction, message) callback that drives it."""
    bar = st.progress(0.0, text=label)
    return bar, (lambda f, msg="": bar.progress(min(1.0, max(0.0, float(f))), text=f"{label}: {msg}"))


def whole_table(df) -> None:
    """A results table tall enough to show every row without an inner scroll bar."""
    st.dataframe(df, hide_index=True, width="stretch", height=35 * (len(df) + 1) + 3)
