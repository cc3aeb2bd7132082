"""The Text data selection page under AppTest, with the tiny hashing encoder and a small subset."""
import pytest
import torch
from streamlit.testing.v1 import AppTest

from dashboard.nav import PAGES, ROOT
from ogdash.data import DataSpec
from ogdash.experiments import textselect as ts

PAGE = next(p.path for p in PAGES if p.title == "Text data selection")


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setattr("views.text_selection_parts.ENCODER", "hashing")


def page():
    return AppTest.from_file(str(ROOT / PAGE), default_timeout=240).run()


def small_run(at):
    at.number_input(key="ts_n_train").set_value(200)
    at.number_input(key="ts_n_test").set_value(100)
    at.number_input(key="ts_epochs").set_value(2)
    at.number_input(key="ts_seeds").set_value(2)
    return at.button(key="ts_run").click().run()


def test_page_is_registered():
    assert (ROOT / PAGE).is_file()


def test_page_renders_and_runs_every_method():
    at = page()
    assert not at.exception, at.exception
    assert at.title[0].value == "Text data selection"
    assert not at.dataframe  # nothing runs until asked
    at = small_run(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    df = at.dataframe[-1].value
    assert df["Method"].tolist() == [ts.ROW_LABELS[ts.ALL_ROW], ts.ROW_LABELS[ts.CLEAN_ROW],
                                     *[m.label for m in ts.METHODS]]
    assert len(at.get("plotly_chart")) == 1
    assert {m.label: m.value for m in at.metric}["Kept per method"] == "140"

    at.button(key="ts_review").click().run()  # hand the rows to the review gallery
    assert not at.exception, at.exception
    spec = at.session_state["data_spec"]
    assert spec.source == "text" and spec.encoder == "hashing" and spec.path is None
    assert at.session_state["model_config"]["kind"] == "logreg"


def test_lora_fine_tuning_runs_from_the_page(monkeypatch):
    monkeypatch.setattr("views.text_selection_parts.ENCODER", "tiny-bert")
    at = page()
    at.radio(key="ts_finetune").set_value("lora").run()
    assert not at.exception, at.exception
    if not torch.cuda.is_available():
        assert any("No GPU here" in w.value for w in at.warning)
    at.multiselect(key="ts_methods").set_value(["og_l2", "random"]).run()
    at.number_input(key="ts_n_train").set_value(100)
    at.number_input(key="ts_n_test").set_value(50)
    at.number_input(key="ts_epochs").set_value(1)
    at.number_input(key="ts_seeds").set_value(1)
    at = at.button(key="ts_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.dataframe[-1].value["Method"].tolist()[-2:] == ["Outlier Gradient (L2)", "Random"]
    assert any("LoRA" in c.value for c in at.caption)


def test_text_config_loads_as_text_splits(tmp_path, monkeypatch):
    from ogdash.data import DataSpec

    monkeypatch.setenv("OGDASH_CACHE", str(tmp_path))
    # the page's earlier links said "noise": still read
    spec = DataSpec.from_dict({"source": "text", "name": "rotten_tomatoes", "path": None, "noise": 0.2, "seed": 0,
                               "n_train": 120, "n_test": 50, "encoder": "hashing"})
    splits = spec.load()
    assert splits.train.kind == "text" and splits.val is not None
    assert splits.train.n + splits.val.n == 120 and splits.test.n == 50
    assert "Rotten Tomatoes" in spec.describe()


def test_missing_csv_shows_an_error():
    at = page()
    at.radio(key="ts_source").set_value("csv").run()
    assert not at.exception
    assert at.info  # asks for a file
    at.text_input(key="ts_csv_path").set_value("../../../etc/passwd").run()
    assert not at.exception
    assert at.error and "outside the data root" in at.error[0].value


def test_rows_open_in_the_review_gallery_as_text(tmp_path, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["data_spec"] = DataSpec("text", name="rotten_tomatoes", noise_rate=0.2, n_train=150, n_test=50,
                                             encoder="hashing")
    at.session_state["model_config"] = {"kind": "logreg", "seed": 0, "epochs": 5}
    at.run()
    for page, label in (("views/data.py", "Train model"), ("views/gradient_space.py", "Extract gradients")):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        next(b for b in at.button if b.label == label).click().run()
        assert not at.exception, at.exception
    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    quotes = [m.value for m in at.markdown if m.value.startswith("> ")]
    assert quotes, "the gallery shows texts"
