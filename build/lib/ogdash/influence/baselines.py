"""Label-quality and influence-function baselines, as one score per training sample.

Every public function that returns a *score* returns a float64 array of shape ``(n,)``
where **higher = more detrimental**.  Baselines whose native direction is the other
way round are flipped here, once, and each docstring says how.  The three functions
whose name ends in ``_quality`` are the exception that proves the rule: they return
cleanlab's label quality (higher = cleaner) unchanged, so that they can be compared
with cleanlab number for number; :func:`label_quality_scores` is the flipped score.

Label quality
-------------
Plain numpy over ``pred_probs (n, C)`` and integer ``labels (n,)``.  The caller decides
which labels to feed: the given (possibly noisy) labels give the textbook baseline that
ranks by disagreement with the label; the model's predicted labels
(``pred_probs.argmax(1)``), which is what the paper's released code feeds, rank by low
confidence instead.  Show both and name them.

Influence
---------
Inputs are per-sample gradient matrices, numpy or torch, any float dtype; all arithmetic
is float64, in row chunks so that a float32 matrix is never copied whole.

``G_train (n, p)``
    Gradient of each training sample's loss at the trained parameters.
``G_ref (m, p)``
    Gradients of the "utility" set whose total loss we care about (a validation set, or
    the training set itself; ``None`` means the training set, as the paper does).
``hessian (p, p)``
    Hessian of the total training objective ``sum_i loss_i + weight_decay/2 * |theta|^2``
    (a *sum*, not a mean), e.g. from :func:`exact_hessian`.

With ``v = sum_{z in ref} g_z`` the first-order change of the total reference loss when
training sample ``j`` is removed and the model retrained is ``Delta_j = v^T H^{-1} g_j``.
Removing a detrimental sample lowers that loss (``Delta_j < 0``), so every
reference-based influence score here is ``-Delta_j``.  Numerically that is the
expression of the paper's Eq. (1), ``I(z_j) = -sum_z grad(z)^T H^{-1} grad(z_j)``; the
paper's Eq. (2) reads ``I < 0`` as detrimental, whereas here *positive* is detrimental,
which is what a leave-one-out retrain shows (see ``tests/test_baselines.py``).
Self-influence scores (``g_j^T H^{-1} g_j``, Bejan et al. 2023) are returned as they
are: a large self-influence marks a detrimental sample.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Callable, Sequence

import numpy as np

from ogdash.core.errors import OgdashError

__all__ = [
    "self_confidence_quality",
    "normalized_margin_quality",
    "confidence_weighted_entropy_quality",
    "label_quality_scores",
    "LABEL_QUALITY_METHODS",
    "exact_influence",
    "gradient_tracing",
    "lissa_inverse_hvp",
    "lissa",
    "self_lissa",
    "datainf",
    "self_datainf",
    "influence_scores",
    "INFLUENCE_METHODS",
    "exact_hessian",
]

LABEL_QUALITY_METHODS = ("normalized_margin", "self_confidence", "confidence_weighted_entropy")
INFLUENCE_METHODS = ("exact", "tracin", "lissa", "datainf", "self_lissa", "self_datainf")

# Lower bound used by cleanlab's confidence-weighted entropy before dividing.
_CWE_CLIP = 1e-6
# Row chunks of gradient matrices are converted to float64 at most this many bytes at a time.
_CHUNK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------- label quality


def _check_probs_labels(pred_probs, labels) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise OgdashError(
            f"pred_probs must be a 2-D array (n, C) with C >= 2 class columns, got shape {probs.shape}; "
            "for a one-unit sigmoid head stack [1 - p, p]."
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise OgdashError("pred_probs must hold finite probabilities in [0, 1]; pass softmax outputs, not logits.")
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise OgdashError("Each row of pred_probs must sum to 1; pass softmax outputs, not logits.")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != probs.shape[0]:
        raise OgdashError(
            f"labels must be a 1-D array with one entry per row of pred_probs ({probs.shape[0]}), "
            f"got shape {lab.shape}."
        )
    if lab.dtype.kind == "f" and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab)):
        lab = lab.astype(np.int64)
    if lab.dtype.kind not in "iu":
        raise OgdashError(f"labels must be integers 0..C-1, got dtype {lab.dtype}.")
    if lab.size and (lab.min() < 0 or lab.max() >= probs.shape[1]):
        raise OgdashError(
            f"labels must lie in 0..{probs.shape[1] - 1} to index the columns of pred_probs, "
            f"got values from {lab.min()} to {lab.max()}."
        )
    return probs, lab.astype(np.int64)


def self_confidence_quality(pred_probs, labels) -> np.ndarray:
    """Self-confidence label quality, ``p(label | x)``; higher = cleaner (cleanlab's direction).

    Parameters
    ----------
    pred_probs : array (n, C), rows are predicted class probabilities.
    labels : int array (n,), the labels to judge (given or predicted, the caller's choice).

    Returns
    -------
    quality : float64 array (n,) in [0, 1].  Equals
        ``cleanlab.rank.get_self_confidence_for_each_label(labels, pred_probs)``.
        NOT a detrimental score: use ``label_quality_scores(..., "self_confidence")``.
    """
    probs, lab = _check_probs_labels(pred_probs, labels)
    return probs[np.arange(len(lab)), lab]


def normalized_margin_quality(pred_probs, labels) -> np.ndarray:
    """Normalized-margin label quality; higher = cleaner (cleanlab's direction).

    The margin is ``p(label) - max_{k != label} p(k)``, in [-1, 1]; the normalized margin
    maps it to [0, 1] as ``(margin + 1) / 2``.

    Parameters
    ----------
    pred_probs : array (n, C), rows are predicted class probabilities, C >= 2.
    labels : int array (n,).

    Returns
    -------
    quality : float64 array (n,) in [0, 1].  Equals
        ``cleanlab.rank.get_normalized_margin_for_each_label(labels, pred_probs)``.
    """
    probs, lab = _check_probs_labels(pred_probs, labels)
    rows = np.arange(len(lab))
    own = probs[rows, lab]
    others = probs.copy()
    others[rows, lab] = -np.inf
    return (own - others.max(axis=1) + 1.0) / 2.0


def _normalized_entropy(probs: np.ndarray) -> np.ndarray:
    # Shannon entropy divided by log(C), with 0 * log 0 = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
    return -terms.sum(axis=1) / np.log(probs.shape[1])


def confidence_weighted_entropy_quality(pred_probs, labels) -> np.ndarray:
    """Confidence-weighted-entropy label quality; higher = cleaner (cleanlab's direction).

    ``x = normalized_entropy(p) / max(p(label), 1e-6)`` (entropy over log C, so in [0, 1]),
    and the quality is ``log(1 + x) / max(x, 1e-6)``, which lies in (0, 1] and falls as
    ``x`` grows (uncertain prediction, or little mass on the label).

    Parameters
    ----------
    pred_probs : array (n, C), rows are predicted class probabilities, C >= 2.
    labels : int array (n,).

    Returns
    -------
    quality : float64 array (n,).  Equals
        ``cleanlab.rank.get_confidence_weighted_entropy_for_each_label(labels, pred_probs)``.
    """
    probs, lab = _check_probs_labels(pred_probs, labels)
    own = np.maximum(probs[np.arange(len(lab)), lab], _CWE_CLIP)
    x = _normalized_entropy(probs) / own
    # log(1 + x) rather than log1p(x): the latter differs from cleanlab by ~1e-10 when x < 1e-6.
    return np.log(1.0 + x) / np.maximum(x, _CWE_CLIP)


_QUALITY = {
    "normalized_margin": normalized_margin_quality,
    "self_confidence": self_confidence_quality,
    "confidence_weighted_entropy": confidence_weighted_entropy_quality,
}


def label_quality_scores(pred_probs, labels, method: str = "normalized_margin") -> np.ndarray:
    """Detrimental score from a cleanlab-style label quality: ``1 - quality``.

    Parameters
    ----------
    pred_probs : array (n, C)
        Predicted class probabilities (ideally out-of-sample).
    labels : int array (n,)
        The labels to judge.  Feed the given noisy labels for the textbook baseline, or
        ``pred_probs.argmax(1)`` to reproduce the paper's released code (which then ranks
        by low confidence rather than by label disagreement).
    method : {"normalized_margin", "self_confidence", "confidence_weighted_entropy"}
        Default ``"normalized_margin"``.

    Returns
    -------
    scores : float64 array (n,) in [0, 1], **higher = more detrimental**.  It is
        ``1 - quality`` where quality is cleanlab's score (higher = cleaner); the flip is
        monotone, so rankings are cleanlab's reversed and ties are kept.
    """
    if method not in _QUALITY:
        raise OgdashError(f"Unknown label-quality method {method!r}; choose one of {', '.join(LABEL_QUALITY_METHODS)}.")
    return 1.0 - _QUALITY[method](pred_probs, labels)


# --------------------------------------------------------------------------- array helpers


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _check_matrix(G, name: str):
    """Validate a gradient matrix without copying it; returns it (numpy or torch)."""
    if _is_torch(G):
        shape = tuple(G.shape)
        if not G.is_floating_point():
            raise OgdashError(f"{name} must hold floating-point gradients, got dtype {G.dtype}.")
    else:
        G = np.asarray(G)
        shape = G.shape
        if G.dtype.kind not in "fiu":
            raise OgdashError(f"{name} must hold floating-point gradients, got dtype {G.dtype}.")
    if len(shape) != 2:
        raise OgdashError(f"{name} must be a 2-D matrix (samples, parameters), got shape {shape}.")
    if shape[0] < 1 or shape[1] < 1:
        raise OgdashError(f"{name} must have at least one row and one column, got shape {shape}.")
    return G


def _to_f64(x) -> np.ndarray:
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _chunks(G):
    """Yield (start, float64 block of rows) so at most _CHUNK_BYTES are converted at once."""
    n, p = G.shape
    step = max(1, int(_CHUNK_BYTES // (8 * p)))
    for start in range(0, n, step):
        block = _to_f64(G[start:start + step])
        if not np.all(np.isfinite(block)):
            raise OgdashError("Gradient matrix contains NaN or infinite values; check the model and the data.")
        yield start, block


def _column_sum(G) -> np.ndarray:
    total = np.zeros(G.shape[1])
    for _, block in _chunks(G):
        total += block.sum(axis=0)
    return total


def _rows_dot(G, w: np.ndarray) -> np.ndarray:
    out = np.empty(G.shape[0])
    for start, block in _chunks(G):
        out[start:start + len(block)] = block @ w
    return out


def _prepare(G_train, G_ref):
    G_train = _check_matrix(G_train, "G_train")
    G_ref = G_train if G_ref is None else _check_matrix(G_ref, "G_ref")
    if G_ref.shape[1] != G_train.shape[1]:
        raise OgdashError(
            f"G_train has {G_train.shape[1]} gradient columns but G_ref has {G_ref.shape[1]}; "
            "take both with the same parameters (layer choice and projection)."
        )
    return G_train, G_ref


def _check_hessian(hessian, p: int) -> np.ndarray:
    H = _to_f64(hessian)
    if H.shape != (p, p):
        raise OgdashError(f"hessian must be a ({p}, {p}) matrix to match {p} gradient columns, got shape {H.shape}.")
    if not np.all(np.isfinite(H)):
        raise OgdashError("hessian contains NaN or infinite values.")
    scale = max(np.abs(H).max(), np.finfo(float).tiny)
    if np.abs(H - H.T).max() > 1e-6 * scale:
        raise OgdashError("hessian must be symmetric; pass the Hessian of the summed training objective.")
    return (H + H.T) / 2.0


# --------------------------------------------------------------------------- exact and TracIn


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
    G_train, G_ref = _prepare(G_train, G_ref)
    if hessian is None:
        raise OgdashError("exact_influence needs the Hessian; compute it with exact_hessian(model, X, y).")
    if damping < 0:
        raise OgdashError(f"damping must be >= 0, got {damping}.")
    H = _check_hessian(hessian, G_train.shape[1])
    w = _solve_spd(H, _column_sum(G_ref), float(damping))
    return -_rows_dot(G_train, w)


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
    G_train, G_ref = _prepare(G_train, G_ref)
    return -_rows_dot(G_train, _column_sum(G_ref))


# --------------------------------------------------------------------------- LiSSA


def _operator(p: int, hvp: Callable | None, hessian) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping a (p, k) float64 block V to H @ V."""
    if hessian is not None:
        H = _check_hessian(hessian, p)
        return lambda V: H @ V
    if hvp is None:
        raise OgdashError("LiSSA needs either a Hessian-vector product `hvp` or a `hessian` matrix.")
    if not callable(hvp):
        raise OgdashError("hvp must be a callable taking a vector of length p and returning H @ vector.")

    def apply(V: np.ndarray) -> np.ndarray:
        out = np.empty_like(V)
        for k in range(V.shape[1]):
            col = _to_f64(hvp(V[:, k].copy())).reshape(-1)
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
    vec = _to_f64(v).reshape(-1)
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
    G_train, G_ref = _prepare(G_train, G_ref)
    h = lissa_inverse_hvp(_column_sum(G_ref), hvp, hessian=hessian, damping=damping, scale=scale,
                          iterations=iterations, repeats=repeats, tol=tol)
    return -_rows_dot(G_train, h)


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
    G_train = _check_matrix(G_train, "G_train")
    p = G_train.shape[1]
    apply_H = _operator(p, hvp, hessian)
    scale = _lissa_settings(apply_H, p, damping, scale, iterations, repeats)
    out = np.empty(G_train.shape[0])
    for start, block in _chunks(G_train):
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
    G = _check_matrix(G_train, "G_train")
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


# --------------------------------------------------------------------------- DataInf


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
    for start, chunk in _chunks(G):
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
    G_train, G_ref = _prepare(G_train, G_ref)
    n, p = G_train.shape
    blocks = _blocks(p, layer_slices)
    v = _column_sum(G_ref)
    v_blocks = [v[block] for block in blocks]
    sizes = [len(vb) for vb in v_blocks]
    sq, dots = _block_stats(G_train, blocks, v_blocks)
    lam = _datainf_lambdas(sq, sizes, damping)
    coef = dots / (lam + sq)  # (n, L): (g_il . v_l) / (lam_l + |g_il|^2)
    # w_l = sum_i coef_il g_il, one pass over the rows.
    w_blocks = [np.zeros(s) for s in sizes]
    for start, chunk in _chunks(G_train):
        c = coef[start:start + len(chunk)]
        for b, block in enumerate(blocks):
            w_blocks[b] += chunk[:, block].T @ c[:, b]
    # g_jl . (H_l + lam I)^{-1} v_l = (n (g_jl . v_l) - g_jl . w_l) / (n lam_l)
    gw = np.empty((n, len(blocks)))
    for start, chunk in _chunks(G_train):
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
    G_train = _check_matrix(G_train, "G_train")
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
            for start, chunk in _chunks(G_train):
                gb = chunk[:, block]
                M += (gb / denom[start:start + len(chunk), b][:, None]).T @ gb
            for start, chunk in _chunks(G_train):
                gb = chunk[:, block]
                cross[start:start + len(chunk), b] = np.einsum("ij,jk,ik->i", gb, M, gb)
        else:
            for start_j, chunk_j in _chunks(G_train):
                gj = chunk_j[:, block]
                acc = np.zeros(len(gj))
                for start_i, chunk_i in _chunks(G_train):
                    K = chunk_i[:, block] @ gj.T
                    acc += (K * K / denom[start_i:start_i + len(K), b][:, None]).sum(axis=0)
                cross[start_j:start_j + len(gj), b] = acc
    return ((n * sq - cross) / (n * lam)).sum(axis=1)


# --------------------------------------------------------------------------- dispatcher


_INFLUENCE = {
    "exact": exact_influence,
    "tracin": gradient_tracing,
    "lissa": lissa,
    "datainf": datainf,
    "self_lissa": self_lissa,
    "self_datainf": self_datainf,
}


def influence_scores(method: str, G_train, G_ref=None, hessian=None, hvp: Callable | None = None,
                     **options) -> np.ndarray:
    """One entry point for the influence baselines; higher = more detrimental.

    Parameters
    ----------
    method : {"exact", "tracin", "lissa", "datainf", "self_lissa", "self_datainf"}
    G_train : array (n, p); G_ref : array (m, p) or None (= G_train; ignored by the
        self-influence methods).
    hessian : (p, p) Hessian of the summed training objective; needed by "exact", and by
        "lissa"/"self_lissa" unless ``hvp`` is given.
    hvp : callable for "lissa"/"self_lissa".
    **options : passed on (``damping``, ``scale``, ``iterations``, ``repeats``, ``tol``,
        ``layer_slices``); an option the method does not take is an error.

    Returns
    -------
    scores : float64 array (n,), as the chosen function documents.
    """
    if method not in _INFLUENCE:
        raise OgdashError(f"Unknown influence method {method!r}; choose one of {', '.join(INFLUENCE_METHODS)}.")
    func = _INFLUENCE[method]
    kwargs = dict(options)
    accepted = inspect.signature(func).parameters
    if "G_ref" in accepted:
        kwargs["G_ref"] = G_ref
    for name, value in (("hessian", hessian), ("hvp", hvp)):
        if value is not None:
            if name not in accepted:
                raise OgdashError(f"Influence method {method!r} does not use {name}; leave it out.")
            kwargs[name] = value
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise OgdashError(
            f"Influence method {method!r} does not take {', '.join(unknown)}; "
            f"it takes {', '.join(k for k in accepted if k != 'G_train')}."
        )
    return func(G_train, **kwargs)


# --------------------------------------------------------------------------- torch Hessian


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
    y = torch.as_tensor(np.asarray(y) if not _is_torch(y) else y, device=device)
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
