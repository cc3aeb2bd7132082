"""Every method's score on one trained model of the synthetic study (the paper's Table 1 rows).

The study's methods are registry entries (``ogdash.detect.registry``): the three
label-quality scores, the six influence baselines, and four outlier-gradient detectors
under the study's own keys (``og_iforest``, ...). Label quality reads the trained
model's in-sample probabilities; influence reads the per-sample gradients of **all**
parameters with the training set as the reference set, and the exact Hessian of the
summed training objective (tiny models, so it is affordable); the detectors read the
**last layer's** gradient, OneClassSVM with the clean validation samples as inliers.
Every score: higher = more detrimental.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ogdash.core.progress import Progress
from ogdash.detect.registry import INFLUENCE, QUALITY, InfluenceInputs, family, method
from ogdash.detect.scoring import score
from ogdash.engine.gradients import extract_gradients
from ogdash.influence.hessian import exact_hessian
from ogdash.influence.quality import label_quality_scores
from ogdash.models.train import predict_proba

# The outlier-gradient detectors of the study, and the study's keys for them.
DETECTOR_METHODS = {d: f"og_{d}" for d in ("iforest", "l1", "l2", "ocsvm")}
METHODS = (*family(QUALITY), *family(INFLUENCE), *(replace(method(d), key=k) for d, k in DETECTOR_METHODS.items()))
METHOD_KEYS = tuple(m.key for m in METHODS)
METHOD_LABELS = {m.key: m.label for m in METHODS}
# Eigenvalues of the Hessian are floored at this fraction of the largest one (see hessian_damping).
EIGEN_FLOOR = 1e-3


def hessian_damping(H: np.ndarray) -> tuple[float, tuple]:
    """(damping, (smallest, largest) eigenvalue): the damping that floors H's eigenvalues at EIGEN_FLOOR x the largest.

    A trained MLP sits where the loss is not convex, so its Hessian is often indefinite;
    the same damping is used by exact influence, LiSSA and Self-LiSSA. For a positive
    definite Hessian that is already well conditioned the damping is 0.
    """
    eig = np.linalg.eigvalsh(H)
    floor = EIGEN_FLOOR * max(eig[-1], 1e-12)
    return (0.0 if eig[0] >= floor else float(floor - eig[0])), (float(eig[0]), float(eig[-1]))


def param_blocks(model) -> list[tuple[int, int]]:
    """Column ranges of each parameter tensor in the all-parameter gradient (DataInf's layers)."""
    blocks, start = [], 0
    for _, p in model.named_parameters():
        blocks.append((start, start + p.numel()))
        start += p.numel()
    return blocks


def method_scores(model, case, lissa_iterations: int = 1000, progress: Progress = None):
    """Every method's score on one trained model of ``case`` (an ``ogdash.experiments.synthetic.SyntheticCase``).

    Returns (scores, seconds, info): scores maps a key to an (n,) array (higher = more
    detrimental; label-quality keys twice, with ``@predicted`` for the predicted labels),
    seconds maps a key to the time it took (shared inputs included), info holds the
    last-layer gradients, the probabilities and the Hessian's damping and eigenvalue range.
    """
    train = case.splits.train
    n = train.n
    scores, seconds, info = {}, {}, {}
    step = lambda f, msg: progress(f, msg) if progress else None  # noqa: E731

    step(0.0, "label quality")
    t = time.perf_counter()
    probs = predict_proba(model, train.X)
    t_probs = time.perf_counter() - t
    for m in family(QUALITY):
        for suffix, labels in (("", train.y), ("@predicted", probs.argmax(1))):
            t = time.perf_counter()
            scores[m.key + suffix] = label_quality_scores(probs, labels, m.key)
            seconds[m.key + suffix] = t_probs + time.perf_counter() - t

    step(0.1, "gradients and the exact Hessian")
    t = time.perf_counter()
    G = extract_gradients(model, train, layer="all", device="cpu").dense.astype(np.float64)
    t_grads = time.perf_counter() - t
    t = time.perf_counter()
    # fit() minimises mean loss + wd/2 |θ|²; the summed objective of exact_hessian is n times that.
    H = exact_hessian(model, train.X, train.y, weight_decay=n * case.spec.weight_decay)
    damping, eig_range = hessian_damping(H)
    t_hess = time.perf_counter() - t
    info.update(damping=damping, eigen_range=eig_range)

    inputs = InfluenceInputs(hessian=H, damping=damping, iterations=lissa_iterations, layer_slices=param_blocks(model))
    influence = family(INFLUENCE)
    for i, m in enumerate(influence):
        step(0.2 + 0.6 * i / len(influence), f"influence: {m.label}")
        t = time.perf_counter()
        scores[m.key] = m.compute(G, inputs)
        seconds[m.key] = t_grads + (t_hess if m.needs_hessian else 0.0) + time.perf_counter() - t

    step(0.85, "outlier gradients")
    t = time.perf_counter()
    g_train = extract_gradients(model, train, layer="last", device="cpu")
    t_last = time.perf_counter() - t
    t = time.perf_counter()
    g_val = extract_gradients(model, case.val, layer="last", device="cpu")
    t_val = time.perf_counter() - t
    for det, key in DETECTOR_METHODS.items():
        inliers = method(det).needs_validation
        t = time.perf_counter()
        scores[key] = score(g_train, det, g_val if inliers else None, seed=case.seed)
        seconds[key] = t_last + (t_val if inliers else 0.0) + time.perf_counter() - t
    info.update(grad_last=g_train.matrix().astype(np.float64), probs=probs)
    step(1.0, "scores done")
    return scores, seconds, info
