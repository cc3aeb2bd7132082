"""The four analysis pages under AppTest, on digits, driving every button."""
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.nav import ROOT
from ogdash.data import DataSpec, digits
from ogdash.retrain import BASELINE
from ogdash.review import DecisionStore


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


def reload(at, page):
    """What a browser reload does: a new session that starts from the page's address alone."""
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    for k, val in at.query_params.items():
        fresh.query_params[k] = val
    fresh.run()
    return go(fresh, page)


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
    assert at.session_state["view"]["detector"] == "heldout_margin"  # one default everywhere
    at.selectbox(key="_detector").set_value("l2").run()  # no re-extraction, new scores
    at.slider(key="_budget").set_value(0.1).run()
    assert not at.exception and at.query_params["detector"] in ("l2", ["l2"]) and at.query_params["budget"] in ("0.1", ["0.1"])
    at.session_state["view"]["sel"] = flagged_ids(at)[:3]  # what a box selection on the plot stores
    go(at, "views/review.py")
    at.text_input(key="_reviewer").set_value("ann").run()
    at.radio(key="_show").set_value("selection").run()
    sid = flagged_ids(at)[0]
    next(b for b in at.button if b.key == f"remove_{sid}").click().run()
    assert not at.exception
    fingerprint = digits(seed=0, noise_rate=0.2, val_fraction=0.1).train.fingerprint()
    saved = DecisionStore(env / "decisions.sqlite").current(fingerprint)  # a new store object: what a restart sees
    assert saved["sample_id"].tolist() == [sid] and saved["decision"].tolist() == ["remove"]
    assert saved["reviewer"].tolist() == ["ann"]
    assert any(b.label.startswith("Decisions (.csv)") for b in at.get("download_button"))
    assert any(b.label == "Flagged for Label Studio (.json)" and not b.proto.disabled for b in at.get("download_button"))

    # a reload of the Review page brings back the same view: detector, budget, filter, reviewer, decisions
    again = reload(at, "views/review.py")
    v = again.session_state["view"]
    assert (v["detector"], v["budget"], v["show"], v["reviewer"]) == ("l2", 0.1, "selection", "ann")
    assert v["sel"] == flagged_ids(at)[:3]
    assert again.text_input(key="_reviewer").value == "ann"
    assert any("decided:" in m.value for m in again.markdown)

    # Trim & retrain in that fresh session: the flags come from the address, no other page visited
    go(again, "views/retrain.py")
    assert any(f"top {len(flagged_ids(at))} by L2 norm of the gradient at budget 10%" in m.value for m in again.markdown)
    next(s for s in again.slider if s.label == "Seeds").set_value(2).run()
    button(again, "Retrain").click().run()
    assert not again.exception
    table = again.dataframe[0].value
    fixes = table["fix"].tolist()
    assert fixes[0] == BASELINE and any(f.startswith("every flipped label restored") for f in fixes)
    assert any("random samples removed" in f for f in fixes)  # the removal's control
    assert any("random samples set to their suggested label" in f for f in fixes)  # the relabel's, of its own kind
    assert sum(f.startswith(("remove the flagged", "relabel")) for f in fixes) == 3  # the three fixes of the flags
    verdicts = [w.value for w in list(again.warning) + list(again.success)]
    assert sum("Too few seeds" in w for w in verdicts) == 4  # one per fix, your decisions too; 2 seeds cannot tell
    assert any(w.startswith("**your reviewed decisions") for w in verdicts)
    # each number names its baseline: the retrained unchanged data, and Data & model's one model
    said = " ".join(m.value for m in again.markdown)
    assert "**The baseline** is the unchanged data retrained here on seeds [0, 1]" in said
    assert "Data & model's" in said and "is one model, seed 0 (retrained here:" in said


def flagged_ids(at):
    """The ids the active detector flags at the active budget, as the pages compute them."""
    from dashboard.scan import model_spec
    from ogdash.detect.flags import flag
    from ogdash.detect.scoring import score
    from ogdash.pipeline import cached_gradients, cached_model

    v = at.session_state["view"]
    splits = digits(seed=0, noise_rate=0.2, val_fraction=0.1)
    model = cached_model(model_spec(at.session_state["model_config"]), splits.train, 0, _cache())
    g = cached_gradients(model, splits.train, cache=_cache())
    s = score(g, v["detector"], cached_gradients(model, splits.val, cache=_cache()), seed=0, labels=splits.train.y)
    return splits.train.ids[np.argsort(-s, kind="stable")[:int(flag(s, v["budget"]).sum())]].tolist()


def _cache():
    from ogdash.core.cache import DiskCache

    return DiskCache()


def test_pages_without_a_model_say_what_to_do(env):
    at = app()
    for page in ("views/gradient_space.py", "views/review.py", "views/retrain.py"):
        go(at, page)
        assert at.info, page


def test_the_preset_where_noise_hurts_is_one_click(env):
    from dashboard.state import PRESET_DATA, PRESET_MODEL

    at = app()
    go(at, "views/data.py")
    button(at, "Use the preset").click().run()
    assert not at.exception
    assert at.session_state["data_spec"] == PRESET_DATA and at.session_state["model_config"] == PRESET_MODEL
    link = at.query_params["data"]
    assert '"noise_kind": "pairs"' in (link[0] if isinstance(link, list) else link)  # the address names it too
    assert any("30% pairs noise" in s.value for s in at.subheader)  # the page shows the new data at once


def test_use_suggested_budget_flags_the_suggested_count_exactly(env):
    """Issue 26, defect 5: the button rounded 3.3% to the slider's 0.01 step (24 flags instead of 26). The view now
    says 'auto' and every page flags the suggested count itself; moving the slider sets a budget by hand again."""
    from ogdash.models import ModelSpec
    from ogdash.pipeline import Scan

    at = app()
    go(at, "views/data.py")
    button(at, "Train model").click().run()
    go(at, "views/gradient_space.py")
    button(at, "Extract gradients").click().run()
    button(at, "Use suggested budget").click().run()
    assert not at.exception and at.session_state["view"]["budget"] == "auto"
    assert at.query_params["budget"] in ("auto", ["auto"])
    assert button(at, "Use suggested budget").disabled
    expected = Scan(digits(seed=0, noise_rate=0.2, val_fraction=0.1), ModelSpec("cnn", epochs=3), cache=_cache())
    count = expected.suggested_budget().count
    assert any(f"In use: {count:,} samples flagged" in m.value for m in at.markdown)
    assert int(expected.flags(budget="auto").sum()) == count
    go(at, "views/review.py")
    show = at.radio(key="_show")
    assert f"top {count} by" in show.options[0] and "the suggested budget" in show.options[0]  # options as shown
    assert any(f"{count} samples match" in c.value for c in at.caption)
    go(at, "views/gradient_space.py")
    at.slider(key="_budget").set_value(0.1).run()  # by hand again
    assert at.session_state["view"]["budget"] == 0.1 and not button(at, "Use suggested budget").disabled


def test_feature_scaling_shown_and_switched_off_on_the_data_page(env, monkeypatch):
    """A table's MLP standardises its columns by default: the Data page says so in one line, and its checkbox
    turns it off (the model config, and so the URL and the cache key, carry it)."""
    import shutil

    shutil.copy(ROOT / "sample_data/digits.csv", env / "digits.csv")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["data_spec"] = DataSpec("files", train=str(env / "digits.csv"))
    at.session_state["model_config"] = {"kind": "mlp", "seed": 0, "epochs": 20}
    go(at.run(), "views/data.py")
    box = next(c for c in at.checkbox if c.label == "Scale feature columns")
    assert box.value is True
    button(at, "Train model").click().run()
    assert not at.exception
    assert any("Inputs standardised with the training set's statistics (64 columns" in c.value for c in at.caption)
    next(c for c in at.checkbox if c.label == "Scale feature columns").uncheck().run()
    button(at, "Train model").click().run()
    assert not at.exception and at.session_state["model_config"]["scale"] is False
    assert not any("Inputs standardised" in c.value for c in at.caption)
