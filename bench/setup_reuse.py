"""Setup across runs: a kept venv set up once per worktree, not once per `run` or per ref.

A plan's ``setup`` builds a real venv, offline: ``python -m venv .venv``
(pip from Python's bundled wheel), then ``pip install --no-index`` of a small
wheel made here by hand, named in the repo's ``requirements.lock``; ``keep =
[".venv/"]``; each test imports the installed package from ``.venv``. Every
run is ``parallel-orch run`` as a user runs it (a new process), 2 workers,
on a pool made beforehand by an untimed run without setup.

1. **Across runs**: a first run (the pool's worktrees set up) against a
   second run of the same plan in a new process. Target: the second runs no
   setup at all.
2. **A ref matrix**: the same tests over 4 refs whose commits differ but
   share ``requirements.lock``, with ``setup_inputs = ["requirements.lock"]``
   (keyed on the file: each worktree set up once) against without (keyed on
   the commit: a setup per worktree per ref). Each side has its own repo and
   pool, made the same way.

Setups are counted twice, from the reports (attempts with ``setup_seconds``)
and from the attempt logs (``parallel-orch: setup:`` lines); they should agree.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cli_process import CliRun, run_cli
from bench.common import Figure, bench_main, commit_all, fresh_dir, git, init_repo, median, note
from bench.daemon_process import cli_env
from parallel_orch.report import ParallelTestReport

WORKERS = 2
REFS = ("r1", "r2", "r3", "r4")
PACKAGE = "benchpkg"
WHEEL = f"{PACKAGE}-1.0-py3-none-any.whl"


def build_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel of ``benchpkg`` 1.0, written by hand (no build backend)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{PACKAGE}-1.0.dist-info"
    files = {
        f"{PACKAGE}/__init__.py": 'VERSION = "1.0"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = folder / WHEEL
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def make_repo(path: Path) -> None:
    """A repo with ``requirements.lock`` and 4 tagged commits that change only a source file."""
    init_repo(path, 50)
    (path / "requirements.lock").write_text(f"{PACKAGE}==1.0\n")
    for ref in REFS:
        (path / "src" / "release.txt").write_text(f"{ref}\n")
        commit_all(path, f"release {ref}")
        git(path, "tag", ref)


def plan(path: Path, wheels: Path, *, tests: int, refs: Sequence[str], inputs: bool) -> Path:
    """``tests`` tests importing the package from a kept venv the setup builds."""
    setup = (
        f"{sys.executable} -m venv .venv && .venv/bin/python -m pip install -q "
        f"--disable-pip-version-check --no-index --find-links {wheels} -r requirements.lock"
    )
    table = [f"setup = '{setup}'", 'keep = [".venv/"]']
    if inputs:
        table.append('setup_inputs = ["requirements.lock"]')
    if refs:
        table.append("refs = [" + ", ".join(f'"{r}"' for r in refs) + "]")
    run = '[".venv/bin/python", "-c", "import benchpkg"]'
    body = "".join(
        f'[[test]]\nid = "t{n}"\nrun = {run}\n' + "\n".join(table) + "\n\n" for n in range(tests)
    )
    path.write_text(body)
    return path


def warm_pool_plan(path: Path, tests: int) -> Path:
    path.write_text("".join(f'[[test]]\nid = "w{n}"\nrun = "true"\n' for n in range(tests)))
    return path


@dataclass(frozen=True, slots=True)
class Setups:
    """The setups one run ran, counted from its report and from its attempt logs."""

    in_report: int
    in_logs: int
    seconds: list[float]

    def text(self) -> str:
        each = f", median {median(self.seconds):.1f} s each" if self.seconds else ""
        return f"{self.in_report} setups (logs: {self.in_logs}){each}"


def setups_of(report: ParallelTestReport | None) -> Setups:
    if report is None:
        return Setups(-1, -1, [])
    attempts = [a for t in report.completed_tests for a in t.attempts]
    seconds = [a.setup_seconds for a in attempts if a.setup_seconds is not None]
    in_logs = 0
    for attempt in attempts:
        log = Path(attempt.log_path)
        if log.exists():
            in_logs += log.read_text(errors="replace").count("parallel-orch: setup: ")
    return Setups(len(seconds), in_logs, seconds)


class Runner:
    """``parallel-orch run`` in one repo, with its own state dir, as new processes."""

    def __init__(self, work: Path, repo: Path) -> None:
        self.work, self.repo = work, repo
        self.count = 0

    def run(self, plan_path: Path) -> CliRun:
        self.count += 1
        name = f"{self.repo.name}-{self.count}"
        state = self.work / f"{self.repo.name}.state"
        done = run_cli(
            ["run", str(plan_path), "-j", str(WORKERS), "-q", "--state-dir", str(state)],
            cwd=self.repo,
            env=cli_env(),
            log=self.work / "logs" / f"{name}.log",
            report=self.work / "reports" / f"{name}.json",
        )
        if done.report is not None and done.report.tests_passed != done.report.total_tests:
            note(f"warning: {done.report.tests_passed} of {done.report.total_tests} passed")
        return done

    def warm_pool(self, tests: int) -> None:
        self.run(warm_pool_plan(self.work / "plans" / f"{self.repo.name}-warm.toml", tests))


def across_runs(work: Path, wheels: Path, tests: int) -> list[Figure]:
    repo = work / "reuse"
    make_repo(repo)
    runner = Runner(work, repo)
    runner.warm_pool(tests)
    plan_path = plan(work / "plans" / "reuse.toml", wheels, tests=tests, refs=(), inputs=False)
    first = runner.run(plan_path)
    second = runner.run(plan_path)
    one, two = setups_of(first.report), setups_of(second.report)
    note(f"{tests} tests, {WORKERS} workers, one kept .venv per worktree")
    note(f"first run : {first.span.wall:.1f} s (CPU {first.span.cpu:.1f} s); {one.text()}")
    note(f"second run: {second.span.wall:.1f} s (CPU {second.span.cpu:.1f} s); {two.text()}")
    return [
        Figure(
            "setup: setups run by a second `run` on the warm pool",
            two.in_report,
            unit="count",
            target="== 0",
            met=two.in_report == 0 and two.in_logs == 0,
        ),
        Figure("setup: setups run by the first `run`", one.in_report, unit="count"),
        Figure("setup: second run / first run, wall", second.span.wall / first.span.wall),
    ]


def matrix(work: Path, wheels: Path, per_ref: int) -> list[Figure]:
    results: dict[bool, tuple[CliRun, Setups]] = {}
    for inputs in (True, False):
        repo = work / ("matrix-inputs" if inputs else "matrix-commit")
        make_repo(repo)
        runner = Runner(work, repo)
        runner.warm_pool(per_ref * len(REFS))
        path = work / "plans" / f"{repo.name}.toml"
        done = runner.run(plan(path, wheels, tests=per_ref, refs=REFS, inputs=inputs))
        results[inputs] = (done, setups_of(done.report))
    (keyed, keyed_setups), (plain, plain_setups) = results[True], results[False]
    note(
        f"matrix: {per_ref} test(s) per ref x {len(REFS)} refs sharing requirements.lock, "
        f"{WORKERS} workers"
    )
    note(f"with setup_inputs   : {keyed.span.wall:.1f} s; {keyed_setups.text()}")
    note(f"without setup_inputs: {plain.span.wall:.1f} s; {plain_setups.text()}")
    return [
        Figure("setup: matrix setups with setup_inputs", keyed_setups.in_report, unit="count"),
        Figure("setup: matrix setups without setup_inputs", plain_setups.in_report, unit="count"),
        Figure(
            "setup: matrix with / without setup_inputs, wall", keyed.span.wall / plain.span.wall
        ),
    ]


def run(quick: bool) -> list[Figure]:
    tests, per_ref = (4, 1) if quick else (8, 3)
    work = fresh_dir("setup_reuse")
    for folder in ("plans", "logs", "reports"):
        (work / folder).mkdir()
    wheels = build_wheel(work / "wheels").parent
    return across_runs(work, wheels, tests) + matrix(work, wheels, per_ref)


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("setup across runs and refs: a kept venv", run, argv)


if __name__ == "__main__":
    main()
