"""Cross-fitted probabilities: each sample judged by models that never saw its label, a training length chosen by
cross-validation, and a suggested budget that a memorising network can no longer fool (issue 30)."""
from dataclasses import replace

import numpy as np
import pytest

from ogdash.core.cache import DiskCache
from ogdash.data.dataset import make_dataset, split_off
from ogdash.data.noise import inject_noise
from ogdash.detect.budget import estimate_budget, suggest_budget
from ogdash.detect.crossfit import MAX_REPEATS, crossfit_probabilities, repeats_for, should_crossfit
from ogdash.detect.flags import flag
from ogdash.detect.heldout import heldout_probabilities, rank_probabilities
from ogdash.models.zoo import ModelSpec
from ogdash.pipeline import gradients, train_model


@pytest.fixture(scope="module")
def wine():
    """scikit-learn's wine, z-scored, 10% of the training labels flipped: the MLP memorises every one."""
    from sklearn.datasets import load_wine

    d = load_wine()
    X = (d.data - d.data.mean(0)) / d.data.std(0)
    train, _ = split_off(make_dataset("wine", X, d.target, y_true=d.target), 0.2, 0)
    return replace(train, y=inject_noise(train.y_true, 0.1, "uniform", 3, 0), _fingerprint=[])


def test_each_sample_is_judged_by_models_that_never_saw_its_label(wine, monkeypatch):
    from ogdash.detect import crossfit

    # fixed folds (stratified ones move when a label does) and one checkpoint (none is chosen with the labels)
    monkeypatch.setattr(crossfit, "_folds", lambda y, folds, seed: np.array_split(np.arange(len(y)), folds))
    spec = ModelSpec("mlp", steps=8)
    P = crossfit_probabilities(spec, wine, seed=0)
    assert P.shape == (wine.n, 3) and np.allclose(P.sum(1), 1)
    other = wine.y.copy()
    other[7] = (other[7] + 1) % 3
    Q = crossfit_probabilities(spec, replace(wine, y=other, _fingerprint=[]), seed=0)
    np.testing.assert_allclose(Q[7], P[7], atol=1e-6)  # its own label changed nothing of its probabilities


def test_crossfit_finds_the_flips_a_memorising_network_hides(wine, tmp_path):
    spec = ModelSpec("mlp")
    model = train_model(spec, wine, 0)
    g = gradients(model, wine)
    fits = float(np.mean(g.predicted == wine.y))
    assert fits == 1.0 and should_crossfit(spec, fits)  # it memorised every label, flips included
    noisy, k = wine.noisy, int(wine.noisy.sum())
    fooled = suggest_budget(g, wine.y, n_boot=50)  # the last-layer probe: its estimate collapses, "reliable"
    assert fooled.count < k / 2 and fooled.reliable
    info, cache = {}, DiskCache(tmp_path)
    P = crossfit_probabilities(spec, wine, seed=0, cache=cache, info=info, repeats=2)
    assert info["steps"] < spec.total_steps(wine.n) and len(info["log_loss"]) > 2  # stopped early, by CV
    est = suggest_budget(g, wine.y, crossfit=P, n_boot=50)
    flags = flag(rank_probabilities(P, wine.y), est.budget)
    assert noisy[flags].mean() >= 0.6 and flags[noisy].mean() >= 0.6 and est.low <= noisy.mean() <= est.high
    # the collapsed estimate, checked against the cross-fit, says it is unreliable and covers the truth
    blind = estimate_budget(heldout_probabilities(g.acts, wine.y), wine.y, 50, source="probe", reference=P)
    assert not blind.reliable and blind.low <= noisy.mean() <= blind.high and "memorised" in blind.warning
    again = crossfit_probabilities(spec, wine, seed=0, cache=cache, info=info, repeats=2)  # from the disk cache
    np.testing.assert_array_equal(again, P)


def test_when_to_crossfit_and_how_often():
    mlp = ModelSpec("mlp")
    assert should_crossfit(mlp, 0.995) and not should_crossfit(mlp, 0.9)  # memorised: needed; else the refit is as good
    assert not should_crossfit(ModelSpec("torchvision", arch="resnet18", tune="all"), 1.0)
    assert repeats_for(1.0, 500) == MAX_REPEATS and repeats_for(30.0, 500) == 1 and repeats_for(5.0, 500) == 2
    assert repeats_for(None, 500) == MAX_REPEATS and repeats_for(None, 5_000) == 1
