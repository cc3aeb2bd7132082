"""The LLM influence page's "your data" mode in a real browser, on the shipped sample JSONL: run, a heatmap cell's
examples (clicked), the flagged list and its export, the re-fine-tune, and a typed query.

The suite runs the tiny model (fast, random weights); ``OGDASH_E2E_LLM_MODEL=smollm2`` walks the same steps on
SmolLM2 (minutes on a CPU; its screenshots are the README's). Screenshots go to ``tests/e2e/screenshots/``.
"""
import json
import os
import re

from conftest import settle, shot

MODEL = os.environ.get("OGDASH_E2E_LLM_MODEL", "tiny")
LONG = 1_800_000  # ms: SmolLM2 fine-tunes and extracts for minutes on a shared 2-core CPU


def _field(page, label):
    return page.get_by_label(label, exact=True).and_(page.locator("input, textarea"))


def _tab(page, name):
    page.get_by_role("tab", name=name, exact=True).click()
    settle(page)


def test_your_data_walkthrough(page, app_url):
    page.goto(f"{app_url}/llm_influence")
    settle(page)
    page.get_by_text("Your data (your files, your model)").click()
    settle(page)
    _field(page, "Training file (under the data root)").fill("sample_data/instructions.jsonl")
    _field(page, "Test file (optional)").fill("sample_data/instructions_test.jsonl")
    if MODEL == "tiny":
        page.get_by_test_id("stSelectbox").filter(has_text="Model").first.click()
        page.get_by_role("option", name=re.compile("tiny random Llama")).click()
    page.get_by_role("button", name="Run on my files").click()
    settle(page, LONG)
    page.get_by_text(re.compile(r"200 training / 30 test examples")).first.wait_for()
    _tab(page, "Heatmap")
    area = page.locator(".js-plotly-plot .nsewdrag").first
    area.wait_for()
    opened = page.get_by_text(re.compile(r"The \d+ most influential of the \d+ training examples in reverse")).first
    for _ in range(3):  # a click before plotly has wired its events (or laid the chart out) is lost: click again
        page.wait_for_timeout(1500)
        area.scroll_into_view_if_needed()
        box = area.bounding_box()
        # rows are sorted by group (6 test prompts each): row 15 is multiply-test-003; column 5 of 5 is reverse
        x, y = box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 15.5 / 30
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        page.mouse.click(x, y)
        settle(page)
        try:
            opened.wait_for(timeout=20_000)
            break
        except Exception:
            continue
    opened.wait_for()
    # the clicked row's prompt (multiply-test-003 of the sample) is the one shown
    page.get_by_text(re.compile(r"length of 67 meters and a width of 6 meters")).first.wait_for()
    shot(page, f"llm_files_{MODEL}_1_heatmap")

    _tab(page, "Detrimental examples")
    page.get_by_text("Suggested budget:").first.wait_for()
    shot(page, f"llm_files_{MODEL}_2_flagged")

    with page.expect_download() as dl:  # the cleaned file, in the input's own format
        page.get_by_role("button", name="Without the flagged (.jsonl)").click()
    lines = [json.loads(x) for x in open(dl.value.path(), encoding="utf-8").read().splitlines()]
    flagged = int(page.get_by_role("spinbutton", name="Flag this many examples (the highest scores)").input_value())
    assert len(lines) == 200 - flagged and set(lines[0]) == {"id", "task", "prompt", "completion"}

    _tab(page, "Re-fine-tune")
    if MODEL == "tiny":
        _field(page, "Seeds").fill("1")
        _field(page, "Seeds").press("Enter")
        settle(page)
    page.get_by_role("button", name=re.compile(r"Re-fine-tune without the \d+ flagged examples")).click()
    settle(page, LONG)
    page.get_by_text("Verdict:").first.wait_for()
    shot(page, f"llm_files_{MODEL}_3_refinetune")

    _tab(page, "Typed query")
    page.get_by_label("Prompt", exact=True).fill("Solve the following math problem. A rectangular garden has a "
                                                  "length of 12 meters and a width of 7 meters. What is its area? ->")
    _field(page, "The completion you saw (optional; default: the model's own)").fill(" Answer: 84")
    page.get_by_role("button", name="Find the influential training examples").click()
    settle(page, LONG)
    page.get_by_text("Scored:").first.wait_for()
    shot(page, f"llm_files_{MODEL}_4_query")
