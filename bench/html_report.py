"""HTML report: rendering 20,000 tests, and 100 tests of 1,000 cases, each under 2 s.

Times ``report.render("html")`` (best of three) on synthetic reports (see
``tests/reports.py``: 2 % of tests fail twice with a 16 KiB log tail, 1 % are
flaky), prints the page's size (target under 10 MB) and, where Debian's
``chromium`` is installed, how long headless Chromium takes from navigation
to the drawn timeline. Quick: 5,000 tests.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence

from bench.common import Figure, bench_main, fresh_dir, note
from parallel_orch.report.model import ParallelTestReport
from tests.reports import synthetic_report

TARGET_SECONDS = 2.0
TARGET_MB = 10.0


def best_render(report: ParallelTestReport) -> tuple[float, str]:
    """The fastest of three renders, and the page."""
    times, page = [], ""
    for _ in range(3):
        started = time.perf_counter()
        page = report.render("html")
        times.append(time.perf_counter() - started)
    return min(times), page


def open_seconds(page: str, name: str) -> float | None:
    """Seconds from navigation to the drawn timeline in headless Chromium; None without it."""
    executable = shutil.which("chromium")
    if executable is None:
        note("chromium is not installed (`make browser`): open time not measured")
        return None
    from playwright.sync_api import sync_playwright  # a dev dependency, as the tests use it

    path = fresh_dir(f"html_report/{name}") / "report.html"
    path.write_text(page, encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        started = time.perf_counter()
        tab.goto(path.as_uri())
        tab.wait_for_selector("#timeline svg")
        seconds = time.perf_counter() - started
        browser.close()
    return seconds


def run(quick: bool) -> list[Figure]:
    figures = []
    sizes: Sequence[tuple[str, int, int]] = (
        (f"{5_000 if quick else 20_000:,} tests", 5_000 if quick else 20_000, 0),
        ("100 tests x 1,000 cases", 100, 1_000),
    )
    for label, tests, cases in sizes:
        report = synthetic_report(tests, cases=cases)
        seconds, page = best_render(report)
        size_mb = len(page.encode()) / 1e6
        note(f"{label}: rendered in {seconds:.3f} s, {size_mb:.2f} MB")
        figures.append(
            Figure(
                f"render {label}",
                seconds * 1000,
                "ms",
                f"< {TARGET_SECONDS * 1000:.0f} ms",
                seconds < TARGET_SECONDS,
            )
        )
        figures.append(
            Figure(f"size {label}", size_mb, "MB", f"< {TARGET_MB:.0f} MB", size_mb < TARGET_MB)
        )
        opened = open_seconds(page, f"{tests}x{cases}")
        if opened is not None:
            figures.append(Figure(f"open {label} in chromium", opened * 1000, "ms"))
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("html_report: 20,000 tests, and 100 x 1,000 cases, render in under 2 s", run, argv)


if __name__ == "__main__":
    main()
