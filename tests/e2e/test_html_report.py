"""The HTML report of a real session, opened in headless Chromium as a person opens it.

The session: plans in a temp git repo run twice through the CLI (the second
time after a regression, so that it has a comparison), with worktree setup,
a flaky test that passes on its retry, a test that fails both attempts, a
timed-out one, JUnit cases and a quarantined test. Chromium is Debian's
package (``make browser`` installs it); Playwright drives it and downloads
nothing. Set ``HTML_REPORT_SCREENSHOT=docs/report.png`` to refresh the README's
screenshot from this session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.cli import PROJECT_ROOT, run_cli
from tests.helpers import make_git_repo

pytestmark = pytest.mark.slow

SCREENSHOT_ENV = "HTML_REPORT_SCREENSHOT"

APP_PLAN = """\
[defaults]
category = "unit"
setup = "sleep 0.4"
retries = 1

[[test]]
id = "fast"
run = "sleep 0.3"

[[test]]
id = "parser"
run = "sleep 1.2"

[[test]]
id = "flaky"
run = '''
if [ -e $FLAGS/$PARALLEL_ORCH_SESSION_ID ]; then sleep 0.5; exit 0; fi
touch $FLAGS/$PARALLEL_ORCH_SESSION_ID
echo 'AssertionError: first try fails' >&2; sleep 0.2; exit 1
'''
env = { FLAGS = "{flags}" }

[[test]]
id = "broken"
run = '''
echo 'checking the api'; sleep 0.4
if [ -e src/regression ]; then echo 'E   AssertionError: expected 200, got 500' >&2; exit 1; fi
'''
"""

INTEGRATION_PLAN = """\
[defaults]
category = "integration"

[[test]]
id = "api"
run = "sleep 0.9"

[[test]]
id = "db"
run = "sleep 0.6"

[[test]]
id = "hangs"
timeout = "1s"
run = "sleep 30"

[[test]]
id = "login"
junit = true
run = '''
sleep 0.4
cat > "$PARALLEL_ORCH_JUNIT" <<'XML'
<testsuite name="login">
  <testcase classname="tests.test_login" name="test_form" time="0.1"/>
  <testcase classname="tests.test_login" name="test_sso" time="0.2">
    <failure message="assert 401 == 200">Traceback</failure>
  </testcase>
</testsuite>
XML
exit 1
'''

[[test]]
id = "legacy"
quarantine = "known broken, see issue 123"
run = "echo 'legacy path is gone' >&2; exit 1"
"""


#: Renders an empty session's page with whichever parallel_orch is first on the path.
RENDER_EMPTY = """\
import parallel_orch
from parallel_orch.report.model import ParallelTestReport
zero = dict.fromkeys(["tests_passed", "tests_failed", "tests_timed_out", "tests_errored",
                      "tests_skipped", "tests_cancelled", "tests_flaky", "total_tests"], 0)
report = ParallelTestReport(session_id="s", status="no_tests", started_at=None, completed_at=None,
    duration_seconds=0, success_rate=0, num_workers=1, report_hash="0", **zero)
print(parallel_orch.__file__, len(report.render("html")))
"""


@dataclass(frozen=True)
class Session:
    html: Path
    report: dict[str, Any]

    def index(self, test_id: str) -> int:
        return [t["test_id"] for t in self.report["completed_tests"]].index(test_id)

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return [a for t in self.report["completed_tests"] for a in t["attempts"]]


@dataclass
class Opened:
    page: Page
    problems: list[str] = field(default_factory=list)  # console errors and page errors
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """Two CLI runs of the plans; the second (after a regression) writes the HTML page."""
    root = tmp_path_factory.mktemp("html")
    flags = root / "flags"
    flags.mkdir()
    repo = make_git_repo(
        root / "repo",
        {
            "src/app.py": "print('hi')\n",
            "plans/app.toml": APP_PLAN.replace("{flags}", str(flags)),
            "plans/integration.toml": INTEGRATION_PLAN,
        },
    )
    first = run_cli(["run", "plans", "-j", "3", "-q"], cwd=repo.path)
    assert first.returncode == 1, first.stdout + first.stderr
    repo.commit({"src/regression": ""}, "a regression")
    page, data = root / "report.html", root / "report.json"
    args = ["run", "plans", "-j", "3", "--html", str(page), "--report-json", str(data)]
    second = run_cli([*args, "--min-pass-rate", "0.9", "--gate", "unit=1.0"], cwd=repo.path)
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"wrote the HTML report: {page}" in second.stderr
    return Session(page, json.loads(data.read_text()))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, driven by Playwright (which downloads nothing)."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed: `make browser` (as root) installs Debian's package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


def open_page(browser: Browser, path: Path, *, script: bool = True) -> Opened:
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, java_script_enabled=script)
    opened = Opened(page)
    page.on("console", lambda m: opened.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: opened.problems.append(str(error)))
    page.on("request", lambda request: opened.requests.append(request.url))
    page.goto(path.as_uri())
    if script:
        page.wait_for_selector("#timeline svg")
    return opened


def bar(opened: Opened, session: Session, test_id: str, attempt: int) -> Any:
    selector = f'#timeline rect.bar[data-test="{session.index(test_id)}"][data-attempt="{attempt}"]'
    return opened.page.locator(selector)


def test_page_opens_without_errors_or_network_with_one_bar_per_attempt(
    session: Session, browser: Browser, tmp_path: Path
) -> None:
    """Chromium opens the page with no console or page error, fetches nothing but the file,
    and draws exactly one bar per attempt, each naming its test and attempt number."""
    opened = open_page(browser, session.html)
    assert opened.problems == []
    assert opened.requests == [session.html.as_uri()]
    bars = opened.page.locator("#timeline rect.bar")
    assert bars.count() == len(session.attempts) == 11  # 9 tests; 2 of them retried
    drawn = sorted(
        (int(b.get_attribute("data-test") or -1), int(b.get_attribute("data-attempt") or -1))
        for b in bars.all()
    )
    expected = sorted(
        (i, a["number"])
        for i, t in enumerate(session.report["completed_tests"])
        for a in t["attempts"]
    )
    assert drawn == expected
    bar(opened, session, "app::flaky", 2).hover(force=True)  # the shot shows a tooltip
    shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "report.png")
    charts = opened.page.locator("#durations").bounding_box()
    assert charts is not None
    height = charts["y"] + charts["height"] + 16  # down to the histogram: the page's top
    opened.page.screenshot(path=shot, clip={"x": 0, "y": 0, "width": 1280, "height": height})
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
    assert opened.problems == []


def test_hovering_a_bar_shows_its_test_attempt_and_duration(
    session: Session, browser: Browser
) -> None:
    """Hovering a retry's bar shows the test id, which attempt of how many, its status and
    duration; clicking it outlines every attempt of that test and links to its failure."""
    opened = open_page(browser, session.html)
    retry = bar(opened, session, "app::broken", 2)
    retry.hover(force=True)
    tip = opened.page.locator("#timeline-tip")
    assert tip.is_visible()
    text = tip.inner_text()
    assert "app::broken" in text and "attempt 2 of 2 · failed" in text
    [final] = [t for t in session.report["completed_tests"] if t["test_id"] == "app::broken"]
    assert f"duration {final['attempts'][1]['duration_seconds']:.3f} s" in text
    retry.click(force=True)
    assert opened.page.locator("#timeline rect.bar.picked").count() == 2
    link = opened.page.locator("#timeline-pick a")
    assert link.get_attribute("href") == f"#test-{session.index('app::broken')}"
    assert opened.problems == []


def test_setup_and_retries_are_visible(session: Session, browser: Browser) -> None:
    """Each worktree setup is its own hatched segment, retries are outlined and joined to the
    attempt before them, and a timed-out attempt has its own colour."""
    opened = open_page(browser, session.html)
    setups = [a for a in session.attempts if a["setup_seconds"]]
    assert setups  # the unit plan's setup ran once per worktree and commit
    assert opened.page.locator("#timeline rect.setup").count() == len(setups)
    retries = [a for a in session.attempts if a["number"] > 1]
    assert opened.page.locator("#timeline path.hop").count() == len(retries) == 2
    assert "retry" in (bar(opened, session, "app::flaky", 2).get_attribute("class") or "")
    assert bar(opened, session, "integration::hangs", 1).get_attribute("class") == "bar s-timed_out"


def test_summary_and_failures_read_with_script_off(session: Session, browser: Browser) -> None:
    """Without script the page still shows the verdict, gates, and each failure's first error
    line, full log path and log tail; it says the timeline needs script."""
    opened = open_page(browser, session.html, script=False)
    page = opened.page
    assert page.locator("#timeline rect").count() == 0
    assert "The timeline is drawn by a script" in page.inner_text("#timeline-section")
    [broken] = [t for t in session.report["completed_tests"] if t["test_id"] == "app::broken"]
    failure = page.locator(f"#test-{session.index('app::broken')}")
    assert "E   AssertionError: expected 200, got 500" in failure.inner_text()
    assert broken["attempts"][-1]["log_path"] in failure.inner_text()
    failure.locator("summary", has_text="Log tail").click()
    assert "checking the api" in failure.locator("pre.tail").inner_text()
    assert "unit tests: 3/4 passed (75.0%) < 100%" in page.inner_text("#gates")
    assert "app::broken" in page.inner_text("#comparison")  # a new failure since the first run
    assert "known broken, see issue 123" in page.inner_text("#quarantine")


def test_report_keeps_the_log_tail_of_final_attempts_only(session: Session) -> None:
    """Each test's final attempt carries its log tail in the report; earlier ones do not."""
    [broken] = [t for t in session.report["completed_tests"] if t["test_id"] == "app::broken"]
    first, final = broken["attempts"]
    assert first["output_tail"] == ""
    assert "E   AssertionError: expected 200, got 500" in final["output_tail"]


def test_an_installed_wheel_renders_the_page(tmp_path: Path) -> None:
    """A wheel of the project carries the template: the page renders from an install of it."""
    source = tmp_path / "source"
    shutil.copytree(
        PROJECT_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", ".parallel-orch", ".*_cache", "__pycache__"
        ),
    )
    python = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*python, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=120)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    install = [*python, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-c", RENDER_EMPTY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    where, size = out.stdout.split()
    assert Path(where).is_relative_to(site)
    assert int(size) > 10_000
