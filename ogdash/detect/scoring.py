"""Gradients into scores: the one entry point, ``score``, driven by the method registry."""
from __future__ import annotations

import numpy as np

from ogdash.core import validate
from ogdash.core.errors import OgdashError
from ogdash.detect.classwise import given_labels
from ogdash.detect.registry import ENSEMBLES, RECOMMENDED, Method, make_detector, method
from ogdash.engine.gradients import GradientSet


def score(train: GradientSet, detector: str | Method = RECOMMENDED, val: GradientSet | None = None, seed: int = 0,
          labels=None) -> np.ndarray:
    """Detrimental score of every training sample (n,), higher = more detrimental.

    train: the training GradientSet; detector: a registry key (``DETECTORS``, or any key
    that builds a detector) or its entry (``method(key)``, looked up once by the caller); val: validation gradients, the inliers of detectors that need
    them (OneClassSVM); seed: seeds forests, folds and projections; labels: the given
    training labels (n,).

    The registry entry decides: norms come exactly from the gradients (from factors when
    factored); OneClassSVM fits on ``val`` and scores the training gradients through exact
    inner products; forests and neighbour searches run on a projection when the gradients
    are wider than ``MAX_DENSE_DIM``. Detectors that need labels (class-conditional, the
    held-out margin, label quality, ensembles) read ``labels``, or without them the labels
    closed-form gradients were computed with (``ogdash.detect.classwise.given_labels``).
    """
    entry = detector if isinstance(detector, Method) else method(detector)
    if entry.build is None:
        make_detector(entry.key)  # says it is not a detector, and which are
    det = entry.build(seed)
    if entry.needs_labels:
        labels = given_labels(train) if labels is None else validate.labels(labels, train.n)
    else:
        labels = None
    if entry.needs_validation:
        if val is None or val.n == 0:
            raise OgdashError(f"{entry.name} needs validation gradients as inliers; give a non-empty validation set.")
        return det.fit(val).score_samples(train)
    return det.fit(train, labels).score_samples(train, labels)


def member_scores(train: GradientSet, name: str, val: GradientSet | None = None, seed: int = 0,
                  labels=None) -> list[np.ndarray]:
    """Each member's scores (n,) of a named ensemble, in ``ENSEMBLES[name]`` order (higher = more detrimental).

    Members are fitted on the training gradients; ``val`` is not used (no ensemble has a member that needs it).
    """
    if name not in ENSEMBLES:
        raise OgdashError(f"unknown ensemble {name!r}; choose one of {', '.join(ENSEMBLES)}.")
    labels = given_labels(train) if labels is None else validate.labels(labels, train.n)
    return make_detector(name, seed).fit(train, labels).member_scores(train, labels)
