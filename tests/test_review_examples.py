"""Fine-tuning examples reviewed on the Review page (issue 29) under AppTest: the LLM page's "your data" run on the
tiny model hands its flagged examples to the Review page, which shows them as text cards (prompt and completion
side by side) with keep / remove / unsure / edit, the reviewer rules, undo and the cleaned JSONL.

Threat checks: no edit is saved without a valid reviewer name, and an edit over the cap is refused in one line."""
import json

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.nav import ROOT
from ogdash.data.prompt_files import load_prompt_file, write_jsonl
from ogdash.experiments.llm_review import EDIT_MAX_CHARS, cleaned_jsonl, dataset_key
from ogdash.review import DecisionStore

FLAGGED = 6


@pytest.fixture(autouse=True)
def _env(prompt_files_app):
    """Each test: its own data root, cache, store and instruction set (tests/conftest.py)."""
    return prompt_files_app


def _w(items, label):
    return next(w for w in items if w.label == label)


def to_review(reviewer="ann", train="data/train.jsonl") -> AppTest:
    """The LLM page's your-data run on the tiny model (6 flagged), then its button to the Review page."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    if reviewer:
        at.query_params["reviewer"] = reviewer
    at.run()
    at.switch_page("views/llm_influence.py").run()
    _w(at.radio, "Data").set_value("files").run()
    _w(at.text_input, "Training file (under the data root)").set_value(train)
    _w(at.selectbox, "Model").set_value("tiny")
    _w(at.number_input, "LoRA in the last N layers (0 = all)").set_value(1)
    _w(at.number_input, "Token cap per example").set_value(256)
    _w(at.number_input, "Gradient width (0 = no projection)").set_value(128)
    _w(at.button, "Run on my files").click().run()
    _w(at.number_input, "Flag this many examples (the highest scores)").set_value(FLAGGED).run()
    next(b for b in at.button if b.key == "llm_files_to_review").click().run()
    assert not at.exception, at.exception
    assert cards(at), "the button opens the Review page on the examples"
    # AppTest's next run goes back to the page it last switched to itself (a browser follows st.switch_page)
    at.switch_page("views/review.py").run()
    return at


def cards(at, prefix="keep_"):
    return [b for b in at.button if b.key and b.key.startswith(prefix)]


def sid_of(button) -> int:
    return int(button.key.rsplit("_", 1)[1])


def history(env):
    data = load_prompt_file(env / "data" / "train.jsonl")
    return data, DecisionStore(env / "decisions.sqlite").history(dataset_key(data))


def test_the_flagged_examples_are_cards_with_prompt_and_completion_side_by_side(_env):
    at = to_review()
    assert _w(at.radio, "Review").value == "llm"
    keeps = cards(at)
    assert len(keeps) == FLAGGED
    captions = [c.value for c in at.caption]
    assert captions.count("Completion") == FLAGGED and sum(c.startswith("Prompt") for c in captions) == FLAGGED
    assert sum("group **" in m.value for m in at.markdown) == FLAGGED  # grouped by gradient clusters
    assert len(cards(at, "save_edit_")) == FLAGGED and not any(b.disabled for b in keeps)
    assert at.query_params["review"] == "llm" and len(at.query_params["ft"]) == 24  # a hash, never a path
    # the scores shown run from the most detrimental down
    scores = [float(m.value.split("score ")[1].split(" ")[0]) for m in at.markdown if " · score " in m.value]
    assert scores == sorted(scores, reverse=True) and len(scores) == FLAGGED


def test_keep_remove_edit_undo_and_the_cleaned_jsonl(_env):
    at = to_review()
    first, second, third = (sid_of(b) for b in cards(at)[:3])
    next(b for b in at.button if b.key == f"keep_{first}").click().run()
    next(b for b in at.button if b.key == f"remove_{second}").click().run()
    box = next(t for t in at.text_area if t.key.startswith(f"edit_{third}_"))
    box.set_value(" Answer: fixed by a person")
    next(b for b in at.button if b.key == f"save_edit_{third}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    data, rows = history(_env)
    assert list(rows["decision"]) == ["keep", "remove", "edit"] and set(rows["reviewer"]) == {"ann"}
    assert rows["new_text"].iloc[2] == " Answer: fixed by a person"
    assert any(c.value.startswith("Edited completion") for c in at.caption)  # shown on its card
    assert [m.value for m in at.metric][:4] == ["1", "1", "1", "0"]  # keep, remove, edit, unsure
    # the download: the cleaned file in the input's own format, removed left out, the edit written in
    got = [json.loads(x) for x in cleaned_jsonl(data, DecisionStore(_env / "decisions.sqlite")).splitlines()]
    assert len(got) == data.n - 1 and set(got[0]) == {"id", "task", "prompt", "completion"}
    assert " Answer: fixed by a person" in [r["completion"] for r in got]
    assert "Cleaned JSONL (.jsonl)" in [b.label for b in at.get("download_button")]
    # undo my last (the edit): the example goes back to undecided, the history keeps it marked undone
    next(b for b in at.button if b.label.startswith("Undo my last")).click().run()
    _, rows = history(_env)
    assert list(rows["decision"]) == ["keep", "remove"]
    assert [m.value for m in at.metric][:4] == ["1", "1", "0", "0"]


def test_another_reviewers_decision_shows_and_a_disagreement_is_a_conflict(_env):
    from ogdash.experiments.llm_review import record

    at = to_review()
    sid = sid_of(cards(at)[0])
    data = load_prompt_file(_env / "data" / "train.jsonl")
    record(DecisionStore(_env / "decisions.sqlite"), data, sid, "remove", "bob")  # another browser, meanwhile
    at.run()
    assert any(m.value.startswith("decided: :red[remove] (bob)") for m in at.markdown)
    next(b for b in at.button if b.key == f"keep_{sid}").click().run()
    assert any(":red[**conflict**]" in m.value and "bob: remove" in m.value for m in at.markdown)
    _w(at.selectbox, "Status").set_value("conflict").run()
    assert [sid_of(b) for b in cards(at)] == [sid]


def test_search_finds_any_example_by_line_id_or_words(_env):
    at = to_review()
    data = load_prompt_file(_env / "data" / "train.jsonl")
    unflagged = next(i for i in range(data.n) if int(data.sample_ids[i]) not in {sid_of(b) for b in cards(at)})
    for query in (data.sources[unflagged], data.ids[unflagged].upper()):
        at.text_input(key="_q").set_value(query).run()
        assert [sid_of(b) for b in cards(at)] == [int(data.sample_ids[unflagged])], query
    at.text_input(key="_q").set_value("rectangular garden").run()
    found = {sid_of(b) for b in cards(at)}
    assert found and all("rectangular garden" in data.prompts[data.position(s)].lower() for s in found)
    at.text_input(key="_q").set_value("no such words anywhere").run()
    assert not cards(at) and any("No examples match" in i.value for i in at.info)


def test_a_reload_keeps_the_review_and_a_restart_says_what_to_do(_env):
    at = to_review()
    sid = sid_of(cards(at)[0])
    next(b for b in at.button if b.key == f"remove_{sid}").click().run()
    link = dict(at.query_params)
    again = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)  # a reload: a new session, the same link
    again.query_params.update(link)
    again.run()
    again.switch_page("views/review.py").run()
    assert not again.exception, again.exception
    assert _w(again.radio, "Review").value == "llm" and len(cards(again)) == FLAGGED
    assert any(m.value.startswith("decided: :red[remove]") for m in again.markdown)
    import streamlit as st

    st.cache_resource.clear()  # the app restarted: the key finds nothing, and the page says what to do
    again.run()
    assert not again.exception and not cards(again)
    assert any("no longer held by the app" in i.value for i in again.info)
    _w(again.radio, "Review").set_value("data").run()  # and the data's review is one click away
    assert not again.exception and again.query_params.get("review") is None


def test_a_link_can_name_only_a_key_the_app_holds(_env):
    """Threat check: the link's ``ft`` is a 24-hex key into what this app holds, never a path or a name: a path, a
    key of the wrong shape is dropped (the data's review opens); a well-formed key the app does not hold says so."""
    for ft in ("../../etc/passwd", "data/train.jsonl", "A" * 24, "0" * 24):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
        at.query_params.update({"review": "llm", "ft": ft})
        at.run()
        at.switch_page("views/review.py").run()
        assert not at.exception, (ft, at.exception)
        assert not cards(at)
        if ft == "0" * 24:
            assert any("no longer held by the app" in i.value for i in at.info)
        else:
            assert at.query_params.get("ft") is None  # dropped from the address


def test_no_valid_reviewer_no_edit(_env):
    """Threat check: without a name, or with a line break in it, the controls are off and say why; a click that
    reaches the server anyway (the name cleared as it is sent) saves nothing."""
    at = to_review(reviewer="")
    assert all(b.disabled for b in cards(at) + cards(at, "save_edit_") + cards(at, "remove_"))
    assert all(t.disabled for t in at.text_area if t.key.startswith("edit_"))
    assert sum("Decisions are off" in m.value and "reviewer name" in m.value for m in at.markdown) == FLAGGED + 1
    at.text_input(key="_reviewer").set_value("ann\rmallory").run()
    assert all(b.disabled for b in cards(at, "save_edit_"))
    assert any("control character" in e.value for e in at.error)
    at.text_input(key="_reviewer").set_value("ann").run()
    sid = sid_of(cards(at, "save_edit_")[0])
    next(t for t in at.text_area if t.key.startswith(f"edit_{sid}_")).set_value(" sneaky")
    at.text_input(key="_reviewer").set_value("")  # cleared in the same moment as the click
    next(b for b in at.button if b.key == f"save_edit_{sid}").click().run()
    assert history(_env)[1].empty
    assert [e.value for e in at.error] == ["Not saved: type your reviewer name in the box at the top of this page "
                                           "first."]


def test_an_edit_over_the_cap_or_empty_is_refused_in_one_line(_env):
    """Threat check: a pasted megabyte (or an empty box) is refused on its card, in one line; nothing is saved."""
    at = to_review()
    sid = sid_of(cards(at, "save_edit_")[0])
    next(t for t in at.text_area if t.key.startswith(f"edit_{sid}_")).set_value("x" * (EDIT_MAX_CHARS + 1))
    next(b for b in at.button if b.key == f"save_edit_{sid}").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "over the 20,000" in errors[0] and "\n" not in errors[0]
    next(t for t in at.text_area if t.key.startswith(f"edit_{sid}_")).set_value("   ")
    next(b for b in at.button if b.key == f"save_edit_{sid}").click().run()
    assert any("needs new_text" in e.value for e in at.error)
    assert history(_env)[1].empty


def test_chat_examples_keep_their_turns_and_the_edit_goes_into_the_last_assistant_turn(_env):
    records = [json.loads(x) for x in (_env / "data" / "train.jsonl").read_text().splitlines()]
    chat = [{"id": r["id"], "task": r["task"], "messages": [
        {"role": "system", "content": "You transform text."}, {"role": "user", "content": r["prompt"]},
        {"role": "assistant", "content": r["completion"]}]} for r in records]
    write_jsonl(chat, _env / "data" / "chat.jsonl")
    at = to_review(train="data/chat.jsonl")
    quotes = [m.value for m in at.markdown if m.value.startswith("> system")]
    assert len(quotes) == FLAGGED and all("  \n> user" in q for q in quotes)  # one turn a line
    sid = sid_of(cards(at, "save_edit_")[0])
    next(t for t in at.text_area if t.key.startswith(f"edit_{sid}_")).set_value("Fixed.")
    next(b for b in at.button if b.key == f"save_edit_{sid}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    data = load_prompt_file(_env / "data" / "chat.jsonl")
    got = [json.loads(x) for x in cleaned_jsonl(data, DecisionStore(_env / "decisions.sqlite")).splitlines()]
    edited = got[data.position(sid)]
    assert set(edited) == {"id", "task", "messages"} and edited["messages"][-1] == {"role": "assistant",
                                                                                    "content": "Fixed."}
    assert edited["messages"][:2] == chat[data.position(sid)]["messages"][:2]


def test_the_library_keys_orders_and_caps(_env):
    """FlaggedExamples: one key per review (a hash), the flagged most detrimental first, lengths checked; an edit
    over the cap refused before the store sees it."""
    import numpy as np

    from ogdash.core.errors import OgdashError
    from ogdash.experiments.llm_review import FlaggedExamples, record

    data = load_prompt_file(_env / "data" / "train.jsonl")
    scores = np.linspace(0, 1, data.n)[::-1].copy()
    flags = np.zeros(data.n, bool)
    flags[[2, 5, 9]] = True
    one = FlaggedExamples(data, scores, flags, None, "x")
    assert one.key == FlaggedExamples(data, scores.copy(), flags.copy(), None, "x").key
    assert one.key != FlaggedExamples(data, scores, ~flags, None, "x").key
    assert list(one.order()) == [2, 5, 9] and len(one.order(flagged_only=False)) == data.n and one.group(0) == ""
    with pytest.raises(OgdashError, match="30 examples but 3 scores"):
        FlaggedExamples(data, scores[:3], flags, None)
    store = DecisionStore(_env / "decisions.sqlite")
    with pytest.raises(OgdashError, match="over the 20,000"):
        record(store, data, int(data.sample_ids[0]), "edit", "ann", new_completion="y" * (EDIT_MAX_CHARS + 1))
    record(store, data, int(data.sample_ids[0]), "edit", "ann", new_completion="y" * EDIT_MAX_CHARS)
    assert len(store.history(dataset_key(data))) == 1
