"""scikit-learn outlier estimators as detectors (IsolationForest, the paper's main one), and the
per-class forests of the paper's prompt-influence experiment."""
from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import IsolationForest

from ogdash.core import validate
from ogdash.core.errors import OgdashError
from ogdash.detect.base import check_fitted, check_nonempty, dense

N_TREES = 100


class SklearnDetector:
    """Wraps a scikit-learn-style outlier estimator; flips its score so higher = more detrimental.

    Parameters
    ----------
    estimator : an unfitted estimator with ``fit(X)`` (cloned at fit time, so it stays unfitted).
    sign : {-1, +1}, default -1
        -1 for estimators whose ``score_samples`` is "higher = more normal" (IsolationForest,
        OneClassSVM, LocalOutlierFactor); +1 with ``method='decision_function'`` for PyOD detectors.
    method : str, default "score_samples"
        The estimator's scoring method.

    Attributes
    ----------
    estimator_ : the fitted clone of ``estimator``.
    """

    def __init__(self, estimator, *, sign: int = -1, method: str = "score_samples"):
        self.estimator, self.sign, self.method = estimator, sign, method

    def fit(self, G, y=None) -> "SklearnDetector":
        """Fit a clone of the estimator on the gradients.

        Parameters
        ----------
        G : array (n, p) or GradientSet (materialised as a dense float32 matrix)
        y : ignored

        Returns
        -------
        self
        """
        check_nonempty(G)
        self.estimator_ = clone(self.estimator).fit(dense(G))
        return self

    def score_samples(self, G, y=None) -> np.ndarray:
        """The estimator's score of every gradient, signed so higher = more detrimental.

        Parameters
        ----------
        G : array (m, p) or GradientSet
        y : ignored

        Returns
        -------
        scores : float64 array (m,)
        """
        check_fitted(self, "estimator_")
        return self.sign * np.asarray(getattr(self.estimator_, self.method)(dense(G)), dtype=np.float64)


def isolation_forest(seed: int = 0) -> SklearnDetector:
    """The paper's detector: an IsolationForest of ``N_TREES`` trees, seeded, unfitted."""
    return SklearnDetector(IsolationForest(n_estimators=N_TREES, random_state=seed))


def oga_matrix(G_train, y_train, G_test, n_classes: int | None = None, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Outlier-gradient influence of training prompts on test prompts: one IsolationForest per class (Section 7).

    Parameters
    ----------
    G_train : array (n, p), training gradients; y_train : int array (n,), their classes.
    G_test : array (m, p), test gradients; n_classes : C, default ``max(y_train) + 1``.

    Returns
    -------
    ``(matrix (m, n), by_class (m, C))``: ``by_class[t, c]`` is forest c's normality score of
    test gradient t (scikit-learn ``score_samples``; higher = more normal = more influential),
    and ``matrix[t, j] = by_class[t, y_train[j]]``.
    """
    A, B = validate.train_test_pair(G_train, G_test)
    y = np.asarray(y_train, dtype=np.int64)
    if y.shape != (len(A),):
        raise OgdashError(f"y_train must hold one class per training gradient ({len(A)}); got shape {y.shape}.")
    C = int(y.max()) + 1 if n_classes is None else int(n_classes)
    by_class = np.full((len(B), C), np.nan)
    Bf = np.asarray(B, dtype=np.float32)
    for c in range(C):
        members = np.flatnonzero(y == c)
        if len(members) < 2:
            raise OgdashError(f"class {c} has {len(members)} training prompt(s); a per-class forest needs at least 2.")
        det = isolation_forest(seed).fit(np.asarray(A[members], dtype=np.float32))
        by_class[:, c] = -det.score_samples(Bf)  # the detector says "higher = more outlying"; flip once
    return by_class[:, y], by_class
