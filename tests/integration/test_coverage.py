"""Coverage through the Python API: who gets COVERAGE_FILE, what is combined, what fails softly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from parallel_orch import ParallelTestConfig, SessionStatus, TestRequest
from parallel_orch.report import coverage
from tests.helpers import GitRepo, MakeConfig, orchestrator

#: A script that imports part of a package; which part depends on the attempt.
FILES = {
    "main.py": (
        "import os, sys\nimport pkg.a\n\n"
        "if os.environ['PARALLEL_ORCH_ATTEMPT'] == '1':\n"
        "    pkg.a.first()\n    sys.exit(1)\n"
        "pkg.a.second()\n"
    ),
    "pkg/__init__.py": "",
    "pkg/a.py": "def first():\n    return 1\n\n\ndef second():\n    return 2\n",
    "pkg/b.py": "def never():\n    return 3\n",
}
COVERAGE_RUN = f"{sys.executable} -m coverage run"


@pytest.fixture
def coverage_repo(repo: GitRepo) -> GitRepo:
    repo.commit(FILES, "a package")
    return repo


@pytest.fixture(autouse=True)
def no_coverage_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attempts inherit our environment: none of coverage.py's settings in it."""
    for key in ("COVERAGE_FILE", "COVERAGE_RCFILE", "COVERAGE_PROCESS_START"):
        monkeypatch.delenv(key, raising=False)


def read_env(path: Path) -> dict[str, str]:
    lines = path.read_bytes().split(b"\0")
    return dict(line.decode().split("=", 1) for line in lines if b"=" in line)


async def test_only_requests_with_coverage_get_a_coverage_file_outside_the_worktree(
    config: ParallelTestConfig, outside: Path
) -> None:
    """A request with coverage on gets its own COVERAGE_FILE in the state dir (and, with a list,
    PARALLEL_ORCH_COVERAGE_SOURCE); one without gets neither."""
    requests = [
        TestRequest(id=name, command=f"env -0 > {outside}/{name}", coverage=wanted)
        for name, wanted in (("on", ("src", "lib")), ("off", False))
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)

    on, off = read_env(outside / "on"), read_env(outside / "off")
    assert "COVERAGE_FILE" not in off and coverage.SOURCE_ENV not in off
    data = Path(on["COVERAGE_FILE"])
    assert data.is_relative_to(config.resolved_state_dir / "coverage" / report.session_id)
    assert not data.is_relative_to(on["PARALLEL_ORCH_WORKTREE"])
    assert data.parent.is_dir()  # ready for coverage.py to write into
    worktree = on["PARALLEL_ORCH_WORKTREE"]
    assert on[coverage.SOURCE_ENV] == f"{worktree}/src,{worktree}/lib"
    [combined] = report.coverage  # the request that asked, and wrote nothing
    assert combined.error is not None and "no attempt wrote coverage data" in combined.error


async def test_every_attempt_counts_and_a_source_list_restricts_the_report(
    coverage_repo: GitRepo, make_config: MakeConfig
) -> None:
    """Lines a failed attempt ran count beside its retry's; with `coverage = ["pkg"]` the report
    holds pkg's files only, and `--source=$PARALLEL_ORCH_COVERAGE_SOURCE` adds unimported ones."""
    requests = [
        TestRequest(id="plain", command=f"{COVERAGE_RUN} main.py", coverage=("pkg",), retries=1),
        TestRequest(
            id="source",
            command=f"{COVERAGE_RUN} --source=${coverage.SOURCE_ENV} main.py",
            coverage=("pkg",),
            retries=1,
        ),
    ]
    async with orchestrator(make_config()) as orch:
        report = await orch.run_tests(requests)

    assert report.status == SessionStatus.COMPLETE
    assert all(t.flaky for t in report.completed_tests)
    [combined] = report.coverage
    assert combined.error is None, combined
    assert combined.data_files == 4
    files = {f.path: (f.statements, f.missing) for f in combined.files}
    # first() ran only in the failed attempts, second() only in the retries: both count
    assert files == {"pkg/__init__.py": (0, 0), "pkg/a.py": (4, 0), "pkg/b.py": (2, 2)}
    assert (combined.statements, combined.missing) == (6, 2)
    assert combined.percent == pytest.approx(100 * 4 / 6, abs=0.01)


async def test_unusable_or_missing_data_is_the_commits_error_never_a_failed_session(
    coverage_repo: GitRepo, make_config: MakeConfig
) -> None:
    """Garbage in COVERAGE_FILE at one commit and no data at another: each commit's coverage
    says why, the session is complete, and the terminal report shows both."""
    base = coverage_repo.head()
    other = coverage_repo.branch("other", {"pkg/c.py": "X = 1\n"})
    requests = [
        TestRequest(id="junk", command='echo junk > "$COVERAGE_FILE"', coverage=True),
        TestRequest(id="none", command="true", ref="other", coverage=True),
    ]
    async with orchestrator(make_config()) as orch:
        report = await orch.run_tests(requests)

    assert report.status == SessionStatus.COMPLETE
    by_sha = {c.sha: c for c in report.coverage}
    assert by_sha.keys() == {base, other}
    junk = by_sha[base]
    assert junk.error is not None and junk.data_files == 1
    assert any("Couldn't use data file" in w for w in junk.warnings), junk
    none = by_sha[other].error
    assert none is not None and "no attempt wrote coverage data" in none
    text = report.render("text")
    assert f"coverage at {base[:12]}: none:" in text
    assert f"coverage at {other[:12]}: none: no attempt wrote" in text


async def test_combining_is_bounded_in_time(
    coverage_repo: GitRepo, make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A combining that outlives its bound is stopped and reported as such; the session ends."""
    monkeypatch.setattr(coverage, "COMBINE_TIMEOUT_SECONDS", 0.001)
    request = TestRequest(id="ran", command=f"{COVERAGE_RUN} main.py", coverage=True, retries=1)
    async with orchestrator(make_config()) as orch:
        report = await orch.run_tests([request])

    assert report.status == SessionStatus.COMPLETE
    [combined] = report.coverage
    assert combined.error == "not combined within 0.001s"
    assert combined.data_files == 2


async def test_a_session_stopped_before_its_end_has_no_coverage(
    coverage_repo: GitRepo, make_config: MakeConfig
) -> None:
    """A session cancelled by `max_failures` ends without combining what its attempts wrote."""
    request = TestRequest(id="fails", command=f"{COVERAGE_RUN} main.py", coverage=True)
    async with orchestrator(make_config(max_failures=1)) as orch:
        report = await orch.run_tests([request])

    assert report.status == SessionStatus.CANCELLED
    assert report.completed_tests[0].attempts[0].exit_code == 1  # it ran, and wrote its data
    assert report.coverage == ()
