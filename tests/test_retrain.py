"""Trim & retrain that measures the fix: a random control of the same size on the same seeds, relabel actions,
a step budget that does not shrink with the data, and a verdict in words."""
import numpy as np
import pytest

from ogdash.core.errors import OgdashError
from ogdash.data import moons
from ogdash.models.zoo import ModelSpec
from ogdash.retrain import (
    ACTIONS,
    NONE,
    RANDOM,
    Comparison,
    Fix,
    Row,
    compare,
    control_fix,
    fixes_from_flags,
    random_fix,
    restored,
    trim_and_retrain,
)

SPEC = ModelSpec("logreg", epochs=40)


@pytest.fixture(scope="module")
def splits():
    return moons(0)


def test_fixes_from_flags_remove_relabel_auto(splits):
    train = splits.train
    flags = np.zeros(train.n, bool)
    flags[:6] = True
    suggested = train.y.copy()
    suggested[:4] = 1 - train.y[:4]          # four flagged samples get another suggestion, two keep theirs
    confidence = np.array([0.9, 0.9, 0.4, 0.4, 0.9, 0.9] + [1.0] * (train.n - 6))
    remove, relabel, auto = fixes_from_flags(train, flags, suggested, confidence, threshold=0.5)
    assert [f.name for f in (remove, relabel, auto)] == list(ACTIONS)
    assert remove.remove == tuple(train.ids[:6]) and not remove.relabel
    assert relabel.relabel == {int(i): int(s) for i, s in zip(train.ids[:4], suggested[:4])} and not relabel.remove
    # sure and different: relabelled; unsure or the same as given: removed
    assert auto.relabel == {int(i): int(s) for i, s in zip(train.ids[:2], suggested[:2])}
    assert set(auto.remove) == set(train.ids[2:6].tolist())
    with pytest.raises(OgdashError, match="unknown action"):
        fixes_from_flags(train, flags, suggested, confidence, actions=("shuffle",))


def test_random_control_removes_as_many_and_is_drawn_per_seed(splits):
    train = splits.train
    a, b = random_fix(train, 20, 0), random_fix(train, 20, 1)
    assert len(a.remove) == len(set(a.remove)) == 20 and a.remove != b.remove
    assert random_fix(train, 20, 0) == a  # the same seed draws the same samples
    assert control_fix(train, 20, 0, 0) == a


def test_a_relabel_control_applies_the_relabel_rule_to_random_samples(splits):
    train = splits.train
    suggested = train.y.copy()
    suggested[::3] = 1 - suggested[::3]  # a third of the samples have another suggestion
    c = control_fix(train, 5, 30, seed=0, suggested=suggested)
    assert len(c.remove) == 5 and not set(c.remove) & set(c.relabel)
    pos = train.positions(list(c.relabel))
    assert all(suggested[p] == v != train.y[p] for p, v in zip(pos, c.relabel.values()))  # to the suggestion
    assert 0 < len(c.relabel) < 30  # samples whose suggestion is their label stay as they are
    assert c.changes() == (5, len(c.relabel)) and control_fix(train, 5, 30, 1, suggested) != c
    blind = control_fix(train, 0, 30, seed=0)  # no suggestions: a random other class, every drawn sample changes
    pos = train.positions(list(blind.relabel))
    assert len(blind.relabel) == 30 and all(train.y[pos] != np.array(list(blind.relabel.values())))


def test_compare_rows_controls_and_step_budget(splits):
    train = splits.train
    flags = train.noisy.copy()  # an oracle trim: exactly the flipped samples
    fixes = fixes_from_flags(train, flags, train.y_true, np.ones(train.n), actions=("remove", "relabel"))
    said = []
    c = compare(splits, SPEC, fixes + [restored(train)], seeds=[0, 1, 2], suggested=train.y_true,
                progress=lambda f, msg: said.append((f, msg)))
    # each fix has a control of its own kind: random removals for the removal, the relabel rule on random samples
    assert [r.name for r in c.rows] == [NONE, "remove", "relabel", "restored", RANDOM, f"{RANDOM}_2"]
    assert c.row("remove").control == RANDOM and c.row("relabel").control == f"{RANDOM}_2"
    assert c.row(f"{RANDOM}_2").drawn == (0, int(flags.sum())) and c.row(f"{RANDOM}_2").n_removed == 0
    assert "the suggested label on" in c.verdict("relabel") and "random removals" in c.verdict("remove")
    assert set(c.verdicts()) == {"remove", "relabel", "restored"}
    assert c.verdict("restored").startswith("Restoring every flipped label")
    # overall progress in words, never internal names
    assert said and said[-1][0] == 1.0 and all("random_" not in m and "epoch" not in m for _, m in said)
    assert all(m.startswith(("run ", "all 18 runs at once")) for _, m in said), said[:3]
    assert c.steps == SPEC.total_steps(train.n)  # every model trains as long as the full set does
    for r in c.rows:
        assert r.accuracy.shape == (3,) and r.per_class.shape == (3, train.n_classes)
    k = int(flags.sum())
    assert c.row("remove").n_removed == c.row(RANDOM).n_removed == k
    assert c.row("remove").truly_noisy == k and c.row("relabel").corrected == k
    np.testing.assert_allclose(c.row("relabel").accuracy, c.row("restored").accuracy, atol=0.02)  # the same data
    rows = c.to_rows()
    assert [r["action"] for r in rows] == [r.name for r in c.rows]
    assert rows[0]["change_mean"] == 0.0 and len(rows[1]["accuracy_per_seed"]) == 3
    assert c.paired("remove", RANDOM).shape == (3,)


def test_verdict_words():
    def comparison(fix, control):
        rows = [Row(NONE, "", np.array([0.8, 0.8, 0.8]), np.zeros((3, 2)), 0, 0, ()),
                Row("remove", "", np.array(fix), np.zeros((3, 2)), 5, 0, ()),
                Row(RANDOM, "", np.array(control), np.zeros((3, 2)), 5, 0, ())]
        return Comparison([0, 1, 2][:len(fix)], 10, rows, 0.0)

    assert comparison([0.9, 0.85, 0.86], [0.8, 0.8, 0.8]).verdict("remove").startswith(
        "Beat chance and improved the model: +7.0 points")
    assert comparison([0.79, 0.78, 0.79], [0.7, 0.7, 0.7]).verdict("remove").startswith(
        "Beat chance, but did not improve the model")
    assert comparison([0.9, 0.79, 0.86], [0.8, 0.8, 0.8]).verdict("remove").startswith("Did not beat chance")
    # better than the unchanged data on average but not on every seed: said as such, not as "did not improve"
    assert comparison([0.9, 0.79, 0.86], [0.7, 0.7, 0.7]).verdict("remove").startswith(
        "Beat chance, and improved the model on 2 of 3 seeds only: +15.0 points against 5 random removals")
    one = Comparison([0], 10, [Row(NONE, "", np.array([0.8]), np.zeros((1, 2)), 0, 0, ()),
                               Row("remove", "", np.array([0.9]), np.zeros((1, 2)), 5, 0, ()),
                               Row(RANDOM, "", np.array([0.7]), np.zeros((1, 2)), 5, 0, ())], 0.0)
    assert "one seed: no spread measured" in one.verdict("remove") and "Too few seeds" in one.verdict("remove")


def test_trim_and_retrain_reports_the_random_control(splits):
    train = splits.train
    rep = trim_and_retrain(splits, SPEC, train.ids[train.noisy], seeds=[0, 1])
    assert rep.random_after.shape == (2,) and "accuracy_random" in rep.summary
    assert rep.removed_truly_noisy == int(train.noisy.sum())


def test_restoring_needs_known_truth(splits):
    from dataclasses import replace

    with pytest.raises(OgdashError, match="not known"):
        restored(replace(splits.train, y_true=None, _fingerprint=[]))
    with pytest.raises(OgdashError, match="unique"):
        compare(splits, SPEC, [Fix("random", "x", (int(splits.train.ids[0]),))], seeds=[0])


def test_suggestions_and_the_heldout_margin_share_one_refit(splits):
    """The dashboard scores the default detector from the suggestions' probabilities: they must be its scores."""
    from ogdash.detect.heldout import heldout_margin, suggestions
    from ogdash.detect.scoring import score
    from ogdash.pipeline import gradients, train_model

    train = splits.train
    g = gradients(train_model(SPEC, train, 0), train)
    P = suggestions(g, train.y)
    np.testing.assert_allclose(heldout_margin(P, train.y), score(g, "heldout_margin", labels=train.y))
