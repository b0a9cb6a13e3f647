"""Process-group helpers: kill what an attempt left, and only what is ours."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

import anyio

PROC = Path("/proc")


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22 overall


def owner_token(pid: int | None = None) -> str:
    """``host:pid:starttime`` naming a live process, robust to pid reuse."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid) or 0}"


def owner_alive(token: str) -> bool:
    """Whether the process named by :func:`owner_token` still runs (on this host)."""
    try:
        host, pid, start = token.rsplit(":", 2)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # cannot tell for another host: assume alive
    return process_start_time(int(pid)) == start and not is_zombie(int(pid))


def is_zombie(pid: int) -> bool:
    """Whether ``pid`` has died but is not yet reaped (a killed daemon whose parent is slow)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] == "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def group_is_ours(pgid: int, session_id: str) -> bool:
    """True if a live member of ``pgid`` carries ``PARALLEL_ORCH_SESSION_ID=session_id``.

    This guards a restarted daemon against killing an unrelated group that
    reused a dead attempt's pgid.
    """
    marker = f"PARALLEL_ORCH_SESSION_ID={session_id}".encode()
    for pid in group_members(pgid):
        try:
            environ = (PROC / str(pid) / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            return True
    return False


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether the group has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return bool(group_members(pgid))


async def terminate_group(pgid: int, grace_seconds: float) -> None:
    """SIGTERM the group, wait up to ``grace_seconds`` for it to go, then SIGKILL it.

    A SIGCONT follows the SIGTERM: a stopped process (``kill -STOP $$``) acts on
    nothing until it runs again, and would otherwise wait out the whole grace.
    """
    if not signal_group(pgid, signal.SIGTERM):
        return
    signal_group(pgid, signal.SIGCONT)
    with anyio.move_on_after(grace_seconds):
        delay = 0.01
        while group_alive(pgid):
            # A group has no wait handle once its leader is reaped: poll with backoff.
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.2)
        return
    signal_group(pgid, signal.SIGKILL)


def session_groups(session_id: str) -> set[int]:
    """Groups with a live member carrying ``PARALLEL_ORCH_SESSION_ID=session_id``.

    Finds what the store could not name: an attempt spawned just before its
    orchestrator died, before its pgid was recorded. Our own group is never
    included.
    """
    return marked_groups([f"PARALLEL_ORCH_SESSION_ID={session_id}".encode()])


def marked_groups(marker: Sequence[bytes]) -> set[int]:
    """Groups with a live member whose environment holds every entry of ``marker``
    (``NAME=value``); never our own group."""
    wanted = set(marker)
    groups: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and wanted <= set(environ.split(b"\0")):
            groups.add(int(fields[2]))
    groups.discard(os.getpgrp())
    return groups


def kill_marked(marker: Sequence[bytes]) -> set[int]:
    """SIGKILL every group :func:`marked_groups` finds; the groups signalled."""
    return {pgid for pgid in marked_groups(marker) if signal_group(pgid, signal.SIGKILL)}


def kill_stale_group(pgid: int, session_id: str) -> bool:
    """SIGKILL a group a dead orchestrator left running, if it is still ours."""
    if group_is_ours(pgid, session_id):
        return signal_group(pgid, signal.SIGKILL)
    return False


def escaped(marker: Sequence[bytes], *, since_pid: int) -> list[int]:
    """Live processes whose environment holds every entry of ``marker`` and whose pid is
    above ``since_pid``: what an attempt started that left its process group (``setsid``).

    Only pids above the attempt's first are read, so the scan costs a few ``environ``
    reads, not one per process on the machine. (A pid counter that wraps during the
    attempt hides what was started after the wrap.)
    """
    wanted = set(marker)
    found = []
    for name in os.listdir(PROC):  # plain strings: an attempt pays for this scan
        if not name.isdigit() or int(name) <= since_pid:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        marked = all(m in environ for m in wanted) and wanted <= set(environ.split(b"\0"))
        if marked and not is_zombie(int(name)):
            found.append(int(name))
    return sorted(found)


def kill_escaped(marker: Sequence[bytes], *, since_pid: int) -> list[int]:
    """SIGKILL what :func:`escaped` finds (they are not our children: init reaps them)."""
    pids = escaped(marker, since_pid=since_pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids
