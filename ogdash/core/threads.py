"""Thread limits for torch and numpy's BLAS: small models on one CPU thread (process-wide, nesting-safe), a cap."""
from __future__ import annotations

import contextlib
import threading

import torch

_threads_lock = threading.Lock()
_threads_state = {"depth": 0, "before": 1}


@contextlib.contextmanager
def one_thread():
    """Run torch and numpy's BLAS on one CPU thread inside the block.

    These models have at most a few hundred parameters and 250 samples: intra-op
    parallelism only adds synchronisation, and on a busy 2-core machine spinning
    OpenMP threads made training and Self-LiSSA 5-20x slower in our measurements.
    The setting is process-wide, so nested or concurrent blocks (two browser tabs)
    share it and the last one out restores the thread count the first one found.
    """
    from threadpoolctl import threadpool_limits

    with _threads_lock:
        if _threads_state["depth"] == 0:
            _threads_state["before"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_state["depth"] += 1
    try:
        with threadpool_limits(1):
            yield
    finally:
        with _threads_lock:
            _threads_state["depth"] -= 1
            if _threads_state["depth"] == 0:
                torch.set_num_threads(_threads_state["before"])


@contextlib.contextmanager
def at_most(threads: int | None):
    """Run torch and numpy's BLAS on at most ``threads`` CPU threads inside the block (None: as they are)."""
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        from ogdash.core.errors import OgdashError

        raise OgdashError(f"threads must be a whole number of at least 1; got {threads!r}.")
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)
