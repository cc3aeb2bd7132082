"""OneClassSVM on gradients through their inner products: exact, and from factors when factored."""
from __future__ import annotations

import numpy as np
from sklearn.svm import OneClassSVM

from ogdash.core.errors import OgdashError
from ogdash.detect.base import check_fitted, dense
from ogdash.engine.gradients import GradientSet


def as_gradient_set(G) -> GradientSet:
    """A GradientSet as it is; an (n, p) array as a dense GradientSet (its probabilities and losses unused)."""
    if isinstance(G, GradientSet):
        return G
    X = dense(G)
    n = len(X)
    return GradientSet(np.arange(n), np.zeros((n, 1)), np.zeros(n), "array", dense=X)


class KernelOneClassSVM:
    """OneClassSVM with an RBF kernel over gradients; higher = more detrimental.

    Fitted on validation gradients as inliers (``score`` does so), it scores training
    gradients by how far outside the inliers' region they lie. Kernels come from exact
    inner products (from the factors of a factored GradientSet), so wide gradients are
    never projected. ``gamma_`` follows scikit-learn's 'scale' rule, ``1 / (p · Var(G))``
    with the variance over all entries of the fitted gradients (also from factors): on
    the same data this equals ``OneClassSVM(gamma='scale')`` on the dense matrix.

    Parameters
    ----------
    nu : float, default 0.1
        scikit-learn's ``nu``: an upper bound on the share of fitted samples outside the region.
    chunk_size : int, default 2048
        Rows of kernel computed at a time when scoring.

    Attributes
    ----------
    gamma_ : float, the RBF kernel's width.
    support_vectors_ : GradientSet, the fitted gradients that are support vectors.
    support_sq_norms_ : float64 array (s,), their squared L2 norms.
    dual_coef_ : float64 array (s,); intercept_ : float.
        ``f(x) = Σ_i dual_coef_i k(x, sv_i) + intercept_``, and the score is ``-f(x)``.
    """

    def __init__(self, *, nu: float = 0.1, chunk_size: int = 2048):
        self.nu, self.chunk_size = nu, chunk_size

    @staticmethod
    def _moments(G: GradientSet) -> tuple[float, float]:
        if G.factored:
            e, a = G.errors.astype(np.float64), G.augmented_acts().astype(np.float64)
            total = float(np.sum(e.sum(1) * a.sum(1)))
            squares = float(np.sum((e * e).sum(1) * (a * a).sum(1)))
        else:
            M = G.matrix().astype(np.float64)
            total, squares = float(M.sum()), float((M * M).sum())
        size = G.n * G.dim
        return total / size, squares / size

    def _kernel(self, G: GradientSet, rows, ref: GradientSet, ref_sq: np.ndarray, gamma: float) -> np.ndarray:
        part = G.subset(rows)
        d2 = (part.norms(2) ** 2)[:, None] + ref_sq[None, :] - 2 * part.gram(ref)
        return np.exp(-gamma * np.maximum(d2, 0))

    def fit(self, G, y=None) -> "KernelOneClassSVM":
        """Fit the SVM on inlier gradients (validation gradients, in ``score``).

        Parameters
        ----------
        G : GradientSet or array (n, p), the inliers; must be non-empty.
        y : ignored

        Returns
        -------
        self
        """
        G = as_gradient_set(G)
        if G.n == 0:
            raise OgdashError("OneClassSVM needs validation gradients as inliers; give a non-empty validation set.")
        mean, meansq = self._moments(G)
        var = meansq - mean * mean
        self.gamma_ = 1.0 / (G.dim * var) if var > 0 else 1.0
        everyone = np.arange(G.n)
        svm = OneClassSVM(kernel="precomputed", nu=self.nu).fit(
            self._kernel(G, everyone, G, G.norms(2) ** 2, self.gamma_))
        # scoring needs the kernel against the support vectors only: f(x) = Σ α_i k(x, sv_i) + b
        self.support_vectors_ = G.subset(svm.support_)
        self.support_sq_norms_ = self.support_vectors_.norms(2) ** 2
        self.dual_coef_, self.intercept_ = svm.dual_coef_[0].astype(np.float64), float(svm.intercept_[0])
        return self

    def score_samples(self, G, y=None) -> np.ndarray:
        """Minus the SVM's decision function: positive outside the inliers' region.

        Parameters
        ----------
        G : GradientSet or array (m, p) of the fitted width.
        y : ignored

        Returns
        -------
        scores : float64 array (m,), higher = more detrimental.
        """
        check_fitted(self, "support_vectors_")
        G = as_gradient_set(G)
        spans = [np.arange(s, min(s + self.chunk_size, G.n)) for s in range(0, G.n, self.chunk_size)]
        return np.concatenate([
            -(self._kernel(G, rows, self.support_vectors_, self.support_sq_norms_, self.gamma_) @ self.dual_coef_
              + self.intercept_) for rows in spans])
