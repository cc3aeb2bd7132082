"""DataInf (Kwon et al. 2024): influence and self-influence with a closed-form inverse per layer block.

Higher = more detrimental; same sign as ``ogdash.influence.hessian.exact_influence``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ogdash.core import validate
from ogdash.core.errors import OgdashError
from ogdash.influence.chunks import check_pair, column_sum, row_chunks


def _blocks(p: int, layer_slices) -> list[np.ndarray | slice]:
    if layer_slices is None:
        return [slice(0, p)]
    if isinstance(layer_slices, slice):
        layer_slices = [layer_slices]
    blocks: list[np.ndarray | slice] = []
    used = np.zeros(p, dtype=bool)
    for item in layer_slices:
        if isinstance(item, slice):
            idx = np.arange(p)[item]
            block: np.ndarray | slice = item
        elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(t, (int, np.integer)) for t in item):
            if not 0 <= item[0] < item[1] <= p:
                raise OgdashError(f"layer block {item} must satisfy 0 <= start < stop <= {p}.")
            idx = np.arange(item[0], item[1])
            block = slice(int(item[0]), int(item[1]))
        else:
            idx = np.asarray(item)
            if idx.ndim != 1 or idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= p)):
                raise OgdashError(
                    "Each layer block must be a slice, a (start, stop) pair or an array of column indices "
                    f"in 0..{p - 1}."
                )
            block = idx
        if idx.size == 0:
            raise OgdashError(f"layer block {item!r} selects no gradient columns.")
        if used[idx].any() or len(np.unique(idx)) != idx.size:
            raise OgdashError("layer blocks must not overlap; give each gradient column to at most one layer.")
        used[idx] = True
        blocks.append(block)
    if not blocks:
        raise OgdashError("layer_slices is empty; pass None to treat all columns as one layer.")
    return blocks


def _datainf_lambdas(sq_norms: np.ndarray, sizes: Sequence[int], damping) -> np.ndarray:
    """Per-block damping: DataInf's default is 0.1 x mean over samples of (|g_il|^2 / d_l)."""
    if damping is None:
        lam = 0.1 * sq_norms.mean(axis=0) / np.asarray(sizes, dtype=np.float64)
    else:
        given = np.asarray(damping, dtype=np.float64)
        if given.ndim == 0:
            lam = np.full(len(sizes), float(given))
        elif given.shape == (len(sizes),):
            lam = given.copy()
        else:
            raise OgdashError(f"damping must be a number or one number per layer block ({len(sizes)}).")
    if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise OgdashError(
            "DataInf damping must be > 0 for every layer; a layer whose gradients are all zero gets 0 by "
            "default, so drop that layer from layer_slices or pass damping explicitly."
        )
    return lam


def _block_stats(G, blocks, v_blocks=None):
    """Per-sample squared norms (n, L) and, if given, dots with v per block (n, L)."""
    n, L = G.shape[0], len(blocks)
    sq = np.empty((n, L))
    dots = np.empty((n, L)) if v_blocks is not None else None
    for start, chunk in row_chunks(G):
        stop = start + len(chunk)
        for b, block in enumerate(blocks):
            gb = chunk[:, block]
            sq[start:stop, b] = np.einsum("ij,ij->i", gb, gb)
            if dots is not None:
                dots[start:stop, b] = gb @ v_blocks[b]
    return sq, dots


def datainf(G_train, G_ref=None, layer_slices=None, damping=None) -> np.ndarray:
    """DataInf influence (Kwon et al. 2024); higher = more detrimental.

    Per layer block l, the damped curvature ``H_l + lam_l I`` with
    ``H_l = (1/n) sum_i g_il g_il^T`` is inverted by swapping the order of the average
    and the inverse, which is exact for each rank-one term (Sherman-Morrison)::

        (H_l + lam_l I)^{-1}  ~  1/(n lam_l) * sum_i ( I - g_il g_il^T / (lam_l + |g_il|^2) )

    applied to ``v_l = sum(G_ref)[block l]`` in O(n p) without forming a p x p matrix.

    Parameters
    ----------
    G_train : array (n, p); G_ref : array (m, p) or None (= G_train).
    layer_slices : None, or a sequence of blocks, each a ``slice``, a ``(start, stop)``
        pair or an int array of columns.  None = all columns form one block.  Blocks must
        not overlap; columns in no block are left out (as DataInf sums over the chosen
        layers only).
    damping : None, float, or one float per block
        None = DataInf's code default, ``lam_l = 0.1 * mean_i(|g_il|^2 / d_l)`` with d_l
        the block's column count (its code takes the mean of squared entries, not the
        squared norm, and divides by ``lambda_const_param = 10``).

    Returns
    -------
    scores : float64 array (n,), ``-sum_l g_jl^T (H_l + lam_l I)^{-1} v_l``.  Same sign as
        :func:`exact_influence`; note H_l is a *mean* over samples, so magnitudes are about
        n times those of :func:`exact_influence`, which uses the summed Hessian.  The
        reference gradient is summed (DataInf's code averages it: a factor m).
    """
    G_train, G_ref = check_pair(G_train, G_ref)
    n, p = G_train.shape
    blocks = _blocks(p, layer_slices)
    v = column_sum(G_ref)
    v_blocks = [v[block] for block in blocks]
    sizes = [len(vb) for vb in v_blocks]
    sq, dots = _block_stats(G_train, blocks, v_blocks)
    lam = _datainf_lambdas(sq, sizes, damping)
    coef = dots / (lam + sq)  # (n, L): (g_il . v_l) / (lam_l + |g_il|^2)
    # w_l = sum_i coef_il g_il, one pass over the rows.
    w_blocks = [np.zeros(s) for s in sizes]
    for start, chunk in row_chunks(G_train):
        c = coef[start:start + len(chunk)]
        for b, block in enumerate(blocks):
            w_blocks[b] += chunk[:, block].T @ c[:, b]
    # g_jl . (H_l + lam I)^{-1} v_l = (n (g_jl . v_l) - g_jl . w_l) / (n lam_l)
    gw = np.empty((n, len(blocks)))
    for start, chunk in row_chunks(G_train):
        for b, block in enumerate(blocks):
            gw[start:start + len(chunk), b] = chunk[:, block] @ w_blocks[b]
    return -((n * dots - gw) / (n * lam)).sum(axis=1)


def self_datainf(G_train, layer_slices=None, damping=None) -> np.ndarray:
    """Self-influence with DataInf's inverse, ``sum_l g_jl^T (H_l + lam_l I)^{-1} g_jl``.

    Parameters
    ----------
    G_train : array (n, p).
    layer_slices, damping : as in :func:`datainf`.

    Returns
    -------
    scores : float64 array (n,), the self-influence itself; higher = more detrimental
        (Bejan et al. 2023).  Exact for DataInf's approximation::

            1/(n lam_l) * ( n |g_jl|^2 - sum_i (g_il . g_jl)^2 / (lam_l + |g_il|^2) )

        The cross term needs every pair, so the cost is O(n p_l min(n, p_l)) per block:
        a p_l x p_l accumulator when p_l <= n, otherwise Gram blocks of row chunks.
    """
    G_train = validate.gradient_matrix(G_train, "G_train")
    n, p = G_train.shape
    blocks = _blocks(p, layer_slices)
    sizes = [len(np.arange(p)[b]) for b in blocks]
    sq, _ = _block_stats(G_train, blocks)
    lam = _datainf_lambdas(sq, sizes, damping)
    denom = lam + sq  # (n, L)
    cross = np.zeros((n, len(blocks)))
    for b, block in enumerate(blocks):
        if sizes[b] <= n:
            M = np.zeros((sizes[b], sizes[b]))
            for start, chunk in row_chunks(G_train):
                gb = chunk[:, block]
                M += (gb / denom[start:start + len(chunk), b][:, None]).T @ gb
            for start, chunk in row_chunks(G_train):
                gb = chunk[:, block]
                cross[start:start + len(chunk), b] = np.einsum("ij,jk,ik->i", gb, M, gb)
        else:
            for start_j, chunk_j in row_chunks(G_train):
                gj = chunk_j[:, block]
                acc = np.zeros(len(gj))
                for start_i, chunk_i in row_chunks(G_train):
                    K = chunk_i[:, block] @ gj.T
                    acc += (K * K / denom[start_i:start_i + len(K), b][:, None]).sum(axis=0)
                cross[start_j:start_j + len(gj), b] = acc
    return ((n * sq - cross) / (n * lam)).sum(axis=1)

