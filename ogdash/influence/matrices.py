"""Test x train influence matrices (TracIn, DataInf): how much each training sample supports each test sample.

Row t, column j: the influence of training sample j on test sample t, **higher = more
influential** (training on j lowers t's loss). The prompt-influence experiment
(``ogdash.experiments.llm_prompts``) ranks training prompts by these rows.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ogdash.core import validate
from ogdash.core.errors import OgdashError


def tracin_matrix(G_train, G_test) -> np.ndarray:
    """Gradient Tracing at one checkpoint: ``G_test @ G_train.T`` (m, n), higher = more influential."""
    A, B = validate.train_test_pair(G_train, G_test)
    return B.astype(np.float64, copy=False) @ A.astype(np.float64, copy=False).T


def datainf_matrix(G_train, G_test, blocks: Sequence[tuple[str, int, int]] | None = None,
                   damping=None) -> np.ndarray:
    """DataInf influence of every training prompt on every test prompt (m, n), higher = more influential.

    Per block l (LoRA parameter tensor), with ``K = G_l G_l^T`` over training prompts,
    ``T = G_test,l G_l^T`` and ``s_i = K_ii``::

        g_t^T (H_l + lam_l I)^{-1} g_j  ~  ( n T_tj - sum_i T_ti K_ij / (lam_l + s_i) ) / (n lam_l)

    which is DataInf's approximation exactly (``ogdash.influence.datainf.datainf`` with the test
    gradient as reference gives the same row, negated). ``damping`` None = DataInf's
    default, ``lam_l = 0.1 * mean_i(s_i) / d_l``.
    """
    A, B = validate.train_test_pair(G_train, G_test)
    n, p = A.shape
    blocks = [("all", 0, p)] if not blocks else list(blocks)
    lams = None if damping is None else np.broadcast_to(np.asarray(damping, dtype=np.float64), (len(blocks),))
    out = np.zeros((len(B), n))
    for b, (_, lo, hi) in enumerate(blocks):
        Gl, Tl = A[:, lo:hi].astype(np.float64, copy=False), B[:, lo:hi].astype(np.float64, copy=False)
        K = Gl @ Gl.T
        T = Tl @ Gl.T
        s = np.diag(K).copy()
        lam = 0.1 * s.mean() / (hi - lo) if lams is None else float(lams[b])
        if not np.isfinite(lam) or lam <= 0:
            raise OgdashError(f"DataInf damping for block {blocks[b][0]} is {lam}; its gradients are all zero, so "
                              "choose other layers or pass damping > 0.")
        out += (n * T - (T / (lam + s)[None, :]) @ K) / (n * lam)
    return out
