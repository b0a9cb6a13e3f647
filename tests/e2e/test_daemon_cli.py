"""The daemon and its client commands as a user runs them: `parallel-orch daemon`, `submit`..."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from parallel_orch.daemon.paths import default_socket_path
from tests.e2e.cli import cli_env, run_cli
from tests.e2e.conftest import StartDaemon, query, write_plan
from tests.helpers import GitRepo, make_git_repo

PASSING = '[[test]]\nid = "a"\nrun = "true"\n[[test]]\nid = "b"\nrun = ["true"]\n'
FAILING = '[[test]]\nid = "ok"\nrun = "true"\n[[test]]\nid = "bad"\nrun = "exit 4"\n'


def test_submit_wait_follow_prints_the_id_first_and_exits_zero(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """`submit --wait --follow`: session id alone on line 1, progress, report, exit 0."""
    write_plan(repo.path, "smoke.toml", PASSING)
    daemon = start_daemon(repo.path)
    report_file = tmp_path / "report.json"
    result = run_cli(
        [
            "submit",
            "plans",
            "--wait",
            "--follow",
            "--report-json",
            str(report_file),
            "--socket",
            str(daemon.socket),
        ],
        cwd=repo.path,
    )
    assert result.returncode == 0, result.stderr
    session_id, *rest = result.stdout.splitlines()
    assert len(session_id) == 12 and session_id.isalnum()
    assert any(line.startswith("PASSED      smoke::a") for line in rest)
    report = json.loads(report_file.read_text())
    assert (report["session_id"], report["status"], report["tests_passed"]) == (
        session_id,
        "complete",
        2,
    )


@pytest.mark.slow
def test_status_report_and_sessions_show_a_finished_session(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """`status ID --json`, `report ID --json` and `sessions --json` (daemon or store) agree."""
    write_plan(repo.path, "mixed.toml", FAILING)
    daemon = start_daemon(repo.path)
    sock = ["--socket", str(daemon.socket)]
    submitted = run_cli(["submit", "plans/mixed.toml", "--wait", *sock], cwd=repo.path)
    assert submitted.returncode == 1, submitted.stderr
    session_id = submitted.stdout.splitlines()[0]

    status = json.loads(run_cli(["status", session_id[:6], "--json", *sock], cwd=repo.path).stdout)
    assert (status["session_id"], status["status"]) == (session_id, "partial_success")
    assert status["counts"] == {"passed": 1, "failed": 1}
    report = json.loads(run_cli(["report", session_id, "--json", *sock], cwd=repo.path).stdout)
    assert report["failed_tests"] == ["mixed::bad"]
    from_daemon = json.loads(run_cli(["sessions", "--json", *sock], cwd=repo.path).stdout)
    from_store = json.loads(run_cli(["sessions", "--json"], cwd=repo.path).stdout)
    for rows in (from_daemon, from_store):
        (row,) = rows
        assert (row["session_id"], row["status"], row["counts"]) == (
            session_id,
            "partial_success",
            {"passed": 1, "failed": 1},
        )
        assert row["created_at"]
    watched = run_cli(["watch", session_id, *sock], cwd=repo.path)
    assert watched.returncode == 1 and "partial_success" in watched.stdout


def test_a_submit_of_too_many_shards_exits_two_and_records_nothing(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """101 tests of 1,000 shards each: the daemon refuses the submit as the user's to fix
    (exit 2, one line), and records no session."""
    tests = "".join(f'[[test]]\nid = "t{n}"\nrun = "true"\nshards = 1000\n' for n in range(101))
    write_plan(repo.path, "wide.toml", tests)
    daemon = start_daemon(repo.path)
    result = run_cli(["submit", "plans", "--socket", str(daemon.socket)], cwd=repo.path)
    assert result.returncode == 2, result.stderr
    assert "101000 requests; at most 100000" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert query(daemon.state_dir, "SELECT count(*) FROM sessions") == [(0,)]


def test_submit_of_a_bad_plan_exits_two_and_records_nothing(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """A bad plan: exit 2, the file and line on stderr, no session recorded."""
    write_plan(repo.path, "bad.toml", '[[test]]\nid = "x"\nrun = ""\n')
    daemon = start_daemon(repo.path)
    result = run_cli(["submit", "plans", "--socket", str(daemon.socket)], cwd=repo.path)
    assert result.returncode == 2
    assert "bad.toml:3" in result.stderr and result.stdout == ""  # the `run` key's line
    assert query(daemon.state_dir, "SELECT count(*) FROM sessions") == [(0,)]


@pytest.mark.slow
def test_cancel_stops_a_running_session_and_refuses_unknown_or_finished_ones(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """`cancel` of a running session cancels it; of a finished or unknown one exits 2."""
    write_plan(repo.path, "slow.toml", '[[test]]\nid = "slow"\nrun = "sleep 60"\n')
    daemon = start_daemon(repo.path)
    sock = ["--socket", str(daemon.socket)]
    session_id = run_cli(["submit", "plans", *sock], cwd=repo.path).stdout.strip()
    cancelled = run_cli(["cancel", session_id, *sock], cwd=repo.path)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"session {session_id}: cancelled" in cancelled.stdout
    again = run_cli(["cancel", session_id, *sock], cwd=repo.path)
    assert again.returncode == 2 and "already finished" in again.stderr
    unknown = run_cli(["cancel", "nosuchsession", *sock], cwd=repo.path)
    assert unknown.returncode == 2 and "no session" in unknown.stderr


def test_a_second_daemon_on_the_same_state_dir_exits_three_naming_the_first(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """One daemon per state dir: a second exits 3 with the first one's pid."""
    first = start_daemon(repo.path)
    other_socket = first.socket.with_name("other.sock")
    second = start_daemon(repo.path, socket=other_socket, ready=False)
    assert second.wait() == 3
    assert f"pid {first.proc.pid}" in second.log
    assert not other_socket.exists()


def test_client_commands_without_a_daemon_exit_three(repo: GitRepo, socket_path: Path) -> None:
    """`ping` and `submit` with no daemon listening exit 3 and say how to start one."""
    for args in (["ping"], ["submit", "plans"]):
        result = run_cli([*args, "--socket", str(socket_path)], cwd=repo.path)
        assert result.returncode == 3
        assert "parallel-orch daemon" in result.stderr


@pytest.mark.slow
def test_shutdown_stops_the_daemon_and_removes_its_socket(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """`shutdown` returns once the daemon is gone: exit 0, socket removed, lock free."""
    daemon = start_daemon(repo.path)
    result = run_cli(["shutdown", "--socket", str(daemon.socket)], cwd=repo.path)
    assert result.returncode == 0, result.stderr
    assert "daemon stopped" in result.stdout
    assert not daemon.socket.exists()
    assert daemon.wait() == 0
    restarted = start_daemon(repo.path)  # the lock was released
    assert run_cli(["ping", "--socket", str(restarted.socket)], cwd=repo.path).returncode == 0


def test_default_socket_of_a_deep_repo_falls_back_to_a_short_private_dir(
    tmp_path: Path, start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repo too deep for sun_path gets its socket in $XDG_RUNTIME_DIR: dir 0700, socket 0600."""
    deep = make_git_repo(tmp_path / ("d" * 60) / ("e" * 60) / "repo")
    state_dir = deep.path / ".parallel-orch"
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert default_socket_path(state_dir).parent == Path(f"/tmp/parallel-orch-{os.getuid()}")
    runtime = Path(tempfile.mkdtemp(dir="/tmp", prefix="po-xdg-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    sock = default_socket_path(state_dir)
    assert sock.parent == runtime / "parallel-orch" and len(os.fsencode(str(sock))) <= 107
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    start_daemon(deep.path, socket=sock, env=env, default_socket=True)
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(sock.lstat().st_mode) == 0o600
    ping = run_cli(["ping"], cwd=deep.path, env=env)  # the client finds the same default
    assert ping.returncode == 0 and str(sock) in ping.stdout
    shutil.rmtree(runtime, ignore_errors=True)


def test_a_socket_dir_the_daemon_creates_is_private(
    repo: GitRepo, start_daemon: StartDaemon, socket_path: Path
) -> None:
    """A socket dir the daemon creates is 0700 and the socket 0600."""
    sock = socket_path.parent / "new" / "d.sock"
    start_daemon(repo.path, socket=sock)
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(sock.lstat().st_mode) == 0o600


def test_client_commands_start_without_an_event_loop_or_pydantic(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """`ping`, `status`, `sessions`, `submit` and `cancel` answer right without importing
    asyncio or pydantic (most of their start-up time before)."""
    write_plan(repo.path, "smoke.toml", PASSING)
    daemon = start_daemon(repo.path)
    sock = ["--socket", str(daemon.socket)]
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('LOADED', *sorted({m.split('.')[0] for m in sys.modules}"
        " & {'asyncio', 'anyio', 'pydantic'})))\n"
        "from parallel_orch.cli import main\n"
        "sys.argv = ['parallel-orch', *sys.argv[1:]]\n"
        "main()\n"
    )

    def client(*args: str) -> tuple[str, str]:
        argv = [sys.executable, "-c", probe, *args, *sock]
        done = subprocess.run(argv, cwd=repo.path, env=cli_env(), capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        output, _, loaded = done.stdout.rpartition("LOADED")
        return output, loaded.strip()

    output, loaded = client("submit", "plans")
    session_id = output.strip()
    assert (len(session_id), loaded) == (12, "")
    output, loaded = client("ping")
    assert (output.startswith(f"daemon pid {daemon.proc.pid} serves {repo.path}"), loaded) == (
        True,
        "",
    )
    output, loaded = client("status")
    assert (output.startswith(f"daemon pid {daemon.proc.pid}, accepting"), loaded) == (True, "")
    output, loaded = client("sessions")
    assert (session_id in output, loaded) == (True, "")
    output, loaded = client("status", session_id)
    assert (output.startswith(f"session {session_id}: "), loaded) == (True, "")
