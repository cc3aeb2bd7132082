"""One progress type and one timing helper for every long step.

``Progress`` is a callback ``progress(fraction, message)`` with 0 <= fraction <= 1, or None
for silence; the dashboard passes a progress bar, the CLI prints to stderr.
:class:`Timer` measures named stages with ``perf_counter`` and reports them as one dict.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable

Progress = Callable[[float, str], None] | None


def report(progress: Progress, fraction: float, message: str = "") -> None:
    """Call ``progress`` when there is one."""
    if progress is not None:
        progress(fraction, message)


def stderr_progress(quiet: bool = False, every: float = 2.0) -> Progress:
    """A Progress that prints ``[ 42.0%] message`` to stderr at most every ``every`` seconds,
    at the end, and whenever the stage (the text before a colon) changes; None when quiet."""
    if quiet:
        return None
    state = {"last": 0.0, "stage": None}

    def progress(fraction: float, message: str = "") -> None:
        now, stage = time.monotonic(), message.split(":")[0]
        if fraction >= 1.0 or now - state["last"] > every or stage != state["stage"]:
            state["last"], state["stage"] = now, stage
            print(f"[{100 * fraction:5.1f}%] {message}", file=sys.stderr, flush=True)
    return progress


class Timer:
    """Seconds spent in named stages: ``with timer("train"): ...``; ``totals()`` adds ``total``.

    ``seconds``: wall-clock seconds per stage; ``cpu``: this process's CPU seconds per stage (on a shared
    machine the CPU time says what a stage costs, the wall time what it took). A stage entered twice adds up.
    ``total`` runs from the timer's creation.
    """

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t
            self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - c

    def totals(self) -> dict[str, float]:
        """Every stage's seconds and ``total``, the seconds since the timer began."""
        return {**self.seconds, "total": time.perf_counter() - self.start}
