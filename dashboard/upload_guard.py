"""Streamlit's upload endpoint, closed to signed-out sessions and capped per session.

Streamlit takes ``PUT /_stcore/upload_file/<session id>/<file id>`` from any live session, signed in or
not, any number of files of up to ``server.maxUploadSize`` each, and holds them in memory until the
session ends: six 25 MB PUTs from a visitor who saw only the sign-in screen added 150 MB. Streamlit has
no setting for either, but it stores every upload through its runtime's upload manager, so the guard
wraps that manager's ``add_file``:

- each run of ``app.py`` notes whether its session may upload (``note_session``): with sign-in on, only
  a signed-in session; with it off, every session that has run the app. A session never noted (a
  websocket opened by hand, never run) may not;
- a session holds at most ``$OGDASH_MAX_SESSION_UPLOAD_MB`` of uploads at once (default: two files at
  the larger of ``$OGDASH_MAX_UPLOAD_MB`` and ``server.maxUploadSize``, a training and a test file).

A refused upload answers 403 or 413 after Streamlit has read its body (at most ``server.maxUploadSize``);
nothing is kept. What Streamlit serves without any session (``/media``, ``/_stcore/metrics``) and the body
it reads first are for the reverse proxy in front of it (README, "Security").
"""
from __future__ import annotations

import math
import os
import threading

_MAY_UPLOAD: dict[str, bool] = {}  # session id -> may it upload, from its latest run
_LOCK = threading.Lock()
MAX_SESSIONS = 10_000  # noted sessions kept before the ended ones are forgotten


def max_session_upload_mb() -> float:
    """Megabytes of uploads one session may hold ($OGDASH_MAX_SESSION_UPLOAD_MB): by default two files of the
    larger of the app's limit and Streamlit's ``server.maxUploadSize`` (a file over the app's own limit must
    still arrive, so the page can say what to do instead)."""
    from streamlit import config

    from dashboard.state import max_upload_mb

    default = 2 * max(max_upload_mb(), float(config.get_option("server.maxUploadSize")))
    try:
        limit = float(os.environ.get("OGDASH_MAX_SESSION_UPLOAD_MB", default))
    except ValueError:
        return default
    return limit if math.isfinite(limit) and limit > 0 else default


def note_session(may_upload: bool) -> None:
    """Record whether the session running this script may upload (called on every run of app.py)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    with _LOCK:
        if len(_MAY_UPLOAD) >= MAX_SESSIONS and ctx.session_id not in _MAY_UPLOAD:
            _forget_ended()
        _MAY_UPLOAD[ctx.session_id] = bool(may_upload)


def may_upload(session_id: str) -> bool:
    return _MAY_UPLOAD.get(session_id, False)


def _forget_ended() -> None:
    from streamlit.runtime import Runtime

    live = Runtime.instance().is_active_session if Runtime.exists() else (lambda sid: False)
    for sid in [s for s in _MAY_UPLOAD if not live(s)]:
        del _MAY_UPLOAD[sid]


def _refuse(status: int, why: str) -> Exception:
    try:
        from starlette.exceptions import HTTPException
    except ModuleNotFoundError:  # an older server: still refused, as an error
        return PermissionError(why)
    return HTTPException(status_code=status, detail=why)


def guard(manager) -> None:
    """Wrap ``manager.add_file`` (Streamlit's uploaded-file manager) with the two checks; once per manager."""
    if getattr(manager, "_ogdash_guarded", False):
        return
    add_file = manager.add_file

    def checked_add_file(session_id, file):
        if not may_upload(session_id):
            raise _refuse(403, "Sign in to upload files.")
        cap = max_session_upload_mb() * 2**20
        with _LOCK:
            held = manager.file_storage.get(session_id) or {}
            others = sum(len(f.data) for fid, f in list(held.items()) if fid != file.file_id)
            if others + len(file.data) > cap:
                raise _refuse(413, f"This session holds {others / 2**20:.1f} MB of uploads; another "
                                   f"{len(file.data) / 2**20:.1f} MB would pass its {cap / 2**20:.0f} MB limit.")
            add_file(session_id, file)

    manager.add_file = checked_add_file
    manager._ogdash_guarded = True


def install() -> None:
    """Guard the running server's upload manager (nothing to do where no server runs, as under AppTest)."""
    from streamlit.runtime import Runtime

    if Runtime.exists():
        manager = Runtime.instance().uploaded_file_mgr
        if hasattr(manager, "file_storage"):
            guard(manager)
