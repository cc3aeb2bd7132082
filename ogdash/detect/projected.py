"""Wide gradients on a random projection: the rule for detectors that cannot work from factors.

Forests and neighbour searches need the gradients as a dense matrix; above
``MAX_DENSE_DIM`` coordinates :class:`Projected` first projects them to
``DEFAULT_PROJECTION_DIM`` (a TensorSketch of the factors, or a seeded sparse random
projection of dense gradients; ``ogdash.engine.gradients.project``). The method
registry says which detectors are wrapped; detectors that are exact from factors
(norms, the kernel OneClassSVM, class-mean alignment, the held-out margin) are not.
"""
from __future__ import annotations

import copy

import numpy as np

from ogdash.detect.base import check_fitted
from ogdash.engine.gradients import GradientSet, project

MAX_DENSE_DIM = 2048
DEFAULT_PROJECTION_DIM = 256


class Projected:
    """A detector applied to projected gradients when they are wider than ``max_dense_dim``.

    Only GradientSets are projected, and only those not projected already; (n, p)
    arrays are passed on as they are. The projection of the gradients ``fit`` saw is
    kept, so scoring those same gradients does not project them again.

    Parameters
    ----------
    detector : an unfitted detector (copied at fit time).
    dim : int, default ``DEFAULT_PROJECTION_DIM`` (256), coordinates after projection.
    seed : int, default 0, seeds the projection.
    max_dense_dim : int, default ``MAX_DENSE_DIM`` (2048).

    Attributes
    ----------
    detector_ : the fitted copy of ``detector``.
    projects_ : bool, whether the fitted gradients were projected.
    """

    def __init__(self, detector, *, dim: int = DEFAULT_PROJECTION_DIM, seed: int = 0,
                 max_dense_dim: int = MAX_DENSE_DIM):
        self.detector, self.dim, self.seed, self.max_dense_dim = detector, dim, seed, max_dense_dim

    def _wide(self, G) -> bool:
        return isinstance(G, GradientSet) and not G.projected and G.dim > self.max_dense_dim

    def _view(self, G):
        if getattr(self, "_fitted_input", None) is G:
            return self._fitted_view
        return project(G, self.dim, self.seed) if self._wide(G) else G

    def fit(self, G, y=None) -> "Projected":
        """Project ``G`` if it is wide, then fit a copy of the detector on it.

        Parameters
        ----------
        G : array (n, p) or GradientSet
        y : int array (n,) or None, passed on to the detector.

        Returns
        -------
        self
        """
        self.projects_ = self._wide(G)
        view = project(G, self.dim, self.seed) if self.projects_ else G
        self.detector_ = copy.deepcopy(self.detector).fit(view, y)
        self._fitted_input, self._fitted_view = G, view
        return self

    def score_samples(self, G, y=None) -> np.ndarray:
        """The detector's scores of ``G``, projected the same way when it is wide.

        Parameters
        ----------
        G : array (m, p) or GradientSet
        y : int array (m,) or None, passed on to the detector.

        Returns
        -------
        scores : float64 array (m,), higher = more detrimental.
        """
        check_fitted(self, "detector_")
        return self.detector_.score_samples(self._view(G), y)
