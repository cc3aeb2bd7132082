"""The four analysis pages under AppTest, on digits, driving every button."""
import pytest
from streamlit.testing.v1 import AppTest

from ogdash.data import digits
from ogdash.review import DecisionStore
from ogdash.ui.nav import ROOT


@pytest.fixture
def env(tmp_path, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()  # the app's process-wide memo must not leak between tests
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(tmp_path))
    return tmp_path


def app():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["model_config"] = {"kind": "cnn", "seed": 0, "epochs": 3}
    return at.run()


def button(at, label):
    return next(b for b in at.button if b.label == label)


def go(at, page):
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def test_full_flow_on_digits(env):
    at = app()
    go(at, "views/data.py")
    button(at, "Train model").click().run()
    assert not at.exception
    assert any(m.label == "Test accuracy" for m in at.metric)

    go(at, "views/gradient_space.py")
    button(at, "Extract gradients").click().run()
    assert not at.exception
    assert any(m.label == "AUROC" for m in at.metric)  # digits has known injected noise
    flagged = at.session_state["flags"]["ids"]
    assert len(flagged) == round(0.05 * 1258)
    at.selectbox[1].set_value("l2").run()  # detector: no re-extraction, new scores
    assert not at.exception and at.session_state["flags"]["detector"] == "l2"
    at.session_state["selection"] = flagged[:3]  # what a box selection on the plot stores
    go(at, "views/review.py")
    at.text_input[0].set_value("ann").run()
    at.radio[0].set_value("selection").run()
    sid = flagged[0]
    next(b for b in at.button if b.key == f"remove_{sid}").click().run()
    assert not at.exception
    fingerprint = digits(seed=0, noise_rate=0.2, val_fraction=0.1).train.fingerprint()
    saved = DecisionStore(env / "decisions.sqlite").current(fingerprint)  # a new store object: what a restart sees
    assert saved["sample_id"].tolist() == [sid] and saved["decision"].tolist() == ["remove"]
    assert saved["reviewer"].tolist() == ["ann"]
    assert any(b.label.startswith("Decisions (.csv)") for b in at.get("download_button"))

    go(at, "views/retrain.py")
    at.checkbox(key="retrain_reference").check().run()
    button(at, "Retrain").click().run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "Test accuracy before" in labels and "Test accuracy after" in labels
    assert "With every flipped label restored" in labels  # digits' noise is injected: the truth is known


def test_pages_without_a_model_say_what_to_do(env):
    at = app()
    for page in ("views/gradient_space.py", "views/review.py", "views/retrain.py"):
        go(at, page)
        assert at.info, page
