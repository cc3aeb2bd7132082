"""The suggested budget: confident learning's noise-rate estimate, its bootstrap interval, and its sources."""
import numpy as np
import pytest

from ogdash.core.errors import OgdashError
from ogdash.detect.budget import (
    BudgetEstimate,
    confident_joint,
    error_bound,
    estimate_budget,
    noise_rate,
    suggest_budget,
)
from ogdash.detect.flags import flag
from ogdash.engine.gradients import GradientSet


def noisy_labels(rng, y_true, rate, K):
    y = y_true.copy()
    flip = rng.choice(len(y), int(round(rate * len(y))), replace=False)
    y[flip] = (y[flip] + rng.integers(1, K, len(flip))) % K
    return y


def model_probs(rng, y_true, K, confidence=0.75):
    """Probabilities of a decent model of the *true* classes: most mass on the true class, the rest at random."""
    P = (1 - confidence) * rng.dirichlet(np.ones(K), len(y_true))
    P[np.arange(len(y_true)), y_true] += confidence
    return P


def factored_set(rng, y_true, y, K, H=12, spread=0.6):
    """Closed-form gradients of a sample whose last-layer inputs h cluster by true class."""
    centres = rng.normal(0, 1, size=(K, H))
    h = centres[y_true] + spread * rng.normal(size=(len(y), H))
    P = model_probs(rng, y_true, K)
    e = P.copy()
    e[np.arange(len(y)), y] -= 1
    return GradientSet(np.arange(len(y)), P, np.zeros(len(y)), "head", errors=e.astype(np.float32),
                       acts=h.astype(np.float32), bias=True)


def test_confident_joint_and_noise_rate_equal_cleanlab(rng):
    count = pytest.importorskip("cleanlab.count")
    for K in (2, 3, 10):
        P = rng.dirichlet(np.full(K, 0.5), 400)
        y = rng.integers(0, K, 400)
        assert np.array_equal(confident_joint(P, y), count.compute_confident_joint(y, P, calibrate=False))
        # cleanlab rounds the calibrated counts to whole samples: equal up to K samples
        assert noise_rate(P, y) == pytest.approx(1 - np.trace(count.estimate_joint(y, P)), abs=K / 400)


def test_calibration_keeps_each_given_class_at_its_size():
    """Worked by hand: half of class 0 is confident of nothing, so its 10 "really 1" count for 20 of 100."""
    P = np.array([[0.9, 0.1]] * 40 + [[0.2, 0.8]] * 10 + [[0.5, 0.5]] * 50 + [[0.3, 0.7]] * 100)
    y = np.array([0] * 100 + [1] * 100)
    assert confident_joint(P, y).tolist() == [[40, 10], [0, 100]]
    assert noise_rate(P, y) == pytest.approx(0.10)  # uncalibrated counts would say 10 / 150


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_estimate_recovers_a_known_noise_rate(rng, rate):
    K, n = 5, 2000
    y_true = rng.integers(0, K, n)
    y = noisy_labels(rng, y_true, rate, K)
    est = estimate_budget(model_probs(rng, y_true, K), y, n_boot=100)
    assert est.fraction == pytest.approx(rate, rel=0.15)
    assert est.low <= rate <= est.high and est.high - est.low < 0.05
    assert est.count == round(est.fraction * n)


def test_clean_labels_suggest_almost_nothing(rng):
    K, n = 4, 500
    y_true = rng.integers(0, K, n)
    est = estimate_budget(model_probs(rng, y_true, K, confidence=0.9), y_true, n_boot=50)
    assert est.fraction < 0.01
    assert est.budget >= 1 / n and flag(np.arange(n), est.budget).sum() >= 1  # still a valid budget


@pytest.mark.parametrize("source", ["probe", "model"])
def test_suggest_budget_from_gradients_with_known_noise(rng, source):
    K, n, rate = 4, 800, 0.2
    y_true = rng.integers(0, K, n)
    y = noisy_labels(rng, y_true, rate, K)
    est = suggest_budget(factored_set(rng, y_true, y, K), y, source=source, n_boot=50)
    assert isinstance(est, BudgetEstimate) and est.source == source
    assert abs(est.fraction - rate) <= 0.3 * rate  # the benchmark's criterion
    assert est.low <= est.fraction <= est.high
    d = est.to_dict()
    assert set(d) == {"fraction", "low", "high", "level", "count", "source", "own_error", "reliable", "reference",
                      "test_error", "warning"}
    assert est.reliable and d["warning"] == "" and "interval" in est.describe()


def test_probe_never_sees_the_label_it_judges(rng):
    """With more features than samples a last layer fitted on everyone memorises the wrong labels; out of fold it cannot."""
    from sklearn.linear_model import LogisticRegression

    from ogdash.detect.budget import probabilities

    K, n, H = 3, 150, 300
    y_true = rng.integers(0, K, n)
    y = y_true.copy()
    flipped = rng.choice(n, 30, replace=False)
    y[flipped] = (y[flipped] + 1) % K
    gs = factored_set(rng, y_true, y, K, H=H, spread=3.0)
    in_sample = LogisticRegression(C=0.1, max_iter=1000).fit(gs.acts, y).predict(gs.acts)
    assert np.mean(in_sample[flipped] == y[flipped]) > 0.9  # what a probe that saw the labels would say
    P = probabilities(gs, y, "probe")
    assert P.shape == (n, K) and np.allclose(P.sum(1), 1)
    assert np.mean(P[flipped].argmax(1) == y_true[flipped]) > 0.85  # held out: the true class


def test_a_classifier_often_wrong_itself_makes_the_estimate_unreliable(rng):
    """The classifier is sure of the true class for 60% of the samples and unsure of everything for the rest:
    its own mistakes are many, so the estimate is marked unreliable and its interval widened to hold the truth."""
    K, n, rate = 10, 3000, 0.1
    y_true = rng.integers(0, K, n)
    y = noisy_labels(rng, y_true, rate, K)
    strong = estimate_budget(model_probs(rng, y_true, K), y, n_boot=50)
    assert strong.reliable and strong.own_error < 0.05 and strong.warning == ""
    P = model_probs(rng, y_true, K)
    lost = rng.random(n) < 0.4
    P[lost] = rng.dirichlet(np.full(K, 5.0), lost.sum())  # knows nothing about these
    weak = estimate_budget(P, y, n_boot=50)
    assert not weak.reliable and weak.own_error > 0.1
    assert weak.low <= rate <= weak.high
    assert "Unreliable" in weak.warning and weak.warning in weak.describe()
    assert weak.to_dict()["reliable"] is False and weak.to_dict()["warning"] == weak.warning


def test_cross_fitted_probabilities_catch_a_model_that_memorised_its_labels(rng):
    """The failing case of issue 30: a memorising network's probe echoes the wrong labels, so its estimate collapses
    and its own error is ~0. Cross-fitted probabilities estimate the truth, and as the reference they mark the
    collapsed estimate unreliable with an interval that holds the truth."""
    K, n, rate = 3, 400, 0.1
    y_true = rng.integers(0, K, n)
    y = noisy_labels(rng, y_true, rate, K)
    truth = np.mean(y != y_true)
    memorised = model_probs(rng, y, K, confidence=0.9)  # sure of every given label, the wrong ones too
    honest = model_probs(rng, y_true, K, confidence=0.8)  # models that never saw each label
    gs = factored_set(rng, y_true, y, K)
    alone = estimate_budget(memorised, y, n_boot=50, source="probe")
    assert alone.fraction < 0.3 * truth and alone.reliable  # blind without a reference
    checked = estimate_budget(memorised, y, n_boot=50, source="probe", reference=honest)
    assert not checked.reliable and checked.reference == "crossfit" and checked.low <= truth <= checked.high
    assert "models trained without each sample disagree" in checked.warning
    est = suggest_budget(gs, y, crossfit=honest, n_boot=50)  # the scan's path: the cross-fit is the source
    assert est.source == "crossfit" and est.reference is None and abs(est.fraction - truth) <= 0.3 * truth
    assert est.reliable and "models each trained without the sample" in est.describe()


def test_a_model_that_misses_many_test_labels_makes_the_estimate_unreliable(rng):
    """The shipped reviews with a weak text model (issue 30's last case): a classifier confidently wrong on a third
    of the samples makes confident learning count its mistakes as wrong labels (estimate ~5x the truth, own error
    ~0). Its test error gives it away: unreliable, with an interval down to the truth; a strong model's is kept."""
    K, n, rate = 3, 600, 0.06
    y_true = rng.integers(0, K, n)
    y = noisy_labels(rng, y_true, rate, K)
    believed = y_true.copy()
    wrong = rng.random(n) < 0.3
    believed[wrong] = (believed[wrong] + rng.integers(1, K, wrong.sum())) % K  # sure, and wrong
    P = model_probs(rng, believed, K, confidence=0.8)
    alone = estimate_budget(P, y, n_boot=50)
    assert alone.fraction > 3 * rate and alone.reliable  # blind without the test set
    weak = estimate_budget(P, y, n_boot=50, test_error=0.38)  # as measured on sample_data/reviews.csv
    assert not weak.reliable and weak.test_error == 0.38 and weak.low <= rate <= weak.high
    assert "misses 38% of the test labels" in weak.warning and weak.to_dict()["test_error"] == 0.38
    strong = estimate_budget(P, y, n_boot=50, test_error=0.05)
    assert strong.reliable and strong.test_error is None and strong.fraction == alone.fraction


def test_error_bound_reads_the_test_error_beyond_the_estimated_noise():
    """(e - r) / (1 - r K / (K - 1)): the share of true labels a classifier must miss to miss ``e`` of labels that
    are ``r`` wrong; never below 0, and 1 where labels that noisy leave nothing to tell."""
    assert error_bound(0.3, 0.2, 2) == pytest.approx(0.1 / 0.6)
    assert error_bound(0.3, 0.2, 10) == pytest.approx(0.1 / (1 - 0.2 * 10 / 9))
    assert error_bound(0.1, 0.2, 10) == 0.0
    assert error_bound(0.5, 0.65, 3) == 1.0


def test_bad_inputs(rng):
    P = rng.dirichlet(np.ones(3), 20)
    y = rng.integers(0, 3, 20)
    with pytest.raises(OgdashError, match="level"):
        estimate_budget(P, y, level=1.5)
    with pytest.raises(OgdashError, match="labels"):
        estimate_budget(P, y[:5])
    dense = GradientSet(np.arange(20), P, np.zeros(20), "all", dense=np.zeros((20, 4), np.float32))
    with pytest.raises(OgdashError, match="source='model'"):
        suggest_budget(dense, y, source="probe")
    with pytest.raises(OgdashError, match="unknown probability source"):
        suggest_budget(dense, y, source="nope")
    assert suggest_budget(dense, y, source="model", n_boot=10).n == 20
