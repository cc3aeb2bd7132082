"""What every command line shares: argparse types, a parser that fails in one line, and the run convention.

Bad input exits with status 2 and a one-line ``error: ...`` on stderr, never a traceback;
an interrupt exits with 130.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

import numpy as np

from ogdash.core.errors import OgdashError


# optional packages -> the extra of pyproject.toml that installs them
EXTRAS = {"transformers": "llm", "peft": "llm", "tokenizers": "llm", "accelerate": "llm", "gguf": "llm",
          "sentence_transformers": "text", "streamlit": "dashboard", "plotly": "dashboard",
          "datasets": "tables", "pyarrow": "tables", "label_studio_sdk": "labelstudio"}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""
    def error(self, message):  # one line, exit 2
        self.exit(2, f"error: {message}\n")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number; got {text!r}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number such as 0.2 (ranges are checked by the command)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.2; got {text!r}")


def hidden_widths(text: str) -> tuple[int, ...]:
    """An argparse type for MLP widths: comma-separated positive integers such as ``16,16``."""
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes comma-separated widths like 16,16; got {text!r}")
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"--hidden widths must be positive integers; got {text!r}")
    return widths


def choice_list(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type for a comma-separated subset of ``choices`` ('all' = every one)."""
    choices = tuple(choices)

    def parse(text: str) -> tuple[str, ...]:
        keys = tuple(k.strip() for k in text.replace(" ", ",").split(",") if k.strip())
        if keys == ("all",):
            return choices
        unknown = [k for k in keys if k not in choices]
        if unknown or not keys:
            raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown) or '(none)'}; "
                                             f"choose from {', '.join(choices)} or 'all'")
        return keys
    return parse


def run_command(run: Callable, fmt: Callable[[dict], str], args) -> int:
    """``run(args)`` then print its result (JSON with ``--json``); results with a non-zero ``rank``
    (the other processes of a torchrun job) print nothing."""
    try:
        result = run(args)
    except OgdashError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional extra that is not installed
        extra = EXTRAS.get((e.name or "").split(".")[0])
        print(f"error: this command needs the {e.name!r} package"
              + (f"; install it with pip install 'ogdash[{extra}]'" if extra else "") + ".", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if result.get("rank", 0) != 0:
        return 0
    if getattr(args, "json", False):
        print(json.dumps(result, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))
    else:
        print(fmt(result))
    return 0
