"""report/index.html opened in a real headless browser (Debian's chromium through Playwright): what the page's
test and benchmarks/page_load.py check. Nothing in the pipeline imports this module."""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

READY = "() => document.body.dataset.ready === 'yes'"     # set by the page's script once every chart is drawn
# per chart: the SVG marks drawn (paths, lines, rects, symbols) and the runtimes left in its data
MARKS = """() => Object.fromEntries(Object.entries(window.localbenchViews).map(([name, view]) => [name, {
  marks: document.querySelectorAll('#chart-' + name + ' svg .mark-line path, #chart-' + name + ' svg .mark-symbol path,'
    + ' #chart-' + name + ' svg .mark-rule line, #chart-' + name + ' svg .mark-rect path').length,
  runtimes: [...new Set(view.data('rows').map(r => r.runtime).filter(r => r))]}]))"""
VISIBLE_RUNTIMES = """() => [...document.querySelectorAll('#cells tbody tr')].filter(r => !r.hidden)
  .map(r => r.children[0].textContent.trim())"""


def chromium() -> str | None:
    """The system Chromium's executable, None where it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Opened:
    """A page as loaded: seconds until every chart was drawn, console errors, requests outside file:// and data:."""
    page: object
    load_s: float
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def outside(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file:", "data:", "about:"))]


@contextmanager
def opened(path: Path, width: int = 1400, height: int = 1000, timeout_s: float = 60):
    """The page at `path` loaded in headless Chromium (no sandbox: tests run as root), every request logged."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            out = Opened(page, 0.0)
            page.on("console", lambda m: out.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: out.errors.append(str(e)))
            page.on("request", lambda r: out.requests.append(r.url))
            start = time.perf_counter()
            page.goto(Path(path).resolve().as_uri())
            page.wait_for_function(READY, timeout=timeout_s * 1e3)
            out.load_s = time.perf_counter() - start
            yield out
        finally:
            browser.close()


def choose(page, key: str, value: str) -> None:
    """Pick `value` in the page's `key` filter and wait until every table and chart has followed."""
    page.select_option(f"#f-{key}", value)
    page.wait_for_function(f"() => (JSON.parse(document.body.dataset.filtered || '{{}}'))[{key!r}] === {value!r}")
