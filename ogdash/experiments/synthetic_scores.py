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

from dataclasses import replace

import numpy as np

from ogdash.core.progress import Progress, Timer, report
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
    scores, info, timer = {}, {}, Timer()
    step = lambda f, msg: report(progress, f, msg)  # noqa: E731

    step(0.0, "label quality")
    with timer("probs"):
        probs = predict_proba(model, train.X)
    for m in family(QUALITY):
        for suffix, labels in (("", train.y), ("@predicted", probs.argmax(1))):
            with timer(m.key + suffix):
                scores[m.key + suffix] = label_quality_scores(probs, labels, m.key)

    step(0.1, "gradients and the exact Hessian")
    with timer("grads"):
        G = extract_gradients(model, train, layer="all", device="cpu").dense.astype(np.float64)
    with timer("hessian"):
        # fit() minimises mean loss + wd/2 |θ|²; the summed objective of exact_hessian is n times that.
        H = exact_hessian(model, train.X, train.y, weight_decay=n * case.spec.weight_decay)
        damping, eig_range = hessian_damping(H)
    info.update(damping=damping, eigen_range=eig_range)

    inputs = InfluenceInputs(hessian=H, damping=damping, iterations=lissa_iterations, layer_slices=param_blocks(model))
    influence = family(INFLUENCE)
    for i, m in enumerate(influence):
        step(0.2 + 0.6 * i / len(influence), f"influence: {m.label}")
        with timer(m.key):
            scores[m.key] = m.compute(G, inputs)

    step(0.85, "outlier gradients")
    with timer("last"):
        g_train = extract_gradients(model, train, layer="last", device="cpu")
    with timer("val"):
        g_val = extract_gradients(model, case.val, layer="last", device="cpu")
    for det, key in DETECTOR_METHODS.items():
        with timer(key):
            scores[key] = score(g_train, det, g_val if method(det).needs_validation else None, seed=case.seed)

    # each method's seconds include the shared inputs it needs
    t = timer.seconds
    seconds = {key: t["probs"] + t[key] for m in family(QUALITY) for key in (m.key, m.key + "@predicted")}
    seconds.update({m.key: t["grads"] + (t["hessian"] if m.needs_hessian else 0.0) + t[m.key] for m in influence})
    seconds.update({key: t["last"] + (t["val"] if method(det).needs_validation else 0.0) + t[key]
                    for det, key in DETECTOR_METHODS.items()})
    info.update(grad_last=g_train.matrix().astype(np.float64), probs=probs)
    step(1.0, "scores done")
    return scores, seconds, info
