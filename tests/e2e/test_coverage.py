"""Coverage as a user gets it: a real project's suite split into plan tests, combined per commit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli import PROJECT_ROOT, cli_env, run_cli
from tests.helpers import GitRepo, MakeRepo

#: A small package and its tests: overlapping, with branches, a function no test
#: calls and a module no test imports.
PROJECT = {
    ".gitignore": "__pycache__/\n",
    "calc/__init__.py": "",
    "calc/ops.py": (
        "def add(a, b):\n    return a + b\n\n\n"
        "def div(a, b):\n    if b == 0:\n        raise ZeroDivisionError('b is zero')\n"
        "    return a / b\n\n\n"
        "def never():\n    x = 1\n    return x\n"
    ),
    "calc/text.py": (
        "def shout(s):\n    if not s:\n        return ''\n    return s.upper() + '!'\n\n\n"
        "def slug(s):\n    return '-'.join(s.lower().split())\n"
    ),
    "calc/stats.py": (
        "from calc.ops import add, div\n\n\n"
        "def mean(xs):\n    total = 0\n    for x in xs:\n        total = add(total, x)\n"
        "    return div(total, len(xs))\n\n\n"
        "def median(xs):\n    s = sorted(xs)\n    n = len(s)\n    if n % 2:\n"
        "        return s[n // 2]\n    return (s[n // 2 - 1] + s[n // 2]) / 2\n"
    ),
    "calc/unused.py": "def f():\n    return 1\n",
    "tests/test_ops.py": (
        "from calc.ops import add, div\n\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n\n"
        "def test_div():\n    assert div(4, 2) == 2\n"
    ),
    "tests/test_text.py": (
        "from calc.text import shout\n\n\ndef test_shout():\n    assert shout('a') == 'A!'\n"
    ),
    "tests/test_stats.py": (
        "from calc.stats import mean, median\n\n\n"
        "def test_mean():\n    assert mean([1, 2, 3]) == 2\n\n\n"
        "def test_median_odd():\n    assert median([3, 1, 2]) == 2\n"
    ),
}
#: The project's own coverage.py settings: branches, a source and what to exclude.
CONFIGURED = {
    "pyproject.toml": (
        '[tool.coverage.run]\nbranch = true\nsource = ["calc"]\n\n'
        '[tool.coverage.report]\nexclude_also = ["def never"]\n'
    ),
}
SPLIT = ("ops", "text", "stats")
PYTEST = "pytest -q -p no:cacheprovider"


def project_env() -> dict[str, str]:
    """The CLI's environment with no coverage.py settings of our own, this interpreter first on
    PATH (as `python`), and pytest without the plugins of this project's venv."""
    env = {k: v for k, v in cli_env().items() if not k.startswith("COVERAGE_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def split_plan(extra: str = "") -> str:
    tests = "".join(
        f'[[test]]\nid = "{name}"\n'
        f'run = "{sys.executable} -m coverage run {extra}-m {PYTEST} tests/test_{name}.py"\n'
        for name in SPLIT
    )
    return f"[defaults]\ncoverage = true\n\n{tests}"


def run_plans(repo: GitRepo, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """`parallel-orch run ARGS --report-json`, as a user runs it; its result and its report."""
    out = repo.path.parent / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "parallel_orch", "run", *args, "--report-json", str(out)],
        cwd=repo.path,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return result, json.loads(out.read_text()) if out.exists() else None


def serial_coverage(repo: GitRepo, *run_args: str) -> Any:
    """One serial `coverage run -m pytest tests` of the checkout, as `coverage json` has it."""
    data = repo.path.parent / "serial.coverage"
    env = {**project_env(), "COVERAGE_FILE": str(data)}
    for argv in (
        [sys.executable, "-m", "coverage", "run", *run_args, "-m", *PYTEST.split(), "tests"],
        [sys.executable, "-m", "coverage", "json", "-q", "-o", str(data) + ".json"],
    ):
        done = subprocess.run(argv, cwd=repo.path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(Path(str(data) + ".json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("config", [{}, CONFIGURED], ids=["no-config", "branch-source-exclude"])
def test_combined_coverage_equals_one_serial_run(
    make_repo: MakeRepo, config: dict[str, str]
) -> None:
    """A suite split over three plan tests in three worktrees, combined, reports the total (and
    every file's figure) that one serial `coverage run -m pytest` of the same tests does."""
    repo = make_repo(files={**PROJECT, **config})
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "cov.toml").write_text(split_plan())

    result, report = run_plans(repo, "plans", "-j", "3")

    assert result.returncode == 0, result.stdout + result.stderr
    worktrees = {a["worktree"] for t in report["completed_tests"] for a in t["attempts"]}
    assert len(worktrees) >= 2  # the paths to remap differ
    [combined] = report["coverage"]
    assert combined["error"] is None, combined
    assert (combined["sha"], combined["data_files"]) == (repo.head(), 3)
    serial = serial_coverage(repo)
    assert combined["percent"] == pytest.approx(serial["totals"]["percent_covered"], abs=0.1)
    assert (combined["statements"], combined["missing"]) == (
        serial["totals"]["num_statements"],
        serial["totals"]["missing_lines"],
    )
    files = {f["path"]: f["percent"] for f in combined["files"]}
    expected = {p: f["summary"]["percent_covered"] for p, f in serial["files"].items()}
    assert files == pytest.approx(expected, abs=0.01)
    assert f"coverage {combined['percent']:.1f}% at {repo.head()[:12]}" in result.stdout


@pytest.mark.slow
def test_min_coverage_gates_the_exit_code(make_repo: MakeRepo) -> None:
    """Every test passes, yet `--min-coverage` above the measured figure exits 1 with its
    reason, and `show --min-coverage` below it judges the stored session 0."""
    repo = make_repo(files=PROJECT)
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "cov.toml").write_text(split_plan())

    result, report = run_plans(repo, "plans", "-j", "3", "--min-coverage", "99")

    assert result.returncode == 1, result.stdout + result.stderr
    assert report["tests_passed"] == 3
    percent = report["coverage"][0]["percent"]
    assert 50 < percent < 99
    assert f"gate failed: min_coverage: coverage {percent:.1f}%" in result.stdout
    shown = run_cli(
        ["show", report["session_id"], "--min-coverage", "50"], cwd=repo.path, env=project_env()
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "gate ok: min_coverage" in shown.stdout


def readme_coverage_plan() -> str:
    section = (PROJECT_ROOT / "README.md").read_text().split("\n## Coverage\n", 1)[1]
    match = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's Coverage section has no plan"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_coverage_plan_runs_as_written(make_repo: MakeRepo) -> None:
    """The README's coverage plan, in the project it describes, reports the files under its
    sources (unimported ones too) with the total of one serial run."""
    repo = make_repo(files=PROJECT)
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "coverage.toml").write_text(readme_coverage_plan())

    result, report = run_plans(repo, "plans/coverage.toml", "--min-coverage", "60")

    assert result.returncode == 0, result.stdout + result.stderr
    [combined] = report["coverage"]
    assert combined["error"] is None, combined
    paths = {f["path"] for f in combined["files"]}
    assert "calc/unused.py" in paths
    assert all(p.startswith("calc/") for p in paths)
    serial = serial_coverage(repo, "--source=calc")
    assert combined["percent"] == pytest.approx(serial["totals"]["percent_covered"], abs=0.1)
