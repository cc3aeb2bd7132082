"""A review at an annotator's pace in a real browser (issue 26; text cards, issue 28): an image folder reviewed with
the keyboard, undo and search; a text review; another reviewer's decision showing without a reload; the Data &
model page's tab and typed paths through a reload. Screenshots go under tests/e2e/screenshots/."""
import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import settle, shot
from playwright.sync_api import expect
from test_browser import click, go_to, open_page, reload

KEYS_TIMEOUT = 120_000


def card(page, sid):
    return page.locator(f".st-key-card_{sid}")


def cards(page):
    page.get_by_text(re.compile(r"samples? match")).first.wait_for()
    return page.locator('[class*="st-key-card_"]')


def card_id(locator) -> int:
    return int(re.search(r"st-key-card_(\d+)", locator.get_attribute("class")).group(1))


def press(page, key):
    """A key as a reviewer presses it, with the focus on the page (not in a text box)."""
    page.locator('[data-testid="stMain"] h1').first.click()
    page.keyboard.press(key)
    settle(page)


def focused(page) -> int:
    """The card the keys act on: the one that says so."""
    return card_id(page.locator('[class*="st-key-card_"]').filter(has_text="Keys act on this card").first)


def test_an_image_folder_reviewed_with_keys_undo_and_search(page, app_url, data_root):
    wrong = pd.read_csv(data_root / "sample_data/misfiled.csv").query("file == 'digits_folder'")
    misfiled = dict(zip(wrong["path_or_id"], wrong["true"].astype(str)))

    open_page(page, app_url, "data")  # the tab and the typed paths survive a reload (item 8)
    page.get_by_role("tab", name="Image folder").click()
    settle(page)
    page.get_by_label("Training folder (under the data root)").fill("sample_data/digits_folder")
    page.get_by_label("Test folder (optional)").fill("sample_data/digits_test")
    page.keyboard.press("Enter")
    settle(page)
    reload(page)
    expect(page.get_by_role("tab", name="Image folder")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_label("Training folder (under the data root)")).to_have_value("sample_data/digits_folder")
    expect(page.get_by_label("Test folder (optional)")).to_have_value("sample_data/digits_test")
    click(page, "Use this folder")
    page.get_by_text("imagefolder: digits_folder").first.wait_for()
    expect(page.locator('[data-testid="stImage"] img')).to_have_count(10)  # every class's thumbnail (item 9)
    shot(page, "keys_data_thumbnails")
    click(page, "Train model")
    page.get_by_test_id("stMetric").filter(has_text="Test accuracy").wait_for()
    go_to(page, "Gradient space")
    if page.get_by_role("button", name="Extract gradients").is_enabled():  # another test may have cached them
        click(page, "Extract gradients")
    page.get_by_role("button", name="Use suggested budget").click()
    settle(page)

    go_to(page, "Review")  # no reviewer yet: nothing can be decided, and each card says why (item 1)
    first = cards(page).first
    expect(first.get_by_role("button", name=re.compile("^Keep"))).to_be_disabled()
    expect(first).to_contain_text("Decisions are off: type your reviewer name in the box at the top of this page")
    press(page, "k")
    expect(page.get_by_text(re.compile("decided: keep"))).to_have_count(0)
    shot(page, "keys_no_reviewer")

    page.get_by_placeholder("who is deciding?").fill("ann")
    page.keyboard.press("Enter")
    settle(page)
    ids = [card_id(c) for c in cards(page).all()]
    assert focused(page) == ids[0]
    press(page, "k")  # keep the highlighted card; the keys move on
    expect(card(page, ids[0])).to_contain_text("decided: keep (ann)")
    assert focused(page) == ids[1]
    press(page, "x")
    expect(card(page, ids[1])).to_contain_text("decided: remove (ann)")
    box = page.get_by_placeholder(re.compile("a file name, line 7"))
    box.click()
    page.keyboard.type("kx")  # keys typed into a box are text, not decisions
    settle(page)
    expect(card(page, ids[2])).to_contain_text("undecided")
    box.fill("")
    press(page, "n")  # skip one
    assert focused(page) == ids[3]
    press(page, "u")
    expect(card(page, ids[3])).to_contain_text("decided: unsure (ann)")
    shot(page, "keys_three_decisions")
    press(page, "z")  # undo the last decision (unsure)
    expect(card(page, ids[3])).to_contain_text("undecided")
    card(page, ids[1]).get_by_role("button", name="Undo my remove").click()  # undo on its card
    settle(page)
    expect(card(page, ids[1])).to_contain_text("undecided")
    card(page, ids[1]).get_by_text("History (1)").click()
    expect(card(page, ids[1])).to_contain_text("(undone)")
    shot(page, "keys_undo_history")

    # search: jump to each misfiled image by its file name and relabel it with the key, to its true class
    for path, true in list(misfiled.items())[:3]:
        box = page.get_by_placeholder(re.compile("a file name, line 7"))
        box.fill(path.split("/")[-1])
        box.press("Enter")
        settle(page)
        found = cards(page)
        expect(found).to_have_count(1)
        expect(found.first).to_contain_text(path)
        if f"suggested {true} (" not in found.first.inner_text():
            found.first.get_by_test_id("stSelectbox").click()
            page.keyboard.type(true)
            page.keyboard.press("Enter")
            settle(page)
        press(page, "l")
        expect(found.first).to_contain_text(f"decided: relabel → {true} (ann)")
    shot(page, "keys_search_relabel")
    page.get_by_placeholder(re.compile("a file name, line 7")).fill("")
    page.keyboard.press("Enter")
    settle(page)

    pill = page.get_by_test_id("stButtonGroup").get_by_text(re.compile(r"→.*·")).first  # the most common pair
    label = pill.inner_text()
    given, suggested = re.search(r"(\S+)\s*→\s*(\S+)\s*·", label).groups()
    pill.click()
    settle(page)
    for c in cards(page).all():
        expect(c).to_contain_text(f"given {given} · suggested {suggested} (")
    shot(page, "keys_pair_filter")

    with page.expect_download() as download:
        page.get_by_role("button", name="Folder changes (.csv)").click()
    changes = pd.read_csv(download.value.path(), dtype=str)
    assert sorted(changes["decision"]) == ["keep"] + ["relabel"] * 3  # the undone decisions are not in it


@pytest.fixture(scope="module")
def texts(data_root):
    """A text CSV under the data root: short reviews of two kinds, one long one, 10% of the labels flipped."""
    rng = np.random.default_rng(0)
    words = {0: ["dull", "boring", "flat", "tired", "slow"], 1: ["lovely", "sharp", "bright", "warm", "witty"]}
    rows = [" ".join(rng.choice(words[i % 2], 7)) for i in range(300)]
    rows[4] = ("An unhurried, patient film that lingers on every face in the village and trusts its audience; " * 6)
    labels = np.arange(300) % 2
    labels[rng.choice(300, 30, replace=False)] ^= 1
    pd.DataFrame({"text": rows, "label": np.array(["bad", "good"])[labels]}).to_csv(data_root / "reviews.csv",
                                                                                 index=False)
    return "reviews.csv"


def test_a_text_review(page, app_url, texts):
    from urllib.parse import quote

    data = {"source": "text", "path": texts, "encoder": "hashing", "noise_rate": 0.0}
    model = {"kind": "logreg", "seed": 0}
    page.goto(f"{app_url}/data?data={quote(json.dumps(data))}&model={quote(json.dumps(model))}&reviewer=ann")
    settle(page)
    page.get_by_text("text: reviews.csv").first.wait_for()
    click(page, "Train model")
    go_to(page, "Gradient space")
    click(page, "Extract gradients")
    go_to(page, "Review")
    page.get_by_text(re.compile("Show")).first.wait_for()
    page.get_by_text("All training samples").click()
    settle(page)
    first = cards(page).first
    expect(first.locator("blockquote")).to_have_count(1)  # the text itself
    expect(first).to_contain_text(re.compile(r"Closest labelled (bad|good) \(given\)"))
    shot(page, "text_review_cards")

    box = page.get_by_placeholder(re.compile("or words in the text"))
    box.fill("UNHURRIED, patient")  # words inside a text, case ignored
    box.press("Enter")
    settle(page)
    found = cards(page)
    expect(found).to_have_count(1)
    found.first.get_by_text("more", exact=True).click()  # the long text is folded
    expect(found.first).to_contain_text("trusts its audience; An unhurried")
    press(page, "x")
    expect(found.first).to_contain_text("decided: remove (ann)")
    shot(page, "text_review_search_more")
    with page.expect_download() as download:
        page.get_by_role("button", name="Cleaned labels (.csv)").click()
    cleaned = pd.read_csv(download.value.path())
    assert cleaned["decision"].tolist().count("remove") == 1


FOLDER = {"source": "imagefolder", "path": "sample_data/digits_folder", "test": "sample_data/digits_test"}


def ready(page, app_url, data, model, reviewer):
    """The Review page of ``data`` and ``model`` from a link, trained and extracted first where needed (cached)."""
    from urllib.parse import quote

    link = f"data={quote(json.dumps(data))}&model={quote(json.dumps(model))}&reviewer={reviewer}"
    open_page(page, app_url, f"data?{link}")
    if page.get_by_role("button", name="Train model").count() and page.get_by_text("No trained model").count():
        click(page, "Train model")
    go_to(page, "Gradient space")
    if page.get_by_role("button", name="Extract gradients").is_enabled():
        click(page, "Extract gradients")
    go_to(page, "Review")


def test_another_reviewers_decision_shows_without_a_reload(page, app_url):
    """Issue 26, item 8: a conflict between reviewers showed only after a reload."""
    ready(page, app_url, FOLDER, {"kind": "cnn", "seed": 0}, "ann")
    sid = card_id(cards(page).first)
    card(page, sid).get_by_role("button", name=re.compile("^Remove")).click()
    settle(page)
    expect(card(page, sid)).to_contain_text("decided: remove (ann)")
    other = page.context.new_page()
    other.set_default_timeout(KEYS_TIMEOUT)
    other.goto(page.url.replace("reviewer=ann", "reviewer=bob"))
    settle(other)
    card(other, sid).get_by_role("button", name=re.compile("^Keep")).click()
    settle(other)
    expect(card(other, sid)).to_contain_text("decided: keep (bob)")
    # ann does nothing: her page shows bob's decision and the conflict within seconds
    expect(card(page, sid)).to_contain_text("conflict", timeout=KEYS_TIMEOUT)
    expect(card(page, sid)).to_contain_text("bob: keep")
    shot(page, "conflict_without_reload")
    other.close()
