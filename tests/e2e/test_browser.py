"""The dashboard in a real browser: every page, the synthetic demo, uploads, and the MNIST-5k review flow end to end.

Every test fails on any Streamlit exception box (``settle``) and saves screenshots under
``tests/e2e/screenshots/`` (ignored by git).
"""
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import UPLOAD_LIMIT_MB, assert_no_exception, settle, shot

from ogdash.ui.nav import existing_pages

PAGES = existing_pages()


def url_path(page_info) -> str:
    """The address st.navigation gives a page: its file's stem; the default (first) page is the root."""
    return "" if page_info is PAGES[0] else Path(page_info.path).stem


def open_page(page, app_url, path, timeout=240_000):
    page.goto(f"{app_url}/{path}")
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    settle(page, timeout)
    page.locator('[data-testid="stMain"] h1').first.wait_for()  # the page drew its title, not a skeleton


def click(page, label):
    page.get_by_role("button", name=label, exact=True).click()
    settle(page)


def error_text(page) -> str:
    box = page.get_by_test_id("stAlertContentError").first
    box.wait_for()
    return box.inner_text()


@pytest.mark.parametrize("info", PAGES, ids=lambda p: Path(p.path).stem)
def test_every_page_opens(page, app_url, info):
    # the synthetic demo trains and scores on its first open; other pages render at once
    open_page(page, app_url, url_path(info), timeout=600_000)
    assert info.title in page.locator('[data-testid="stSidebar"]').inner_text()  # listed in the navigation
    shot(page, f"page_{Path(info.path).stem}")


@pytest.mark.skipif(not any(p.path == "views/synthetic.py" for p in PAGES), reason="no synthetic demo page yet")
def test_synthetic_demo_runs_its_default_case(page, app_url):
    open_page(page, app_url, "synthetic", timeout=600_000)
    page.get_by_text(re.compile("Table 1: every method")).first.wait_for()
    table = page.get_by_test_id("stDataFrame").last
    table.wait_for()
    assert table.bounding_box()["height"] > 100  # rows, not an empty frame
    assert page.get_by_test_id("stMetric").filter(has_text="Outlier detection accuracy").count() == 1
    page.get_by_role("button", name="Table 1 numbers (.csv)").wait_for()  # drawn only once the table is built
    shot(page, "synthetic_default_case")


def upload(page, index, path):
    """Put a file into the index-th uploader of the Data page's files tab, as a person choosing it would."""
    page.get_by_test_id("stFileUploaderDropzoneInput").nth(index).set_input_files(str(path))
    page.get_by_text(Path(path).name).first.wait_for()
    settle(page)


def test_upload_over_the_limit_is_refused_and_the_page_stays_usable(page, app_url, tmp_path):
    big = tmp_path / "big_train.npz"
    np.savez(big, X=np.zeros((4000, 1)), y=np.arange(4000) % 2)  # 64 KB, over the app's 10 KB limit
    assert big.stat().st_size > UPLOAD_LIMIT_MB * 2**20
    small_test = tmp_path / "small_test.npz"
    np.savez(small_test, X=np.arange(40.0).reshape(20, 2), y=np.arange(20) % 2)

    open_page(page, app_url, "data")
    page.get_by_role("tab", name="Your .npz / .csv").click()
    upload(page, 0, big)
    upload(page, 1, small_test)
    click(page, "Use these files")
    message = error_text(page)
    assert "big_train.npz" in message and "upload limit" in message and "give its path instead" in message
    assert "\n" not in message.strip()
    shot(page, "upload_over_the_limit")

    # still usable: a file under the limit replaces the big one and loads
    small_train = tmp_path / "small_train.npz"
    np.savez(small_train, X=np.arange(80.0).reshape(40, 2), y=np.arange(40) % 2)
    upload(page, 0, small_train)
    click(page, "Use these files")
    page.get_by_text("files: small_train.npz").first.wait_for()
    assert_no_exception(page)


def test_upload_of_a_latin1_csv_is_refused(page, app_url, tmp_path):
    latin1 = tmp_path / "latin1_train.csv"
    latin1.write_bytes("f1,f2,label,note\n1.0,2.0,0,caf\xe9\n2.0,1.0,1,na\xefve\n".encode("latin-1"))
    test = tmp_path / "test.csv"
    test.write_text("f1,f2,label\n1.0,2.0,0\n2.0,1.0,1\n")
    open_page(page, app_url, "data")
    page.get_by_role("tab", name="Your .npz / .csv").click()
    upload(page, 0, latin1)
    upload(page, 1, test)
    click(page, "Use these files")
    message = error_text(page)
    assert "latin1_train.csv" in message and "not UTF-8" in message
    shot(page, "upload_latin1_csv")


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
