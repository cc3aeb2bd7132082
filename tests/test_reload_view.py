"""Issue 26, item 8 and 9 under AppTest: a reload keeps the Data & model page's tab and typed paths and the drawn
plot selection, an error stays in the tab that caused it, every class gets a thumbnail, and a shared link is kept
through sign-in."""
import json

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard.nav import ROOT
from dashboard.state import DEFAULT_DATA
from ogdash.core.cache import DiskCache
from ogdash.models.zoo import ModelSpec
from ogdash.pipeline import Scan, ScanSettings

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "o",
        "client_secret": "s", "server_metadata_url": "http://localhost:1/.well-known/x"}


@pytest.fixture
def env(tmp_path, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    return tmp_path


def opened(page: str, query: dict, secrets=None, user=None) -> AppTest:
    """``page`` opened from an address alone, as a reload or a shared link does."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params.update(query)
    if secrets:
        for name, value in secrets.items():
            at.secrets[name] = value
        at.user = user
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_a_reload_keeps_the_data_tab_and_the_typed_paths(env):
    at = opened("views/data.py", {"tab": "Image folder", "folder": "my/folder", "folder_test": "my/test",
                                  "train_path": "t.csv", "cifar": "c10"})
    assert at.session_state["_tab"] == "Image folder"
    boxes = {t.label: t.value for t in at.text_input}
    assert boxes["Training folder (under the data root)"] == "my/folder" and boxes["Test folder (optional)"] == "my/test"
    assert boxes["…or training path"] == "t.csv" and boxes["CIFAR folder (under the data root)"] == "c10"
    at.text_input(key="_folder").set_value("other/folder").run()  # typing keeps the address in step
    assert at.query_params["folder"] in ("other/folder", ["other/folder"])
    assert at.query_params["tab"] in ("Image folder", ["Image folder"])


def test_a_typed_path_from_a_link_is_only_shown_until_used(env):
    """Threat check: a link can fill a path box but reads nothing; using it is checked under the data root, and a
    box's text is one printable line."""
    at = opened("views/data.py", {"tab": "Image folder", "folder": "../../etc"})
    assert next(t for t in at.text_input if t.key == "_folder").value == "../../etc"
    next(b for b in at.button if b.label == "Use this folder").click().run()
    assert any("data root" in e.value for e in at.tabs[2].error)
    assert "imagefolder" not in json.dumps(at.session_state["data_spec"].to_dict())  # the data did not change
    bad = opened("views/data.py", {"folder": "a\nb", "q": "x" * 500, "tab": "No such tab"})
    assert next(t for t in bad.text_input if t.key == "_folder").value == ""
    assert bad.session_state["view"]["q"] == "" and bad.session_state["_tab"] == "Built-in"


def test_a_load_error_stays_in_the_tab_that_caused_it(env):
    """Issue 26, item 8: an error from one tab stayed on the others (it was drawn below every tab)."""
    for name in "abcdef":
        (env / "one" / "cats").mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 40).save(env / "one" / "cats" / f"{name}.png")
    at = opened("views/data.py", {"tab": "Image folder", "folder": "one"})
    next(b for b in at.button if b.label == "Use this folder").click().run()
    folder_tab = next(t for t in at.tabs if t.label == "Image folder")
    assert [e.value for e in folder_tab.error] == [e.value for e in at.error]  # every error is in that tab
    assert any("at least two classes" in e.value for e in folder_tab.error)


def test_every_class_gets_a_thumbnail(env):
    at = opened("views/data.py", {})
    assert [len(i.value) for i in at.image] == [10]  # digits: all ten classes, in rows that wrap


def test_a_reload_draws_the_plot_selection_again(env):
    mcfg = {"kind": "cnn", "seed": 0, "epochs": 1}
    scan = Scan(DEFAULT_DATA, ModelSpec("cnn", epochs=1), ScanSettings(), DiskCache())
    scan.gradients()
    chosen = sorted(set(scan.train.ids[np.flatnonzero(scan.flags())[:4]].tolist() + scan.train.ids[:3].tolist()))
    at = opened("views/gradient_space.py", {"data": json.dumps(DEFAULT_DATA.to_dict()), "model": json.dumps(mcfg),
                                            "sel": ",".join(map(str, chosen))})
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    marked = [int(t["customdata"][k][0]) for t in figure["data"] for k in t.get("selectedpoints", [])]
    assert sorted(marked) == sorted(chosen)
    assert any(f"{len(chosen)} samples selected" in s.value for s in at.success)


def test_a_shared_link_is_kept_through_sign_in(env):
    out = opened("views/review.py", {"detector": "l2"}, {"auth": AUTH}, {"is_logged_in": False})
    scripts = [h.proto.body for h in at_html(out)]
    assert len(scripts) == 1 and "sessionStorage.setItem('ogdash.link'" in scripts[0]
    signed = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)  # back from the provider, at the root
    signed.secrets["auth"] = AUTH
    signed.user = {"is_logged_in": True, "email": "a@x", "email_verified": True}
    back = [h.proto.body for h in at_html(signed.run())]
    assert len(back) == 1 and "window.location.replace" in back[0] and "to.origin === window.location.origin" in back[0]
    signed.run()
    assert at_html(signed) == []  # once per browser session


def at_html(at):
    return [h for h in at.get("html") if "ogdash.link" in h.proto.body]
