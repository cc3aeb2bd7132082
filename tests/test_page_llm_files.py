"""The LLM influence page's "your data" mode under AppTest, on the tiny model: run on files under the data root,
the flagged list with its budget and exports, the re-fine-tune, the heatmap's drill-down and the typed query."""
import json

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.nav import ROOT
from ogdash.review import DecisionStore

PAGE = str(ROOT / "views" / "llm_influence.py")


@pytest.fixture(autouse=True)
def _env(prompt_files_app):
    """Each test: its own data root, cache, store and instruction set (tests/conftest.py)."""
    return prompt_files_app


def _w(items, label):
    return next(w for w in items if w.label == label)


def _files_mode(train="data/train.jsonl", test="data/test.jsonl"):
    at = AppTest.from_file(PAGE, default_timeout=240).run()
    _w(at.radio, "Data").set_value("files").run()
    _w(at.text_input, "Training file (under the data root)").set_value(train)
    _w(at.text_input, "Test file (optional)").set_value(test)
    _w(at.selectbox, "Model").set_value("tiny")
    _w(at.number_input, "LoRA in the last N layers (0 = all)").set_value(1)
    _w(at.number_input, "Token cap per example").set_value(256)
    _w(at.number_input, "Gradient width (0 = no projection)").set_value(128)
    _w(at.button, "Run on my files").click().run()
    return at


def test_your_data_mode_runs_and_shows_every_part(_env):
    at = _files_mode()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("30 training / 10 test examples" in s.value for s in at.subheader)
    _w(at.selectbox, "Group training examples by").set_value("task").run()
    assert any(m.value.startswith("**Suggested budget:**") for m in at.markdown)
    _w(at.number_input, "Flag this many examples (the highest scores)").set_value(6).run()
    flagged = at.dataframe[1].value  # after the timings table
    assert len(flagged) == 6 and {"id", "source", "score", "group", "prompt", "completion"} <= set(flagged.columns)
    labels = [b.label for b in at.get("download_button")]
    assert "Scores (.csv)" in labels and "Without the flagged (.jsonl)" in labels
    assert "With the review decisions (.jsonl)" not in labels  # nothing decided for this file yet
    _w(at.number_input, "Seeds").set_value(1)
    _w(at.button, "Re-fine-tune without the 6 flagged examples").click().run()
    assert not at.exception, at.exception
    verdict = next(m.value for m in at.markdown if m.value.startswith("**Verdict:**"))
    assert "Too few seeds" in verdict
    assert len(at.get("plotly_chart")) == 1
    _w(at.selectbox, "Group").set_value(2).run()  # the drill-down: a cell's examples
    cell = at.dataframe[-1].value
    assert len(cell) == 6 and list(cell.columns) == ["id", "source", "influence", "prompt", "completion"]
    assert cell["influence"].is_monotonic_decreasing
    _w(at.text_area, "Prompt").set_value("Solve the following math problem. A rectangular garden has a length of "
                                         "3 meters and a width of 4 meters. What is its area? ->")
    _w(at.text_input, "The completion you saw (optional; default: the model's own)").set_value(" Answer: 12")
    _w(at.button, "Find the influential training examples").click().run()
    assert not at.exception, at.exception
    assert any(m.value.startswith("**Scored:**") for m in at.markdown)
    tables = at.dataframe[-3:]
    assert all(len(t.value) == 10 for t in tables)


def test_review_decisions_for_the_file_offer_their_own_export(_env):
    from ogdash.data.prompt_files import load_prompt_file
    from ogdash.experiments.llm_review import record

    data = load_prompt_file(_env / "data" / "train.jsonl")
    record(DecisionStore(_env / "decisions.sqlite"), data, 3, "remove", "ann")
    at = _files_mode()
    assert not at.exception, at.exception
    assert "With the review decisions (.jsonl)" in [b.label for b in at.get("download_button")]


@pytest.mark.parametrize("train, needle", [
    ("../outside.jsonl", "outside the data root"),
    ("data/nope.jsonl", "file not found"),
    ("", "Give a training file"),
])
def test_bad_paths_are_one_line(_env, train, needle):
    at = _files_mode(train=train)
    assert not at.exception, at.exception
    assert any(needle in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]


@pytest.mark.parametrize("field, value", [
    ("LoRA adapter folder (optional, used as it is)", "../../etc"),
    ("Model folder (for a local model)", "/etc"),
])
def test_model_and_adapter_folders_stay_under_the_data_root(_env, field, value):
    at = AppTest.from_file(PAGE, default_timeout=240).run()
    _w(at.radio, "Data").set_value("files").run()
    _w(at.text_input, "Training file (under the data root)").set_value("data/train.jsonl")
    if field.startswith("Model"):
        _w(at.selectbox, "Model").set_value("folder")
    _w(at.text_input, field).set_value(value)
    _w(at.button, "Run on my files").click().run()
    assert not at.exception, at.exception
    assert any("outside the data root" in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
    assert "llm_files_run" not in at.session_state


def test_a_malformed_line_is_named(_env):
    (_env / "data" / "bad.jsonl").write_text('{"prompt": "a", "completion": " b"}\n{"prompt": oops}\n')
    at = _files_mode(train="data/bad.jsonl", test="")
    assert any("line 2 is not valid JSON" in e.value.replace("\\", "") for e in at.error)
    json.dumps([e.value for e in at.error])
