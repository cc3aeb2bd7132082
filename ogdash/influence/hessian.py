"""Influence with the exact Hessian (the paper's Eq. 1), TracIn, and the exact Hessian of a small torch model.

With ``v = sum_{z in ref} g_z`` the first-order change of the total reference loss when
training sample ``j`` is removed and the model retrained is ``Delta_j = v^T H^{-1} g_j``;
every score here is ``-Delta_j``, higher = more detrimental (see ``ogdash.influence``).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ogdash.core import validate
from ogdash.core.errors import OgdashError
from ogdash.influence.chunks import check_hessian, check_pair, column_sum, rows_dot


def _solve_spd(H: np.ndarray, rhs: np.ndarray, damping: float) -> np.ndarray:
    """Solve (H + damping I) x = rhs by Cholesky; if not positive definite, shift and warn."""
    p = H.shape[0]
    A = H + damping * np.eye(p)
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        eig = np.linalg.eigvalsh(A)
        shift = max(-eig[0], 0.0) + 1e-8 * max(np.abs(eig).max(), 1.0)
        warnings.warn(
            f"The Hessian (+ damping {damping:g}) is not positive definite (smallest eigenvalue {eig[0]:.3g}); "
            f"added {shift:.3g} * I so it can be inverted. Pass a larger damping to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        L = np.linalg.cholesky(A + shift * np.eye(p))
    y = np.linalg.solve(L, rhs)
    return np.linalg.solve(L.T, y)


def exact_influence(G_train, G_ref=None, hessian=None, damping: float = 0.0) -> np.ndarray:
    """Influence of Eq. (1) with the exact Hessian; higher = more detrimental.

    Parameters
    ----------
    G_train : array (n, p), per-sample training gradients (numpy or torch).
    G_ref : array (m, p) or None, gradients of the reference set T/V; None = G_train.
    hessian : array (p, p), required
        Hessian of the total training objective (sum of per-sample losses, plus
        ``weight_decay * I`` when trained with weight decay), e.g. :func:`exact_hessian`.
    damping : float, default 0.0
        Added to the diagonal before the Cholesky solve.  If ``hessian + damping I`` is
        still not positive definite, the smallest shift that makes it so (plus 1e-8 of the
        largest eigenvalue) is added and a ``RuntimeWarning`` says how much.

    Returns
    -------
    scores : float64 array (n,), ``-(v^T H^{-1} g_j)`` with ``v = sum(G_ref)``: the
        estimated *decrease* of the total reference loss when sample j is removed.
        Equals the expression of the paper's Eq. (1) (whose Eq. (2) reads the opposite
        sign as detrimental).  Cost O(p^3 + n p).
    """
    G_train, G_ref = check_pair(G_train, G_ref)
    if hessian is None:
        raise OgdashError("exact_influence needs the Hessian; compute it with exact_hessian(model, X, y).")
    if damping < 0:
        raise OgdashError(f"damping must be >= 0, got {damping}.")
    H = check_hessian(hessian, G_train.shape[1])
    w = _solve_spd(H, column_sum(G_ref), float(damping))
    return -rows_dot(G_train, w)


def gradient_tracing(G_train, G_ref=None) -> np.ndarray:
    """TracIn at the final checkpoint (Pruthi et al. 2020); higher = more detrimental.

    Parameters
    ----------
    G_train : array (n, p); G_ref : array (m, p) or None (= G_train).

    Returns
    -------
    scores : float64 array (n,), ``-(v^T g_j)`` with ``v = sum(G_ref)``.  A sample whose
        gradient points along the reference gradient is a proponent (one gradient step on
        it lowers the reference loss), so it gets a low score.  The learning rate of the
        TracIn formula is a constant factor and is dropped.  This is exact influence with
        ``H = I``.
    """
    G_train, G_ref = check_pair(G_train, G_ref)
    return -rows_dot(G_train, column_sum(G_ref))


def exact_hessian(model, X, y, weight_decay: float = 0.0, param_names: Sequence[str] | None = None,
                  *, max_params: int = 4096) -> np.ndarray:
    """Exact Hessian of the summed training objective for a small torch model.

    The objective is ``sum_i per_sample_loss(model(X)_i, y_i) + weight_decay / 2 * |theta|^2``
    over the chosen parameters ``theta`` (the loss of :mod:`ogdash.models.losses`: sigmoid
    BCE for a one-unit head, softmax CE otherwise).  The weight-decay term matches torch
    optimizers, which add ``weight_decay * theta`` to the gradient, so it contributes
    ``weight_decay * I``.  Computed with ``torch.func.jacrev`` twice in float64 (parameters,
    floating buffers and X are cast), with the model in eval mode for the call.

    Parameters
    ----------
    model : torch.nn.Module returning logits (n, C) or (n, 1).
    X : tensor (n, ...) inputs; y : int tensor or array (n,).
    weight_decay : float, default 0.0.
    param_names : names from ``model.named_parameters()``, default all; the Hessian is
        taken over these only (the others held fixed), flattened in
        ``named_parameters()`` order, each tensor row-major.
    max_params : int, default 4096; a guard, since the cost grows as p^2.

    Returns
    -------
    hessian : float64 numpy array (p, p).
    """
    import torch
    from torch.func import functional_call, jacrev

    from ogdash.models.losses import per_sample_loss

    named = dict(model.named_parameters())
    if param_names is None:
        names = list(named)
    else:
        wanted = list(param_names)
        missing = [k for k in wanted if k not in named]
        if missing:
            raise OgdashError(f"Unknown parameter name(s) {missing}; choose from {list(named)}.")
        names = [k for k in named if k in set(wanted)]
    if not names:
        raise OgdashError("exact_hessian needs at least one parameter.")
    sizes = [named[k].numel() for k in names]
    p = sum(sizes)
    if p > max_params:
        raise OgdashError(
            f"The chosen parameters hold {p} values, too many for an exact Hessian (max_params={max_params}); "
            "choose fewer with param_names (e.g. the last layer) or use lissa/datainf."
        )
    device = named[names[0]].device
    params = {k: v.detach().to(device=device, dtype=torch.float64) for k, v in named.items()}
    buffers = {k: (b.detach().to(torch.float64) if b.is_floating_point() else b.detach())
               for k, b in model.named_buffers()}
    X = torch.as_tensor(X, device=device)
    if X.is_floating_point():
        X = X.to(torch.float64)
    y = torch.as_tensor(np.asarray(y) if not validate.is_torch(y) else y, device=device)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise OgdashError(f"y must hold one label per row of X ({X.shape[0]}), got shape {tuple(y.shape)}.")
    shapes = [named[k].shape for k in names]
    theta0 = torch.cat([params[k].reshape(-1) for k in names])
    wd = float(weight_decay)

    def objective(theta):
        state = dict(params)
        for k, piece, shape in zip(names, torch.split(theta, sizes), shapes):
            state[k] = piece.view(shape)
        state.update(buffers)
        logits = functional_call(model, state, (X,))
        return per_sample_loss(logits, y).sum() + 0.5 * wd * (theta * theta).sum()

    was_training = model.training
    model.eval()
    try:
        # Reverse-over-reverse: fine for a few thousand parameters, and avoids forward-mode AD.
        H = jacrev(jacrev(objective))(theta0)
    finally:
        model.train(was_training)
    return H.detach().cpu().numpy().astype(np.float64)
