"""Uploaded files: staged once per browser session, named by their content, removed when done.

An upload becomes a file on disk because the loaders read paths. Each browser session
stages into its own folder, and each file goes under its content's SHA-256, so two
people who upload different files with the same name and size never share a file, a
memo entry or an experiment (memo keys name the staged path). A file is written once
however often the page reruns or the button is pressed; a session keeps its few latest
uploads (and any its active data still uses), and its folder is removed when Streamlit
drops the session; the staging root is removed when the app exits.
"""
from __future__ import annotations

import atexit
import hashlib
import math
import re
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import streamlit as st

from dashboard.state import check_upload_size, max_upload_mb

KEEP = 4  # uploads a session keeps staged besides those its active data uses
_ROOT: list[Path] = []
_LOCK = threading.Lock()


def staging_root() -> Path:
    """This app process's staging folder (created once, removed at exit)."""
    with _LOCK:
        if not _ROOT or not _ROOT[0].is_dir():
            _ROOT[:] = [Path(tempfile.mkdtemp(prefix="ogdash-uploads-"))]
            atexit.register(shutil.rmtree, str(_ROOT[0]), True)
        return _ROOT[0]


class Staging:
    """One session's staged uploads; its folder goes when this object is garbage collected (the session ended)."""

    def __init__(self, root: Path | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=root or staging_root()))
        self.files: OrderedDict[str, Path] = OrderedDict()  # content digest -> staged path
        self.by_id: dict[str, Path] = {}  # Streamlit's upload id -> staged path
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    def add(self, name: str, data: bytes, in_use=()) -> Path:
        """The staged path of ``data`` (written now unless it already is), named ``name``."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.files.get(digest)
        if path is None or not path.is_file():
            safe = re.sub(r"[^\w.\-]+", "_", Path(name).name).lstrip(".")[:100] or "upload"
            path = self.folder / digest[:32] / safe
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.part")
            tmp.write_bytes(data)
            tmp.replace(path)
        self.files[digest] = path
        self.files.move_to_end(digest)
        self._prune({str(p) for p in in_use})
        return path

    def _prune(self, in_use: set[str]) -> None:
        old = [d for d in list(self.files)[:-KEEP] if str(self.files[d]) not in in_use]
        for digest in old:
            shutil.rmtree(self.files.pop(digest).parent, ignore_errors=True)
        self.by_id = {i: p for i, p in self.by_id.items() if p in self.files.values()}

    def close(self) -> None:
        self._cleanup()


def widget_limit_mb() -> int:
    """The upload limit for ``st.file_uploader(max_upload_size=...)``: whole megabytes, at least 1, so the browser
    refuses a larger file before sending it (the server enforces ``server.maxUploadSize``; ``stage_upload`` the
    exact limit)."""
    return max(1, math.ceil(max_upload_mb()))


def _session() -> Staging:
    if "_uploads" not in st.session_state:
        st.session_state["_uploads"] = Staging()
    return st.session_state["_uploads"]


def stage_upload(upload) -> str | None:
    """The path of an ``st.file_uploader`` file, staged for this session (None for no upload).

    Refused with an OgdashError above the upload limit. Reruns with the same upload reuse
    the staged file without reading it again.
    """
    if upload is None:
        return None
    check_upload_size(upload.name, upload.size)
    staging = _session()
    active = st.session_state.get("data_spec")
    in_use = active.paths() if active is not None else []
    path = staging.by_id.get(upload.file_id)
    if path is None or not path.is_file():
        path = staging.add(upload.name, upload.getvalue(), in_use)
        staging.by_id[upload.file_id] = path
    return str(path)
