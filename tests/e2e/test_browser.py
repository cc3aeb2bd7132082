"""The dashboard in a real browser: every page, and the MNIST-5k review flow end to end."""
import re

from conftest import settle, shot

PAGES = [("", "home"), ("data", "data"), ("gradient_space", "gradient_space"), ("review", "review"),
         ("retrain", "retrain")]


def open_page(page, app_url, path):
    page.goto(f"{app_url}/{path}")
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    settle(page)


def click(page, label):
    page.get_by_role("button", name=label, exact=True).click()
    settle(page)


def test_every_page_opens(page, app_url):
    for path, name in PAGES:
        open_page(page, app_url, path)
        shot(page, f"empty_{name}")


def test_mnist_flow_box_select_decide_reload_retrain(page, app_url):
    open_page(page, app_url, "data")
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=re.compile("MNIST-5k")).click()
    settle(page)
    click(page, "Use this data")
    page.get_by_text("mnist5k (seed 0").first.wait_for()
    page.get_by_label("Epochs (0 = default)").fill("3")  # a short run: this test checks the flow, not the model
    page.keyboard.press("Enter")
    settle(page)
    click(page, "Train model")
    page.get_by_text("Test accuracy").first.wait_for(timeout=240_000)
    shot(page, "data")

    page.get_by_role("link", name="Gradient space").first.click()
    settle(page)
    click(page, "Extract gradients")
    plot = page.locator('.st-key-gradient_plot .nsewdrag').first
    plot.wait_for()
    shot(page, "gradient_space")
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.05, box["y"] + box["height"] * 0.05)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=12)
    page.mouse.up()
    settle(page)
    selected = page.get_by_text(re.compile(r"\d+ samples selected"))
    selected.wait_for()
    n_selected = int(re.match(r"(\d+)", selected.inner_text()).group(1))
    assert n_selected > 0

    page.get_by_role("link", name="Review the suspects").click()
    settle(page)
    page.get_by_placeholder("who is deciding?").fill("ann")
    page.keyboard.press("Enter")
    settle(page)
    shot(page, "review")
    page.get_by_role("button", name="Remove", exact=True).first.click()
    settle(page)
    page.get_by_text("decided:").first.wait_for()

    page.reload()
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    settle(page)
    assert "mnist5k" in page.locator('[data-testid="stSidebar"]').inner_text()  # the URL kept the data choice
    removed = page.locator('[data-testid="stMetric"]').filter(has_text="remove")
    assert removed.first.locator('[data-testid="stMetricValue"]').inner_text().strip() == "1"

    page.get_by_role("link", name="Trim & retrain").first.click()
    settle(page)
    page.get_by_text("Reviewed decisions").click()
    settle(page)
    click(page, "Retrain")
    page.get_by_text("Test accuracy after").wait_for(timeout=240_000)
    shot(page, "retrain")
