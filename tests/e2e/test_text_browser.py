"""A text CSV in a real browser (issue #28): Data page -> Gradient space -> Review (quote cards, decisions, the
user's own CSV back with clean_label) -> Trim & retrain. Screenshots under tests/e2e/screenshots/.

The encoder is TF-IDF (fast); ``OGDASH_E2E_TEXT_ENCODER=minilm`` walks the same path with the default MiniLM.
"""
import csv
import io
import os
import re
from pathlib import Path

import pandas as pd
from conftest import settle, shot
from test_browser import card_headers, click, go_to, open_page

ENCODER = os.environ.get("OGDASH_E2E_TEXT_ENCODER", "tfidf")
ENCODER_LABEL = {"tfidf": "TF-IDF", "minilm": "MiniLM"}[ENCODER]


def choose(page, label, option):
    """Pick ``option`` (the start of its text) in the selectbox labelled ``label``."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label)
    if option in box.inner_text():
        return
    box.click()
    page.get_by_role("option").filter(has_text=re.compile("^" + re.escape(option))).first.click()
    settle(page)


def test_a_text_csv_from_the_data_page_to_trim_and_retrain(page, app_url, data_root):
    planted = pd.read_csv(data_root / "sample_data/reviews_flipped.csv")
    true_class = dict(zip(planted["path_or_id"], planted["true"]))

    open_page(page, app_url, "data")
    page.get_by_role("tab", name="Your .npz / .csv").click()
    page.get_by_label("…or training path").fill("sample_data/reviews.csv")
    page.get_by_label("…or test path").fill("sample_data/reviews_test.csv")
    page.keyboard.press("Enter")
    settle(page)
    if ENCODER != "minilm":
        choose(page, "Encoder (tables of texts)", ENCODER_LABEL)
    click(page, "Use these files")
    page.get_by_text("files: reviews.csv").first.wait_for(timeout=600_000)
    page.get_by_role("button", name="Train model").wait_for()
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "fresh = 0, plot = 1, rotten = 2" in main and "Mislabeled" not in main
    # a linear head on the embeddings, the model for texts by default
    assert "logreg" in page.locator('[data-testid="stSidebar"]').inner_text()
    shot(page, f"text_data_{ENCODER}")
    click(page, "Train model")
    page.get_by_test_id("stMetric").filter(has_text="Test accuracy").wait_for()

    go_to(page, "Gradient space")
    click(page, "Extract gradients")
    page.get_by_text("600 gradients").wait_for()
    shot(page, f"text_gradient_space_{ENCODER}")

    go_to(page, "Review")
    page.get_by_placeholder("who is deciding?").fill("ann")
    page.keyboard.press("Enter")
    settle(page)
    sources = [h.split(" · ")[0] for h in card_headers(page)]
    assert all(re.fullmatch(r"line \d+", s) for s in sources), sources  # cards name the CSV line
    quotes = page.locator('[data-testid="stMain"] blockquote')
    assert quotes.count() >= len(sources) > 0  # the texts, as quotes
    decided = {}
    for s in sources[:2]:  # relabel two cards (a planted flip to its true class, another to the suggestion)
        card = page.locator('[class*="st-key-card_"]').filter(has_text=re.compile(rf"{s} · id"))
        new = true_class.get(s) or re.search(r"suggested (\w+) \(", card.inner_text()).group(1)
        if f"suggested {new} (" not in card.inner_text():
            card.get_by_test_id("stSelectbox").click()
            page.keyboard.type(new)
            page.keyboard.press("Enter")
            settle(page)
        card.get_by_role("button", name=re.compile("^Relabel")).click()  # "Relabel L" on the highlighted card
        settle(page)
        decided[s] = ("relabel", new)
    page.locator('[class*="st-key-card_"]').filter(has_text=re.compile(rf"{sources[2]} · id")).get_by_role(
        "button", name=re.compile("^Remove")).click()
    settle(page)
    decided[sources[2]] = ("remove", "")
    assert page.get_by_test_id("stMetric").filter(has_text="relabel").inner_text().endswith("2")
    shot(page, f"text_review_{ENCODER}")

    with page.expect_download() as download:
        page.get_by_role("button", name="Your CSV with clean_label").click()
    raw = Path(download.value.path()).read_bytes()
    given = (data_root / "sample_data/reviews.csv").read_bytes()
    rows = list(csv.reader(io.StringIO(raw.decode())))
    original = list(csv.reader(io.StringIO(given.decode())))
    assert rows[0] == ["text", "label", "decision", "clean_label"] and len(rows) == len(original)
    assert [r[:2] for r in rows] == original  # the user's own cells, untouched
    for n, r in enumerate(rows[1:], start=2):
        assert (r[2], r[3]) == decided.get(f"line {n}", ("", r[1])), (n, r)

    go_to(page, "Trim & retrain")
    click(page, "Retrain")
    page.get_by_text(re.compile("beat chance", re.IGNORECASE)).first.wait_for(timeout=600_000)
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "flipped label restored" not in main  # no truth: the file has no true_label column
    assert "your reviewed decisions" in main  # the two relabels and the removal, retrained beside the flags' fixes
    shot(page, f"text_retrain_{ENCODER}")
