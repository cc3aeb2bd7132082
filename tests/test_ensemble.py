"""Class-conditional detectors, rank-normalised ensembles, and their registration in ``score``."""
import numpy as np
import pytest

from ogdash.core.errors import OgdashError
from ogdash.detect.classwise import KnnDistance, MeanAlignment, PerClass, given_labels
from ogdash.detect.ensemble import combine, rank_normalise
from ogdash.detect.flags import flag
from ogdash.detect.heldout import HeldOutMargin, heldout_probabilities
from ogdash.detect.registry import DETECTORS, ENSEMBLES, RECOMMENDED, describe, make_detector
from ogdash.detect.scoring import score
from ogdash.engine.gradients import GradientSet


def dense_set(G, n_classes=2):
    n = len(G)
    return GradientSet(np.arange(n), np.full((n, n_classes), 1 / n_classes), np.zeros(n), "t",
                       dense=np.asarray(G, np.float32))


def two_clusters(rng, n=150):
    """Class 0 sits around (-3, 0), class 1 around (+3, 0); sample 5 is labelled 0 but lies among the 1s."""
    y = np.repeat([0, 1], n // 2)
    G = rng.normal(0, 0.5, size=(n, 4))
    G[:, 0] += np.where(y == 0, -3.0, 3.0)
    G[5, 0] = 3.0  # a "really 1" labelled 0: ordinary for the whole set, an outlier among the 0s
    return G, y


@pytest.mark.parametrize("name", ["pc_iforest", "pc_knn"])
def test_planted_cross_class_outlier_is_found_only_class_conditionally(rng, name):
    G, y = two_clusters(rng)
    pc = score(dense_set(G), name, labels=y)
    assert np.argmax(pc) == 5
    assert flag(pc, 1).nonzero()[0].tolist() == [5]
    glob = score(dense_set(G), "iforest")
    assert (glob > glob[5]).sum() > 20  # the global forest sees an ordinary point


def test_per_class_scores_each_sample_with_its_own_class_detector(rng):
    G, y = two_clusters(rng)
    det = PerClass(KnnDistance).fit(G, y)
    assert set(det.detectors_) == {0, 1} and det.fallback_ is None
    # the same point is an outlier when said to be a 0 and an inlier when said to be a 1
    as0, as1 = det.score_samples(G[[5]], [0]), det.score_samples(G[[5]], [1])
    assert as0[0] > 5 * as1[0]


def test_small_and_unseen_classes_fall_back_to_one_detector_over_all(rng):
    G = rng.normal(size=(40, 3))
    y = np.array([0] * 37 + [1] * 3)  # class 1 is too small for a detector of its own
    det = PerClass(KnnDistance, min_class_size=8).fit(G, y)
    assert set(det.detectors_) == {0} and det.fallback_ is not None
    s = det.score_samples(G, y)
    assert s.shape == (40,) and np.all(np.isfinite(s))
    assert np.isfinite(det.score_samples(G[:2], [2, 2])).all()  # a class never seen at fit time


def test_labels_are_checked():
    G = np.zeros((10, 2))
    with pytest.raises(OgdashError, match="one integer per training sample"):
        PerClass(KnnDistance).fit(G, np.zeros(9, int))
    with pytest.raises(OgdashError, match="integers"):
        PerClass(KnnDistance).fit(G, np.full(10, 0.5))
    with pytest.raises(OgdashError, match="labels"):  # dense gradients carry no labels
        score(dense_set(G), "pc_knn")


def test_given_labels_are_read_back_from_closed_form_errors(rng):
    n, K = 60, 4
    y = rng.integers(0, K, n)
    probs = rng.dirichlet(np.ones(K), n)
    probs[0] = np.eye(K)[y[0]]  # p(y) rounded to exactly 1: no negative error entry
    errors = probs.copy()
    errors[np.arange(n), y] -= 1
    gs = GradientSet(np.arange(n), probs, np.zeros(n), "head", errors=errors.astype(np.float32),
                     acts=rng.normal(size=(n, 3)).astype(np.float32), bias=True)
    assert np.array_equal(given_labels(gs), y)
    # one sigmoid unit: e = p - y
    p = rng.uniform(0.01, 0.99, n)
    yb = rng.integers(0, 2, n)
    gb = GradientSet(np.arange(n), np.stack([1 - p, p], 1), np.zeros(n), "head",
                     errors=(p - yb)[:, None].astype(np.float32), acts=np.ones((n, 1), np.float32))
    assert np.array_equal(given_labels(gb), yb)
    # so class-conditional scores of closed-form gradients need no labels argument
    assert np.allclose(score(gs, "pc_knn"), score(gs, "pc_knn", labels=y))


def test_rank_normalise_maps_to_unit_interval_with_shared_ties():
    r = rank_normalise([10.0, -5.0, 3.0, 3.0, 100.0])
    assert r.tolist() == [0.75, 0.0, 0.375, 0.375, 1.0]
    assert rank_normalise([7.0]).tolist() == [0.5]
    x = np.random.default_rng(1).normal(size=50)
    assert np.allclose(rank_normalise(x), rank_normalise(np.exp(3 * x) + 2))  # any increasing map: same ranks
    with pytest.raises(OgdashError, match="finite"):
        rank_normalise([1.0, np.nan])


def test_combine_averages_ranks_not_raw_scores():
    big = np.array([1000.0, 0.0, 0.0, 0.0])  # a member on a huge scale must not dominate
    small = np.array([0.0, 0.3, 0.2, 0.1])
    c = combine([big, small])
    assert np.allclose(c, (rank_normalise(big) + rank_normalise(small)) / 2)
    assert np.argmax(c) != 0 or c[0] < 1.0
    assert np.allclose(combine([big, small], weights=[1, 0]), rank_normalise(big))
    with pytest.raises(OgdashError, match="same samples"):
        combine([big, small[:3]])
    with pytest.raises(OgdashError, match="weights"):
        combine([big, small], weights=[1, -1])


def test_named_ensembles_are_the_mean_rank_of_their_members(rng):
    from ogdash.influence.quality import LABEL_QUALITY_METHODS, label_quality_scores

    n, K = 120, 3
    y = rng.integers(0, K, n)
    probs = rng.dirichlet(np.ones(K), n)
    errors = probs.copy()
    errors[np.arange(n), y] -= 1
    gs = GradientSet(np.arange(n), probs, np.zeros(n), "head", errors=errors.astype(np.float32),
                     acts=rng.normal(size=(n, 5)).astype(np.float32), bias=True)
    for name, (members, _, _) in ENSEMBLES.items():
        assert name in DETECTORS and describe(name).startswith("Mean of the rank-normalised scores")
        parts = [label_quality_scores(probs, y, m) if m in LABEL_QUALITY_METHODS else score(gs, m, labels=y)
                 for m in members]
        assert np.allclose(score(gs, name, labels=y), combine(parts))
    with pytest.raises(OgdashError, match="unknown ensemble"):
        describe("nope")


def test_recommended_detector_is_registered():
    assert RECOMMENDED in DETECTORS
    for name in DETECTORS:
        if name not in ENSEMBLES:
            make_detector(name)


def test_class_mean_alignment_finds_a_confusable_pair(rng):
    """Thirty 1s labelled 7 push the class-7 mean gradient their way; a density detector sees a cluster, not outliers."""
    n, K, H = 300, 3, 6
    y_true = np.repeat([0, 1, 2], n // 3)  # 0 = "1", 1 = "7", 2 = anything else
    y = y_true.copy()
    wrong = np.flatnonzero(y_true == 0)[:30]
    y[wrong] = 1
    centres = rng.normal(0, 2, size=(K, H))
    h = (centres[y_true] + 0.3 * rng.normal(size=(n, H))).astype(np.float32)
    P = np.full((n, K), 0.05)
    P[np.arange(n), y_true] = 0.9  # a model that learnt the true classes
    e = P.copy()
    e[np.arange(n), y] -= 1
    gs = GradientSet(np.arange(n), P, np.zeros(n), "head", errors=e.astype(np.float32), acts=h, bias=True)
    s = score(gs, "pc_align", labels=y)
    assert set(np.argsort(-s)[:30]) == set(wrong)
    # factors and the dense matrix give the same alignment
    det = PerClass(MeanAlignment).fit(gs, y)
    assert np.allclose(det.score_samples(gs, y), PerClass(MeanAlignment).fit(gs.matrix(), y).score_samples(gs.matrix(), y),
                       atol=1e-4)


def test_heldout_margin_uses_a_last_layer_that_never_saw_the_label(rng):
    """The model memorised the wrong labels (its own probabilities agree with them); the refitted last layer does not."""
    n, K, H = 240, 3, 5
    y_true = rng.integers(0, K, n)
    centres = rng.normal(0, 3, size=(K, H))
    h = (centres[y_true] + 0.5 * rng.normal(size=(n, H))).astype(np.float32)
    y = y_true.copy()
    wrong = rng.choice(n, 12, replace=False)
    y[wrong] = (y[wrong] + 1) % K
    P = np.full((n, K), 0.02)
    P[np.arange(n), y] = 0.96  # memorised: confident in every given label, wrong ones included
    e = P.copy()
    e[np.arange(n), y] -= 1
    gs = GradientSet(np.arange(n), P, np.zeros(n), "head", errors=e.astype(np.float32), acts=h, bias=True)
    s = score(gs, "heldout_margin", labels=y)
    assert set(np.argsort(-s)[:12]) == set(wrong)
    Q = heldout_probabilities(h, y)
    assert Q.shape == (n, K) and np.allclose(Q.sum(1), 1) and np.mean(Q.argmax(1) == y_true) > 0.95
    with pytest.raises(OgdashError, match="fitted on"):
        HeldOutMargin().fit(gs, y).score_samples(gs.subset(np.arange(10)), y[:10])
    with pytest.raises(OgdashError, match="dense"):
        score(dense_set(np.zeros((n, 4)), K), "heldout_margin", labels=y)
