"""The dashboard at scale: each step of a session, timed in a real browser, on generated data.

    python benchmarks/ui_scale.py [--sizes 5000,50000] [--classes 100] [--features 128] [--epochs 0]
    python benchmarks/ui_scale.py --sizes 50000,1000000 [--browser-sizes 50000]   # the README's million column

For each size it writes ``train_N.npz`` (10% of the labels flipped, ``y_true`` kept) and ``test_N.npz``
under a temporary data root, starts ``streamlit run app.py`` on a free loopback port with a temporary
cache and decision store (``review_latency.start_server``), and drives Debian's Chromium (Playwright)
through: load the files on Data & model, train (the default MLP), extract gradients (which includes the
first score of the default detector and the PCA layout), change the detector, change the budget, change
the layout to UMAP and back to PCA, open Review, take one decision.

A step is done when the page shows what the step should show and Streamlit is idle (the
``stStatusWidget`` is gone, ``tests/e2e/conftest.py``), and the browser has painted a frame. The
"server" column is the time of the script runs the step caused, as the app logs them
(``OGDASH_RUN_TIMES``); a decision reruns only the gallery fragment, which the app does not log, so
its server time is measured in Streamlit's AppTest instead (``server_times``: a whole Review page rerun,
an upper bound). Screenshots of the gradient page go under ``--shots``. A size left out of ``--browser-sizes`` is
timed in AppTest alone: the Data page's Train button, then Extract gradients, then each control, with the peak
memory of the process.

On 2 shared cores (load average 4-8), Chromium headless with software WebGL, 100 classes x 128 features,
Epochs field 5 (seconds, browser / server):

    step                               5,000           50,000
    load the files                     1.8 / 0.4       2.0 / 0.7
    train (5 epochs)                  14.6 / 4.9     133.5 / 119.9
    extract (+ first scores, PCA)     12.9 / 11.0     65.2 / 61.0
    detector change (first scores)     2.2 / 0.2       4.0 / 0.5
    budget change                      2.2 / 0.2       3.7 / 0.8
    layout -> UMAP (computed)         64.0 / 62.2     93.9 / 90.4   (50k: fitted on 10,000, the rest placed)
    layout -> PCA / UMAP (memoised)    1.9 / 0.05      3.6 / 0.3
    open Review                        2.5 / 0.3       2.3 / 0.4
    one decision                       0.6 / -         0.9 / -
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))


def write_data(home: Path, n: int, classes: int, features: int, noise: float = 0.1, seed: int = 0) -> tuple[Path, Path]:
    """``train_N.npz`` (n samples, a ``noise`` share of the labels flipped, ``y_true`` kept) and ``test_N.npz``
    (n // 5, clean) under ``home``: Gaussian classes around random centres, in the arrays ``ogdash.data.files``
    reads (``X``, ``y``, ``y_true``, ``classes``)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, features)).astype(np.float32)
    paths = []
    for name, m, rate in (("train", n, noise), ("test", max(n // 5, classes), 0.0)):
        y_true = rng.integers(0, classes, m)
        X = centres[y_true] + rng.normal(0, 0.8, (m, features)).astype(np.float32)
        y = y_true.copy()
        flip = rng.random(m) < rate
        y[flip] = (y[flip] + rng.integers(1, classes, int(flip.sum()))) % classes
        path = home / f"{name}_{n}.npz"
        np.savez(path, X=X, y=y, y_true=y_true, classes=np.array([f"class {c}" for c in range(classes)]))
        paths.append(path)
    return paths[0], paths[1]


# ---------------------------------------------------------------- the browser

class Session:
    """One browser tab on the app, timing steps by the app's own log of script runs."""

    def __init__(self, page, log: Path):
        self.page, self.log, self.rows = page, log, []

    def runs(self) -> list[float]:
        return [float(m) for m in re.findall(r"^ogdash-run \S+ ([\d.]+)$", self.log.read_text(), re.M)]

    def idle(self, timeout: float, before: int | None = None) -> dict:
        """Wait until the script run the last action caused has been logged (when ``before`` is the log's count
        before it), the browser shows Streamlit idle, no further run started, and a frame is painted. Returns when
        (perf_counter) the last run was logged, the page went idle and the frame was painted."""
        from conftest import SCRIPT_DONE, assert_no_exception

        deadline = time.perf_counter() + timeout
        while before is not None and len(self.runs()) <= before:
            if time.perf_counter() > deadline:
                raise TimeoutError("the app logged no script run")
            time.sleep(0.02)
        marks = {"logged": time.perf_counter()}
        while True:
            count = len(self.runs())
            self.page.wait_for_function(SCRIPT_DONE, timeout=max(1.0, deadline - time.perf_counter()) * 1000,
                                        polling=50)
            marks["idle"] = time.perf_counter()
            self.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            marks["painted"] = time.perf_counter()
            if len(self.runs()) == count:  # no rerun (st.rerun, a widget's echo) ended meanwhile
                break
            marks["logged"] = time.perf_counter()
        assert_no_exception(self.page)
        return marks

    def do(self, action, timeout: float = 300) -> None:
        """An untimed action that makes the app rerun (typing into a field, then leaving it)."""
        before = len(self.runs())
        action()
        self.idle(timeout, before)

    def step(self, name: str, action, done=None, timeout: float = 1800, fragment: bool = False) -> float:
        """Time ``action()`` until ``done()`` (a wait for what the step shows) and Streamlit is idle. A fragment's
        rerun (a decision on a card) is not logged: its step waits for ``done`` alone."""
        before = len(self.runs())
        t = time.perf_counter()
        action()
        marks = self.idle(timeout, None if fragment else before)
        if done is not None:
            done()
        took = time.perf_counter() - t
        server = self.runs()[before:]
        self.rows.append((name, took, sum(server) if server else None))
        print(f"  {name}: {took:.2f} s (server {sum(server):.2f} s in {len(server)} run(s); from the click: last "
              f"run logged {marks['logged'] - t:.2f}, page idle {marks['idle'] - t:.2f}, painted "
              f"{marks['painted'] - t:.2f})",
              flush=True)
        return took


def shot(page, folder: Path, name: str) -> None:
    """The whole page (``tests/e2e/conftest.py``'s ``shot``: the viewport grows to the content) into ``folder``."""
    import conftest

    conftest.SHOTS = folder
    conftest.shot(page, name)


def browser_run(home: Path, url: str, train: Path, test: Path, epochs: int, shots: Path | None) -> Session:
    from conftest import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(1_800_000)
        s = Session(page, home / "streamlit.log")
        n = train.stem.split("_")[-1]
        page.goto(f"{url}/data")
        s.idle(120, 0)
        page.get_by_role("tab", name="Your .npz / .csv").click()

        def paths():
            page.get_by_label("…or training path").fill(train.name)
            page.get_by_label("…or test path").fill(test.name)
            page.keyboard.press("Tab")
        s.do(paths)
        s.step("load the files (Data & model)", lambda: page.get_by_role("button", name="Use these files").click(),
               lambda: page.get_by_text(f"files: {train.name}").first.wait_for())
        field = page.get_by_label("Epochs (0 = default)")
        if epochs:
            s.do(lambda: (field.fill(str(epochs)), page.keyboard.press("Tab")))
        s.step("train (default MLP, Epochs field as set)",
               lambda: page.get_by_role("button", name="Train model").click(),
               lambda: page.get_by_test_id("stMetric").filter(has_text="Test accuracy").wait_for())
        nav = page.locator('[data-testid="stSidebarNav"]')
        s.step("open Gradient space", lambda: nav.get_by_role("link", name="Gradient space").click(),
               lambda: page.get_by_role("button", name="Extract gradients").wait_for())
        plot = page.locator(".st-key-gradient_plot .nsewdrag").first
        s.step("extract gradients (+ first scores, PCA, plot)",
               lambda: page.get_by_role("button", name="Extract gradients").click(), plot.wait_for)
        if shots:
            shot(page, shots, f"gradient_{n}_pca")

        def choose(box: str, option):
            page.get_by_test_id("stSelectbox").filter(has_text=box).click()
            page.get_by_role("option", name=option).click()

        s.step("detector → L2 norm (first scores)", lambda: choose("Detector", re.compile("^L2 norm")), plot.wait_for)

        def nudge():
            page.get_by_role("slider").focus()
            page.keyboard.press("ArrowRight")
        s.step("budget 5% → 6%", nudge, lambda: page.get_by_text(re.compile(r"budget cut: top \d+")).first.wait_for())
        s.step("layout → UMAP (first: computed)", lambda: choose("Layout", re.compile("^UMAP")), plot.wait_for)
        if shots:
            shot(page, shots, f"gradient_{n}_umap")
        s.step("layout → PCA (memoised)", lambda: choose("Layout", "PCA"), plot.wait_for)
        s.step("layout → UMAP (memoised)", lambda: choose("Layout", re.compile("^UMAP")), plot.wait_for)
        s.step("open Review", lambda: nav.get_by_role("link", name="Review").click(),
               lambda: page.locator('[class*="st-key-card_"]').first.wait_for())
        s.do(lambda: (page.get_by_placeholder("who is deciding?").fill("bench"), page.keyboard.press("Tab")))
        card = page.locator('[class*="st-key-card_"]').first
        s.step("one decision (Keep on the first card)",
               lambda: card.get_by_role("button", name=re.compile("^Keep")).click(),  # the focused card's says "K"
               lambda: card.get_by_text("decided: keep").wait_for(), fragment=True)
        browser.close()
    return s


# ---------------------------------------------------------------- the server alone

def _peak_gb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20


def server_times(train: Path, test: Path, epochs: int, kind: str = "mlp", reps: int = 3) -> dict[str, float]:
    """Median whole-script time of each control change after extraction, in Streamlit's AppTest (no browser),
    in this process (its memo starts empty; the disk cache the browser run filled is used, or, without a
    browser run, the first run of the Gradient space page trains and extracts: timed apart). A control's first
    value that computes something (a detector's first scores, UMAP's first layout) is timed apart too."""
    from streamlit.testing.v1 import AppTest

    from ogdash.data import DataSpec

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=3600)
    at.session_state["data_spec"] = DataSpec("files", train=str(train), test=str(test))
    at.session_state["model_config"] = {"kind": kind, "seed": 0, "epochs": epochs or None}
    out = {}
    t = time.perf_counter()
    at.run()
    at.switch_page("views/data.py").run()
    train_button = next(b for b in at.button if b.label in ("Train model", "Load model"))
    train_button.click().run()  # trains unless the browser run left the model in the disk cache
    out["load the files and train (or load) the model"] = time.perf_counter() - t
    t = time.perf_counter()
    at.switch_page("views/gradient_space.py").run()
    extract = next(b for b in at.button if b.label == "Extract gradients")
    if not extract.disabled:
        extract.click().run()
    assert not at.exception, at.exception
    out["extract gradients (+ held-out probabilities, first scores, PCA)"] = time.perf_counter() - t
    print("  server: " + ", ".join(f"{k} {v:.1f} s" for k, v in out.items()) + f"; peak {_peak_gb():.2f} GB",
          flush=True)

    def timed(name, actions):
        ts = []
        for act in actions:
            t = time.perf_counter()
            act()
            ts.append(time.perf_counter() - t)
            assert not at.exception, at.exception
        out[name] = statistics.median(ts)
        print(f"  server: {name}: {out[name]:.3f} s ({', '.join(f'{v:.2f}' for v in ts)})", flush=True)

    timed("rerun, nothing changed", [at.run] * reps)
    timed("detector → L2 (first: scores computed)", [lambda: at.selectbox(key="_detector").set_value("l2").run()])
    timed("detector change (scores memoised)", [lambda d=d: at.selectbox(key="_detector").set_value(d).run()
                                                for d in ("heldout_margin", "l2", "heldout_margin")])
    timed("budget change", [lambda b=b: at.slider(key="_budget").set_value(b).run() for b in (0.1, 0.05, 0.2)])
    timed("layout → UMAP (first: computed)", [lambda: at.selectbox(key="_layout").set_value("umap").run()])
    timed("layout change (computed before)", [lambda m=m: at.selectbox(key="_layout").set_value(m).run()
                                              for m in ("pca", "umap", "pca")])
    timed("open Review", [lambda: at.switch_page("views/review.py").run()])
    at.text_input(key="_reviewer").set_value("bench").run()
    timed("Review: next page", [lambda p=p: at.number_input(key="_gpage").set_value(p).run() for p in (2, 3, 4)])
    timed("Review: status filter", [lambda s=s: at.selectbox(key="_status").set_value(s).run()
                                    for s in ("undecided", "all", "undecided")])

    def keep():
        next(b for b in at.button if b.key and b.key.startswith("keep_")).click().run()
    timed("Review: one decision (whole page)", [keep] * reps)
    out["peak memory of the process (GB)"] = _peak_gb()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="5000,50000", help="training-set sizes, comma-separated")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--epochs", type=int, default=0,
                   help="typed into the page's Epochs field (default 0: the page's default budget)")
    p.add_argument("--shots", default="/tmp/ui-shots", help="folder for screenshots of the gradient page ('' for none)")
    p.add_argument("--no-server", action="store_true", help="skip the AppTest server timings")
    p.add_argument("--browser-sizes", default=None,
                   help="sizes driven in the browser too (default: every size; '' for none: server times only)")
    p.add_argument("--model", default="mlp", choices=("mlp", "logreg"), help="server times: the model trained")
    args = p.parse_args()
    from dashboard.plots import PLOT_CAP
    from ogdash.engine.layout2d import UMAP_FIT_MAX
    from ogdash.models.zoo import ModelSpec
    from review_latency import start_server

    shots = Path(args.shots) if args.shots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    browser_sizes = sizes if args.browser_sizes is None else [int(s) for s in args.browser_sizes.split(",") if s]
    print(f"ui_scale: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.classes} classes, "
          f"{args.features} features; plot cap {PLOT_CAP:,} points, UMAP fitted on at most {UMAP_FIT_MAX:,}")
    steps = {n: ModelSpec("mlp").total_steps(n) for n in sizes}
    print("training: " + (f"the Epochs field is set to {args.epochs}" if args.epochs else
                          "the page's default budget, " + ", ".join(f"{s:,} steps at {n:,}" for n, s in steps.items())))
    table, server = {}, {}
    for n in sizes:
        home = Path(tempfile.mkdtemp(prefix=f"ogdash-ui-{n}-"))
        os.environ.update(OGDASH_CACHE=str(home / "cache"), OGDASH_DECISIONS=str(home / "decisions.sqlite"),
                          OGDASH_DATA_ROOT=str(home), OGDASH_RUN_TIMES="1")
        try:
            train, test = write_data(home, n, args.classes, args.features)
            print(f"\n{n:,} samples ({train.stat().st_size / 2**20:.0f} MB .npz), load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            if n in browser_sizes:
                proc, url = start_server(home)
                try:
                    table[n] = browser_run(home, url, train, test, args.epochs, shots).rows
                finally:
                    proc.terminate()
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            if not args.no_server:
                os.environ.pop("OGDASH_RUN_TIMES")
                server[n] = server_times(train, test, args.epochs, args.model if n not in browser_sizes else "mlp")
        finally:
            shutil.rmtree(home, ignore_errors=True)

    if table:
        print("\n### Browser: each step until the page shows it and Streamlit is idle (seconds; server = script runs)\n")
        names = [name for name, _, _ in next(iter(table.values()))]
        print("| step | " + " | ".join(f"{n:,}: browser | {n:,}: server" for n in table) + " |")
        print("|---|" + "---:|---:|" * len(table))
        for i, name in enumerate(names):
            cells = []
            for n in table:
                _, took, srv = table[n][i]
                cells += [f"{took:.2f}", "–" if srv is None else f"{srv:.2f}"]
            print(f"| {name} | " + " | ".join(cells) + " |")
    if server:
        print("\n### Server only (AppTest, whole script, median of 3; memo empty at start, disk cache warm)\n")
        print("| control change | " + " | ".join(f"{n:,}" for n in server) + " |")
        print("|---|" + "---:|" * len(server))
        for name in next(iter(server.values())):
            print(f"| {name} | " + " | ".join(f"{server[n].get(name, float('nan')):.3f}" for n in server) + " |")
    print(json.dumps({"browser": {str(n): table[n] for n in table}, "server": {str(n): server[n] for n in server}}))


if __name__ == "__main__":
    main()
