import numpy as np
import pytest

from ogdash.core.errors import OgdashError
from ogdash.detect.flags import budget_count, flag
from ogdash.detect.metrics import detection_metrics
from ogdash.detect.registry import make_detector
from ogdash.detect.scoring import score
from ogdash.engine.gradients import GradientSet


def dense_set(G):
    n = len(G)
    return GradientSet(np.arange(n), np.full((n, 2), 0.5), np.zeros(n), "t", dense=np.asarray(G, np.float32))


def test_budget_fraction_and_count():
    assert budget_count(0.1, 250) == 25
    assert budget_count(0.001, 10) == 1
    assert budget_count(7, 10) == 7
    assert budget_count(10, 10) == 10
    for bad in (0, -0.1, 11, 2.5, float("nan"), "a"):
        with pytest.raises(OgdashError):
            budget_count(bad, 10)


def test_flag_takes_top_scores_with_stable_ties():
    mask = flag([0.1, 0.9, 0.5, 0.9, 0.2], 2)
    assert mask.tolist() == [False, True, False, True, False]
    assert flag([1, 1, 1, 1], 0.5).tolist() == [True, True, False, False]


@pytest.mark.parametrize("name", ["iforest", "l1", "l2"])
def test_planted_outliers_score_highest(rng, name):
    G = rng.normal(0, 0.1, size=(200, 8))
    G[[3, 50, 120]] += 3.0
    scores = score(dense_set(G), name, seed=0)
    assert set(np.argsort(-scores)[:3]) == {3, 50, 120}


def test_ocsvm_uses_validation_inliers(rng):
    val = dense_set(rng.normal(0, 0.1, size=(100, 4)))
    G = rng.normal(0, 0.1, size=(100, 4))
    G[7] += 2.0
    scores = score(dense_set(G), "ocsvm", val)
    assert np.argmax(scores) == 7
    with pytest.raises(OgdashError, match="validation"):
        score(dense_set(G), "ocsvm", None)
    with pytest.raises(OgdashError, match="validation"):
        score(dense_set(G), "ocsvm", dense_set(np.zeros((0, 4))))


def test_unknown_detector():
    with pytest.raises(OgdashError, match="unknown detector"):
        make_detector("nope")


def test_detection_metrics_match_hand_count():
    noisy = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    flags = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], bool)
    scores = np.array([9, 1, 8, 0, 0, 0, 0, 0, 0, 0], float)
    m = detection_metrics(flags, scores, noisy)
    assert m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["accuracy"] == 0.8  # 8 of 10 samples correctly flagged/not flagged
    assert 0.5 < m["auroc"] < 1


def clustered(rng, n, K, H, spread=1.0, flip=0.1):
    """Last-layer inputs clustered by true class, and given labels with a share ``flip`` changed."""
    y_true = rng.integers(0, K, n)
    h = rng.normal(0, 1, size=(K, H))[y_true] + spread * rng.normal(size=(n, H))
    y = y_true.copy()
    wrong = rng.choice(n, int(flip * n), replace=False)
    y[wrong] = (y[wrong] + rng.integers(1, K, len(wrong))) % K
    return h.astype(np.float32), y, y_true


def test_heldout_fold_never_sees_its_own_labels(rng):
    """A fold's probabilities come from the other folds' labels only: relabelling its rows changes none of them."""
    from ogdash.detect.heldout import _cross_fit, _folds

    h, y, _ = clustered(rng, 400, 4, 6)
    parts = _folds(y, 5, seed=0)
    P = _cross_fit(h, y, parts, seed=0)
    relabelled = y.copy()
    relabelled[parts[0]] = rng.integers(0, 4, len(parts[0]))
    Q = _cross_fit(h, relabelled, parts, seed=0)
    np.testing.assert_allclose(Q[parts[0]], P[parts[0]], atol=1e-6)  # float32 sums: equal up to rounding
    assert not np.allclose(Q[parts[1]], P[parts[1]])  # the other folds did see those labels


def test_heldout_probabilities_rank_like_the_logistic_refit(rng):
    """The closed-form refit ranks samples as the scikit-learn logistic regression it replaced did."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ogdash.detect.heldout import heldout_margin, heldout_probabilities

    h, y, y_true = clustered(rng, 1200, 5, 10, spread=1.0, flip=0.15)
    old = np.zeros((len(y), 5))
    for fit_rows, held in StratifiedKFold(5, shuffle=True, random_state=0).split(h, y):
        head = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000)).fit(h[fit_rows], y[fit_rows])
        old[held] = head.predict_proba(h[held])
    new = heldout_probabilities(h, y)
    assert spearmanr(heldout_margin(new, y), heldout_margin(old, y)).statistic > 0.9
    assert np.mean(new.argmax(1) == old.argmax(1)) > 0.95


def test_heldout_probabilities_shape_classes_and_binary(rng):
    from ogdash.detect.heldout import heldout_probabilities

    h, y, y_true = clustered(rng, 300, 2, 4, spread=0.5)
    P = heldout_probabilities(h, y)
    assert P.shape == (300, 2) and np.allclose(P.sum(1), 1) and np.mean(P.argmax(1) == y_true) > 0.95
    y3 = np.where(y == 1, 3, 0)  # classes 1 and 2 given to nobody: probability 0
    P = heldout_probabilities(h, y3)
    assert P.shape == (300, 4) and np.all(P[:, 1:3] == 0) and np.allclose(P.sum(1), 1)
    assert np.all((P >= 0) & (P <= 1))
    with pytest.raises(OgdashError, match="two given classes"):
        heldout_probabilities(h, np.zeros(300, int))
    with pytest.raises(OgdashError, match="at least two samples"):
        heldout_probabilities(h, np.r_[np.zeros(299, int), 1])


def test_one_refit_serves_score_suggestions_and_budget(rng, monkeypatch):
    """Scoring, suggesting and budgeting the same gradients refit the last layer once."""
    from ogdash.detect import heldout
    from ogdash.detect.budget import suggest_budget

    h, y, _ = clustered(rng, 300, 3, 5)
    P = np.full((300, 3), 1 / 3)
    e = P.copy()
    e[np.arange(300), y] -= 1
    gs = GradientSet(np.arange(300), P, np.zeros(300), "head", errors=e.astype(np.float32), acts=h, bias=True)
    calls = []
    refit = heldout._refit
    monkeypatch.setattr(heldout, "_refit", lambda *a: calls.append(1) or refit(*a))
    monkeypatch.setattr(heldout, "_last", None)
    s = score(gs, "heldout_margin", labels=y, seed=3)
    suggested = heldout.suggestions(gs, y, seed=3)
    suggest_budget(gs, y, seed=3, n_boot=10)
    assert len(calls) == 1
    np.testing.assert_allclose(heldout.heldout_margin(suggested, y), s)
    suggested[:] = 0  # callers get their own copy
    heldout.suggestions(gs, y, seed=4)  # another seed, other labels: refitted
    heldout.suggestions(gs, (y + 1) % 3, seed=3)
    assert len(calls) == 3
