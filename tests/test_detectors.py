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
