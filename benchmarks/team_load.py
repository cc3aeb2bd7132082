"""Many reviewers at once: N browser sessions each make D decisions on the same data and the same cards.

Not a timed test: it prints what it measured.

    python benchmarks/team_load.py [--contexts 8] [--decisions 100]

One `streamlit run app.py` (sign-in off; each session's reviewer name comes from its address) on digits
with a CNN and its gradients prepared once in a throwaway cache; one Chromium with N contexts (separate
sessions, as N people) driven concurrently. Each session clicks Keep / Remove / Unsure on the 12 cards of
the first page, round after round, and waits for its own decision to show on the card.

Prints: decisions stored (must be N x D) and per reviewer, p50/p95/max latency from a click to the card
showing it, and the server's CPU use while the sessions sit idle afterwards and after they close.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DECISIONS = ("keep", "remove", "unsure")


async def reviewer(browser, url: str, me: str, n: int, times: list[float]):
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await ctx.new_page()
    page.set_default_timeout(600_000)
    await page.goto(f"{url}&reviewer={me}")
    cards = page.locator('[class*="st-key-card_"]')
    await cards.nth(11).wait_for()
    for k in range(n):
        card, decision = cards.nth(k % 12), DECISIONS[(k // 12) % 3]  # a card's next decision differs from its last
        shown = card.get_by_text(re.compile(rf"decided: {decision} \({me}\)|(^|· ){me}: {decision}( ·|$)"))
        t = time.perf_counter()
        await card.get_by_role("button", name=decision.capitalize(), exact=True).click()
        await shown.first.wait_for()
        times.append(time.perf_counter() - t)
    return ctx


def cpu_seconds(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        c = p.cpu_times()
        total += c.user + c.system
    return total


async def idle_cpu(pid: int, seconds: float) -> float:
    start = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds(pid) - start) / seconds


async def drive(url: str, pid: int, contexts: int, decisions: int) -> tuple[dict, float, float]:
    from playwright.async_api import async_playwright

    times: dict[str, list[float]] = {f"reviewer{i + 1}": [] for i in range(contexts)}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                           args=["--headless", "--no-sandbox", "--disable-gpu"])
        ctxs = await asyncio.gather(*(reviewer(browser, url, me, decisions, t) for me, t in times.items()))
        idle_open = await idle_cpu(pid, 20)  # every session still connected, nobody clicking
        for ctx in ctxs:
            await ctx.close()
        await browser.close()
    idle_closed = await idle_cpu(pid, 20)
    return times, idle_open, idle_closed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contexts", type=int, default=8)
    p.add_argument("--decisions", type=int, default=100)
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ogdash-team-load-"))
    os.environ.update(OGDASH_CACHE=str(home / "cache"), OGDASH_DECISIONS=str(home / "decisions.sqlite"),
                      OGDASH_DATA_ROOT=str(home))
    from review_latency import prepare, start_server

    server = None
    try:
        dcfg, mcfg = prepare(home, "digits")
        server, url = start_server(home)
        review = f"{url}/review?data={quote(json.dumps(dcfg))}&model={quote(json.dumps(mcfg))}"
        t0 = time.perf_counter()
        times, idle_open, idle_closed = asyncio.run(drive(review, server.pid, args.contexts, args.decisions))
        wall = time.perf_counter() - t0
        with sqlite3.connect(home / "decisions.sqlite") as con:
            stored = dict(con.execute("SELECT reviewer, COUNT(*) FROM decisions GROUP BY reviewer").fetchall())
        every = sorted(t for ts in times.values() for t in ts)
        expected = args.contexts * args.decisions
        print(f"team load: {args.contexts} sessions x {args.decisions} decisions on digits, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}, {wall:.0f} s in all")
        print(f"decisions stored: {sum(stored.values())} of {expected} "
              f"({'all' if sum(stored.values()) == expected else 'MISSING SOME'}); per reviewer {stored}")
        print(f"latency, click to the card showing it: p50 {statistics.median(every):.2f} s, "
              f"p95 {every[int(0.95 * (len(every) - 1))]:.2f} s, max {every[-1]:.2f} s")
        print(f"server CPU while idle: {idle_open:.1f}% of a core with the {args.contexts} sessions open, "
              f"{idle_closed:.1f}% after they closed (20 s each)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
