"""What the environment holds: settings (one reader, so a malformed value means the default everywhere) and the
files that installed packages ship."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ogdash.core.errors import OgdashError


def env_int(name: str, default: int) -> int:
    """The positive whole number in ``$name``; a missing, malformed or non-positive value gives ``default``."""
    try:
        value = int(float(os.environ.get(name, default)))
    except (TypeError, ValueError, OverflowError):
        return default
    return value if value > 0 else default


def package_file(package: str, relative: str, install: str) -> Path:
    """The path of ``relative`` inside an installed package's folder, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OgdashError(f"the {package!r} package is not installed; run `{install}`.")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise OgdashError(f"{path} is missing from the {package!r} package; reinstall it with `{install}`.")
    return path
