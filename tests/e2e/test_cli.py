"""The `parallel-orch run / sessions / show` commands as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli import cli_argv, cli_env, run_cli
from tests.helpers import REPORT_KEYS, GitRepo, process_alive


def write_plan(repo: GitRepo, name: str, text: str) -> Path:
    path = repo.path / "plans" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_run_passing_plans_exits_zero_and_writes_the_json_report(repo: GitRepo) -> None:
    """`run` of passing plans exits 0, prints plain lines off a terminal, and writes the report."""
    write_plan(
        repo, "smoke.toml", '[[test]]\nid = "a"\nrun = "true"\n[[test]]\nid = "b"\nrun = ["true"]\n'
    )
    result = run_cli(["run", "plans", "-j", "2", "--report-json", "report.json"], cwd=repo.path)
    assert result.returncode == 0, result.stderr
    assert "PASSED      smoke::a" in result.stdout
    report = json.loads((repo.path / "report.json").read_text())
    assert report.keys() >= REPORT_KEYS
    assert report["status"] == "complete"
    assert (report["tests_passed"], report["num_workers"]) == (2, 2)


def test_run_with_a_failing_test_exits_one(repo: GitRepo) -> None:
    """A failing test makes `run` exit 1 and the report names it."""
    write_plan(
        repo,
        "mixed.toml",
        '[[test]]\nid = "ok"\nrun = "true"\n[[test]]\nid = "bad"\nrun = "exit 4"\n',
    )
    result = run_cli(["run", "plans", "--report-json", "r.json"], cwd=repo.path)
    assert result.returncode == 1
    report = json.loads((repo.path / "r.json").read_text())
    assert report["failed_tests"] == ["mixed::bad"]
    assert report["status"] == "partial_success"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[test]]\nid = "a"\nrun = "true"\nbogus = 1\n', "bad.toml:4"),
        ('[[test]\nid = "a"\n', "bad.toml:1"),
        ('[[test]]\nid = "a b"\nrun = "true"\n', "may only use"),
        ('[[test]]\nid = "a"\nrun = ""\n', "'run' is empty"),
        ('[[test]]\nid = "a"\nrun = "true"\ncwd = "../.."\n', "leaves the worktree"),
        ('[[test]]\nid = "a"\nrun = "true"\ntimeout = true\n', "timeout"),
        ('[[test]]\nid = "a"\nrun = "true"\nshards = 1000000000\n', "bad.toml:4: [[test]] #1"),
        ('[[test]]\nid = "a"\nrun = "true"\nrepeat = 1000000000\n', "from 1 to 10000"),
        (
            '[[test]]\nid = "a"\nrun = "true"\nsetup = "true"\nsetup_inputs = ["*.lock"]\n',
            "pattern",
        ),
    ],
)
def test_plan_errors_exit_two_and_record_nothing(repo: GitRepo, text: str, expected: str) -> None:
    """A bad plan exits 2 naming the file (and line), and neither runs nor records anything."""
    write_plan(repo, "good.toml", '[[test]]\nid = "fine"\nrun = "touch ran-marker"\n')
    write_plan(repo, "bad.toml", text)
    result = run_cli(["run", "plans"], cwd=repo.path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bad.toml" in result.stderr and expected in result.stderr
    assert not (repo.path / ".parallel-orch").exists()


def test_outside_a_git_repo_exits_three(tmp_path: Path) -> None:
    """Outside any git repository `run` exits 3 with a one-line explanation."""
    plain = tmp_path / "plain"
    plain.mkdir()
    result = run_cli(["run"], cwd=plain)
    assert result.returncode == 3
    assert "not inside a git repository" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_repo_without_commits_exits_three(tmp_path: Path) -> None:
    """A repo with no commits exits 3 and says to commit first."""
    empty = tmp_path / "empty"
    empty.mkdir()
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    (empty / "p.toml").write_text('[[test]]\nid = "a"\nrun = "true"\n')
    result = run_cli(["run", "p.toml"], cwd=empty)
    assert result.returncode == 3
    assert "no commits" in result.stderr


def test_sessions_and_show_read_back_a_run(repo: GitRepo) -> None:
    """`sessions --json` lists a finished run and `show --json` prints its stored report."""
    write_plan(repo, "one.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    assert run_cli(["run", "plans", "-q"], cwd=repo.path).returncode == 0
    listed = run_cli(["sessions", "--json"], cwd=repo.path)
    rows = json.loads(listed.stdout)
    assert rows[0]["status"] == "complete" and rows[0]["total"] == 1
    shown = run_cli(["show", rows[0]["session_id"], "--json"], cwd=repo.path)
    assert json.loads(shown.stdout)["session_id"] == rows[0]["session_id"]
    missing = run_cli(["show", "nope"], cwd=repo.path)
    assert missing.returncode == 2 and "no session" in missing.stderr


def test_state_dir_is_kept_out_of_git_status(repo: GitRepo) -> None:
    """The default state dir inside the repo is added to .git/info/exclude."""
    write_plan(repo, "one.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    repo.git("add", "plans")
    repo.git("commit", "-qm", "plans")
    assert run_cli(["run", "plans", "-q"], cwd=repo.path).returncode == 0
    assert repo.git("status", "--porcelain") == ""


@pytest.mark.slow
def test_ctrl_c_cancels_kills_attempts_and_exits_130(repo: GitRepo, tmp_path: Path) -> None:
    """Ctrl-C kills running attempts, records the session cancelled, frees worktrees, exits 130."""
    pids = tmp_path / "pids"
    pids.mkdir()
    write_plan(
        repo,
        "hang.toml",
        f'[[test]]\nid = "a"\nrun = "echo $$ > {pids}/a; sleep 60"\n'
        f'[[test]]\nid = "b"\nrun = "trap \'\' TERM; echo $$ > {pids}/b; sleep 60"\n'
        '[[test]]\nid = "c"\nrun = "sleep 60"\n',
    )
    env = cli_env({"PARALLEL_ORCH_KILL_GRACE_SECONDS": "0.5"})
    proc = subprocess.Popen(
        cli_argv("run", "plans", "-j", "2", "--report-json", "r.json"),
        cwd=repo.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # both attempts have written their pid once they run
    for name in ("a", "b"):
        target = pids / name
        for _ in range(600):
            if target.exists() and target.read_text().strip():
                break
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"run exited early: {proc.stderr.read() if proc.stderr else ''}")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    for name in ("a", "b"):
        assert not process_alive(int((pids / name).read_text()))
    report = json.loads((repo.path / "r.json").read_text())
    assert report["status"] == "cancelled"
    assert report["tests_cancelled"] == 3
    assert all("locked" not in wt for wt in repo.worktree_list())


def test_user_text_is_printed_literally_never_as_markup(repo: GitRepo) -> None:
    """Plan tables like [[test]] and [defaults] in errors, and refs in the report, stay as typed."""
    plan = write_plan(repo, "bad.toml", '[[test]]\nid = "a"\nrun = "true"\ntimeuot = 3\n')
    result = run_cli(["run", "plans"], cwd=repo.path)
    assert result.returncode == 2
    assert "plans/bad.toml:4: [[test]] #1 key 'timeuot': unknown key" in result.stderr
    plan.write_text('[defaults]\ntimeuot = 3\n[[test]]\nid = "a"\nrun = "true"\n')
    result = run_cli(["run", "plans"], cwd=repo.path)
    assert result.returncode == 2
    assert "plans/bad.toml:2: [defaults] key 'timeuot': unknown key" in result.stderr
    plan.write_text('[[test]]\nid = "a"\nrun = "true"\nref = "[red]nope[/red]"\n')
    result = run_cli(["run", "plans"], cwd=repo.path)
    assert result.returncode == 1
    assert "ref '[red]nope[/red]' does not resolve" in result.stdout


def test_a_log_folder_that_cannot_be_made_is_one_line_and_exit_3(repo: GitRepo) -> None:
    """`logs` in the state dir being a file: exit 3, one line naming the path, no traceback."""
    write_plan(repo, "one.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    state = repo.path / ".parallel-orch"
    state.mkdir()
    (state / "logs").write_text("not a folder")
    result = run_cli(["run", "plans", "-q"], cwd=repo.path)
    assert result.returncode == 3, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: cannot write {state / 'logs'}/")
    assert line.endswith("Not a directory; make the state dir writable")
