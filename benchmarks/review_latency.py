"""How long a review decision takes to show on its card, at 50,000 samples, with the review tools on.

The data: ``--n`` generated feature rows (default 50,000; 100 classes x 128 features, 10% of the labels flipped,
as ``benchmarks/ui_scale.py`` writes them), or ``--data digits`` (images). The model (an MLP with one 512-wide
hidden layer, ``--epochs`` passes) and its gradients are computed once, through the library's Scan, into a
throwaway cache the app then reads. Every card shows its neighbours from the given and the suggested class
(cosine over 50,000 x 512 features), the z-scores of its row against its class, its history, and the class-pair
filter pills are drawn.

1. server: the Review page's whole script rerun after a click, in Streamlit's AppTest (no browser, no network),
   for a decision with no filter, a decision with the given and suggested class filters of the top class pair
   on, and a page turn (neighbours of 12 new cards computed). In the real app a decision reruns only the gallery
   fragment, so these are upper bounds on a decision's server time.
2. browser: Debian's Chromium (Playwright) on `streamlit run app.py`, from the click on a card's button (or the
   key K) to that card showing the decision: server time, the websocket round trip and the browser's drawing.

    python benchmarks/review_latency.py [--n 50000] [--data rows|digits] [--decisions 12] [--epochs 2]

Prints one line per measurement: median and max, in seconds, with the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import re
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
sys.path.insert(0, str(ROOT / "benchmarks"))


def prepare(home: Path, data: str = "digits", n: int = 50_000, epochs: int = 2) -> tuple[dict, dict]:
    """The link's data and model settings, with the model trained and the gradients extracted into the app's cache
    (the Data and Gradient pages would do the same)."""
    from dashboard.scan import model_spec
    from dashboard.state import DEFAULT_DATA
    from ogdash.core.cache import DiskCache
    from ogdash.data.spec import DataSpec
    from ogdash.pipeline import Scan, ScanSettings

    if data == "digits":
        spec, mcfg = DEFAULT_DATA, {"kind": "cnn", "seed": 0, "epochs": epochs}
    else:
        from ui_scale import write_data

        train, test = write_data(home, n, 100, 128)
        spec = DataSpec("files", train=str(train), test=str(test))
        mcfg = {"kind": "mlp", "hidden": [512], "seed": 0, "epochs": epochs}
    started = time.perf_counter()
    Scan(spec, model_spec(mcfg), ScanSettings(), DiskCache(home / "cache")).gradients()
    print(f"prepared {data} ({n if data == 'rows' else 'digits'}): model and gradients in "
          f"{time.perf_counter() - started:.0f} s")
    link = spec.to_dict()
    if data == "rows":  # the link names the files under the data root, as a person's link does
        link = {**link, "train": Path(link["train"]).name, "test": Path(link["test"]).name}
    return link, mcfg


def _click(at, key: str) -> float:
    start = time.perf_counter()
    next(b for b in at.button if b.key == key).click().run()
    assert not at.exception, at.exception
    return time.perf_counter() - start


def server_times(data: dict, mcfg: dict, n: int) -> dict[str, list[float]]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params.update({"data": json.dumps(data), "model": json.dumps(mcfg), "reviewer": "bench"})
    at.run()
    start = time.perf_counter()
    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    out = {"open Review (first neighbours, pairs, z-scores)": [time.perf_counter() - start]}
    keys = lambda: [b.key for b in at.button if b.key and b.key.startswith("keep_")]  # noqa: E731
    out["decision"] = [_click(at, keys()[k % 12]) for k in range(n)]
    pair = at.get("button_group")[0]
    label = pair.options[0]
    code = _code(at, label)
    start = time.perf_counter()
    pair.set_value(code).run()
    out["class-pair filter on"] = [time.perf_counter() - start]
    out["decision, pair filter on"] = [_click(at, keys()[k % len(keys())]) for k in range(min(n, len(keys())))]
    at.multiselect(key="_suggested").set_value([]).run()
    at.multiselect(key="_classes").set_value([]).run()
    turns = []
    for _ in range(3):
        start = time.perf_counter()
        at.number_input(key="_gpage").increment().run()  # a page turn: 12 new cards' neighbours
        turns.append(time.perf_counter() - start)
    out["page turn (new neighbours)"] = turns
    return out


def _code(at, label: str) -> str:
    """The pill's value for its label "given → suggested · n"."""
    classes = at.session_state["data_spec"].load().train.classes
    given, rest = label.split(" → ")
    return f"{classes.index(given)}>{classes.index(rest.rsplit(' · ', 1)[0])}"


def start_server(home: Path, decisions: str = "decisions.sqlite") -> tuple[subprocess.Popen, str]:
    """The dashboard on a free loopback port over ``home`` (cache, data root) with the decision store ``decisions``
    there: (process, url)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OGDASH_CACHE": str(home / "cache"), "OGDASH_DECISIONS": str(home / decisions),
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


def browser_times(home: Path, data: dict, mcfg: dict, n: int) -> dict[str, list[float]]:
    from playwright.sync_api import expect, sync_playwright

    server, url = start_server(home, "browser.sqlite")  # no decision from the AppTest part on any card
    out = {"click": [], "key K": []}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                         args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            link = f"{url}/review?data={quote(json.dumps(data))}&model={quote(json.dumps(mcfg))}&reviewer=browser"
            page.goto(link)
            page.get_by_text("samples match").wait_for()
            cards = page.locator('[class*="st-key-card_"]')
            cards.first.wait_for()
            idle(page)
            for k in range(min(n, 12)):
                card = cards.nth(k)
                decision = ("keep", "remove", "unsure")[k % 3]
                t = time.perf_counter()
                card.get_by_role("button", name=re.compile(f"^{decision.capitalize()}")).click()
                card.get_by_text(f"decided: {decision}").wait_for()
                out["click"].append(time.perf_counter() - t)
                idle(page)
            page.goto(link + "&gpage=2")  # undecided cards, the first one highlighted
            cards.first.wait_for()
            idle(page)
            kept = page.get_by_text(re.compile(r"^decided: keep"))
            page.get_by_text("Keys act on this card").wait_for()
            page.wait_for_timeout(500)  # the keys are bound once the buttons are drawn, a moment after the run
            page.locator('[data-testid="stMain"] h1').first.click()
            for k in range(min(n, 12)):  # K on the highlighted card; the highlight moves to the next
                t = time.perf_counter()
                page.keyboard.press("k")
                expect(kept).to_have_count(k + 1, timeout=120_000)  # one more card shows "decided: keep"
                out["key K"].append(time.perf_counter() - t)
                idle(page)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    return out


def idle(page) -> None:
    """Wait until the app has finished its run (the next click should not land in the middle of one)."""
    page.wait_for_function("() => document.querySelector('[data-testid=\"stApp\"]')"
                           "?.getAttribute('data-test-script-state') === 'notRunning'")


def line(name: str, times: list[float]) -> str:
    if len(times) == 1:
        return f"  {name}: {times[0]:.3f} s"
    return (f"  {name}: median {statistics.median(times):.3f} s, max {max(times):.3f} s ({len(times)} runs: "
            + " ".join(f"{t:.2f}" for t in times) + ")")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="rows", choices=["rows", "digits"])
    p.add_argument("--n", type=int, default=50_000, help="generated feature rows (--data rows)")
    p.add_argument("--decisions", type=int, default=12)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--no-browser", action="store_true")
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ogdash-bench-"))
    os.environ.update(OGDASH_CACHE=str(home / "cache"), OGDASH_DECISIONS=str(home / "decisions.sqlite"),
                      OGDASH_DATA_ROOT=str(home))
    os.chdir(home)  # the link's relative file names resolve here, under the data root
    try:
        data, mcfg = prepare(home, args.data, args.n, args.epochs)
        print(f"review latency, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print("server (AppTest, whole Review page rerun):")
        for name, times in server_times(data, mcfg, args.decisions).items():
            print(line(name, times))
        if not args.no_browser:
            print(f"browser (Chromium, click or key to the card showing it), load {os.getloadavg()[0]:.1f}:")
            for name, times in browser_times(home, data, mcfg, args.decisions).items():
                print(line(name, times))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
