"""The Markdown report as CI gets it: `--markdown FILE` and `$GITHUB_STEP_SUMMARY`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.cli import run_cli
from tests.helpers import GitRepo

EARLIER = "## An earlier step\n\nIts own summary, which stays.\n"
FAILING = 'echo "AssertionError: got 1 | wanted <2>" >&2; exit 3'


def write_plan(repo: GitRepo, bad: str = FAILING) -> None:
    """``smoke::ok`` passes; ``smoke::bad`` runs ``bad``."""
    path = repo.path / "plans" / "smoke.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[[test]]\nid = "ok"\nrun = "true"\n\n[[test]]\nid = "bad"\nrun = {bad!r}\n')


def session_of(repo: GitRepo, report: str) -> str:
    session: str = json.loads((repo.path / report).read_text())["session_id"]
    return session


@pytest.mark.slow
def test_each_run_appends_its_summary_to_the_step_summary(repo: GitRepo, tmp_path: Path) -> None:
    """With $GITHUB_STEP_SUMMARY set, each run appends its summary after what is there:
    the first one's failure with its error line and log, the second one's comparison."""
    summary = tmp_path / "step-summary.md"
    summary.write_text(EARLIER)
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    write_plan(repo)
    first = run_cli(["run", "plans", "--report-json", "1.json"], cwd=repo.path, env=env)
    assert first.returncode == 1, first.stderr
    write_plan(repo, bad="true")
    second = run_cli(["run", "plans", "--report-json", "2.json"], cwd=repo.path, env=env)
    assert second.returncode == 0, second.stderr

    text = summary.read_text()
    assert text.startswith(EARLIER + "\n## parallel-orch: FAILED\n")
    one, two = text.removeprefix(EARLIER).split("\n## parallel-orch: ")[1:]
    assert one.startswith("FAILED\n") and two.startswith("PASSED\n")
    assert f"Session `{session_of(repo, '1.json')}`" in one
    row = re.search(r"^\| `smoke::bad` \| failed \| 1 \| .+$", one, re.M)
    assert row is not None, one
    assert "AssertionError: got 1 \\| wanted &lt;2&gt;" in row[0]
    log = Path(row[0].split("|")[-2].strip().strip("`"))
    assert log.is_file() and "AssertionError" in log.read_text()
    assert f"### Compared with session `{session_of(repo, '1.json')}`" in two
    assert "**Fixed** (1): `smoke::bad`" in two
    assert "step summary: appended to $GITHUB_STEP_SUMMARY" in second.stderr


def test_no_step_summary_leaves_it_alone(repo: GitRepo, tmp_path: Path) -> None:
    """`--no-step-summary` writes nothing there, even with $GITHUB_STEP_SUMMARY set."""
    summary = tmp_path / "step-summary.md"
    summary.write_text(EARLIER)
    write_plan(repo)
    result = run_cli(
        ["run", "plans", "--no-step-summary"],
        cwd=repo.path,
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.returncode == 1, result.stderr
    assert summary.read_text() == EARLIER
    assert "step summary" not in result.stderr


def test_markdown_flag_writes_the_report_to_a_file(repo: GitRepo) -> None:
    """`--markdown FILE` writes the whole Markdown report there, and says where."""
    write_plan(repo)
    result = run_cli(
        ["run", "plans", "--markdown", "out.md", "--report-json", "r.json"], cwd=repo.path
    )
    assert result.returncode == 1, result.stderr
    text = (repo.path / "out.md").read_text()
    assert text.startswith("## parallel-orch: FAILED\n\n1 of 2 tests passed.\n")
    assert f"Session `{session_of(repo, 'r.json')}`, status `partial_success`" in text
    assert "### Failed tests (1)\n" in text
    assert "out.md" in result.stderr
