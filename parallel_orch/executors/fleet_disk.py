"""The fleet's files and git, on each side: a worker's slot, clone and attempt files, and
the orchestrator's copies of what comes back."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import subprocess
from pathlib import Path

from parallel_orch.exceptions import FleetError
from parallel_orch.executors.fleet_wire import RemoteResult
from parallel_orch.executors.protocol import AttemptSpec


def take_slot(base_dir: str | Path, repo_dir: str) -> tuple[Path, int]:
    """The first free slot folder of the repo under ``base_dir``, locked for as long as the
    fd is open."""
    base = Path(base_dir).expanduser() / repo_dir
    base.mkdir(parents=True, exist_ok=True)
    for index in itertools.count():
        fd = os.open(base / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        slot = base / f"slot-{index}"
        slot.mkdir(exist_ok=True)
        return slot, fd
    raise AssertionError("unreachable")


def git(args: list[str], timeout: float) -> str:
    """Run git without a prompt; its output. :raises FleetError: with git's own words."""
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
    }
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=timeout, env=env, check=True
        )
    except subprocess.TimeoutExpired:
        raise FleetError(f"git {args[-1]} took over {timeout:g} s") from None
    except subprocess.CalledProcessError as exc:
        words = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise FleetError(words[-1] if words else f"git exited {exc.returncode}") from None
    return done.stdout


def clone(url: str, repo: Path, timeout: float) -> None:
    """The slot's clone of ``url``: made once (whole or not at all), then reused."""
    if (repo / ".git").exists():
        git(["-C", str(repo), "remote", "set-url", "--", "origin", url], timeout)
        return
    partial = repo.with_name(repo.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        git(["clone", "--quiet", "--no-checkout", "--", url, str(partial)], timeout)
    except FleetError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise FleetError(f"cannot clone {url}: {exc.message}") from None
    partial.rename(repo)


def has_commit(repo: Path, sha: str) -> bool:
    done = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{sha}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def prepare(spec: AttemptSpec, durations: bytes | None) -> None:
    """The attempt's folders, without the files of an earlier run of the same key."""
    for path in (spec.log_path, spec.junit_path, spec.coverage_file):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if spec.shard_durations is not None and durations is not None:
        spec.shard_durations.parent.mkdir(parents=True, exist_ok=True)
        spec.shard_durations.write_bytes(durations)


def read_end(path: Path, limit: int) -> tuple[bytes, int]:
    """The last ``limit`` bytes of a file, and how many came before them."""
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - limit))
            return fh.read(limit), max(0, size - limit)
    except OSError:
        return b"", 0


def read_small(path: Path | None, limit: int | None) -> bytes | None:
    """A file's content, or None when it is missing or bigger than ``limit``."""
    if path is None:
        return None
    try:
        if limit is not None and path.stat().st_size > limit:
            return None
        return path.read_bytes()
    except OSError:
        return None


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def write_files(spec: AttemptSpec, remote: RemoteResult) -> None:
    """The attempt's log (after anything already there), JUnit and coverage files."""
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_path.open("ab") as fh:
        if remote.log_dropped:
            fh.write(
                f"parallel-orch: the first {remote.log_dropped} bytes of this log stayed on "
                f"the worker\n".encode()
            )
        fh.write(remote.log)
    for path, data in ((spec.junit_path, remote.junit_xml), (spec.coverage_file, remote.coverage)):
        if path is not None and data is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
