"""An attempt's own files on this machine: its log, opened first (off the loop when its
folder is new), and its scratch folder (TEST_TMPDIR)."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import anyio

from parallel_orch.exceptions import StateDirError
from parallel_orch.executors.protocol import AttemptSpec


async def scratch(spec: AttemptSpec) -> Path | None:
    """The attempt's TEST_TMPDIR, inside its scratch folder.

    Made inline: a ``mkdir`` or two cost less than a hop to a thread. The
    folder may be reused from its worker's last attempt, which
    :func:`empty_scratch` left holding nothing but an empty ``tmp``.
    """
    if spec.scratch_dir is None:
        return None
    tmp = spec.scratch_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


async def empty_scratch(spec: AttemptSpec) -> None:
    """Leave the attempt's scratch folder as its worker's next attempt wants it: an empty
    ``tmp`` in it and nothing else.

    Most attempts leave it so, which one look at each folder tells, and then it
    is kept: removing a folder frees its block, which on a disk mounted with
    ``discard`` makes each ``rmdir`` wait about 2 ms, on the event loop. Whatever
    a test left there goes in a thread, as a test may leave a tree of any size.
    """
    if spec.scratch_dir is None or _holds_only_empty_tmp(spec.scratch_dir):
        return
    await anyio.to_thread.run_sync(
        functools.partial(shutil.rmtree, spec.scratch_dir, ignore_errors=True)
    )


def _holds_only_empty_tmp(folder: Path) -> bool:
    """``folder`` is missing or holds an empty ``tmp`` and nothing else."""
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries]
        if names != ["tmp"]:
            return not names
        with os.scandir(folder / "tmp") as entries:
            return next(entries, None) is None
    except FileNotFoundError:
        return True
    except OSError:  # not a folder, unreadable: removed
        return False


async def open_log(spec: AttemptSpec) -> IO[bytes]:
    """The attempt's log, open to append to and read its tail back; its folders made first.

    A session's later attempts find its folder (a stat) and open the log on the
    loop: an open costs less than a hop to a thread and back. Its first attempt
    makes the folder and the first file in it, off the loop: each is an inode
    allocated, which on some disks costs up to 0.5 ms of the kernel's time
    (ext4 without a journal skips every inode freed in the last minutes;
    bench/README.md), and a daemon's one-test sessions are all first attempts.
    The hop is not abandoned on cancel: the log comes back open either way, and
    the caller closes it.

    :raises StateDirError: if the log cannot be written.
    """
    folders = list(dict.fromkeys([spec.log_path.parent, spec.junit_path.parent]))
    if spec.coverage_file is not None:
        folders.append(spec.coverage_file.parent)
    if all(f.is_dir() for f in folders):
        return _open(spec, ())
    return await anyio.to_thread.run_sync(_open, spec, folders)


def _open(spec: AttemptSpec, folders: Sequence[Path]) -> IO[bytes]:
    """``spec``'s log opened, ``folders`` made first."""
    try:
        make_dirs(*folders)
        return spec.log_path.open("a+b")
    except OSError as exc:
        where = exc.filename or spec.log_path
        raise StateDirError(
            f"cannot write {where}: {exc.strerror}; make the state dir writable"
        ) from exc


def make_dirs(*dirs: Path) -> None:
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
