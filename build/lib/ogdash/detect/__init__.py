"""Gradients into scores into flags: outlier detectors, class-conditional and held-out detectors, ensembles,
detection metrics and the suggested budget. Every score: higher = more detrimental."""
