"""The gradient plot at scale: every flagged point and a seeded sample of the others, ids intact, said in a caption."""
import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import plots
from dashboard.nav import ROOT
from dashboard.state import SELECTION_IN_URL
from ogdash.detect.flags import budget_count


def _array(value) -> np.ndarray:
    """A Plotly JSON array: a plain list, or the typed array ``{"dtype", "bdata", "shape"}`` Plotly 6 writes."""
    if not isinstance(value, dict):
        return np.asarray(value)
    out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    shape = value.get("shape")
    return out.reshape([int(s) for s in str(shape).split(",")]) if shape else out


def test_plot_sample_keeps_every_flagged_and_is_seeded():
    rng = np.random.default_rng(1)
    flags = rng.random(50_000) < 0.05
    shown = plots.plot_sample(flags, cap=20_000, seed=0)
    assert len(shown) == 20_000 and len(np.unique(shown)) == len(shown) and np.all(np.diff(shown) > 0)
    assert np.isin(np.flatnonzero(flags), shown).all()  # every flagged sample is drawn
    np.testing.assert_array_equal(shown, plots.plot_sample(flags, cap=20_000, seed=0))  # seeded
    assert not np.array_equal(shown, plots.plot_sample(flags, cap=20_000, seed=1))
    # a bigger budget keeps the same sample of the others, less those now flagged
    more = flags | (rng.random(50_000) < 0.02)
    again = plots.plot_sample(more, cap=20_000, seed=0)
    kept = np.setdiff1d(shown, np.flatnonzero(more))
    assert np.isin(np.setdiff1d(again, np.flatnonzero(more)), kept).all()
    # under the cap everything is drawn; flagged past half the cap are sampled and leave the other half to the others
    np.testing.assert_array_equal(plots.plot_sample(flags[:5000], cap=20_000), np.arange(5000))
    half = np.zeros(50_000, bool)
    half[:18_000] = True
    wide = plots.plot_sample(half, cap=20_000)
    assert half[wide].sum() == 10_000 and (~half[wide]).sum() == 10_000
    assert "a random 10,000 of the 18,000 flagged and a random 10,000 of the 32,000 others" in \
        plots.sample_note(half, wide)
    # 20% of a million flagged: a seeded sample of them too, said so; never over the cap
    many = np.random.default_rng(2).random(1_000_000) < 0.2
    big = plots.plot_sample(many, cap=20_000)
    assert many[big].sum() == 10_000 and (~many[big]).sum() == 10_000 and np.all(np.diff(big) > 0)
    np.testing.assert_array_equal(big, plots.plot_sample(many, cap=20_000))
    assert f"a random 10,000 of the {many.sum():,} flagged and a random 10,000 of the" in plots.sample_note(many, big)
    nearly_all = np.ones(30_000, bool)
    nearly_all[:100] = False  # fewer others than half the cap: flagged fill the rest
    assert len(plots.plot_sample(nearly_all, cap=20_000)) == 20_000
    assert plots.sample_note(flags[:5000], np.arange(5000)) == ""


@pytest.mark.parametrize("n_classes", [3, 30])  # one trace per class, and one trace for them all
def test_scatter_carries_the_ids_of_the_points_it_draws(n_classes):
    rng = np.random.default_rng(0)
    n = 3000
    ids = rng.permutation(10**6)[:n] + 2**40  # ids are not positions
    given, predicted = rng.integers(0, n_classes, n), rng.integers(0, n_classes, n)
    scores, coords = rng.random(n), rng.normal(size=(n, 2))
    flags = scores > 0.9
    shown = plots.plot_sample(flags, cap=1000)
    classes = [f"<b>c{k}</b>" for k in range(n_classes)]
    fig = plots.gradient_scatter(coords, ids, given, predicted, scores, flags, classes, "PCA",
                                 [f"line {i + 2}" for i in range(n)], shown)
    spec = json.loads(fig.to_json())
    drawn = {}
    for trace in spec["data"]:
        custom = _array(trace["customdata"])
        x = _array(trace["x"])
        for (sid, score), xv, text in zip(custom, x, trace["text"]):
            drawn[int(sid)] = (score, xv, text)
    assert len(drawn) == len(shown) <= 1000  # at most the cap, when the flagged fit in it
    pos = {int(i): p for p, i in enumerate(ids)}
    for sid, (score, xv, text) in drawn.items():
        p = pos[sid]  # an id of the data, with its own score, position and source
        assert score == pytest.approx(scores[p], abs=1e-4) and xv == pytest.approx(coords[p, 0], rel=1e-5)
        assert text == f"line {p + 2}, id {sid}"
    assert set(ids[flags]) <= set(drawn)
    flagged = next(t for t in spec["data"] if t["name"] == "flagged")
    assert len(_array(flagged["x"])) == flags.sum()
    assert all("&lt;b&gt;" in h and "<b>" not in h for t in spec["data"] for h in t["hovertext"])  # escaped
    assert len(spec["data"]) == (n_classes + 1 if n_classes <= plots.LEGEND_MAX else 2)


def test_histogram_is_binned_on_the_server():
    scores = np.random.default_rng(0).random(50_000)
    fig = plots.score_histogram(scores, 0.95, 2500)
    bars = json.loads(fig.to_json())["data"][0]
    assert bars["type"] == "bar" and _array(bars["y"]).sum() == 50_000 and len(_array(bars["y"])) == 60


def test_gradient_page_at_30000_samples_sends_a_sampled_plot(tmp_path, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(tmp_path))
    from dashboard.scan import model_spec
    from ogdash.core.cache import DiskCache
    from ogdash.data import load_splits
    from ogdash.data import DataSpec
    from ogdash.pipeline import train_model

    rng = np.random.default_rng(0)
    n, k = 30_000, 3  # few classes and features: the test is about the plot, not the model
    centres = rng.normal(size=(k, 4))
    for name, m in (("train", n), ("test", 300)):
        y = rng.integers(0, k, m)
        np.savez(tmp_path / f"{name}.npz", X=(centres[y] + rng.normal(size=(m, 4))).astype(np.float32), y=y)
    data = {"source": "files", "train": str(tmp_path / "train.npz"), "test": str(tmp_path / "test.npz"),
            "test_share": 0.2, "seed": 0}
    model = {"kind": "logreg", "seed": 0, "epochs": 1}
    # trained as the Data & model page would, into the app's disk cache
    train_model(model_spec(model), load_splits(data["train"], data["test"]).train, 0, DiskCache())
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["data_spec"], at.session_state["model_config"] = DataSpec(**data), model
    at.query_params["detector"] = "l2"
    at.run()
    at.switch_page("views/gradient_space.py").run()
    next(b for b in at.button if b.label == "Extract gradients").click().run()
    assert not at.exception, at.exception

    spec = next(s for s in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
                if any(t["type"] == "scattergl" for t in s["data"]))
    traces = [t for t in spec["data"] if t["type"] == "scattergl"]
    n_points = sum(len(_array(t["x"])) for t in traces)
    flagged = next(t for t in traces if t["name"] == "flagged")
    n_flagged = budget_count(0.05, n)
    assert n_points <= plots.PLOT_CAP and len(_array(flagged["x"])) == n_flagged
    ids = np.concatenate([_array(t["customdata"])[:, 0] for t in traces]).astype(np.int64)
    assert len(np.unique(ids)) == n_points and ids.min() >= 0 and ids.max() < n
    caption = [c.value for c in at.caption if c.value.startswith("Showing all")]
    assert caption and f"all {n_flagged:,} flagged and a random {plots.PLOT_CAP - n_flagged:,} of the " \
                      f"{n - n_flagged:,} others" in caption[0]
    assert any(c.value.startswith(f"{n:,} gradients") for c in at.caption)

    # a box over most of the plot: the selection stays in the session, and its address would not fit a request line
    at.session_state["view"]["sel"] = list(range(SELECTION_IN_URL + 1))
    at.run()
    assert "sel" not in at.query_params and "not kept in the page's address" in at.success[0].value
    at.session_state["view"]["sel"] = [1, 2, 3]
    at.run()
    assert at.query_params["sel"] in ("1,2,3", ["1,2,3"])


def test_layouts_at_scale_are_kept_on_disk_and_umap_fits_a_seeded_subset(tmp_path):
    from ogdash.core.cache import DiskCache
    from ogdash.engine import layout2d

    G = np.random.default_rng(0).normal(size=(3000, 12)).astype(np.float32)
    calls = []
    cache = DiskCache(tmp_path / "cache")
    coords, axis = layout2d.cached_layout(G, "pca", cache, "grads-key", progress=lambda f, m: calls.append(f))
    again, axis2 = layout2d.cached_layout(np.zeros((3000, 12)), "pca", cache, "grads-key")  # loaded, not computed
    np.testing.assert_array_equal(coords, again)
    assert axis == axis2 and axis.startswith("PCA") and coords.shape == (3000, 2)
    subset = layout2d.umap_subset(50_000)
    assert len(subset) == layout2d.UMAP_FIT_MAX and np.all(np.diff(subset) > 0)
    np.testing.assert_array_equal(subset, layout2d.umap_subset(50_000))
    assert layout2d.umap_subset(layout2d.UMAP_FIT_MAX) is None


def test_a_selection_reads_the_ids_back():
    from types import SimpleNamespace

    from views.gradient_space_parts import selected_ids

    fig = plots.gradient_scatter(np.zeros((3, 2)), np.array([7, 2**60, 9]), np.array([0, 1, 0]), np.array([0, 0, 1]),
                                 np.array([0.1, 0.9, 0.5]), np.array([False, True, False]), ["a", "b"], "PCA")
    rows = [r for t in json.loads(fig.to_json())["data"] for r in t["customdata"]]  # plain lists, as a selection sends
    event = SimpleNamespace(selection=SimpleNamespace(points=[{"customdata": r} for r in rows]))
    assert selected_ids(event) == [7, 9, 2**60]  # an id beyond 2**53 travels as a string, intact
    assert selected_ids(SimpleNamespace(selection=SimpleNamespace(points=[{"customdata": {"0": 4.0, "1": 0.2}}]))) == [4]
    assert selected_ids(None) == []


def test_umap_above_its_fit_size_places_the_others_among_their_neighbours():
    from ogdash.engine import layout2d

    rng = np.random.default_rng(0)
    n = layout2d.UMAP_FIT_MAX + 1_000
    blob = rng.integers(0, 2, n)
    G = (rng.normal(size=(n, 60)) + 12.0 * blob[:, None]).astype(np.float32)  # two blobs, far apart
    said = []
    coords, axis = layout2d.layout_2d(G, "umap", progress=lambda f, m: said.append(m))
    assert coords.shape == (n, 2) and np.isfinite(coords).all() and "placed among its nearest fitted" in axis
    assert any(m.startswith("placing samples") for m in said)
    # every placed sample lands on its own blob's side: nearer its blob's centre than the other's
    centres = np.array([coords[blob == b].mean(0) for b in (0, 1)])
    nearest = np.linalg.norm(coords[:, None] - centres[None], axis=2).argmin(1)
    assert np.mean(nearest == blob) > 0.99
