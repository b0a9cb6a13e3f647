"""Gates, quarantine, comparison and the webhook through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from parallel_orch import ParallelTestReport
from tests.e2e.cli import run_cli
from tests.e2e.conftest import StartDaemon, write_plan
from tests.helpers import GitRepo
from tests.webhook import dead_url, webhook_server

PASSING = '[[test]]\nid = "a"\nrun = "true"\ncategory = "unit"\n[[test]]\nid = "b"\nrun = "true"\n'


def run_json(repo: GitRepo, *args: str, name: str = "r.json") -> tuple[int, str, dict[str, Any]]:
    """``run plans ARGS --report-json NAME``: exit code, stderr and the report."""
    result = run_cli(["run", "plans", "-j", "2", *args, "--report-json", name], cwd=repo.path)
    report = json.loads((repo.path / name).read_text()) if (repo.path / name).exists() else {}
    return result.returncode, result.stdout + result.stderr, report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gate", "unit=abc"], "--gate 'unit=abc': 'abc' is not a number; a pass rate is 0 to 1"),
        (["--gate", "unit=1.5"], "bad gate: --gate unit=1.5: a pass rate is between 0 and 1"),
        (["--min-pass-rate", "2"], "bad gate: --min-pass-rate 2.0: a pass rate is between 0 and 1"),
        (
            ["--notify-url", "ftp://example.com/x"],
            "--notify-url 'ftp://example.com/x': a webhook is an http:// or https:// URL",
        ),
    ],
)
@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_bad_gate_or_webhook_is_exit_two_in_one_line_before_anything_runs(
    repo: GitRepo, args: list[str], message: str, command: str, tmp_path: Path
) -> None:
    """`run` and `submit` refuse a bad spec with one line and exit 2: nothing runs, no store
    is made, no daemon is asked."""
    write_plan(repo.path, "suite.toml", f'[[test]]\nid = "x"\nrun = "touch {tmp_path}/ran"\n')
    where = ["--socket", str(tmp_path / "no-daemon.sock")] if command == "submit" else []
    result = run_cli([command, "plans", *where, *args], cwd=repo.path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"error: {message}"]
    assert not (tmp_path / "ran").exists()
    assert not (repo.path / ".parallel-orch").exists()


def test_a_bad_gate_in_the_environment_is_exit_two_and_a_good_one_judges(
    repo: GitRepo, tmp_path: Path
) -> None:
    """``PARALLEL_ORCH_GATES__MIN_PASS_RATE=2`` is refused in one line before anything runs;
    ``=1`` judges the run."""
    write_plan(
        repo.path, "suite.toml", f'[[test]]\nid = "x"\nrun = "touch {tmp_path}/ran; false"\n'
    )
    bad = run_cli(["run", "plans"], cwd=repo.path, env={"PARALLEL_ORCH_GATES__MIN_PASS_RATE": "2"})
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "error: invalid configuration: gates: min_pass_rate = 2.0: a pass rate is between 0 and 1"
    ]
    assert not (tmp_path / "ran").exists()
    good = run_cli(["run", "plans"], cwd=repo.path, env={"PARALLEL_ORCH_GATES__MIN_PASS_RATE": "1"})
    assert good.returncode == 1
    assert "gate failed: min_pass_rate: tests: 0/1 passed (0.0%) < 100%" in good.stdout


def test_a_failed_gate_exits_one_with_its_reason_though_every_test_passed(repo: GitRepo) -> None:
    """All tests pass, the wall-time gate fails: exit 1, the reason printed and in the JSON."""
    write_plan(repo.path, "suite.toml", PASSING)
    code, output, report = run_json(repo, "--max-duration", "0.001", "--min-pass-rate", "1")
    assert code == 1, output
    assert report["tests_passed"] == report["total_tests"] == 2
    assert "gate failed: max_duration: " in output and "s wall > 0.001s" in output
    assert "gate ok: min_pass_rate: tests: 2/2 passed (100.0%) >= 100%" in output
    assert report["gates_passed"] is False
    assert [(g["name"], g["passed"]) for g in report["gates"]] == [
        ("min_pass_rate", True),
        ("max_duration", False),
    ]


def test_configured_gates_apply_and_an_unknown_category_only_warns(repo: GitRepo) -> None:
    """pyproject's gates judge `run`; a gate on a category no test has warns and holds."""
    write_plan(repo.path, "suite.toml", PASSING)
    (repo.path / "pyproject.toml").write_text(
        "[tool.parallel-orch.gates]\nmin_coverage = 50\nperformance = 0.9\n"
    )
    code, output, _ = run_json(repo)
    assert code == 1, output
    assert "warning: gate on category 'performance', which no test has" in output
    assert "gate failed: min_coverage: no coverage was measured" in output
    assert "gate ok: min_pass_rate[performance]: no test of category 'performance' ran" in output


def test_the_hash_covers_gates_and_verdicts_but_not_timings(repo: GitRepo) -> None:
    """Two runs with the same gates hash alike; other gates, or none, hash otherwise."""
    write_plan(repo.path, "suite.toml", PASSING)
    hashes = [
        run_json(repo, *args, name=f"r{i}.json")[2]["report_hash"]
        for i, args in enumerate(
            [["--min-pass-rate", "1"], ["--min-pass-rate", "1"], ["--min-pass-rate", "0.5"], []]
        )
    ]
    assert hashes[0] == hashes[1]
    assert len(set(hashes[1:])) == 3


def test_a_quarantined_failure_is_reported_and_exits_zero(repo: GitRepo) -> None:
    """A failing test with ``quarantine = "..."`` is in the report, apart; `run` exits 0."""
    write_plan(
        repo.path,
        "suite.toml",
        PASSING + '[[test]]\nid = "wobbly"\nrun = "false"\nquarantine = "flaky on CI (#12)"\n',
    )
    code, output, report = run_json(repo, "--min-pass-rate", "1")
    assert code == 0, output
    assert report["quarantined_tests"] == ["suite::wobbly"]
    assert report["failed_tests"] == ["suite::wobbly"]
    assert report["gates_passed"] is True


def test_runs_are_compared_and_show_rejudges_a_stored_session(
    repo: GitRepo, tmp_path: Path
) -> None:
    """A second run is compared with the first, `--compare-to` picks another baseline, and
    `show SESSION --no-new-failures` judges a stored session again (exit 1, the reason)."""
    marker = tmp_path / "break"
    plan = PASSING + f'[[test]]\nid = "c"\nrun = "test ! -e {marker}"\n'
    write_plan(repo.path, "suite.toml", plan)
    _, _, green = run_json(repo, name="green.json")
    marker.touch()
    code, output, red = run_json(repo, "--no-new-failures", name="red.json")
    assert code == 1
    assert red["comparison"]["baseline_session_id"] == green["session_id"]
    assert red["comparison"]["tests"]["new_failures"] == ["suite::c"]
    assert f"gate failed: no_new_failures: 1 new failure(s) since {green['session_id']}" in output
    _, _, again = run_json(repo, "--compare-to", green["session_id"][:6], name="again.json")
    assert again["comparison"]["baseline_session_id"] == green["session_id"]
    assert again["comparison"]["tests"]["new_failures"] == ["suite::c"]

    shown = run_cli(["show", red["session_id"]], cwd=repo.path)
    assert shown.returncode == 0  # shown as stored: no verdict of its own
    judged = run_cli(["show", green["session_id"], "--no-new-failures", "--json"], cwd=repo.path)
    assert judged.returncode == 0, judged.stderr  # nothing before green: the gate holds
    rejudged = run_cli(["show", again["session_id"], "--no-new-failures"], cwd=repo.path)
    assert rejudged.returncode == 1  # c fails: the gate holds, the failure decides
    assert f"gate ok: no_new_failures: no new failures since {red['session_id']}" in (
        rejudged.stdout
    )
    rejudged = run_cli(
        ["show", again["session_id"], "--no-new-failures", "--compare-to", green["session_id"]],
        cwd=repo.path,
    )
    assert rejudged.returncode == 1
    assert "gate failed: no_new_failures: 1 new failure(s)" in rejudged.stdout


def test_run_posts_the_report_to_the_webhook(repo: GitRepo) -> None:
    """`run --notify-url URL` POSTs the report it wrote, once, and exits 0."""
    write_plan(repo.path, "suite.toml", PASSING)
    with webhook_server() as server:
        code, output, report = run_json(repo, "--notify-url", server.url)
        [got] = server.wait_for(1)
    assert code == 0, output
    assert got.headers["content-type"] == "application/json"
    assert ParallelTestReport.model_validate(got.json()) == ParallelTestReport.model_validate(
        report
    )


@pytest.mark.slow
def test_a_dead_webhook_is_recorded_and_the_run_still_passes(repo: GitRepo) -> None:
    """Nothing listening: `run` prints its report, warns, records the failure, exits 0."""
    write_plan(repo.path, "suite.toml", PASSING)
    url = dead_url()
    code, output, report = run_json(repo, "--notify-url", url)
    assert code == 0, output
    assert report["status"] == "complete"
    assert "Connection refused" in output
    listed = run_cli(["sessions", "--json"], cwd=repo.path)
    [session] = json.loads(listed.stdout)
    assert session["notify_status"] == "failed: Connection refused after 5 tries"


def test_submit_notify_url_is_delivered_by_the_daemon(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """`submit --notify-url` has the daemon POST the session's report when it ends."""
    write_plan(repo.path, "suite.toml", PASSING)
    daemon = start_daemon(repo.path)
    with webhook_server() as server:
        result = run_cli(
            [
                "submit",
                "plans",
                "--wait",
                "--notify-url",
                server.url,
                "--socket",
                str(daemon.socket),
            ],
            cwd=repo.path,
        )
        [got] = server.wait_for(1)
    assert result.returncode == 0, result.stderr
    session_id = result.stdout.splitlines()[0]
    assert got.json()["session_id"] == session_id
    assert got.json()["status"] == "complete"
