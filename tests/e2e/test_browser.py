"""The dashboard in a real browser: every page, the synthetic demo, uploads, and the MNIST-5k review flow end to end.

Every test fails on any Streamlit exception box (``settle``) and saves screenshots under
``tests/e2e/screenshots/`` (ignored by git).
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import UPLOAD_LIMIT_MB, assert_no_exception, settle, shot
from playwright.sync_api import expect

from dashboard.nav import existing_pages

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
    expect(page.get_by_test_id("stMetric").filter(has_text="Outlier detection accuracy")).to_have_count(1)
    page.get_by_role("button", name="Table 1 numbers (.csv)").wait_for()  # drawn only once the table is built
    shot(page, "synthetic_default_case")


def upload(page, index, path):
    """Put a file into the index-th uploader of the Data page's files tab, as a person choosing it would."""
    page.get_by_test_id("stFileUploaderDropzoneInput").nth(index).set_input_files(str(path))
    # The chip shows the name while the bytes are still going up ("Cancel upload of ..."); only once it offers
    # "Remove ..." has the server the file, so a click after that sees it.
    page.get_by_role("button", name=f"Remove {Path(path).name}").wait_for()
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


def reload(page):
    page.reload()
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    settle(page)
    page.locator('[data-testid="stMain"] h1').first.wait_for()


def query(page) -> dict:
    from urllib.parse import parse_qs, urlparse

    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def card_headers(page) -> list[str]:
    """The gallery's cards, by their header line: source, id and score, in order."""
    page.get_by_text("samples match").first.wait_for()
    cards = page.locator('[data-testid="stMarkdownContainer"]').filter(has_text=re.compile(r"id \d+ · score"))
    return [t.split("\n")[0] for t in cards.all_inner_texts()]


def go_to(page, title):
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    settle(page)
    page.locator('[data-testid="stMain"] h1').first.wait_for()


def test_review_survives_a_reload_on_every_page(page, app_url):
    """Built-in data → model → gradients → detector and budget changed → box selection → decisions → a reload on
    every page keeps detector, budget, gallery, reviewer and decisions → Trim & retrain from the address alone."""
    open_page(page, app_url, "data")
    click(page, "Use this data")  # digits, 20% injected noise
    page.get_by_label("Epochs (0 = default)").fill("3")  # a short run: this test checks the flow, not the model
    page.keyboard.press("Enter")
    settle(page)
    click(page, "Train model")
    page.get_by_test_id("stMetric").filter(has_text="Test accuracy").wait_for()
    assert "cnn" in page.locator('[data-testid="stSidebar"]').inner_text()  # the sidebar names the model at once
    assert '"kind": "cnn"' in query(page)["model"] and query(page)["data"].count("digits") == 1

    go_to(page, "Gradient space")
    click(page, "Extract gradients")
    page.get_by_test_id("stSelectbox").filter(has_text="Detector").click()
    page.get_by_role("option", name=re.compile("^L2 norm")).click()
    settle(page)
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(5):  # 5% → 10%, as a person nudges the slider
        page.keyboard.press("ArrowRight")
        settle(page)
    settle(page)
    assert query(page)["detector"] == "l2" and query(page)["budget"] == "0.1"
    plot = page.locator('.st-key-gradient_plot .nsewdrag').first
    plot.wait_for()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.05, box["y"] + box["height"] * 0.05)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=12)
    page.mouse.up()
    settle(page)
    selected = page.get_by_text(re.compile(r"\d+ samples selected"))
    selected.wait_for()
    assert int(re.match(r"(\d+)", selected.inner_text()).group(1)) > 0
    shot(page, "reload_gradient_space")

    page.get_by_role("link", name="Review the suspects").click()
    settle(page)
    assert page.get_by_role("radio", name=re.compile("Selected on the gradient plot")).is_checked()
    page.get_by_text(re.compile("^Flagged: top 126 by L2 norm")).click()  # 10% of 1,258
    settle(page)
    page.get_by_placeholder("who is deciding?").fill("ann")
    page.keyboard.press("Enter")
    settle(page)
    cards = page.locator('[class*="st-key-card_"]')  # the highlighted card's buttons also name their key ("Keep K")
    cards.nth(0).get_by_role("button", name=re.compile("^Remove")).click()
    settle(page)
    cards.nth(1).get_by_role("button", name=re.compile("^Keep")).click()
    settle(page)
    gallery = card_headers(page)
    assert len(gallery) == 12
    decided = page.get_by_text(re.compile(r"decided: (remove|keep) \(ann\)"))
    assert decided.count() == 2
    shot(page, "reload_review_before")

    def same_review(title):
        assert query(page)["detector"] == "l2" and query(page)["budget"] == "0.1" and query(page)["reviewer"] == "ann"
        go_to(page, "Review")
        assert page.get_by_role("radio", name=re.compile("^Flagged: top 126 by L2 norm")).is_checked()
        assert card_headers(page) == gallery
        expect(page.get_by_placeholder("who is deciding?"), f"after a reload on {title}").to_have_value("ann")
        assert page.get_by_text(re.compile(r"decided: (remove|keep) \(ann\)")).count() == 2

    for title in ("Review", "Gradient space", "Trim & retrain", "Data & model"):
        go_to(page, title)
        reload(page)
        assert "digits" in page.locator('[data-testid="stSidebar"]').inner_text()
        if title == "Gradient space":
            detector = page.get_by_test_id("stSelectbox").filter(has_text="Detector")
            assert "L2 norm" in detector.inner_text() + detector.locator("input").input_value()
            expect(page.get_by_test_id("stSliderThumbValue")).to_have_text("0.10")
        same_review(title)
    shot(page, "reload_review_after")

    # a fresh browser tab from the address alone: Trim & retrain uses the flags without visiting Gradient space
    url = page.url.replace("/review", "/retrain")
    other = page.context.new_page()
    other.goto(url)
    settle(other)
    other.get_by_text("the top 126 by L2 norm of the gradient at budget 10%").wait_for()
    other.get_by_role("button", name="Retrain", exact=True).click()
    settle(other)
    verdict = other.get_by_test_id("stAlert").filter(has_text="Best fix,")  # the verdict against the random control
    verdict.wait_for()
    assert re.search(r"points against \d+ random (removals|samples)[^(]* \(± [\d.]+; better on \d+ of \d+ seeds\)",
                     verdict.inner_text())
    other.get_by_text(re.compile(r"Seeds \[0, 1, 2(, \d+)*\]; every model trained for \d+ steps")).wait_for()
    other.get_by_test_id("stDataFrame").first.wait_for()  # the comparison table (drawn on a canvas)
    shot(other, "reload_retrain")


def test_image_folder_without_true_labels(page, app_url, data_root):
    """A user's image folder with misfiled images and no true labels: no truth panels, cards name the files,
    every training image is scored, and the folder-changes export lists the marked files."""
    import pandas as pd

    wrong = pd.read_csv(data_root / "sample_data/misfiled.csv").query("file == 'digits_folder'")
    misfiled = dict(zip(wrong["path_or_id"], wrong["true"].astype(str)))
    n_images = sum(1 for _ in (data_root / "sample_data/digits_folder").rglob("*.png"))

    open_page(page, app_url, "data")
    page.get_by_role("tab", name="Image folder").click()
    page.get_by_label("Training folder (under the data root)").fill("sample_data/digits_folder")
    page.get_by_label("Test folder (optional)").fill("sample_data/digits_test")
    page.keyboard.press("Enter")
    settle(page)
    # 24 px: a data set of its own, so the decisions made here as "ann" leave test_review_keys.py's 32 px review
    # (same app, same decision store) starting from undecided cards
    page.get_by_label("Resize to").fill("24")
    page.keyboard.press("Enter")
    settle(page)
    expect(page.get_by_label("Test folder (optional)")).to_have_value("sample_data/digits_test")
    click(page, "Use this folder")
    page.get_by_text("imagefolder: digits_folder").first.wait_for()
    assert page.get_by_test_id("stMetric").filter(has_text="Training samples").inner_text().endswith(str(n_images))
    assert "Mislabeled" not in page.locator('[data-testid="stMain"]').inner_text()
    assert "No test set was given" not in page.locator('[data-testid="stMain"]').inner_text()  # a test folder was given
    click(page, "Train model")
    page.get_by_test_id("stMetric").filter(has_text="Test accuracy").wait_for()
    shot(page, "folder_data")

    go_to(page, "Gradient space")
    click(page, "Extract gradients")
    page.get_by_text(f"{n_images} gradients").wait_for()  # every training image scored
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
        settle(page)
    settle(page)
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "known true labels" not in main and "Precision" not in main and "AUROC" not in main
    shot(page, "folder_gradient_space")

    go_to(page, "Review")
    page.get_by_placeholder("who is deciding?").fill("ann")
    page.keyboard.press("Enter")
    settle(page)
    headers = card_headers(page)
    paths = [h.split(" · ")[0] for h in headers]
    assert all(re.fullmatch(r"\d/digit_\d{4}\.png", p) for p in paths), paths  # cards name the file
    found = [p for p in paths if p in misfiled]
    assert len(found) >= 4, (found, paths)  # the detector puts misfiled images first (7-8 of 12 here)
    for p in found:  # relabel each misfiled image to its true class, as the reviewer who recognises it
        card = page.locator('[class*="st-key-card_"]').filter(has_text=p)
        if f"suggested {misfiled[p]} (" not in card.inner_text():  # the box starts at the suggestion
            card.get_by_test_id("stSelectbox").click()
            page.keyboard.type(misfiled[p])
            page.keyboard.press("Enter")
            settle(page)
        card.get_by_role("button", name=re.compile("^Relabel")).click()  # "Relabel L" on the highlighted card
        settle(page)
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "truly mislabeled" not in main
    shot(page, "folder_review")

    with page.expect_download() as download:
        page.get_by_role("button", name="Folder changes (.csv)").click()
    changes = pd.read_csv(download.value.path(), dtype=str)
    assert sorted(changes["path"]) == sorted(found)
    assert (changes["decision"] == "relabel").all()
    assert dict(zip(changes["path"], changes["new_label"])) == {p: misfiled[p] for p in found}

    go_to(page, "Trim & retrain")
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "flipped label restored" not in main


def link(app_url, path, **settings) -> str:
    from urllib.parse import urlencode

    return f"{app_url}/{path}?" + urlencode({k: json.dumps(v) for k, v in settings.items()})


def test_a_bad_link_gives_one_message_and_the_defaults(page, app_url):
    """Issue 20, finding 3: a torchvision model without 'arch' showed a KeyError traceback on every page."""
    page.goto(link(app_url, "review", model={"kind": "torchvision"}))
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    settle(page)
    assert "'arch' is missing" in error_text(page) and page.get_by_test_id("stAlertContentError").count() == 1
    assert "cnn" in page.locator('[data-testid="stSidebar"]').inner_text()  # the default model
    shot(page, "bad_link")
    go_to(page, "Data & model")  # every page opens, the message is not repeated
    assert page.get_by_test_id("stAlertContentError").count() == 0


def test_class_names_are_shown_literally(page, app_url, data_root):
    """Issue 20, finding 9: class names (folder names) went into Markdown and Plotly unescaped: an image link made
    the browser fetch an outside address, and a class name became a link. A local server counts any fetch."""
    import http.server
    import shutil
    import threading

    hits = []

    class Count(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Count)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    evil = data_root / f"evil_{port}"
    shutil.copytree(data_root / "sample_data/digits_folder/1", evil / f"![one](http:127.0.0.1:{port})")  # a name has no '/'
    shutil.copytree(data_root / "sample_data/digits_folder/7", evil / f"<a href='http:127.0.0.1:{port}'>seven")
    try:
        page.goto(link(app_url, "data", data={"source": "imagefolder", "path": evil.name, "size": 16}))
        page.wait_for_selector('[data-testid="stAppViewContainer"]')
        settle(page)
        page.get_by_text(f"![one](http:127.0.0.1:{port})").first.wait_for()  # shown as typed
        page.wait_for_timeout(1000)
        outside = page.evaluate(f"() => [...document.querySelectorAll('img[src], a[href]')]"
                                f".map(e => e.src || e.href).filter(u => u.includes(':{port}'))")
        assert outside == [] and hits == [], (outside, hits)
        shot(page, "class_names_literally")
    finally:
        server.shutdown()
