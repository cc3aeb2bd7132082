"""How long a review decision takes to show on its card.

Two measurements on the same data, model and gradients (prepared once in a throwaway cache):

1. server: the Review page's whole script rerun after a click, in Streamlit's AppTest (no
   browser, no network). In the real app a decision reruns only the gallery fragment, so
   this is an upper bound on the server time of a decision.
2. browser: Debian's Chromium (Playwright) on `streamlit run app.py`, the time from the
   click on a card's button to that card showing the decision: server time, the websocket
   round trip and the browser's drawing together.

    python benchmarks/review_latency.py [--data digits|mnist5k] [--decisions 10]

Prints one line per measurement: median and max over the decisions, in seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(home: Path, name: str) -> tuple[dict, dict]:
    """Train the model and extract gradients into the app's cache, as the Data and Gradient pages would."""
    from dashboard.scan import model_spec
    from dashboard.state import DEFAULT_DATA, VAL_FRACTION
    from ogdash import data
    from ogdash.core.cache import DiskCache
    from ogdash.pipeline import gradients, train_model

    dcfg = {**DEFAULT_DATA, "name": name}
    mcfg = {"kind": "cnn", "seed": 0, "epochs": 3}
    splits = data.BUILTIN[name](seed=0, noise_rate=dcfg["noise_rate"], noise_kind=dcfg["noise_kind"],
                                val_fraction=VAL_FRACTION)
    cache = DiskCache(home / "cache")
    model = train_model(model_spec(mcfg), splits.train, 0, cache)
    gradients(model, splits.train, cache=cache)
    gradients(model, splits.val, cache=cache)
    return dcfg, mcfg


def server_times(dcfg: dict, mcfg: dict, n: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params.update({"data": json.dumps(dcfg), "model": json.dumps(mcfg), "reviewer": "bench"})
    at.run()
    at.switch_page("views/review.py").run()
    times = []
    for k in range(n):
        button = [b for b in at.button if b.key and b.key.startswith("keep_")][k % 12]
        t = time.perf_counter()
        button.click().run()
        times.append(time.perf_counter() - t)
        assert not at.exception, at.exception
    return times


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    """The dashboard on a free loopback port over ``home`` (cache, decisions, data root): (process, url)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OGDASH_CACHE": str(home / "cache"), "OGDASH_DECISIONS": str(home / "decisions.sqlite"),
           "OGDASH_DATA_ROOT": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.address", "127.0.0.1", "--server.port", str(port),
                               "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
                              cwd=ROOT, env=env, stdout=open(home / "streamlit.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"streamlit did not start; see {home / 'streamlit.log'}")


def browser_times(home: Path, dcfg: dict, mcfg: dict, n: int) -> tuple[list[float], float]:
    from playwright.sync_api import sync_playwright

    server, url = start_server(home)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                         args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(f"{url}/review?data={quote(json.dumps(dcfg))}&model={quote(json.dumps(mcfg))}&reviewer=bench")
            page.get_by_text("samples match").wait_for()
            cards = page.locator('[class*="st-key-card_"]')
            cards.first.wait_for()
            times = []
            for k in range(n):
                card = cards.nth(k % 12)
                decision = ("keep", "remove", "unsure")[k % 3]
                t = time.perf_counter()
                card.get_by_role("button", name=decision.capitalize(), exact=True).click()
                card.get_by_text(f"decided: {decision}").wait_for()
                times.append(time.perf_counter() - t)
            t = time.perf_counter()
            page.get_by_role("button", name="Accept the suggested label on this page").click()
            page.get_by_text("decided: ").nth(11).wait_for()
            page.wait_for_function("() => [...document.querySelectorAll('[class*=\"st-key-card_\"]')]"
                                   ".every(c => /decided: (keep|relabel)/.test(c.innerText))")
            bulk = time.perf_counter() - t
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    return times, bulk


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="digits", choices=["digits", "mnist5k"])
    p.add_argument("--decisions", type=int, default=10)
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ogdash-bench-"))
    os.environ.update(OGDASH_CACHE=str(home / "cache"), OGDASH_DECISIONS=str(home / "decisions.sqlite"),
                      OGDASH_DATA_ROOT=str(home))
    try:
        dcfg, mcfg = prepare(home, args.data)
        print(f"review latency on {args.data}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        st = server_times(dcfg, mcfg, args.decisions)
        print(f"server, whole Review page rerun (AppTest): median {statistics.median(st):.3f} s, max {max(st):.3f} s")
        bt, bulk = browser_times(home, dcfg, mcfg, args.decisions)
        print(f"browser, click to the card showing it: median {statistics.median(bt):.3f} s, max {max(bt):.3f} s")
        print(f"browser, 'accept the suggested label' for 12 cards: {bulk:.3f} s")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
