"""Run one attempt's command: own process group, output to a log file, TERM-grace-KILL.

The child writes straight into the attempt's log file (no pipe through this
process), so a command printing hundreds of megabytes costs no memory here;
the store keeps only the log's tail. With no pipes to serve, the child is a
plain ``Popen`` whose exit the event loop learns from a pidfd: no watcher
thread per child (asyncio's default on 3.11), nothing global to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio

from parallel_orch import procs
from parallel_orch.models import ExecutionStatus

SHELL = shutil.which("bash") or "/bin/sh"


def command_argv(command: str | Sequence[str]) -> list[str]:
    """A string runs through bash (``-c``); a list runs as is, without a shell."""
    if isinstance(command, str):
        return [SHELL, "-c", command]
    return list(command)


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    status: ExecutionStatus  # passed, failed, timed_out or error (spawn failed)
    exit_code: int | None
    duration_seconds: float
    error: str | None = None
    leaked: tuple[int, ...] = ()  # pids that had left the group and outlived it: killed


SpawnHook = Callable[[int, int], Coroutine[Any, Any, None]]


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_seconds: float,
    grace_seconds: float,
    log: IO[bytes],
    on_spawn: SpawnHook | None = None,
    marker: Sequence[bytes] = (),
) -> ProcessOutcome:
    """Run ``argv`` in a new process group with output appended to ``log``.

    On timeout the group gets SIGTERM, then SIGKILL after ``grace_seconds``.
    Whatever the group still holds when the command ends (background
    children) is killed too, and so is every process that left the group
    (``setsid``) but carries the ``marker`` entries in its environment: those
    are ``leaked``. Nothing outlives its attempt. On cancellation the group is
    terminated before the cancellation propagates.
    """
    started = time.monotonic()
    log.flush()  # a full disk surfaces here, not as a spawn failure
    try:
        process = _start(argv, cwd=cwd, env=env, log=log)
    except OSError as exc:
        message = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        log.write(f"parallel-orch: {message}\n".encode())
        return ProcessOutcome(ExecutionStatus.ERROR, None, time.monotonic() - started, message)
    pgid = process.pid  # start_new_session: the child leads its own group
    timed_out = False
    try:
        if on_spawn is not None:
            await on_spawn(process.pid, pgid)  # told at once: a hook must not wait for long
        with anyio.move_on_after(timeout_seconds) as scope:
            await wait_exit(process)
        if scope.cancelled_caught:
            timed_out = True
            with anyio.CancelScope(shield=True):
                await procs.terminate_group(pgid, grace_seconds)
                await wait_exit(process)
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:  # cancelled from outside
                await procs.terminate_group(pgid, grace_seconds)
                await wait_exit(process)
            procs.signal_group(pgid, signal.SIGKILL)  # leftovers: background children
            leaked = tuple(procs.kill_escaped(marker, since_pid=pgid)) if marker else ()
    return _outcome(process, time.monotonic() - started, timeout_seconds, timed_out, leaked, log)


def _outcome(
    process: subprocess.Popen[bytes],
    duration: float,
    timeout_seconds: float,
    timed_out: bool,
    leaked: tuple[int, ...],
    log: IO[bytes],
) -> ProcessOutcome:
    """How the command ended, with a note in its log for what was killed."""
    code = process.returncode
    if leaked:
        pids = ", ".join(map(str, leaked))
        log.write(f"\nparallel-orch: killed {len(leaked)} leaked process(es): {pids}\n".encode())
    if not timed_out:
        status = ExecutionStatus.PASSED if code == 0 else ExecutionStatus.FAILED
        return ProcessOutcome(status, code, duration, leaked=leaked)
    note = f"timed out after {timeout_seconds:g}s"
    log.write(f"\nparallel-orch: {note}; process group killed\n".encode())
    return ProcessOutcome(ExecutionStatus.TIMED_OUT, code, duration, note, leaked)


def _start(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """``argv`` started in a new process group, its output appended to ``log``."""
    # Blocks only until the child execs (vfork), as asyncio's own spawning does.
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log.fileno(),
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )


def read_tail(log: IO[bytes], max_bytes: int) -> str:
    """The last ``max_bytes`` of an open (readable) log file, decoded leniently.

    Small and from the page cache: cheaper inline than a hop to a thread.
    """
    try:
        log.flush()
        fd = log.fileno()
        size = os.fstat(fd).st_size
        data = os.pread(fd, min(size, max_bytes), max(0, size - max_bytes)) if size else b""
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


async def wait_exit(process: subprocess.Popen[bytes]) -> int:
    """Wait for ``process`` to exit and reap it; its return code.

    Sleeps on a pidfd (Linux 5.3+), which the kernel makes readable when the
    process exits; elsewhere polls with a backoff. Assumes nothing else in
    this process reaps children with ``waitpid(-1)``: ``Popen`` would then
    report 0 for a process it never saw exit.
    """
    if process.poll() is not None:
        return process.returncode
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        delay = 0.001
        while process.poll() is None:
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return process.returncode
    try:
        while process.poll() is None:
            await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    return process.returncode
