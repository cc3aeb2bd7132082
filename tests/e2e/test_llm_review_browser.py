"""Fine-tuning examples reviewed on the Review page in a real browser (issue 29): the shipped sample JSONL on the LLM
page with the tiny model, its flagged examples as text cards, keep / remove / edit, a reload, and the cleaned JSONL
with the edit in it. Screenshots go to ``tests/e2e/screenshots/``.
"""
import json
import re

from conftest import settle, shot

EDIT = " Answer: corrected in the browser"


def _sid(card) -> int:
    return int(re.search(r"st-key-card_(\d+)", card.get_attribute("class")).group(1))


def test_review_fine_tuning_examples_as_cards(page, app_url):
    page.goto(f"{app_url}/llm_influence")
    settle(page)
    page.get_by_text("Your data (your files, your model)").click()
    settle(page)
    page.get_by_label("Training file (under the data root)", exact=True).fill("sample_data/instructions.jsonl")
    page.get_by_test_id("stSelectbox").filter(has_text="Model").first.click()
    page.get_by_role("option", name=re.compile("tiny random Llama")).click()
    page.get_by_text("Settings (CPU defaults)").click()  # no fine-tuning: the review needs scores, not a good model
    page.get_by_label("Fine-tuning epochs", exact=True).fill("0")
    page.get_by_role("button", name="Run on my files").click()
    settle(page)
    page.get_by_text(re.compile(r"200 training / 0 test examples")).first.wait_for()
    go = page.get_by_role("button", name=re.compile(r"Review the \d+ flagged examples as cards"))
    flagged = int(re.search(r"\d+", go.inner_text()).group())
    go.click()
    settle(page)
    assert "/review" in page.url and "review=llm" in page.url

    page.get_by_label("Reviewer name", exact=True).fill("ann")
    page.get_by_label("Reviewer name", exact=True).press("Enter")
    settle(page)
    cards = page.locator("[class*='st-key-card_']")
    assert cards.count() == min(flagged, 12)
    first, second, third = (_sid(cards.nth(i)) for i in range(3))
    page.locator(f".st-key-keep_{first} button").click()
    settle(page)
    page.locator(f".st-key-remove_{second} button").click()
    settle(page)
    card = page.locator(f".st-key-card_{third}")
    card.get_by_text("Edit the completion").click()
    card.get_by_label("Corrected completion").fill(EDIT)
    card.get_by_label("Corrected completion").press("Control+Enter")  # the box sends its text before the click
    settle(page)
    page.locator(f".st-key-save_edit_{third} button:visible").click()  # a button with help has a hidden twin
    settle(page)
    shot(page, "llm_review_1_decided")

    page.reload()  # a reload: a new session, the same address
    settle(page)
    card = page.locator(f".st-key-card_{third}")
    card.get_by_text("Edited completion (ann)").wait_for()
    assert page.locator(f".st-key-card_{second}").get_by_text("decided:").inner_text().startswith("decided: remove")
    shot(page, "llm_review_2_after_reload")

    with page.expect_download() as dl:
        page.get_by_role("button", name="Cleaned JSONL (.jsonl)").click()
    lines = [json.loads(x) for x in open(dl.value.path(), encoding="utf-8").read().splitlines()]
    assert len(lines) == 199 and set(lines[0]) == {"id", "task", "prompt", "completion"}
    assert [r["completion"] for r in lines].count(EDIT) == 1
