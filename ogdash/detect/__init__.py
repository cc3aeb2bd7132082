"""Gradients into scores into flags. Every score: higher = more detrimental.

- ``registry``: every method once (label, family, what it needs, how to compute it);
  ``scoring.score`` is the one entry point from a GradientSet to scores.
- Detector families, each in the estimator protocol of ``base`` (``fit(G, y=None)``,
  ``score_samples(G, y=None)``): ``norms``, ``forest`` (scikit-learn estimators,
  IsolationForest), ``svm`` (kernel OneClassSVM), ``classwise`` (per-class detectors,
  kNN distance, class-mean alignment), ``heldout`` (the held-out margin and suggested
  labels), ``baselines`` (label quality, a random floor), ``ensemble``; ``projected``
  wraps a detector that needs wide gradients projected.
- ``flags``: the budget rule; ``budget``: the suggested budget; ``metrics``: detection
  metrics when the truth is known.
"""
