"""The method registry: every scoring method described once, with what it needs and how to compute it.

A :class:`Method` has a key (what the CLI, URLs, caches and result tables use), a
label (the human name tables and selectors show), a family, what it needs (the given
labels, validation data, a Hessian) and a one-line description; and how to compute it:

- ``build(seed)``: an unfitted detector (``fit(G, y)``, ``score_samples(G, y)``) for
  everything that scores a GradientSet directly: the detectors, the label-quality
  scores of the model's probabilities, ensembles and the random floor. Wide gradients
  go through :class:`~ogdash.detect.projected.Projected` where the entry says so.
- ``compute(G, inputs)``: influence baselines, from the (n, p) gradient matrix and
  :class:`InfluenceInputs` (Hessian, damping, LiSSA depth, DataInf layer blocks).
- ``matrix(...)``: test x train influence, for the prompt-influence experiment.

The CLI, the pages, ``benchmarks/detection.py`` and the studies (synthetic, text
selection, LLM prompts) read their names, labels and choices from here. Every score:
higher = more detrimental (prompt-influence matrices: higher = more influential).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ogdash.core.errors import OgdashError
from ogdash.detect.baselines import LabelQuality, RandomScores
from ogdash.detect.classwise import KnnDistance, MeanAlignment, PerClass
from ogdash.detect.ensemble import Ensemble
from ogdash.detect.forest import isolation_forest, oga_matrix
from ogdash.detect.heldout import HeldOutMargin, heldout_margin
from ogdash.detect.norms import NormDetector
from ogdash.detect.projected import Projected
from ogdash.detect.svm import KernelOneClassSVM
from ogdash.influence.datainf import datainf, self_datainf
from ogdash.influence.hessian import exact_influence, gradient_tracing
from ogdash.influence.lissa import lissa, self_lissa, self_lissa_gauss_newton
from ogdash.influence.matrices import datainf_matrix, tracin_matrix

OUTLIER, CLASSWISE, HELDOUT, ENSEMBLE = "outlier gradient", "class-conditional", "held-out", "ensemble"
QUALITY, INFLUENCE, FLOOR = "label quality", "influence", "floor"
# Families whose buildable members are offered as detectors (CLI --detector, the pages' selector).
DETECTOR_FAMILIES = (OUTLIER, CLASSWISE, HELDOUT, ENSEMBLE)


@dataclass(frozen=True)
class InfluenceInputs:
    """What influence baselines read beside the (n, p) gradient matrix.

    hessian: (p, p) Hessian of the summed training objective, for methods that need one.
    damping: added to its diagonal (exact influence, LiSSA, Self-LiSSA).
    gauss_newton: a ridge; when set, LiSSA and Self-LiSSA use the Gauss-Newton curvature
    ``GᵀG + ridge·I`` of the gradients themselves instead of ``hessian``.
    iterations: LiSSA's recursion depth. layer_slices: DataInf's layer blocks (None = one block).
    """

    hessian: np.ndarray | None = None
    damping: float = 0.0
    gauss_newton: float | None = None
    iterations: int = 1000
    layer_slices: Sequence | None = None


@dataclass(frozen=True)
class Method:
    """One scoring method: its names, what it needs, and how to compute it (see the module docstring).

    short: a shorter name for sentences and selectors (default: the label).
    members: the registry keys an ensemble combines; details: a longer explanation, where one is shown.
    from_probabilities: the same scores (n,) from held-out probabilities (n, C) and the given labels, for a
    scan that has those probabilities already (the suggested labels and budget read them too).
    """

    key: str
    label: str
    family: str
    description: str
    short: str = ""
    needs_labels: bool = False
    needs_validation: bool = False
    needs_hessian: bool = False
    build: Callable[[int], object] | None = None
    compute: Callable[[np.ndarray, InfluenceInputs], np.ndarray] | None = None
    matrix: Callable | None = None
    members: tuple[str, ...] = ()
    details: str = ""
    from_probabilities: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    @property
    def name(self) -> str:
        """The short name, or the label when there is none."""
        return self.short or self.label

    @property
    def is_detector(self) -> bool:
        """Whether it is offered as a detector (CLI ``--detector``, the pages' selector)."""
        return self.family in DETECTOR_FAMILIES and self.build is not None


# --------------------------------------------------------------------------- how influence is computed


def _exact(G, c: InfluenceInputs):
    return exact_influence(G, None, c.hessian, damping=c.damping)


def _tracin(G, c: InfluenceInputs):
    return gradient_tracing(G)


def _lissa(G, c: InfluenceInputs):
    if c.gauss_newton is not None:
        return lissa(G, hvp=lambda v: G.T @ (G @ v), damping=c.gauss_newton, iterations=c.iterations)
    return lissa(G, hessian=c.hessian, damping=c.damping, iterations=c.iterations)


def _self_lissa(G, c: InfluenceInputs):
    if c.gauss_newton is not None:  # the recursion has a closed form for Gauss-Newton curvature
        return self_lissa_gauss_newton(G, c.gauss_newton, iterations=c.iterations)
    return self_lissa(G, hessian=c.hessian, damping=c.damping, iterations=c.iterations)


def _datainf(G, c: InfluenceInputs):
    return datainf(G, layer_slices=c.layer_slices)


def _self_datainf(G, c: InfluenceInputs):
    return self_datainf(G, layer_slices=c.layer_slices)


# test x train matrices: (G_train, G_test, y_train, n_classes, blocks, seed) -> (matrix, by_class or None)
def _oga_matrix(G_train, G_test, y_train, n_classes, blocks, seed):
    return oga_matrix(G_train, y_train, G_test, n_classes, seed)


def _tracin_matrix(G_train, G_test, y_train, n_classes, blocks, seed):
    return tracin_matrix(G_train, G_test), None


def _datainf_matrix(G_train, G_test, y_train, n_classes, blocks, seed):
    return datainf_matrix(G_train, G_test, blocks), None


def _ensemble(members: tuple[str, ...]) -> Callable[[int], Ensemble]:
    return lambda seed: Ensemble([make_detector(m, seed) for m in members])


def _quality(method: str) -> Callable[[int], LabelQuality]:
    return lambda seed: LabelQuality(method=method)


# --------------------------------------------------------------------------- the registry

_MARGINS = ("heldout_margin", "normalized_margin")
_MARGIN_ALIGN = ("heldout_margin", "pc_align")
_GRADIENT = ("l2", "pc_align")

METHODS: tuple[Method, ...] = (
    # detectors, in the order the CLI and the pages offer them
    Method("iforest", "Outlier Gradient (iForest)", OUTLIER,
           "IsolationForest on the gradients (the paper's main detector)", short="IsolationForest",
           build=lambda seed: Projected(isolation_forest(seed), seed=seed)),
    Method("l1", "Outlier Gradient (L1)", OUTLIER, "L1 norm of the gradient", short="L1 norm",
           build=lambda seed: NormDetector(ord=1)),
    Method("l2", "Outlier Gradient (L2)", OUTLIER, "L2 norm of the gradient", short="L2 norm",
           build=lambda seed: NormDetector(ord=2)),
    Method("ocsvm", "Outlier Gradient (OneClassSVM)", OUTLIER,
           "OneClassSVM fitted on validation gradients as inliers", short="OneClassSVM", needs_validation=True,
           build=lambda seed: KernelOneClassSVM(nu=0.1)),
    Method("pc_iforest", "Class-conditional iForest", CLASSWISE,
           "IsolationForest within each given class (class-conditional)", needs_labels=True,
           build=lambda seed: Projected(PerClass(lambda: isolation_forest(seed)), seed=seed)),
    Method("pc_knn", "Class-conditional kNN distance", CLASSWISE,
           "distance to the nearest gradients of the same given class (class-conditional kNN)", needs_labels=True,
           build=lambda seed: Projected(PerClass(KnnDistance), seed=seed)),
    Method("pc_align", "Class-mean alignment", CLASSWISE,
           "alignment with the mean gradient of the same given class (class-conditional)", needs_labels=True,
           build=lambda seed: PerClass(MeanAlignment)),
    Method("heldout_margin", "Held-out margin", HELDOUT,
           "margin and confidence of the held-out gradient (last layer refitted without the sample)", needs_labels=True,
           build=lambda seed: HeldOutMargin(seed=seed), from_probabilities=heldout_margin),
    Method("ens_margins", "Ensemble: held-out margin + normalized margin", ENSEMBLE,
           "ensemble: held-out margin + normalized margin", short="held-out margin + normalized margin",
           needs_labels=True, build=_ensemble(_MARGINS), members=_MARGINS,
           details="the held-out gradient's margin and the normalized margin of the model's own probabilities "
                   "(a label-quality score)"),
    Method("ens_margin_align", "Ensemble: held-out margin + class-mean alignment", ENSEMBLE,
           "ensemble: held-out margin + class-mean alignment", short="held-out margin + class-mean alignment",
           needs_labels=True, build=_ensemble(_MARGIN_ALIGN), members=_MARGIN_ALIGN,
           details="the held-out gradient's margin and the gradient's alignment with the mean gradient of its "
                   "given class (which singles out confusable pairs, many 1s labelled 7)"),
    Method("ens_gradient", "Ensemble: L2 norm + class-mean alignment", ENSEMBLE,
           "ensemble: L2 norm + class-mean alignment", short="L2 norm + class-mean alignment",
           needs_labels=True, build=_ensemble(_GRADIENT), members=_GRADIENT,
           details="the gradient's L2 norm and its alignment with the mean gradient of its given class "
                   "(gradient detectors only)"),
    # label quality of the model's probabilities (cleanlab's scores, flipped)
    Method("normalized_margin", "Normalized Margin", QUALITY,
           "how far the label's probability trails the likeliest other class (cleanlab)", needs_labels=True,
           build=_quality("normalized_margin")),
    Method("self_confidence", "Self-Confidence", QUALITY, "one minus the probability of the label (cleanlab)",
           needs_labels=True, build=_quality("self_confidence")),
    Method("confidence_weighted_entropy", "Confidence-weighted Entropy", QUALITY,
           "entropy of the prediction over the label's probability (cleanlab)", needs_labels=True,
           build=_quality("confidence_weighted_entropy")),
    # influence baselines, from the gradient matrix (training set as the reference set)
    Method("exact", "Exact Hessian (Eq. 1)", INFLUENCE, "influence with the exact inverse Hessian (the paper's Eq. 1)",
           needs_hessian=True, compute=_exact),
    Method("tracin", "Gradient Tracing (TracIn, last checkpoint)", INFLUENCE,
           "inner product with the reference gradient at the last checkpoint", short="Gradient Tracing",
           compute=_tracin, matrix=_tracin_matrix),
    Method("lissa", "LiSSA", INFLUENCE, "influence with LiSSA's inverse-Hessian product", needs_hessian=True,
           compute=_lissa),
    Method("datainf", "DataInf", INFLUENCE, "influence with DataInf's closed-form inverse per layer",
           compute=_datainf, matrix=_datainf_matrix),
    Method("self_lissa", "Self-LiSSA", INFLUENCE, "self-influence with LiSSA's inverse-Hessian product",
           needs_hessian=True, compute=_self_lissa),
    Method("self_datainf", "Self-DataInf", INFLUENCE, "self-influence with DataInf's inverse", compute=_self_datainf),
    # prompt influence (test x train): the paper's per-class forests
    Method("oga", "Outlier Gradient", OUTLIER,
           "one IsolationForest per class of training prompts; a test prompt's influence is each forest's "
           "normality score", needs_labels=True, matrix=_oga_matrix),
    # the floor
    Method("random", "Random", FLOOR, "a seeded random order: the floor any method should beat",
           build=lambda seed: RandomScores(seed=seed)),
)

_BY_KEY = {m.key: m for m in METHODS}

DETECTORS = {m.key: m.description for m in METHODS if m.is_detector}
# The default: the detector with the best detection in benchmarks/detection.py (README, "Detection benchmark").
RECOMMENDED = "heldout_margin"
# Named ensembles: key -> (member keys, short label, what they combine in words).
ENSEMBLES = {m.key: (m.members, m.short, m.details) for m in METHODS if m.family == ENSEMBLE}


def method(key: str) -> Method:
    """The registry entry of ``key``."""
    if key not in _BY_KEY:
        raise OgdashError(f"unknown method {key!r}; choose one of {', '.join(_BY_KEY)}.")
    return _BY_KEY[key]


def family(name: str) -> tuple[Method, ...]:
    """The entries of one family, in registry order."""
    return tuple(m for m in METHODS if m.family == name)


def make_detector(name: str, seed: int = 0):
    """An unfitted detector for a registry key that builds one (every key of ``DETECTORS``, the
    label-quality scores and the random floor), seeded; wide gradients are projected where the entry says so."""
    entry = _BY_KEY.get(name)
    if entry is None or entry.build is None:
        raise OgdashError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}.")
    return entry.build(seed)


def describe(name: str) -> str:
    """One sentence saying what a named ensemble combines."""
    if name not in ENSEMBLES:
        raise OgdashError(f"unknown ensemble {name!r}; choose one of {', '.join(ENSEMBLES)}.")
    return (f"Mean of the rank-normalised scores (0 = lowest, 1 = highest) of {ENSEMBLES[name][2]}; "
            "each member counts equally.")
