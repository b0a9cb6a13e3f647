"""An attempt's own files on this machine: its log, opened before anything awaits, and its
scratch folder (TEST_TMPDIR)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from pathlib import Path
from typing import IO

import anyio

from parallel_orch.exceptions import StateDirError
from parallel_orch.executors.protocol import AttemptSpec


async def scratch(spec: AttemptSpec) -> Path | None:
    """The attempt's TEST_TMPDIR, made empty, inside its scratch folder.

    Made inline: a few ``mkdir`` calls cost less than a hop to a thread.
    """
    if spec.scratch_dir is None:
        return None
    tmp = spec.scratch_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


async def remove_scratch(spec: AttemptSpec) -> None:
    """Remove the attempt's scratch folder and whatever its test left there.

    Empty (most attempts) it goes inline, with two ``rmdir`` calls; otherwise
    in a thread, as a test may leave a tree of any size.
    """
    if spec.scratch_dir is None:
        return
    try:
        with contextlib.suppress(FileNotFoundError):  # the test may have removed it
            os.rmdir(spec.scratch_dir / "tmp")
        with contextlib.suppress(FileNotFoundError):  # never made: stopped before its command
            os.rmdir(spec.scratch_dir)
    except OSError:  # not empty
        await anyio.to_thread.run_sync(
            functools.partial(shutil.rmtree, spec.scratch_dir, ignore_errors=True)
        )


async def open_log(spec: AttemptSpec) -> IO[bytes]:
    """The attempt's log, open to append to and read its tail back; its folders made first.

    Nothing awaits once the log is open: a cancel cannot leave it open.

    :raises StateDirError: if the log cannot be written.
    """
    folders = [spec.log_path.parent, spec.junit_path.parent]
    if spec.coverage_file is not None:
        folders.append(spec.coverage_file.parent)
    try:
        if not all(f.is_dir() for f in folders):  # stats: cheaper than a hop to a thread
            await anyio.to_thread.run_sync(make_dirs, *folders)
        return spec.log_path.open("a+b")
    except OSError as exc:
        where = exc.filename or spec.log_path
        raise StateDirError(
            f"cannot write {where}: {exc.strerror}; make the state dir writable"
        ) from exc


def make_dirs(*dirs: Path) -> None:
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
