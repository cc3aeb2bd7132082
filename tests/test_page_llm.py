"""The LLM influence page under AppTest: renders, runs the tiny model, shows metrics, heatmaps and the drill-down."""
import pytest
import torch
from streamlit.testing.v1 import AppTest

from dashboard.nav import ROOT

PAGE = str(ROOT / "views" / "llm_influence.py")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(tmp_path))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model runs faster on one thread
    yield
    torch.set_num_threads(before)


def _widget(items, label):
    return next(w for w in items if w.label == label)


def test_page_renders_before_a_run():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "LLM influence"
    assert any("higher = more influential" in m.value for m in at.markdown)
    assert any("Press **Run**" in i.value or "press **Run**" in i.value for i in at.info)


def test_page_runs_the_tiny_model_and_drills_down():
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    _widget(at.selectbox, "Model").set_value("tiny")
    _widget(at.selectbox, "Benchmark").set_value("math_no_reason")
    _widget(at.number_input, "Training prompts per class").set_value(3)
    _widget(at.number_input, "Test prompts per class").set_value(1)
    _widget(at.number_input, "LoRA in the last N layers (0 = all)").set_value(1)
    _widget(at.button, "Run").click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error
    table = at.dataframe[0].value
    assert list(table["method"]) == ["Outlier Gradient", "Gradient Tracing", "DataInf"]
    assert "AUC (published, Llama-2-13B)" in table.columns
    assert len(at.get("plotly_chart")) == 2
    _widget(at.radio, "Method").set_value("tracin")
    _widget(at.selectbox, "Test prompt").set_value(3)
    _widget(at.button, "Show the model's completion").click()
    at.run()
    assert not at.exception, at.exception
    assert any(m.value.startswith("**Model's completion:**") for m in at.markdown)
    top = at.dataframe[-1].value
    assert len(top) == 10 and set(top.columns) >= {"id", "class", "influence", "prompt + completion"}


def test_page_reports_a_bad_folder():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    _widget(at.selectbox, "Model").set_value("folder")
    _widget(at.text_input, "Model folder (for a local model)").set_value("../../outside")
    _widget(at.button, "Run").click()
    at.run()
    assert not at.exception
    assert "outside the data root" in at.error[0].value


def test_page_is_in_the_app_navigation():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("views/llm_influence.py")
    at.run()
    assert not at.exception, at.exception
    assert any(t.value == "LLM influence" for t in at.title)
