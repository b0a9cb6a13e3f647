"""A real suite: mpmath's own tests, one plan test per test file, against no isolation.

mpmath (pure Python, no network, 38 test files in its sdist) is downloaded
from PyPI as an sdist, unpacked and committed into a git repo under
``bench/.work/suite``; its test dependencies go into a separate venv there.
Each test file is one request, ``<venv>/bin/python -m pytest -q <file>``
without a shell, run by parallel-orch on 2 workers, each attempt in a clean
pooled worktree. A first, untimed session fills the history (so the second
is ordered longest first) and warms the pool.

Baselines, timed in the same run:

- ``xargs -P2`` running the same per-file commands in the unpacked repo,
  with no isolation at all, fed longest file first (the order our queue
  uses once it knows the durations; so the ratio isolates the cost of
  isolation, not a scheduling difference). The repo's bytecode is compiled
  beforehand, as a checkout used before would have it; ours loses its
  ``__pycache__`` to the clean between attempts, which is part of the price.
- ``pytest -n 2`` (pytest-xdist) over the same files in one process tree.

A fourth side, for the analysis: ours again with ``PYTHONPYCACHEPREFIX``
pointing outside the worktrees (its own warm-up first), so the clean between
attempts no longer throws the bytecode away.

Full mode runs two rounds in ABCD DCBA order, so a drift in machine load
weighs on all sides alike; the ratios are of the summed walls. CPU
(this process, its threads and every child) is printed beside the walls: on a
shared machine it is the steadier figure.
``PYTHONDONTWRITEBYTECODE`` is dropped from the environment (Python's default).

Some files are left out: the ones needing ``pexpect`` and a terminal, and
the slowest (minutes each serially). Quick mode also leaves out the files
that take more than a few seconds.

Target: ours / xargs <= 1.05.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from bench.common import (
    WORK_DIR,
    Figure,
    Span,
    bench_main,
    commit_all,
    fmt_spans,
    git,
    measure,
    note,
    run_shell,
    use_git_identity,
)
from parallel_orch import ParallelTestConfig, ParallelTestOrchestrator, RetryPolicy, TestRequest
from parallel_orch.report import ParallelTestReport

PROJECT = "mpmath"
VERSION = "1.4.1"
#: The suite's own test requirements (its ``tests`` extra, less the optional plotting and
#: notebook ones, whose tests skip), pinned so every run measures the same thing.
SUITE_REQUIREMENTS = (
    "pytest==9.2.0",
    "pytest-xdist==3.8.0",
    "pytest-timeout==2.4.0",
    "hypothesis==6.170.15",
    "packaging==26.3",
)
TESTS_DIR = "mpmath/tests"
#: Left out always: interactive (pexpect and a terminal), or minutes long serially.
EXCLUDED = frozenset(
    {
        "test_cli.py",  # pexpect
        "test_demos.py",  # pexpect
        "test_torture.py",  # ~200 s
        "test_extra_gamma.py",  # ~190 s
        "test_format.py",  # ~85 s
        "test_functions2.py",  # ~35 s
        "test_extra_zeta.py",  # ~25 s
    }
)
#: Left out in quick mode too: the files over ~3 s serially.
QUICK_EXCLUDED = frozenset(
    {
        "test_calculus.py",
        "test_elliptic.py",
        "test_quad.py",
        "test_basic_ops.py",
        "test_gammazeta.py",
        "test_convert.py",
    }
)
WORKERS = 2
TARGET_RATIO = 1.05


def suite_dir() -> Path:
    path = WORK_DIR / "suite"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_sdist(root: Path) -> Path:
    """The project's sdist from PyPI, downloaded once into ``root/dist``."""
    dist = root / "dist"
    sdist = dist / f"{PROJECT}-{VERSION}.tar.gz"
    if not sdist.exists():
        note(f"downloading the {PROJECT}=={VERSION} sdist")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"{PROJECT}=={VERSION}",
                "-d",
                str(dist),
            ],
            check=True,
        )
    return sdist


def ensure_venv(root: Path) -> Path:
    """A venv with the suite's test requirements, built once; its python."""
    venv = root / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(SUITE_REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    note("creating the suite's venv")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *SUITE_REQUIREMENTS,
        ],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def make_repo(root: Path, sdist: Path) -> Path:
    """The unpacked sdist committed into a fresh git repo ``root/repo``."""
    repo = root / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    unpacked = root / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / f"{PROJECT}-{VERSION}").rename(repo)
    unpacked.rmdir()
    use_git_identity()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n.hypothesis/\n")
    commit_all(repo, f"{PROJECT} {VERSION} sdist")
    return repo


def test_files(repo: Path, quick: bool) -> list[str]:
    excluded = EXCLUDED | QUICK_EXCLUDED if quick else EXCLUDED
    files = sorted((repo / TESTS_DIR).glob("test_*.py"))
    return [f"{TESTS_DIR}/{f.name}" for f in files if f.name not in excluded]


def requests(
    python: Path, files: Sequence[str], env: dict[str, str] | None = None
) -> list[TestRequest]:
    return [
        TestRequest(
            id=Path(f).stem,
            command=(str(python), "-m", "pytest", "-q", f),
            ref="HEAD",
            env=env or {},
        )
        for f in files
    ]


@dataclass
class Sides:
    """The measured spans of each side, one per round."""

    ours: list[Span] = field(default_factory=list)
    cached: list[Span] = field(default_factory=list)  # ours, bytecode kept outside worktrees
    xargs: list[Span] = field(default_factory=list)
    xdist: list[Span] = field(default_factory=list)


def _baseline(script: str, repo: Path, log: Path, stdin: str = "") -> None:
    _, code = run_shell(script, cwd=repo, env={}, stdin=stdin, log=log)
    if code != 0:
        note(f"  warning: `{script[:40]}...` exited {code} (see {log})")


async def _measure(
    repo: Path, root: Path, python: Path, files: Sequence[str], rounds: int
) -> tuple[Sides, ParallelTestReport]:
    """Warm-up sessions, then rounds of the four sides, in ABCD DCBA order against drift."""
    config = ParallelTestConfig(
        repo=repo,
        num_workers=WORKERS,
        state_dir=root / "state",
        worktree_base_dir=root / "worktrees",
    )
    sides = Sides()
    async with ParallelTestOrchestrator(config, retry_policy=RetryPolicy.zero_wait()) as orch:
        note("parallel-orch: warm-up session (untimed) ...")
        warm = await orch.run_tests(requests(python, files))
        durations = {t.test_id: t.duration_seconds or 0.0 for t in warm.completed_tests}
        note(
            f"  warm-up: {warm.duration_seconds:.1f} s; files took {sum(durations.values()):.1f} s "
            f"in all, longest {max(durations.values()):.1f} s"
        )
        # The variant: bytecode goes to a folder outside the worktrees (a subtree per
        # worktree, as the prefix mirrors absolute paths), so cleaning does not drop it.
        cached_env = {"PYTHONPYCACHEPREFIX": str(root / "pycache")}
        note("parallel-orch with PYTHONPYCACHEPREFIX: warm-up session (untimed) ...")
        await orch.run_tests(requests(python, files, cached_env))
        by_length = sorted(files, key=lambda f: -durations.get(Path(f).stem, 0.0))
        xargs_input = "".join(f"{f}\n" for f in by_length)
        xargs_script = f"xargs -P {WORKERS} -n 1 {python} -m pytest -q"
        xdist_script = f"{python} -m pytest -q -n {WORKERS} " + " ".join(files)

        async def ours() -> None:
            with measure() as span:
                report = await orch.run_tests(requests(python, files))
            sides.ours.append(span)
            if report.tests_passed != len(files):
                note(
                    f"  warning: {report.tests_passed} of {len(files)} passed: "
                    f"{list(report.failed_tests)}"
                )

        async def cached() -> None:
            with measure() as span:
                report = await orch.run_tests(requests(python, files, cached_env))
            sides.cached.append(span)
            if report.tests_passed != len(files):
                note(f"  warning: {report.tests_passed} of {len(files)} passed")

        async def xargs() -> None:
            log = root / "logs" / f"xargs-{len(sides.xargs)}.log"
            with measure() as span:
                await anyio.to_thread.run_sync(_baseline, xargs_script, repo, log, xargs_input)
            sides.xargs.append(span)

        async def xdist() -> None:
            log = root / "logs" / f"xdist-{len(sides.xdist)}.log"
            with measure() as span:
                await anyio.to_thread.run_sync(_baseline, xdist_script, repo, log)
            sides.xdist.append(span)

        for index in range(rounds):
            order = (ours, cached, xargs, xdist)
            if index % 2:
                order = order[::-1]
            for side in order:
                await side()
            note(
                f"  round {index + 1}: walls: ours {sides.ours[-1].wall:.1f} s, "
                f"with PYTHONPYCACHEPREFIX {sides.cached[-1].wall:.1f} s, "
                f"xargs {sides.xargs[-1].wall:.1f} s, "
                f"pytest -n {WORKERS} {sides.xdist[-1].wall:.1f} s"
            )
    return sides, warm


def run(quick: bool) -> list[Figure]:
    rounds = 1 if quick else 2
    root = suite_dir()
    sdist = fetch_sdist(root)
    python = ensure_venv(root)
    repo = make_repo(root, sdist)
    for scratch in ("state", "worktrees", "logs", "pycache"):
        shutil.rmtree(root / scratch, ignore_errors=True)
    (root / "logs").mkdir()
    files = test_files(repo, quick)
    # Python's default: bytecode is written. Some sandboxes turn that off for everything.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    # The no-isolation side runs in a checkout that has been used before: compiled already.
    subprocess.run([str(python), "-m", "compileall", "-q", PROJECT], cwd=repo, check=True)
    note(f"{PROJECT} {VERSION}: {len(files)} test files, {WORKERS} workers, {rounds} round(s)")

    sides, warm = anyio.run(_measure, repo, root, python, files, rounds)
    durations = [t.duration_seconds or 0.0 for t in warm.completed_tests]
    lower = max(sum(durations) / WORKERS, max(durations))
    note(f"parallel-orch (warm)       : {fmt_spans(sides.ours)}")
    note(f"ours, PYTHONPYCACHEPREFIX   : {fmt_spans(sides.cached)}")
    note(f"xargs -P{WORKERS}, no isolation  : {fmt_spans(sides.xargs)}")
    note(f"pytest -n {WORKERS}                : {fmt_spans(sides.xdist)}")
    note(f"max(sum/{WORKERS}, longest)        : {lower:.2f} s (the warm-up's file durations)")

    def ratio(ours: list[Span], other: list[Span], attr: str) -> float:
        mine: float = sum(getattr(s, attr) for s in ours)
        theirs: float = sum(getattr(s, attr) for s in other)
        return mine / theirs

    wall_ratio = ratio(sides.ours, sides.xargs, "wall")
    return [
        Figure(
            "suite: ours / xargs no isolation, wall",
            wall_ratio,
            target=f"<= {TARGET_RATIO}",
            met=wall_ratio <= TARGET_RATIO,
        ),
        Figure("suite: ours / xargs no isolation, CPU", ratio(sides.ours, sides.xargs, "cpu")),
        Figure(
            "suite: ours with PYTHONPYCACHEPREFIX / xargs, wall",
            ratio(sides.cached, sides.xargs, "wall"),
        ),
        Figure(
            "suite: ours with PYTHONPYCACHEPREFIX / xargs, CPU",
            ratio(sides.cached, sides.xargs, "cpu"),
        ),
        Figure(f"suite: ours / pytest -n {WORKERS}, wall", ratio(sides.ours, sides.xdist, "wall")),
        Figure(f"suite: ours / pytest -n {WORKERS}, CPU", ratio(sides.ours, sides.xdist, "cpu")),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("a real suite (mpmath) against xargs and pytest-xdist", run, argv)


if __name__ == "__main__":
    main()
