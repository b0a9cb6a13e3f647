"""runner.run_process: own process group, output to the log, TERM-grace-KILL, cancellation."""

from __future__ import annotations

import os
import shlex
import signal
from pathlib import Path

import anyio
import pytest

from parallel_orch import ExecutionStatus
from parallel_orch.runner import command_argv, read_tail, run_process
from tests.helpers import WAIT_SECONDS, make_fifo, process_alive, read_fifo, wait_exited


async def run(
    command: str, tmp_path: Path, time_limit: float = 10.0
) -> tuple[ExecutionStatus, int | None, str]:
    log_path = tmp_path / "out.log"
    with log_path.open("ab") as log:
        outcome = await run_process(
            command_argv(command),
            cwd=tmp_path,
            env=dict(os.environ),
            timeout_seconds=time_limit,
            grace_seconds=0.2,
            log=log,
        )
    return outcome.status, outcome.exit_code, log_path.read_text()


async def test_exit_codes_decide_passed_and_failed(tmp_path: Path) -> None:
    """Exit 0 is passed, anything else failed with that exit code; output lands in the log."""
    assert await run("echo hi", tmp_path) == (ExecutionStatus.PASSED, 0, "hi\n")
    status, code, _ = await run("exit 5", tmp_path)
    assert (status, code) == (ExecutionStatus.FAILED, 5)


async def test_command_runs_in_its_own_process_group(tmp_path: Path) -> None:
    """The command leads a new process group (so the group can be killed as one)."""
    spawned: list[tuple[int, int]] = []

    async def on_spawn(pid: int, pgid: int) -> None:
        spawned.append((pid, pgid))

    out = tmp_path / "pgid"
    with (tmp_path / "log").open("ab") as log:
        await run_process(
            command_argv(f"ps -o pgid= -p $$ > {shlex.quote(str(out))}"),
            cwd=tmp_path,
            env=dict(os.environ),
            timeout_seconds=10,
            grace_seconds=0.2,
            log=log,
            on_spawn=on_spawn,
        )
    ((pid, pgid),) = spawned
    assert pid == pgid
    assert int(out.read_text()) == pgid
    assert pgid != os.getpgid(0)


async def test_timeout_terms_then_kills_the_group(tmp_path: Path) -> None:
    """On timeout the group gets SIGTERM, and SIGKILL after the grace if it stays; timed_out."""
    pid_file = tmp_path / "grandchild.pid"
    # The shell notes the TERM and carries on; its child ignores TERM: only a KILL ends them.
    command = (
        "trap 'echo TERM seen' TERM; "
        f"(trap '' TERM; exec sleep 60) & echo $! > {shlex.quote(str(pid_file))}; "
        "while :; do wait; done"
    )
    log_path = tmp_path / "out.log"
    with log_path.open("ab") as log:
        outcome = await run_process(
            command_argv(command),
            cwd=tmp_path,
            env=dict(os.environ),
            timeout_seconds=0.5,
            grace_seconds=0.2,
            log=log,
        )
    assert outcome.status is ExecutionStatus.TIMED_OUT
    text = log_path.read_text()
    assert text.startswith("TERM seen\n"), text  # the TERM came first and was handled
    assert "timed out after 0.5s" in text
    await wait_exited(int(pid_file.read_text()))  # the KILL reached the whole group
    # A lower bound, which slowness cannot break: the KILL waited out the grace.
    assert outcome.duration_seconds >= 0.5 + 0.2


async def test_a_stopped_command_gets_sigcont_with_its_sigterm(tmp_path: Path) -> None:
    """A command that stopped itself dies of the timeout's SIGTERM, not the later SIGKILL."""
    log_path = tmp_path / "out.log"
    with log_path.open("ab") as log:
        outcome = await run_process(
            command_argv("kill -STOP $$; sleep 60"),
            cwd=tmp_path,
            env=dict(os.environ),
            timeout_seconds=0.3,
            grace_seconds=WAIT_SECONDS,
            log=log,
        )
    assert outcome.status is ExecutionStatus.TIMED_OUT
    assert outcome.exit_code == -signal.SIGTERM


async def test_cancellation_kills_the_group_before_propagating(tmp_path: Path) -> None:
    """Cancelling the caller terminates the command's whole group."""
    started = make_fifo(tmp_path / "started")
    command = f"sleep 60 & echo $! > {shlex.quote(str(started))}; wait"
    grandchild = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, command, tmp_path)
        grandchild = int(await read_fifo(started))
        tg.cancel_scope.cancel()
    assert not process_alive(grandchild)


async def test_list_commands_run_without_a_shell(tmp_path: Path) -> None:
    """A list command's arguments reach the program verbatim: no globbing or expansion."""
    assert command_argv(("echo", "$HOME", "*")) == ["echo", "$HOME", "*"]
    log_path = tmp_path / "log"
    with log_path.open("ab") as log:
        outcome = await run_process(
            ["echo", "$HOME", "*"],
            cwd=tmp_path,
            env=dict(os.environ),
            timeout_seconds=10,
            grace_seconds=0.2,
            log=log,
        )
    assert outcome.status is ExecutionStatus.PASSED
    assert log_path.read_text() == "$HOME *\n"


def test_read_tail_returns_the_last_bytes(tmp_path: Path) -> None:
    """read_tail gives the last N bytes, unflushed ones too, decoding broken UTF-8 leniently."""
    with (tmp_path / "log").open("a+b") as log:
        assert read_tail(log, 10) == ""
        log.write(b"0123456789" * 10 + "é".encode())
        assert read_tail(log, 4) == "89é"
        assert read_tail(log, 1) == "\ufffd"
        assert read_tail(log, 1000) == "0123456789" * 10 + "é"


async def test_stdin_is_empty_so_prompts_do_not_hang(tmp_path: Path) -> None:
    """A command reading stdin sees end-of-file at once instead of waiting for a terminal."""
    status, _, log = await run("read -r answer || echo no-input", tmp_path, time_limit=5)
    assert (status, log) == (ExecutionStatus.PASSED, "no-input\n")


async def test_exits_are_seen_and_reaped_with_or_without_a_pidfd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting sleeps on a pidfd, or polls where there is none (old kernels): same outcomes."""
    opened: list[int] = []
    real_pidfd_open = os.pidfd_open

    def counting_pidfd_open(pid: int, flags: int = 0) -> int:
        opened.append(pid)
        return real_pidfd_open(pid, flags)

    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    spawned: list[int] = []

    async def on_spawn(pid: int, pgid: int) -> None:
        spawned.append(pid)

    for name, pidfd_open in (("pidfd", counting_pidfd_open), ("polling", no_pidfd)):
        monkeypatch.setattr(os, "pidfd_open", pidfd_open)
        spawned.clear()
        with (tmp_path / f"{name}.log").open("a+b") as log:
            for command, limit in (("sleep 0.05; exit 3", 10.0), ("sleep 5", 0.2)):
                outcome = await run_process(
                    command_argv(command),
                    cwd=tmp_path,
                    env=dict(os.environ),
                    timeout_seconds=limit,
                    grace_seconds=0.2,
                    log=log,
                    on_spawn=on_spawn,
                )
                assert outcome.exit_code is not None
        assert outcome.status is ExecutionStatus.TIMED_OUT
        assert len(spawned) == 2
        for pid in spawned:
            assert not await anyio.Path(f"/proc/{pid}").exists()  # reaped, not a zombie
    assert len(opened) == 2  # the first round did sleep on pidfds
