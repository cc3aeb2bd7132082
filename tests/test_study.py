"""ogdash.experiments.synthetic: the synthetic experiment (Figure 1, Table 1) headless."""
import numpy as np
import pytest
import torch

from ogdash.core.errors import OgdashError
from ogdash.core.threads import one_thread
from ogdash.experiments import synthetic as study
from ogdash.experiments.synthetic_scores import EIGEN_FLOOR, hessian_damping

EPOCHS = 60  # short training: these tests check the plumbing, not the paper's numbers


@pytest.fixture(scope="module")
def moons_result():
    return study.analyse(study.synthetic_case("moons", 0, epochs=EPOCHS), lissa_iterations=100)


def test_cases_follow_the_paper():
    b = study.synthetic_case("blobs", 3)
    assert (b.splits.train.n, b.splits.test.n, int(b.splits.train.noisy.sum())) == (150, 100, 10)
    assert b.spec.kind == "logreg" and b.spec.bias is False  # no intercept, as the paper's released code
    assert b.val.n == study.N_VAL and not b.val.noisy.any()  # clean inliers for OneClassSVM
    assert not set(b.val.ids) & set(b.splits.train.ids)
    assert not np.isin(b.val.X, b.splits.train.X).all(axis=1).any()  # other samples, not a holdout of train
    m = study.synthetic_case("moons", 3)
    assert (m.splits.train.n, m.splits.test.n, int(m.splits.train.noisy.sum())) == (250, 100, 20)
    assert m.spec.kind == "mlp" and m.spec.hidden == (16, 16) and m.model_name == "MLP 16-16"
    assert study.synthetic_case("moons", 3, model_preset="paper_mlp").spec.kind == "paper_mlp"
    assert int(study.synthetic_case("moons", 3, "uniform", 8).splits.train.noisy.sum()) == 8
    for bad in (dict(dataset="digits"), dict(dataset="blobs", model_preset="paper_mlp"),
                dict(flip_mode="near"), dict(n_flips=1), dict(seed=-1), dict(epochs=0)):
        with pytest.raises(OgdashError):
            study.synthetic_case(**{"dataset": "moons", **bad})


def test_every_method_scores_every_sample(moons_result):
    r = moons_result
    n = r.case.splits.train.n
    for key in study.METHOD_KEYS:
        s = r.scores[key]
        assert s.shape == (n,) and np.all(np.isfinite(s)), key
        assert r.seconds[key] >= 0
    for key in ("normalized_margin", "self_confidence", "confidence_weighted_entropy"):
        assert r.scores[f"{key}@predicted"].shape == (n,)
        assert study.score_key(key, "predicted") == f"{key}@predicted"
    assert study.score_key("exact", "predicted") == "exact"  # the variant only concerns label quality
    assert r.grad_last.shape == (n, 17) and r.layout.shape == (n, 2) and r.layout_note.startswith("PCA")
    gx, gy, prob = r.boundary
    assert prob.shape == (len(gy), len(gx)) and 0 <= prob.min() <= prob.max() <= 1
    with pytest.raises(OgdashError):
        study.score_key("entropy")


def test_binary_label_quality_scores_rank_alike(moons_result):
    # For two classes all three cleanlab scores are monotone in p(label): the paper's three equal rows.
    r = moons_result
    for variant in ("given", "predicted"):
        flags = [study.method_flags(r, m, 0.1, variant)
                 for m in ("normalized_margin", "self_confidence", "confidence_weighted_entropy")]
        assert all(np.array_equal(flags[0], f) for f in flags[1:])


def test_convex_case_influence_and_gradients_find_far_flips():
    r = study.analyse(study.synthetic_case("blobs", 0))  # full training: logistic regression is quick
    assert r.hessian_damping == 0.0 and r.hessian_eigen_range[0] > 0  # convex: positive definite Hessian
    assert r.layout_note.startswith("the last-layer gradient is 2-D")
    np.testing.assert_allclose(r.layout, r.grad_last)  # drawn as is
    noisy = r.noisy
    for method in ("exact", "og_l2", "og_iforest"):
        flags = study.method_flags(r, method, 0.1)
        assert flags.sum() == 15 and (flags & noisy).sum() >= 9, method


def test_damping_floors_eigenvalues():
    assert hessian_damping(np.diag([2.0, 5.0]))[0] == 0.0
    d, (lo, hi) = hessian_damping(np.diag([-1.0, 1000.0]))
    assert (lo, hi) == (-1.0, 1000.0) and d == pytest.approx(1.0 + EIGEN_FLOOR * 1000.0)


def test_layout_2d():
    G = np.random.default_rng(0).normal(size=(30, 2))
    coords, note = study.layout_2d(G)
    np.testing.assert_allclose(coords, G)
    coords, note = study.layout_2d(np.random.default_rng(0).normal(size=(30, 6)))
    assert coords.shape == (30, 2) and note.startswith("PCA of the 6-D last-layer gradients")
    with pytest.raises(OgdashError):
        study.layout_2d(np.zeros((5, 1)))


def test_seed_rows_share_retrains_and_match_trim_and_retrain(moons_result, monkeypatch):
    import ogdash.pipeline as pipeline

    calls = []
    real_fit = pipeline.fit
    monkeypatch.setattr(pipeline, "fit", lambda spec, X, *a, **k: calls.append(len(X)) or real_fit(spec, X, *a, **k))
    r = moons_result
    rows = study.seed_rows(r, 0.1, "given")
    distinct = {study.method_flags(r, m, 0.1).tobytes() for m in study.METHOD_KEYS}
    assert len(calls) == len(distinct) and all(n == 225 for n in calls)  # one retrain per distinct trimmed set
    assert [row["method"] for row in rows] == [study.BASELINE_ROW, *study.METHOD_KEYS]
    by = {row["method"]: row for row in rows}
    assert by[study.BASELINE_ROW]["post_trim_accuracy"] == pytest.approx(100 * r.accuracy_before)
    report, trimmed = study.trim_report(r, "og_iforest", 0.1)
    summary = report.summary
    assert summary["accuracy_after"] * 100 == pytest.approx(by["og_iforest"]["post_trim_accuracy"])
    assert summary["accuracy_before"] == pytest.approx(r.accuracy_before)  # same seed, same initialisation
    assert len(trimmed) == 25 and summary["removed_truly_noisy"] == int(trimmed["truly flipped"].sum())
    assert trimmed["score"].is_monotonic_decreasing
    no_retrain = study.seed_rows(r, 0.1, "given", post_trim=False)
    assert all(np.isnan(row["post_trim_accuracy"]) for row in no_retrain[1:])


def test_table1_has_every_method_and_keeps_published_numbers_apart():
    df = study.table1("blobs", seeds=[0, 1], budget=0.1, epochs=EPOCHS)
    assert df["method"].tolist() == [study.BASELINE_ROW, *study.METHOD_KEYS]
    assert (df["n_seeds"] == 2).all()
    for col in study.MEASURED:
        assert col in df and col + "_std" in df
    assert (df["detection_accuracy_std"].iloc[1:] >= 0).all()
    assert (df["published_note"] == "not published").all() and df["published_post_trim_accuracy"].isna().all()
    shown = study.format_table1(df)
    assert shown["Published: detection %"].eq("not published").all()
    assert " ± " in shown["Detection accuracy %"].iloc[1]
    assert shown["Method"].iloc[1] == "Normalized Margin (given labels)"

    rows = [dict(method=m, seed=0, detection_accuracy=90.0, precision=50.0, recall=50.0,
                 post_trim_accuracy=90.0, seconds=0.1) for m in (study.BASELINE_ROW, *study.METHOD_KEYS)]
    moons = study.summarise(rows, "moons", "MLP 16-16", "predicted")
    pub = moons.set_index("method")
    for key, (det, post) in study.PUBLISHED_TABLE1["moons"].items():
        assert pub.loc[key, "published_post_trim_accuracy"] == post
        assert (np.isnan(pub.loc[key, "published_detection_accuracy"]) if det is None
                else pub.loc[key, "published_detection_accuracy"] == det)
    assert pub.loc["og_ocsvm", "published_note"] == "not in the paper's table"
    assert pub.loc["self_confidence", "label"] == "Self-Confidence (predicted labels)"
    with pytest.raises(OgdashError):
        study.table1("moons", seeds=[])


def test_one_thread_restores_the_setting():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
        with one_thread():  # nested (or a second tab): still one thread, restored only at the end
            pass
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
