"""The child process that combines one commit's coverage (see :mod:`parallel_orch.report.coverage`).

Reads a :class:`~parallel_orch.report.coverage.CombineJob` as JSON on stdin and
writes a :class:`~parallel_orch.report.model.CommitCoverage` as JSON on stdout:

1. the measured paths of each data file that lie in its attempt's worktree are
   files of the repo;
2. those files, and coverage.py's configuration files, are written as they are
   at the commit to ``<out>/src`` (worktrees are reused and the repo may be
   elsewhere: neither is sure to hold the commit's sources any more);
3. from there (coverage.py reads the project's configuration and resolves
   relative paths from the current directory) the data files are combined,
   kept, with ``[paths]`` mapping every worktree onto ``<out>/src``;
4. the files in the repo (under ``sources`` when given) are reported, and the
   combined ``.coverage`` and ``coverage.json`` stay in ``<out>``.

Run as ``python -P -m parallel_orch.report.coverage_job``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import coverage
from coverage.exceptions import CoverageException

from parallel_orch.report.coverage import DATA_FILE, CombineJob
from parallel_orch.report.model import CommitCoverage, FileCoverage

#: Where coverage.py looks for its configuration, in the current directory.
CONFIG_FILES = (".coveragerc", ".coveragerc.toml", "setup.cfg", "tox.ini", "pyproject.toml")
GIT_TIMEOUT_SECONDS = 120.0
_SHOWN = 5  # file names a warning lists before "and N more"


def _under(path: str, roots: Iterable[str]) -> str | None:
    """``path`` relative to the first of ``roots`` that holds it (posix), or None."""
    for root in roots:
        if path.startswith(root.rstrip(os.sep) + os.sep):
            return Path(os.path.relpath(path, root)).as_posix()
    return None


def _roots(worktree: str) -> list[str]:
    return list(dict.fromkeys([worktree, os.path.realpath(worktree)]))


def measured_in_repo(job: CombineJob) -> set[str]:
    """The repo-relative paths of files measured in the attempts' worktrees."""
    found: set[str] = set()
    for attempt in job.attempts:
        roots = _roots(attempt.worktree)
        for name in attempt.files:
            data = coverage.CoverageData(basename=name)
            try:
                data.read()
            except CoverageException:
                continue  # combining warns about it
            for path in data.measured_files():
                if not os.path.isabs(path):  # relative_files: from where the command ran
                    path = os.path.join(attempt.worktree, job.cwd, path)
                rel = _under(os.path.normpath(path), roots)
                if rel is not None and not rel.startswith("../") and "\n" not in rel:
                    found.add(rel)
    return found


def write_commit_files(repo: str, sha: str, paths: Iterable[str], dest: Path) -> set[str]:
    """Write ``paths`` as they are at ``sha`` under ``dest``; those the commit has."""
    names = sorted(paths)
    query = "".join(f"{sha}:{name}\n" for name in names).encode()
    out = subprocess.run(
        ["git", "-C", repo, "cat-file", "--batch"],
        input=query,
        capture_output=True,
        check=True,
        timeout=GIT_TIMEOUT_SECONDS,
    ).stdout
    written: set[str] = set()
    pos = 0
    for name in names:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3 or header[-1] == b"missing":
            continue
        size = int(header[2])
        body, pos = out[pos : pos + size], pos + size + 1
        if header[1] == b"blob":
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
            written.add(name)
    return written


def _in_sources(rel: str, sources: tuple[str, ...] | None) -> bool:
    if sources is None:
        return True
    for source in sources:
        prefix = Path(os.path.normpath(source)).as_posix()
        if prefix == "." or rel == prefix or rel.startswith(prefix.rstrip("/") + "/"):
            return True
    return False


def _files(report: dict[str, Any], here: str, root: str) -> tuple[FileCoverage, ...]:
    files = []
    for key, entry in report["files"].items():
        summary = entry["summary"]
        files.append(
            FileCoverage(
                path=_under(os.path.normpath(os.path.join(here, key)), [root]) or key,
                statements=summary["num_statements"],
                missing=summary["missing_lines"],
                percent=round(summary["percent_covered"], 4),
            )
        )
    return tuple(sorted(files, key=lambda f: f.path))


def _failed(job: CombineJob, error: str) -> CommitCoverage:
    return CommitCoverage(
        sha=job.sha,
        percent=0.0,
        statements=0,
        missing=0,
        data_files=sum(len(a.files) for a in job.attempts),
        error=error,
    )


def _report(job: CombineJob, root: str) -> CommitCoverage:
    """Combine in ``root`` (the commit's files) and report; see the module docstring."""
    out = Path(job.out_dir)
    here = os.path.join(root, job.cwd)
    os.makedirs(here, exist_ok=True)
    os.chdir(here)
    cov = coverage.Coverage(data_file=str(out / DATA_FILE))  # the project's own configuration
    worktrees = [r for a in job.attempts for r in _roots(a.worktree)]
    cov.set_option("paths", {"parallel_orch": [root, *dict.fromkeys(worktrees)]})
    cov.combine([f for a in job.attempts for f in a.files], keep=True)
    cov.save()
    morfs = []
    for measured in cov.get_data().measured_files():
        rel = _under(os.path.normpath(os.path.join(here, measured)), [root])
        if rel is not None and _in_sources(rel, job.sources):
            morfs.append(measured)
    if not morfs:
        where = f" under {', '.join(job.sources)}" if job.sources else ""
        return _failed(job, f"no file of the repo{where} was measured at {job.sha[:12]}")
    json_path = out / "coverage.json"
    cov.json_report(morfs=sorted(morfs), outfile=str(json_path), ignore_errors=True)
    report = json.loads(json_path.read_text())
    totals = report["totals"]
    return CommitCoverage(
        sha=job.sha,
        percent=round(totals["percent_covered"], 4),
        statements=totals["num_statements"],
        missing=totals["missing_lines"],
        files=_files(report, here, root),
        data_files=sum(len(a.files) for a in job.attempts),
    )


def _not_in_commit(names: set[str], sha: str) -> str:
    shown = ", ".join(sorted(names)[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"measured but not in commit {sha[:12]}, left out: {shown}{more}"


def _combine(job: CombineJob, notes: list[str]) -> CommitCoverage:
    out = Path(job.out_dir)
    shutil.rmtree(out, ignore_errors=True)  # a second end of the session starts afresh
    src = out / "src"
    src.mkdir(parents=True)
    wanted = measured_in_repo(job)
    configs = {Path(job.cwd, name).as_posix() for name in CONFIG_FILES}
    missing = wanted - write_commit_files(job.repo, job.sha, wanted | configs, src)
    if missing:
        notes.append(_not_in_commit(missing, job.sha))
    return _report(job, os.path.realpath(src))


def run(job: CombineJob) -> CommitCoverage:
    """The job's result, with coverage.py's warnings; a failure is its ``error``."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = _combine(job, notes)
        except (CoverageException, OSError, subprocess.SubprocessError) as exc:
            result = _failed(job, f"{type(exc).__name__}: {exc}")
    notes.extend(str(w.message) for w in caught)
    return result.model_copy(update={"warnings": tuple(dict.fromkeys(notes))})


def main() -> None:
    job = CombineJob.model_validate_json(sys.stdin.buffer.read())
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the result only
        result = run(job)
    sys.stdout.write(result.model_dump_json())


if __name__ == "__main__":
    main()
