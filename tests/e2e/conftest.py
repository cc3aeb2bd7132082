"""Real-browser fixtures: the app under `streamlit run`, driven by Playwright in Debian's Chromium."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).parent / "screenshots"
UPLOAD_LIMIT_MB = 0.01  # 10 KiB
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
            if not Path(CHROMIUM).exists():
                item.add_marker(pytest.mark.skip(reason="Debian's chromium is not installed (apt-get install chromium)"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """The app's data root: the sample data is copied in, as a user would put their own files there."""
    home = tmp_path_factory.mktemp("app")
    shutil.copytree(ROOT / "sample_data", home / "sample_data")
    return home


@pytest.fixture(scope="session")
def app_url(data_root):
    """Start the dashboard with its own cache, decision store and data root; stop it afterwards."""
    # A tiny upload limit, so the browser can prove an upload over it is refused (tests/e2e/test_browser.py).
    yield from serve_app(data_root, {"OGDASH_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB)})


def serve_app(home: Path, env: dict, args=(), port: int | None = None, host: str = "127.0.0.1"):
    """Run `streamlit run app.py` with its cache, decision store and data root under ``home``; yield its URL."""
    port = port or _free_port()
    env = {**os.environ, "OGDASH_CACHE": str(home / "cache"), "OGDASH_DECISIONS": str(home / "decisions.sqlite"),
           "OGDASH_DATA_ROOT": str(home), "PYTHONUNBUFFERED": "1", **env}
    log = open(home / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--browser.gatherUsageStats", "false",
                             # files edited while the suite runs must not put a "rerun?" prompt on the page
                             "--server.fileWatcherType", "none", "--server.runOnSave", "false", *args],
                            cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://{host}:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError(f"streamlit did not start; see {home / 'streamlit.log'}")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep


@pytest.fixture
def page(browser, request):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)  # a shared machine can be slow; the checks stay the same
    yield pg
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        shot(pg, f"FAILED_{request.node.name}")
    ctx.close()


SCRIPT_DONE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app !== null && app.getAttribute('data-test-connection-state') === 'CONNECTED'
        && app.getAttribute('data-test-script-state') === 'notRunning'
        && !document.querySelector('[data-testid="stStatusWidget"]');
}"""


def settle(page, timeout=240_000):
    """Wait until the app is connected and has finished running the script, then fail on any exception box.

    ``data-test-script-state`` is 'initial' until the first run and 'running' during one; the
    status widget (a "Stop" button) shows while the script runs. Generous timeouts: the
    machine may be shared.
    """
    page.wait_for_timeout(500)
    page.wait_for_function(SCRIPT_DONE, timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_function(SCRIPT_DONE, timeout=timeout)  # a rerun that started late
    assert_no_exception(page)


def assert_no_exception(page):
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def shot(page, name):
    """Screenshot the whole page. Streamlit scrolls inside its main container, not the document, so a
    full-page screenshot alone shows one viewport: the viewport grows to the content for the shot."""
    SHOTS.mkdir(exist_ok=True)
    size = page.viewport_size
    height = page.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                           " return m ? m.scrollHeight : 0; }")
    if size and height > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 12_000)})
        page.wait_for_timeout(400)  # charts re-layout
    try:
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    finally:
        if size:
            page.set_viewport_size(size)
