"""Coverage per commit: each attempt's data file, combined with its worktree's paths remapped.

An attempt of a request with ``coverage`` on runs with ``COVERAGE_FILE`` at
``<state>/coverage/<session>/<test>.<attempt>/.coverage``, outside its
worktree, so ``coverage run`` or ``pytest --cov`` in its command writes there
(parallel-mode files land beside it as ``.coverage.*``). When the session
ends, the data of every attempt at one commit that left some is combined,
whatever the attempt's status: a serial run counts every test that ran,
failing ones included, and lines are a union, so a retry only adds lines
that really ran. The result is that commit's :class:`CommitCoverage`, with
paths relative to the repo. A session stopped before its end (cancelled,
interrupted) gets none: stopping stays quick.

A list (``coverage = ["src/pkg"]``) restricts the report to files under those
paths (relative to the repo) and is given to the command as
``PARALLEL_ORCH_COVERAGE_SOURCE`` (absolute, comma-separated: ``coverage run
--source=$PARALLEL_ORCH_COVERAGE_SOURCE`` then also counts files no test
imported). Where requests at one commit disagree, ``true`` reports everything
measured and lists are joined.

Each commit is combined in a child process (:mod:`parallel_orch.report.coverage_job`)
bounded by :data:`COMBINE_TIMEOUT_SECONDS` and killed past it: coverage.py
reads the project's configuration and resolves relative paths from the current
directory, which a thread cannot have of its own. A failure to combine is the
commit's ``error``, never a failed session.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import anyio
from pydantic import BaseModel, ConfigDict, ValidationError

from parallel_orch.models import SessionStatus
from parallel_orch.report.model import CommitCoverage
from parallel_orch.store import ExecutionRecord, SessionRecord, SessionSnapshot

COMBINE_TIMEOUT_SECONDS = 300.0  # for all of a session's commits together
DATA_FILE = ".coverage"
SOURCE_ENV = "PARALLEL_ORCH_COVERAGE_SOURCE"
_CONCURRENT_COMBINES = 4
_STOPPED = frozenset({SessionStatus.CANCELLED.value, SessionStatus.INTERRUPTED.value})
_NO_DATA = (
    "no attempt wrote coverage data to $COVERAGE_FILE: run the command under "
    "`coverage run` or `pytest --cov`"
)


def session_dir(state_dir: Path, session_id: str) -> Path:
    return state_dir / "coverage" / session_id


def data_file(state_dir: Path, session_id: str, attempt_stem: str) -> Path:
    """An attempt's ``COVERAGE_FILE``; ``attempt_stem`` (``<test>.<n>``) also names its log."""
    return session_dir(state_dir, session_id) / attempt_stem / DATA_FILE


def source_env(worktree: Path, sources: Iterable[str]) -> str:
    """``PARALLEL_ORCH_COVERAGE_SOURCE`` for a worktree: its source paths, comma-separated."""
    return ",".join(str(worktree / s) for s in sources)


class _Job(BaseModel):
    model_config = ConfigDict(frozen=True)


class AttemptData(_Job):
    """One attempt's data files and the worktree it ran in."""

    worktree: str
    files: tuple[str, ...]


class CombineJob(_Job):
    """One commit's combining, as the child process gets it on stdin."""

    sha: str
    repo: str
    cwd: str = "."  # where in the repo coverage.py looks for the project's configuration
    sources: tuple[str, ...] | None = None  # report files under these only (repo-relative)
    out_dir: str  # the combined data file, its JSON report and the commit's measured sources
    attempts: tuple[AttemptData, ...]


def _coverage_of(execution: ExecutionRecord) -> bool | tuple[str, ...]:
    if '"coverage":false' in execution.request_json:  # most sessions: no JSON parse per test
        return False
    value = json.loads(execution.request_json).get("coverage")
    return tuple(value) if isinstance(value, list) else bool(value)


def _data_files(folder: Path) -> tuple[str, ...]:
    """The data files in an attempt's folder: ``.coverage`` and parallel-mode ``.coverage.*``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return ()
    return tuple(
        str(folder / name)
        for name in sorted(names)
        if (name == DATA_FILE or name.startswith(DATA_FILE + ".")) and not name.endswith("-journal")
    )


def jobs_for(
    state_dir: Path, session: SessionRecord, snapshot: SessionSnapshot
) -> list[CombineJob]:
    """One job per commit that attempts with coverage on ran at, in submission order.

    Reads the state dir: call it in a thread.
    """
    wanted = {e.id: w for e in snapshot.executions if e.sha and (w := _coverage_of(e))}
    attempts: dict[int, list[AttemptData]] = {}
    for attempt in snapshot.attempts:
        if attempt.execution_id in wanted and attempt.worktree:  # it ran somewhere
            stem = Path(attempt.log_path).stem  # the attempt's files share it
            files = _data_files(data_file(state_dir, session.id, stem).parent)
            attempts.setdefault(attempt.execution_id, []).append(
                AttemptData(worktree=attempt.worktree, files=files)
            )
    by_sha: dict[str, list[tuple[ExecutionRecord, bool | tuple[str, ...]]]] = {}
    for execution in snapshot.executions:
        if execution.id in attempts and execution.sha:
            by_sha.setdefault(execution.sha, []).append((execution, wanted[execution.id]))
    jobs = []
    for sha, executions in by_sha.items():
        lists = [w for _, w in executions]
        sources = None
        if all(isinstance(w, tuple) for w in lists):
            sources = tuple(dict.fromkeys(s for w in lists if isinstance(w, tuple) for s in w))
        cwds = {json.loads(e.request_json).get("cwd") or "." for e, _ in executions}
        jobs.append(
            CombineJob(
                sha=sha,
                repo=session.repo,
                cwd=cwds.pop() if len(cwds) == 1 else ".",
                sources=sources,
                out_dir=str(session_dir(state_dir, session.id) / "combined" / sha),
                attempts=tuple(a for e, _ in executions for a in attempts[e.id]),
            )
        )
    return jobs


def _failed(sha: str, error: str, data_files: int = 0) -> CommitCoverage:
    return CommitCoverage(
        sha=sha, percent=0.0, statements=0, missing=0, data_files=data_files, error=error
    )


def _child_env() -> dict[str, str]:
    """Ours without coverage.py's variables (no data file, rc file or self-measuring), with
    this very package first on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    here = str(Path(__file__).resolve().parents[2])  # the folder holding parallel_orch/
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    return env


async def combine(job: CombineJob) -> CommitCoverage:
    """One commit's coverage, combined in a child process; failures are its ``error``."""
    count = sum(len(a.files) for a in job.attempts)
    if not count:
        return _failed(job.sha, _NO_DATA)
    # -P: the child's current directory (a copy of the repo's files) never shadows a module.
    argv = [sys.executable, "-P", "-m", "parallel_orch.report.coverage_job"]
    try:
        done = await anyio.run_process(
            argv, input=job.model_dump_json().encode(), env=_child_env(), check=False
        )
    except OSError as exc:
        return _failed(job.sha, f"cannot start the combining: {exc}", count)
    if done.returncode == 0:
        try:
            return CommitCoverage.model_validate_json(done.stdout)
        except ValidationError:
            pass
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    why = lines[-1] if lines else "no output"
    return _failed(job.sha, f"combining failed (exit {done.returncode}): {why}", count)


async def combine_session(
    state_dir: Path,
    session: SessionRecord,
    snapshot: SessionSnapshot,
    *,
    timeout_seconds: float | None = None,
) -> tuple[CommitCoverage, ...]:
    """Every commit's coverage for the session, within ``timeout_seconds`` in all
    (default :data:`COMBINE_TIMEOUT_SECONDS`); none for a session stopped before its end
    (cancelled, interrupted), so that stopping stays quick."""
    if timeout_seconds is None:
        timeout_seconds = COMBINE_TIMEOUT_SECONDS
    if session.status in _STOPPED or not any(_coverage_of(e) for e in snapshot.executions):
        return ()
    jobs = await anyio.to_thread.run_sync(jobs_for, state_dir, session, snapshot)
    results: dict[str, CommitCoverage] = {}
    limiter = anyio.CapacityLimiter(_CONCURRENT_COMBINES)

    async def one(job: CombineJob) -> None:
        async with limiter:
            results[job.sha] = await combine(job)

    with anyio.move_on_after(timeout_seconds):
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(one, job)
    late = f"not combined within {timeout_seconds:g}s"
    return tuple(
        results.get(job.sha) or _failed(job.sha, late, sum(len(a.files) for a in job.attempts))
        for job in jobs
    )
