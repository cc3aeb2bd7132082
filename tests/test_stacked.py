"""Arms trained together equal the same arms trained one by one (up to floating-point rounding): the same seed's
initial weights, the same batch order over each arm's own rows, the same number of steps."""
import numpy as np
import pytest
import torch
from torch import nn

from ogdash.core.errors import OgdashError
from ogdash.data import digits, moons
from ogdash.models.stacked import Arm, can_stack, fit_arms, pays_to_stack
from ogdash.models.train import fit, predict_proba
from ogdash.models.zoo import Classifier, ModelSpec


def _arms(train, seeds=(0, 1), drops=(0, 7, 23)):
    rng = np.random.default_rng(0)
    out = []
    for seed in seeds:
        for k in drops:  # some rows removed, a few labels changed: each arm its own size and labels
            rows = np.sort(rng.choice(train.n, train.n - k, replace=False))
            labels = train.y[rows].copy()
            labels[:4] = (labels[:4] + 1) % train.n_classes
            out.append(Arm(f"drop {k}, seed {seed}", seed, rows, labels))
    return out


def _max_weight_gap(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("spec", [ModelSpec("mlp", steps=40), ModelSpec("logreg", steps=30, batch_size=32),
                                  ModelSpec("mlp", hidden=(8,), steps=25, batch_size=50)],
                         ids=["mlp-full-batch", "logreg-minibatch", "mlp-minibatch"])
def test_stacked_training_equals_one_by_one(spec):
    train, test = moons(0).train, moons(0).test
    arms = _arms(train)
    stats = {}
    together = fit_arms(spec, train.X, arms, train.n_classes, stack=True, stats=stats)
    alone = [fit(spec, train.X[a.rows], a.labels, train.n_classes, a.seed) for a in arms]
    assert stats["stacked"] == len(arms)
    for a, b in zip(together, alone):
        assert _max_weight_gap(a, b) < 1e-4
        np.testing.assert_allclose(predict_proba(a, test.X), predict_proba(b, test.X), atol=1e-4)


def test_stacked_cnn_equals_one_by_one_and_the_fallback_is_fit():
    s = digits(0, noise_rate=0.2)
    spec = ModelSpec("cnn", steps=12)
    arms = _arms(s.train, seeds=(0, 1), drops=(0, 40))
    stats = {}
    together = fit_arms(spec, s.train.X, arms, 10, stack=True)
    one_by_one = fit_arms(spec, s.train.X, arms, 10, stack=False, stats=stats)
    alone = [fit(spec, s.train.X[a.rows], a.labels, 10, a.seed) for a in arms]
    assert "stacked" not in stats
    for a, b, c in zip(together, one_by_one, alone):
        assert _max_weight_gap(a, c) < 1e-4 and _max_weight_gap(b, c) < 1e-4
    # on a CPU a convolutional network stacks on small images only (it does not pay on larger ones)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pays_to_stack(together[0], cpu, (1, 8, 8)) and not pays_to_stack(together[0], cpu, (1, 28, 28))
    assert pays_to_stack(together[0], cuda, (1, 28, 28))


def test_layers_that_cannot_stack_train_one_by_one():
    model = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU()), nn.Linear(4, 2))
    assert not can_stack(model)
    assert can_stack(Classifier(nn.Sequential(nn.Flatten(), nn.Linear(2, 4), nn.ReLU()), nn.Linear(4, 2)))


def test_arms_of_different_budgets_and_bad_arms():
    train = moons(0).train
    arms = _arms(train, seeds=(0,), drops=(0, 200))  # 250 and 50 rows: without a step budget, different epochs
    spec = ModelSpec("logreg", epochs=3, batch_size=32)
    together = fit_arms(spec, train.X, arms, 2, stack=True)  # trained in groups of equal budgets, still right
    alone = [fit(spec, train.X[a.rows], a.labels, 2, a.seed) for a in arms]
    assert all(_max_weight_gap(a, b) < 1e-4 for a, b in zip(together, alone))
    with pytest.raises(OgdashError, match="as many labels"):
        fit_arms(spec, train.X, [Arm("x", 0, np.arange(3), np.zeros(2, int))], 2)
    assert fit_arms(spec, train.X, [], 2) == []


def test_progress_is_overall_and_in_words():
    train = moons(0).train
    said = []
    fit_arms(ModelSpec("mlp", steps=30), train.X, _arms(train), 2,
             progress=lambda f, m: said.append((f, m)), stack=False)
    assert said[-1][0] == 1.0
    assert [m.split(" (")[0] for _, m in said][-1] == "run 6 of 6"
    assert all(m.startswith("run ") and ", seed " in m for _, m in said)
    fractions = [f for f, _ in said]
    assert fractions == sorted(fractions)  # overall: it never goes back at the next run
