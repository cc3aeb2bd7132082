"""Settings read from the environment: one reader, so a malformed value means the default everywhere."""
from __future__ import annotations

import os


def env_int(name: str, default: int) -> int:
    """The positive whole number in ``$name``; a missing, malformed or non-positive value gives ``default``."""
    try:
        value = int(float(os.environ.get(name, default)))
    except (TypeError, ValueError, OverflowError):
        return default
    return value if value > 0 else default
