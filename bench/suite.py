"""A real suite (mpmath or packaging) through our CLI: per file against xargs, shards against xdist.

The suite (``bench/suite_project.py``: a project from its PyPI sdist in a git
repo, its test requirements in a venv; mpmath 1.4.1, or packaging 26.4 with
``BENCH_SUITE_PROJECT=packaging``) is run through ``parallel-orch run``
as a user runs it (a new process, from start to exit), 2 workers, each
attempt in a clean pooled worktree, two ways:

- **Per file**: one plan test per test file, ``<venv>/bin/python -m pytest
  -q <file>`` without a shell; against ``xargs -P2`` running the same
  commands in the repo itself (no isolation at all), fed longest file first
  (the order our queue takes from history; so the ratio is about isolation,
  not ordering), each under ``setsid`` as each of our attempts is in a
  session of its own (with the kernel's autogroup scheduling a session is
  what gets a share of a loaded CPU; on an idle machine it changes
  nothing). Target: at most 1.05x.
- **Sharded**: ONE plan test, pytest over every file with
  ``--junitxml="$XML_OUTPUT_FILE"``, ``junit = true``, ``shards = 2``;
  against ``pytest -n 2`` (pytest-xdist) over the same files. Target: at
  most 0.8x. Its workers share one session (they cannot be given their
  own), so on a loaded machine with autogroup our two shards get twice its
  share of the CPU: only an idle machine's wall ratio means anything (the
  CPU ratio is printed beside it). Each sharded run's case totals (summed over its shards, as the
  report shows them) are checked against one serial pytest run's.

Both run in two environments, every side of a comparison in the same one:
with ``PYTHONDONTWRITEBYTECODE=1`` (as these machines set it; measured
first, on a fresh repo and pool, so no bytecode of the project exists) and
without it (Python's default: bytecode is written and read). In each, ours
is warmed by an untimed session of each plan (it fills the pool, the
history and the case durations that balance the shards) and the baselines
by an untimed ``pytest -n 2`` in the repo. Full mode runs two rounds per
environment in ABCD DCBA order against drift; ratios are of summed walls,
and CPU (this process and every child) is printed beside them.

Some files are left out, each project's with its reasons in
``bench/suite_project.py`` (mpmath's needing ``pexpect`` and a terminal, and
its slowest, minutes each serially). Quick mode also leaves out the longest
files (mpmath's over a few seconds, packaging's ``test_version.py``).

With ``BENCH_SUITE_AGAINST=<another checkout>`` (its ``make install`` done)
two more sides run the per-file and the sharded plans through that checkout's
``parallel-orch``, in the same rounds and environment, with a pool and a store
of its own (what one version leaves in its worktrees, bytecode above all, is
not the other's to use) warmed as ours are, that checkout on ``PYTHONPATH``
where this one is for the others: a change measured side by side against its
base. ``BENCH_SUITE_ROUNDS`` sets the rounds per environment. Each
report also gives where our wall goes: the CLI's own time outside its
attempts, and the tail (the last attempt running alone).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.cli_process import CliRun, PyEnv, python_envs, run_cli
from bench.common import Figure, Span, autogroup_note, bench_main, fmt_spans, note
from bench.daemon_process import PROJECT_ROOT
from bench.suite_project import (
    AGAINST_POOL,
    AGAINST_STATE,
    SuiteProject,
    chosen,
    fmt_counts,
    plan_per_file,
    plan_sharded,
    prepare,
    serial_totals,
    shell,
)
from parallel_orch.models import JUnitCounts
from parallel_orch.report import ParallelTestReport, TestResult

WORKERS = 2
PER_FILE_TARGET = 1.05
SHARDED_TARGET = 0.8
AGAINST_ENV = "BENCH_SUITE_AGAINST"  # another checkout, for two more sides
ROUNDS_ENV = "BENCH_SUITE_ROUNDS"


@dataclass
class Sides:
    """The measured spans of each side, one per round, and the sharded runs' case checks."""

    per_file: list[Span] = field(default_factory=list)
    xargs: list[Span] = field(default_factory=list)
    sharded: list[Span] = field(default_factory=list)
    xdist: list[Span] = field(default_factory=list)
    against: list[Span] = field(default_factory=list)  # sharded, through the other version
    against_per_file: list[Span] = field(default_factory=list)  # per file, the other version
    totals_differ: int = 0  # sharded runs whose case totals are not the serial run's


@dataclass(frozen=True, slots=True)
class Bench:
    """One environment's sides, ready to run."""

    project: SuiteProject
    pyenv: PyEnv
    serial: JUnitCounts
    slug: str
    against: Path | None = None

    def ours(self, plan: Path, name: str, checkout: Path | None = None) -> CliRun:
        """``parallel-orch run`` of ``plan``: this checkout's, or another ``checkout``'s (on
        ``PYTHONPATH`` in place of this one, which ``cli_env`` puts there)."""
        root, env, state = self.project.root, dict(self.pyenv.env), "state"
        if checkout is not None:  # its own pool and store
            path = env.get("PYTHONPATH", "").split(os.pathsep)
            env["PYTHONPATH"] = os.pathsep.join(
                str(checkout) if p == str(PROJECT_ROOT) else p for p in path
            )
            env["PARALLEL_ORCH_WORKTREE_BASE_DIR"] = str(root / AGAINST_POOL)
            state = AGAINST_STATE
        run = run_cli(
            ["run", str(plan), "-j", str(WORKERS), "-q", "--state-dir", str(root / state)],
            cwd=self.project.repo,
            env=env,
            log=root / "logs" / f"{self.slug}-{name}.log",
            report=root / "reports" / f"{self.slug}-{name}.json",
            executable=None if checkout is None else checkout / ".venv" / "bin" / "parallel-orch",
        )
        note(f"  {name}: {run.span.wall:.1f} s; {where_it_went(run)}")
        return run

    def shell(self, script: str, name: str, stdin: str = "") -> Span:
        log = self.project.root / "logs" / f"{self.slug}-{name}.log"
        return shell(script, cwd=self.project.repo, env=self.pyenv.env, log=log, stdin=stdin)

    def check_sharded(self, run: CliRun) -> bool:
        """Whether the sharded run's case totals are the serial run's; notes what is off."""
        test = _sharded_test(run.report)
        if test is None:
            note("  warning: no sharded test in the report")
            return False
        for text in test.notes:  # e.g. a shard whose runner did not shard
            note(f"  warning: {text}")
        if test.status != "passed":
            note(f"  warning: the sharded test {test.status}")
        counts = None if test.cases is None else JUnitCounts(**test.cases.model_dump())
        if counts != self.serial:
            note(f"  case totals DIFFER: shards {fmt_counts(counts)}")
            note(f"                      serial {fmt_counts(self.serial)}")
            return False
        note(f"  case totals over {test.shards} shards = the serial run's: {fmt_counts(counts)}")
        return True


def where_it_went(run: CliRun) -> str:
    """Where the CLI's wall went besides its tests: outside the attempts (start-up and the
    end), between one attempt's process and the next on a worker (lease, spawn, recording),
    and the tail (the last attempt running with the other worker idle)."""
    attempts = [a for t in (run.report.completed_tests if run.report else ()) for a in t.attempts]
    if not attempts:
        return "no report"
    spans: dict[int, list[tuple[float, float]]] = {}
    for a in attempts:
        start = a.started_at.timestamp()
        spans.setdefault(a.worker, []).append((start, start + (a.duration_seconds or 0.0)))
    first = min(start for runs in spans.values() for start, _ in runs)
    last_ends = [max(end for _, end in runs) for runs in spans.values()]
    between = [
        (max(end for _, end in runs) - min(start for start, _ in runs))
        - sum(end - start for start, end in runs)
        for runs in spans.values()
    ]
    walls = sorted((a.shard, a.duration_seconds or 0.0) for a in attempts if a.shard)
    shards = "".join(f", shard {shard} {wall:.1f} s" for shard, wall in walls)
    return (
        f"outside attempts {run.span.wall - (max(last_ends) - first):.2f} s, "
        f"between attempts {max(between):.2f} s a worker, "
        f"tail {max(last_ends) - min(last_ends):.2f} s{shards}"
    )


def _sharded_test(report: ParallelTestReport | None) -> TestResult | None:
    if report is None:
        return None
    return next((t for t in report.completed_tests if t.shards), None)


def _durations(report: ParallelTestReport | None) -> dict[str, float]:
    """Each test file's duration, by file stem, from a per-file session's report."""
    if report is None:
        return {}
    return {
        t.test_id.rsplit("::", 1)[-1]: t.duration_seconds or 0.0 for t in report.completed_tests
    }


def measure_env(bench: Bench, rounds: int) -> Sides:
    """Warm-ups (untimed), then rounds of the four sides in ABCD DCBA order."""
    project = bench.project
    per_file, sharded = plan_per_file(project), plan_sharded(project, WORKERS)
    warm = bench.ours(per_file, "per-file-warm")
    durations = _durations(warm.report)
    longest = max(durations.values(), default=0.0)
    note(
        f"warm-up, per file: {warm.span.wall:.1f} s; files took "
        f"{sum(durations.values()):.1f} s in all, longest {longest:.1f} s"
    )
    warm = bench.ours(sharded, "sharded-warm")
    note(f"warm-up, sharded: {warm.span.wall:.1f} s (records the case durations shards split by)")
    if bench.against is not None:
        warm = bench.ours(per_file, "against-per-file-warm", bench.against)
        note(f"warm-up, per file through {bench.against}: {warm.span.wall:.1f} s")
        warm = bench.ours(sharded, "against-warm", bench.against)
        note(f"warm-up, sharded through {bench.against}: {warm.span.wall:.1f} s")
    xdist_script = project.pytest("-n", str(WORKERS), *project.files)
    note(f"warm-up, pytest -n {WORKERS}: {bench.shell(xdist_script, 'xdist-warm').wall:.1f} s")
    by_length = sorted(project.files, key=lambda f: -durations.get(Path(f).stem, 0.0))
    # Each file in its own session, as each of our attempts is (see autogroup_note).
    xargs_script = f"xargs -P {WORKERS} -n 1 setsid --wait {project.pytest()}"
    sides, against = Sides(), bench.against

    def run_per_file(n: int) -> None:
        sides.per_file.append(bench.ours(per_file, f"per-file-{n}").span)

    def run_xargs(n: int) -> None:
        stdin = "".join(f"{f}\n" for f in by_length)
        sides.xargs.append(bench.shell(xargs_script, f"xargs-{n}", stdin))

    def run_sharded(n: int) -> None:
        run = bench.ours(sharded, f"sharded-{n}")
        sides.sharded.append(run.span)
        sides.totals_differ += not bench.check_sharded(run)

    def run_xdist(n: int) -> None:
        sides.xdist.append(bench.shell(xdist_script, f"xdist-{n}"))

    def run_against(n: int) -> None:
        run = bench.ours(sharded, f"against-{n}", against)
        sides.against.append(run.span)
        sides.totals_differ += not bench.check_sharded(run)

    def run_against_per_file(n: int) -> None:
        sides.against_per_file.append(bench.ours(per_file, f"against-per-file-{n}", against).span)

    order: Sequence[Callable[[int], None]] = (run_per_file, run_xargs, run_sharded, run_xdist)
    if against is not None:
        order = (run_per_file, run_against_per_file, run_xargs, run_sharded, run_against, run_xdist)
    for n in range(rounds):
        for side in order if n % 2 == 0 else order[::-1]:
            side(n)
        other = (
            f", against: per file {sides.against_per_file[-1].wall:.1f} s, "
            f"shards=2 {sides.against[-1].wall:.1f} s"
            if sides.against
            else ""
        )
        note(
            f"round {n + 1}: per file {sides.per_file[-1].wall:.1f} s, "
            f"xargs {sides.xargs[-1].wall:.1f} s, shards=2 {sides.sharded[-1].wall:.1f} s, "
            f"pytest -n {WORKERS} {sides.xdist[-1].wall:.1f} s{other}"
        )
    return sides


def ratio(ours: Sequence[Span], other: Sequence[Span], attr: str) -> float:
    mine: float = sum(getattr(s, attr) for s in ours)
    theirs: float = sum(getattr(s, attr) for s in other)
    return mine / theirs


def figures(project_name: str, label: str, sides: Sides, rounds: int) -> list[Figure]:
    note(f"[{label}]")
    note(f"  per file, ours : {fmt_spans(sides.per_file)}")
    note(f"  xargs -P{WORKERS}      : {fmt_spans(sides.xargs)}")
    note(f"  shards=2, ours : {fmt_spans(sides.sharded)}")
    note(f"  pytest -n {WORKERS}    : {fmt_spans(sides.xdist)}")
    if sides.against:
        note(f"  per file, against: {fmt_spans(sides.against_per_file)}")
        note(f"  shards=2, against: {fmt_spans(sides.against)}")
    per_file = ratio(sides.per_file, sides.xargs, "wall")
    sharded = ratio(sides.sharded, sides.xdist, "wall")
    name = f"suite {project_name} [{label}]"
    return [
        *_against_figures(name, sides),
        Figure(
            f"{name}: per file / xargs -P{WORKERS}, wall",
            per_file,
            target=f"<= {PER_FILE_TARGET}",
            met=per_file <= PER_FILE_TARGET,
        ),
        Figure(
            f"{name}: per file / xargs -P{WORKERS}, CPU", ratio(sides.per_file, sides.xargs, "cpu")
        ),
        Figure(
            f"{name}: shards=2 / pytest -n {WORKERS}, wall",
            sharded,
            target=f"<= {SHARDED_TARGET}",
            met=sharded <= SHARDED_TARGET,
        ),
        Figure(
            f"{name}: shards=2 / pytest -n {WORKERS}, CPU", ratio(sides.sharded, sides.xdist, "cpu")
        ),
        Figure(
            f"{name}: per file / pytest -n {WORKERS}, wall",
            ratio(sides.per_file, sides.xdist, "wall"),
        ),
        Figure(
            f"{name}: sharded runs with case totals other than serial",
            sides.totals_differ,
            unit="count",
            target=f"== 0 of {rounds}",
            met=sides.totals_differ == 0,
        ),
    ]


def _against_figures(name: str, sides: Sides) -> list[Figure]:
    """The other checkout's sides against ours and against the baselines, wall and CPU."""
    if not sides.against:
        return []
    pairs = [
        ("per file / per file against", sides.per_file, sides.against_per_file),
        (f"per file against / xargs -P{WORKERS}", sides.against_per_file, sides.xargs),
        ("shards=2 / shards=2 against", sides.sharded, sides.against),
        (f"shards=2 against / pytest -n {WORKERS}", sides.against, sides.xdist),
    ]
    return [
        Figure(f"{name}: {label}, {attr.replace('cpu', 'CPU')}", ratio(ours, other, attr))
        for label, ours, other in pairs
        for attr in ("wall", "cpu")
    ]


def run(quick: bool) -> list[Figure]:
    rounds = int(os.environ.get(ROUNDS_ENV) or (1 if quick else 2))
    about = chosen()
    project = prepare(about, quick)
    envs = python_envs()
    note(
        f"{about.name} {about.version}: {len(project.files)} test files, {WORKERS} workers, "
        f"{rounds} round(s) per environment, through `parallel-orch run`"
    )
    autogroup_note()
    against = Path(os.environ[AGAINST_ENV]) if os.environ.get(AGAINST_ENV) else None
    if against is not None:
        note(f"two more sides: the per-file and sharded plans through {against}")
    serial, span = serial_totals(project, envs[0].env)
    note(f"one serial pytest run [{envs[0].label}]: {span.wall:.1f} s; {fmt_counts(serial)}")
    out: list[Figure] = []
    for pyenv in envs:
        note(f"-- environment: {pyenv.label} --")
        slug = re.sub(r"[^a-z0-9]+", "-", pyenv.label.lower()).strip("-")
        sides = measure_env(Bench(project, pyenv, serial, slug, against), rounds)
        out += figures(about.name, pyenv.label, sides, rounds * (2 if against else 1))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    title = f"a real suite ({chosen().name}): per file against xargs, sharded against xdist"
    bench_main(title, run, argv)


if __name__ == "__main__":
    main()
