"""LiSSA: the inverse-Hessian product by a truncated Neumann series, and the influence scores built on it.

Influence (``lissa``) has the sign and scale of ``ogdash.influence.hessian.exact_influence``;
self-influence (``self_lissa``, and its closed form for Gauss-Newton curvature) is
returned as it is. Higher = more detrimental.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ogdash.core import validate
from ogdash.core.errors import OgdashError
from ogdash.influence.chunks import check_hessian, check_pair, column_sum, row_chunks, rows_dot, to_float64


def _operator(p: int, hvp: Callable | None, hessian) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping a (p, k) float64 block V to H @ V."""
    if hessian is not None:
        H = check_hessian(hessian, p)
        return lambda V: H @ V
    if hvp is None:
        raise OgdashError("LiSSA needs either a Hessian-vector product `hvp` or a `hessian` matrix.")
    if not callable(hvp):
        raise OgdashError("hvp must be a callable taking a vector of length p and returning H @ vector.")

    def apply(V: np.ndarray) -> np.ndarray:
        out = np.empty_like(V)
        for k in range(V.shape[1]):
            col = to_float64(hvp(V[:, k].copy())).reshape(-1)
            if col.shape != (p,):
                raise OgdashError(f"hvp must return a vector of length {p}, got shape {col.shape}.")
            out[:, k] = col
        return out

    return apply


def _largest_eigenvalue(apply_H, p: int, iterations: int = 50) -> float:
    # Power iteration; a lower bound on |lambda|_max that converges from below.
    x = np.random.default_rng(0).standard_normal((p, 1))
    x /= np.linalg.norm(x)
    lam = 0.0
    for _ in range(iterations):
        y = apply_H(x)
        lam = float(np.linalg.norm(y))
        if lam == 0.0 or not np.isfinite(lam):
            break
        x = y / lam
    return lam


def _lissa_block(apply_H, V: np.ndarray, damping: float, scale: float, iterations: int, repeats: int,
                 tol: float | None) -> np.ndarray:
    result = np.zeros_like(V)
    for _ in range(repeats):
        h = V.copy()
        for _ in range(iterations):
            new = V + h - (apply_H(h) + damping * h) / scale
            change = np.linalg.norm(new - h)
            h = new
            if not np.all(np.isfinite(h)) or np.linalg.norm(h) > 1e12 * (np.linalg.norm(V) + 1e-300) * scale:
                raise OgdashError(
                    "LiSSA diverged: use a larger scale (it must exceed half the largest Hessian eigenvalue) "
                    "or a larger damping (the Hessian must be positive definite)."
                )
            if tol is not None and change <= tol * np.linalg.norm(h):
                break
        result += h / scale
    return result / repeats


def _lissa_settings(apply_H, p: int, damping: float, scale: float | None, iterations: int, repeats: int):
    if damping < 0:
        raise OgdashError(f"damping must be >= 0, got {damping}.")
    if iterations < 1 or repeats < 1:
        raise OgdashError("iterations and repeats must be positive integers.")
    if scale is None:
        top = _largest_eigenvalue(apply_H, p) + damping
        if top <= 0:
            raise OgdashError("The Hessian-vector product returned zeros; LiSSA cannot pick a scale.")
        scale = 1.25 * top
    if scale <= 0:
        raise OgdashError(f"scale must be > 0, got {scale}.")
    return float(scale)


def lissa_inverse_hvp(v, hvp: Callable | None = None, *, hessian=None, damping: float = 0.0,
                      scale: float | None = None, iterations: int = 1000, repeats: int = 1,
                      tol: float | None = None) -> np.ndarray:
    """LiSSA estimate of ``(H + damping I)^{-1} v`` (Agarwal et al. 2017; Koh & Liang 2017).

    The recursion ``h_0 = v``, ``h_t = v + h_{t-1} - (H + damping I) h_{t-1} / scale`` is a
    truncated Neumann series; ``h_t / scale`` converges to ``(H + damping I)^{-1} v`` when
    ``H + damping I`` is positive definite and ``scale`` exceeds half its largest
    eigenvalue.  (Koh & Liang's code writes damping as a fraction ``d`` of ``scale``; our
    ``damping`` is the amount added to H itself, ``d * scale``.)

    Parameters
    ----------
    v : array (p,)
    hvp : callable, ``hvp(x: float64 array (p,)) -> H @ x`` (numpy or torch, length p).
        May be stochastic (a mini-batch Hessian); then average with ``repeats``.
    hessian : array (p, p), optional; builds the hvp from a matrix instead.
    damping : float, default 0.0
    scale : float or None, default None = 1.25 x (largest eigenvalue of H + damping I,
        estimated with 50 power iterations).
    iterations : int, default 1000, recursion depth.
    repeats : int, default 1, independent recursions averaged.
    tol : float or None, default None = always run ``iterations`` steps; otherwise stop
        when a step changes h by less than ``tol * |h|``.

    Returns
    -------
    float64 array (p,)
    """
    vec = to_float64(v).reshape(-1)
    p = vec.shape[0]
    apply_H = _operator(p, hvp, hessian)
    scale = _lissa_settings(apply_H, p, damping, scale, iterations, repeats)
    return _lissa_block(apply_H, vec[:, None], float(damping), scale, iterations, repeats, tol)[:, 0]


def lissa(G_train, G_ref=None, hvp: Callable | None = None, *, hessian=None, damping: float = 0.0,
          scale: float | None = None, iterations: int = 1000, repeats: int = 1,
          tol: float | None = None) -> np.ndarray:
    """Influence with the inverse-Hessian product estimated by LiSSA; higher = more detrimental.

    Parameters
    ----------
    G_train : array (n, p); G_ref : array (m, p) or None (= G_train).
    hvp, hessian, damping, scale, iterations, repeats, tol : see :func:`lissa_inverse_hvp`.
        Give ``hvp`` (a callable) or ``hessian`` (a (p, p) matrix of the summed objective).

    Returns
    -------
    scores : float64 array (n,), ``-(g_j^T h)`` with ``h ~ (H + damping I)^{-1} sum(G_ref)``;
        the same sign and scale as :func:`exact_influence`, to which it converges.
        Cost: ``iterations * repeats`` Hessian-vector products + O(n p).
    """
    G_train, G_ref = check_pair(G_train, G_ref)
    h = lissa_inverse_hvp(column_sum(G_ref), hvp, hessian=hessian, damping=damping, scale=scale,
                          iterations=iterations, repeats=repeats, tol=tol)
    return -rows_dot(G_train, h)


def self_lissa(G_train, hvp: Callable | None = None, *, hessian=None, damping: float = 0.0,
               scale: float | None = None, iterations: int = 1000, repeats: int = 1,
               tol: float | None = None) -> np.ndarray:
    """Self-influence ``g_j^T (H + damping I)^{-1} g_j`` by LiSSA; higher = more detrimental.

    Parameters
    ----------
    G_train : array (n, p).
    hvp, hessian, damping, scale, iterations, repeats, tol : see :func:`lissa_inverse_hvp`.

    Returns
    -------
    scores : float64 array (n,), the self-influence itself (positive for a positive
        definite H); a large value marks a sample the model can fit only by bending to
        it, i.e. a likely detrimental one (Bejan et al. 2023).
        Cost: one recursion per sample, ``n * iterations * repeats`` Hessian-vector
        products (done as matrix products, in row chunks, when ``hessian`` is given).
    """
    G_train = validate.gradient_matrix(G_train, "G_train")
    p = G_train.shape[1]
    apply_H = _operator(p, hvp, hessian)
    scale = _lissa_settings(apply_H, p, damping, scale, iterations, repeats)
    out = np.empty(G_train.shape[0])
    for start, block in row_chunks(G_train):
        sol = _lissa_block(apply_H, block.T.copy(), float(damping), scale, iterations, repeats, tol)
        out[start:start + len(block)] = np.einsum("ij,ji->i", block, sol)
    return out


def self_lissa_gauss_newton(G_train, damping: float, scale: float | None = None,
                            iterations: int = 1000) -> np.ndarray:
    """:func:`self_lissa` for the Gauss-Newton curvature ``H = GᵀG + damping I``, in closed form.

    With that H the deterministic LiSSA recursion is a spectral filter: after T steps it
    applies ``f(mu) = (1 - (1 - mu/scale)^(T+1)) / mu`` to each eigenvalue mu of H. Every
    g_j lies in the row space of G, where H's eigenvalues are those of the n x n Gram
    matrix ``K = GGᵀ`` plus damping, so one eigendecomposition of K gives every sample's
    ``g_jᵀ f(H) g_j`` in O(n²p + n³) instead of n·T products with a p x p operator.
    Equal (to float error) to ``self_lissa(G, hvp=lambda v: Gᵀ(Gv), damping=.., scale=..,
    iterations=T)``.

    Parameters
    ----------
    G_train : array (n, p); damping : float > 0 (the curvature's ridge);
    scale : None = 1.25 x the largest eigenvalue of H; iterations : T.
    """
    G = validate.gradient_matrix(G_train, "G_train")
    if damping <= 0:
        raise OgdashError(f"damping must be > 0 for the Gauss-Newton curvature, got {damping}.")
    lam, U = np.linalg.eigh(G @ G.T)
    lam = np.clip(lam, 0.0, None)
    mu = lam + damping
    scale = 1.25 * float(mu.max()) if scale is None else float(scale)
    if scale <= float(mu.max()) / 2:
        raise OgdashError("LiSSA diverges: the scale must exceed half the largest eigenvalue of the curvature.")
    f = -np.expm1((iterations + 1) * np.log1p(-mu / scale)) / mu
    return (U * U) @ (lam * f)

