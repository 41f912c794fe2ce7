"""report/index.html in headless Chromium: its size, the time until every chart is drawn (n loads: median and
range), console errors and requests outside file://, and a screenshot of the top of the page.

    python benchmarks/page_load.py [report/index.html] [--loads 5] [--screenshot docs/report_page.png]
"""
import argparse
import statistics
from pathlib import Path

from localbench.report import browser

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", nargs="?", default="report/index.html", type=Path)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--screenshot", type=Path, default=None)
    args = ap.parse_args()
    if not args.page.exists():
        raise SystemExit(f"{args.page} not found: run `dvc repro` (or `make repro`) first")
    if not browser.chromium():
        raise SystemExit("no chromium executable: `make install` installs Debian's chromium (as root)")
    times, errors, outside = [], set(), set()
    for i in range(args.loads):
        with browser.opened(args.page) as seen:
            times.append(seen.load_s)
            errors |= set(seen.errors)
            outside |= set(seen.outside())
            if i == 0 and args.screenshot:
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                seen.page.screenshot(path=str(args.screenshot))
                charts = seen.page.evaluate(browser.MARKS)
    print(f"page: {args.page} {args.page.stat().st_size / 2**20:.2f} MiB")
    print(f"load until every chart is drawn: median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}, n={len(times)})")
    print(f"console errors: {len(errors)}; requests outside file://: {len(outside)}")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}; charts drawn: {sum(c['marks'] > 0 for c in charts.values())}"
              f"/{len(charts)}")
