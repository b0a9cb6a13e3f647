"""What `run`, `status` and `watch` print, in a pipe and on a real terminal (a pty)."""

from __future__ import annotations

import json
import math
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli import cli_argv, cli_env, run_cli
from tests.e2e.conftest import StartDaemon, read_pids, write_plan
from tests.helpers import GitRepo, make_fifo

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MIXED = (
    '[[test]]\nid = "ok"\nrun = "true"\n'
    '[[test]]\nid = "bad"\n'
    "run = \"echo starting; echo 'AssertionError: expected 3, got 4' >&2; exit 1\"\n"
    '[[test]]\nid = "gone"\nrun = "true"\nref = "no-such-branch"\n'
)


def test_run_in_a_pipe_says_what_failed_and_where_its_whole_log_is(repo: GitRepo) -> None:
    """Off a terminal: plain unpadded lines; each failure's first error and its log path."""
    write_plan(repo.path, "mixed.toml", MIXED)
    result = run_cli(["run", "plans", "-j", "1"], cwd=repo.path)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert not ANSI.search(out) and "…" not in out and "Not clean" not in out
    assert all(line == line.rstrip() for line in out.splitlines())
    lines = out.splitlines()
    report = lines[lines.index("Failed (2)") :]  # below the progress lines
    bad = next(i for i, line in enumerate(report) if line.split()[:2] == ["FAILED", "mixed::bad"])
    assert report[bad + 1].strip() == "AssertionError: expected 3, got 4"
    log = Path(report[bad + 2].strip().removeprefix("log: "))
    assert log.is_absolute() and "AssertionError: expected 3, got 4" in log.read_text()
    gone = next(i for i, line in enumerate(report) if line.split()[:2] == ["ERROR", "mixed::gone"])
    assert "no-such-branch" in report[gone + 1]
    assert "1 of 3 tests passed; 1 failed, 1 error" in out
    assert re.search(r"wall on 1 worker, ", out)
    assert re.search(r"^PASSED +mixed::ok \d+\.\d\ds  \[\d/3\]$", out, re.MULTILINE)


def run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """``parallel-orch ARGS`` with a pty as its terminal: its exit code and all it drew."""
    leader, follower = pty.openpty()
    env = cli_env({"TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"})
    with subprocess.Popen(
        cli_argv(*args), cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower
    ) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side has closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        code = proc.wait(timeout=60)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


@pytest.mark.slow
def test_run_on_a_terminal_draws_a_bar_with_an_eta_from_recorded_durations(repo: GitRepo) -> None:
    """The second run of two 1 s tests on one worker shows a bar, done/total and ETA ~2s."""
    write_plan(
        repo.path,
        "slow.toml",
        '[[test]]\nid = "a"\nrun = "sleep 1"\n[[test]]\nid = "b"\nrun = "sleep 1"\n',
    )
    first = run_cli(["run", "plans", "-q", "-j", "1", "--report-json", "r.json"], cwd=repo.path)
    assert first.returncode == 0, first.stderr
    recorded = json.loads((repo.path / "r.json").read_text())["duration_stats"]["sum"]
    code, drawn = run_on_a_terminal(["run", "plans", "-j", "1"], repo.path)
    assert code == 0, drawn
    assert "━" in drawn and re.search(r"\b[01]/2\b", drawn)
    etas = [int(s) for s in re.findall(r"ETA (\d+)s", drawn)]
    assert etas and 1 <= max(etas) <= math.ceil(recorded), drawn  # the first run's 2 x ~1 s
    assert "session " in drawn and "2 of 2 tests passed" in drawn


@pytest.mark.slow
def test_status_and_watch_show_the_eta_of_a_running_session(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """`status ID` (and --json eta_seconds) and `watch` lines give the session's ETA."""
    daemon = start_daemon(repo.path)
    sock = ["--socket", str(daemon.socket)]
    ids = ("a", "b", "c", "d")
    write_plan(
        repo.path, "hold.toml", "".join(f'[[test]]\nid = "{i}"\nrun = "sleep 1"\n' for i in ids)
    )
    first = run_cli(["submit", "plans", "--wait", "--report-json", "r.json", *sock], cwd=repo.path)
    assert first.returncode == 0, first.stderr
    took = [
        t["duration_seconds"]
        for t in json.loads((repo.path / "r.json").read_text())["completed_tests"]
    ]
    announce = make_fifo(tmp_path / "started")
    release = tmp_path / "release"
    release.mkdir()
    plan = ""
    for i in ids:
        make_fifo(release / i)
        early = i in ("a", "b")  # these run first, on the two workers
        hello = f"echo $$ > {announce}; " if early else ""
        plan += f'[[test]]\nid = "{i}"\npriority = {int(early)}\n'
        plan += f'run = "{hello}read x < {release / i}"\n'
    write_plan(repo.path, "hold.toml", plan)
    submitted = run_cli(["submit", "plans", *sock], cwd=repo.path)
    session_id = submitted.stdout.strip()
    read_pids(announce, 2)  # a and b run on the two workers, c and d wait

    status = json.loads(run_cli(["status", session_id, "--json", *sock], cwd=repo.path).stdout)
    assert status["status"] == "running"
    # c and d: ~1 s each on two workers; a and b: what is left of their ~1 s
    assert min(took) - 0.1 <= status["eta_seconds"] <= 2 * max(took) + 0.1
    plain = run_cli(["status", session_id, *sock], cwd=repo.path).stdout
    assert re.search(r"running \(4 tests: .*\), ETA \d+s$", plain.strip()), plain

    with subprocess.Popen(
        cli_argv("watch", session_id, *sock),
        cwd=repo.path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as watch:
        assert watch.stdout is not None
        lines = []
        for i in ids:
            (release / i).write_text("go\n")  # waits for the test to read it
            lines.append(watch.stdout.readline().rstrip("\n"))
        rest, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    assert [line.split()[:2] for line in lines] == [["PASSED", f"hold::{i}"] for i in ids]
    assert any(re.search(r"\[\d/4, ETA (<1|\d+)s\]$", line) for line in lines), lines
    assert rest.splitlines()[-1].startswith(f"session {session_id}: complete")
