"""The Review page at an annotator's pace (issue 26) under AppTest: no click looks accepted when it was not, keys on
the highlighted card, undo and history, search, filters by given and suggested class and by class pair,
neighbours and z-scores on the cards, text cards (issue 28), and other reviewers' decisions on the next run.

The data and model are prepared once per module through the library's Scan into a shared disk cache; the pages
find them there, as they find what the CLI computed.
"""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.nav import ROOT
from dashboard.state import DEFAULT_DATA
from ogdash.core.cache import DiskCache
from ogdash.core.words import plural
from ogdash.data.spec import DataSpec
from ogdash.models.zoo import ModelSpec
from ogdash.pipeline import Scan, ScanSettings
from ogdash.review import DecisionStore

IMAGES = {"kind": "cnn", "seed": 0, "epochs": 2}
ROWS = {"kind": "mlp", "hidden": [16], "seed": 0, "epochs": 20}
TEXTS = {"kind": "logreg", "seed": 0, "epochs": 30}
LONG = ("An unhurried, patient film that lingers on every face in the village, " * 8).strip()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A data root with a tabular CSV and a text CSV; the three data sets scanned into one disk cache."""
    root = tmp_path_factory.mktemp("review_page")
    rows = pd.read_csv(ROOT / "sample_data/digits.csv")
    rows.to_csv(root / "rows.csv", index=False)
    rng = np.random.default_rng(0)
    words = {0: ["dull", "boring", "flat", "tired"], 1: ["fine", "lovely", "sharp", "bright"]}
    texts = [" ".join(rng.choice(words[i % 2], 6)) + f" take {i}" for i in range(160)]
    texts[3] = LONG
    pd.DataFrame({"text": texts, "label": [("bad", "good")[i % 2] for i in range(160)]}).to_csv(root / "texts.csv",
                                                                                              index=False)
    cache = DiskCache(root / "cache")
    for spec, mcfg in specs(root).values():
        model = ModelSpec(mcfg["kind"], tuple(mcfg.get("hidden", (16, 16))), mcfg["epochs"])
        Scan(spec, model, ScanSettings(), cache).gradients()
    return root


def specs(root):
    return {"images": (DEFAULT_DATA, IMAGES),
            "rows": (DataSpec("files", train=str(root / "rows.csv"), test_share=0.2, seed=0), ROWS),
            "texts": (DataSpec("text", path=str(root / "texts.csv"), encoder="hashing", noise_rate=0.1), TEXTS)}


@pytest.fixture
def env(home, tmp_path, monkeypatch):
    monkeypatch.setenv("OGDASH_CACHE", str(home / "cache"))
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(home))
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    for name in ("OGDASH_ADMINS", "OGDASH_REVIEWERS"):
        monkeypatch.delenv(name, raising=False)
    return home


def review(home, which="images", reviewer="ann", user=None, secrets=None, **view):
    """The Review page opened from a link to ``which`` data, as a fresh browser session would."""
    spec, mcfg = specs(home)[which]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params.update({"data": json.dumps(spec.to_dict()), "model": json.dumps(mcfg),
                            **({"reviewer": reviewer} if reviewer else {}), **{k: str(v) for k, v in view.items()}})
    if secrets:
        for name, value in secrets.items():
            at.secrets[name] = value
        at.user = user
    at.run()
    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    return at


def buttons(at, prefix):
    return [b for b in at.button if b.key and b.key.startswith(prefix)]


def card_ids(at) -> list[int]:
    return [int(b.key.split("_")[1]) for b in buttons(at, "keep_")]


def text(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def saved(which="images"):
    """Every standing decision on ``which`` data, from the store a restart would read."""
    spec = specs(Path(os.environ["OGDASH_DATA_ROOT"]))[which][0]
    return DecisionStore(os.environ["OGDASH_DECISIONS"]).history(spec.load(DiskCache()).train.fingerprint())


def test_without_a_reviewer_no_decision_control_is_live_and_each_card_says_why(env):
    """Issue 26, defect 1: with an empty name the buttons stayed enabled, a click was thrown away and the only
    message was at the top of the page."""
    at = review(env, reviewer="")
    cards = buttons(at, "keep_") + buttons(at, "remove_") + buttons(at, "unsure_") + buttons(at, "relabel_")
    assert len(cards) == 48 and all(b.disabled for b in cards)
    assert all(b.disabled for b in at.button if b.label.endswith("the undecided"))
    reasons = [m.value for m in at.markdown if "Decisions are off" in m.value]
    assert len(reasons) == 13 and all("reviewer name" in r for r in reasons)  # each card and the bulk row
    assert not any(b.proto.shortcut for b in cards)  # no key can decide either
    at.text_input(key="_reviewer").set_value("ann").run()
    assert not any(b.disabled for b in buttons(at, "keep_"))
    at.text_input(key="_reviewer").set_value("")  # the name cleared while a click is on its way: one run, both
    buttons(at, "keep_")[0].click().run()
    assert saved().empty
    assert [e.value for e in at.error] == ["Not saved: type your reviewer name in the box at the top of this page "
                                           "first."]  # on its card


def test_signed_in_but_not_a_reviewer_sees_disabled_controls_and_why(env):
    auth = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "o",
            "client_secret": "s", "server_metadata_url": "http://localhost:1/.well-known/x"}
    at = review(env, reviewer="", user={"is_logged_in": True, "email": "eve@x.org", "email_verified": True},
                secrets={"auth": auth, "ogdash": {"reviewers": ["ann@x.org"]}})
    assert all(b.disabled for b in buttons(at, "keep_") + buttons(at, "relabel_"))
    assert sum("not on the reviewers list" in m.value for m in at.markdown) == 13


def test_keys_act_on_the_highlighted_card_and_move_on(env):
    at = review(env)
    ids = card_ids(at)
    keys = {b.key: b.proto.shortcut.upper() for b in at.button if b.proto.shortcut and b.key}
    assert keys == {f"keep_{ids[0]}": "K", f"remove_{ids[0]}": "X", f"unsure_{ids[0]}": "U",
                    f"relabel_{ids[0]}": "L"}  # the first card's, and no other card's
    assert sorted(b.proto.shortcut.upper() for b in at.button if b.label in ("Previous", "Next") or b.label.startswith(
        "Undo my last")) == ["N", "P", "Z"]
    next(b for b in at.button if b.key == f"keep_{ids[0]}").click().run()  # K
    assert [b.key for b in at.button if b.proto.shortcut.upper() == "K"] == [f"keep_{ids[1]}"]  # on to the next card
    next(b for b in at.button if b.label == "Next").click().run()  # N
    assert [b.key for b in at.button if b.proto.shortcut.upper() == "X"] == [f"remove_{ids[2]}"]
    next(b for b in at.button if b.proto.shortcut.upper() == "X").click().run()
    assert saved()[["sample_id", "decision"]].values.tolist() == [[ids[0], "keep"], [ids[2], "remove"]]
    for _ in range(10):  # N past the page's last card opens the next page
        next(b for b in at.button if b.label == "Next").click().run()
    assert at.session_state["view"]["gpage"] == 2 and card_ids(at)[0] not in ids


def test_undo_the_last_decision_and_per_card_with_history(env):
    at = review(env)
    ids = card_ids(at)
    next(b for b in at.button if b.key == f"remove_{ids[0]}").click().run()
    next(b for b in at.button if b.key == f"keep_{ids[0]}").click().run()
    assert "decided: :green[keep] (ann)" in text(at)
    next(b for b in at.button if b.key == f"undo_{ids[0]}").click().run()  # per card: back to remove
    assert "decided: :red[remove] (ann)" in text(at) and any("Undid keep" in t.value for t in at.toast)
    history = [m.value for m in at.markdown if "(undone)" in m.value]
    assert len(history) == 1 and "~~" in history[0] and "keep" in history[0]
    undo = next(b for b in at.button if b.label.startswith("Undo my last"))
    undo.click().run()  # Z: the remove goes too
    assert saved().empty and "undecided" in [c.value for c in at.caption]
    assert next(b for b in at.button if b.label.startswith("Undo my last")).disabled  # nothing left to undo
    next(b for b in at.button if b.label == "Keep the undecided").click().run()
    assert len(saved()) == 12
    next(b for b in at.button if b.label == "Undo my last 12 decisions").click().run()  # a bulk action is one
    assert saved().empty


def test_search_jumps_to_a_sample_by_id_and_the_caption_counts_right(env):
    at = review(env, show="flagged")
    sid = card_ids(at)[0]
    far = int(DataSpec.from_dict(DEFAULT_DATA.to_dict()).load().train.ids[-1])  # most likely not flagged
    at.text_input(key="_q").set_value(f"id {far}").run()
    assert card_ids(at) == [far]
    assert any(c.value.startswith(f"1 sample matches “id {far}” among all training samples") for c in at.caption)
    at.text_input(key="_q").set_value(str(sid)).run()
    assert sid in card_ids(at)
    at.text_input(key="_q").set_value("no such sample").run()
    assert card_ids(at) == [] and any("No samples match" in i.value for i in at.info)


def test_filters_by_suggested_class_and_by_class_pair(env):
    at = review(env)
    pills = at.get("button_group")[0]
    given, rest = pills.options[0].split(" → ")  # the most common pair, "g → s · n" (digits' classes: "0".."9")
    suggested, n = rest.split(" · ")
    pills.set_value(f"{given}>{suggested}").run()
    v = at.session_state["view"]
    assert (v["classes"], v["suggested"], v["gpage"]) == ([int(given)], [int(suggested)], 1)
    assert 0 < len(card_ids(at)) <= min(int(n), 12)
    assert any(c.value.startswith(f"{plural(int(n), 'sample')} match") for c in at.caption)
    assert at.get("button_group")[0].value == f"{given}>{suggested}"  # the pill shows the filter in use
    at.multiselect(key="_suggested").set_value([]).run()
    assert at.session_state["view"]["suggested"] == [] and at.get("button_group")[0].value is None
    at.multiselect(key="_suggested").set_value([int(suggested)]).run()  # the suggested-class filter alone
    scan_suggested = [m.value for m in at.markdown if "· suggested **" in m.value]
    assert scan_suggested and all(f"suggested **{suggested}**" in m for m in scan_suggested)


def test_cards_show_neighbours_from_the_given_and_the_suggested_class(env):
    at = review(env)
    captions = [c.value for c in at.caption if c.value.startswith("Closest labelled")]
    assert sum(c.endswith("(given)") for c in captions) == 12
    assert 0 < sum(c.endswith("(suggested)") for c in captions) <= 12
    thumbs = [len(i.value) for i in at.image]  # each card: its image, then its neighbours' thumbnails per class
    assert thumbs.count(1) == 12 and thumbs.count(3) >= 12 and set(thumbs) <= {1, 2, 3}
    assert all(c.replace(".", "").isdigit() for i in at.image if len(i.value) > 1 for c in i.captions)


def test_tabular_cards_say_which_features_are_unusual_for_the_given_class(env):
    at = review(env, "rows")
    tables = [m.value for m in at.markdown if m.value.startswith("| feature | value | class mean | z |")]
    assert len(tables) == 12 and all(t.count("\n") == 6 for t in tables)  # header, rule, five features
    for t in tables:
        z = [abs(float(row.split("|")[-2])) for row in t.split("\n")[2:]]
        assert z == sorted(z, reverse=True)  # most unusual first
    assert sum(c.value.startswith("Most unusual for class") for c in at.caption) == 12
    assert any("line " in m.value and "(" in m.value for m in at.markdown if " · " in m.value)  # neighbours by row


def test_text_cards_show_the_text_folded_and_neighbour_snippets_and_search_inside(env):
    at = review(env, "texts", show="all")
    quotes = [m.value for m in at.markdown if m.value.startswith("> ")]
    assert len(quotes) == 12
    at.text_input(key="_q").set_value("UNHURRIED, patient").run()  # words inside a text, case ignored
    assert len(card_ids(at)) == 1
    assert any(m.value.startswith("> An unhurried") and m.value.endswith("…") for m in at.markdown)
    assert [e.label for e in at.expander if e.label == "more"] == ["more"]  # the long text folded
    assert any(c.value.startswith("Closest labelled") for c in at.caption)
    assert any(m.value.startswith("- ") and " · 0." in m.value for m in at.markdown)  # the neighbours' snippets
    buttons(at, "relabel_")[0].click().run()
    assert saved("texts")["decision"].tolist() == ["relabel"]
    assert [b.label for b in at.get("download_button")][:3] == ["Decisions (.csv)", "Decisions (.json)",
                                                                "Cleaned labels (.csv)"]


def test_another_reviewers_decision_shows_on_the_next_run(env):
    """Issue 26, item 8: a conflict between reviewers showed only after a reload."""
    ann = review(env, reviewer="ann")
    bob = review(env, reviewer="bob")
    sid = card_ids(ann)[0]
    next(b for b in ann.button if b.key == f"remove_{sid}").click().run()
    next(b for b in bob.button if b.key == f"keep_{sid}").click().run()
    ann.text_input(key="_q").set_value("").run()  # ann's next run of anything
    assert any(":red[**conflict**]" in m.value and "bob: keep" in m.value for m in ann.markdown)
    assert any("1 conflict" in w.value for w in ann.warning)


def test_a_relabel_decision_and_plural_words(env):
    at = review(env)
    sid = card_ids(at)[0]
    next(b for b in at.button if b.key == f"relabel_{sid}").click().run()
    words = text(at)
    assert "1 samples" not in words and "1 were" not in words
    assert "Of the 1 sample marked remove or relabel" in words
