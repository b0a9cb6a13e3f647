"""A Dask fleet against the local executor: 200 tests of sleep 0.2 on 4 slots each.

A real Dask scheduler and two real worker processes of 2 threads each on the
loopback (the venv's ``dask scheduler`` / ``dask worker``,
``bench/fleet_cluster.py``), in a temp git repo whose path the workers clone.
The same plan through ``parallel-orch run`` as a user runs it (a new process
each, from start to exit, Dask's import and the connection included), on
both sides: ``--scheduler ADDR`` (``-j 4``) against the local executor with
``-j 4``, each with its own state dir.

Both sides are warmed by one untimed run (the workers' clones and worktree
pools, and the local pool, exist then, as for a user's second run); then
rounds alternate the order of the sides (AB BA ...). In both environments,
with ``PYTHONDONTWRITEBYTECODE=1`` first and without it, the cluster started
anew in each (its processes run Python too).

Figures: walls, dask / local of summed walls (target <= 1.3), and the
overhead per attempt, ``(wall x 4 - tests x 0.2 s) / tests``, for each side
and their difference. From each run's report, where that time goes: the
start (process start to the first attempt's start), per attempt the gap on
a slot (an attempt's start minus the end of the previous one on the same
worker loop: taking it from the queue, shipping it, leasing a worktree) and
inside it (its recorded start to end, less the test's own duration:
spawning, collecting, the result's way back, the record), and the end (the
last attempt's end to the process's exit: the report). The CPU of the
cluster's processes (their tests included) is added to the dask side's.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.cli_process import PyEnv, python_envs, run_cli
from bench.common import (
    Figure,
    Span,
    autogroup_note,
    bench_main,
    fresh_dir,
    init_repo,
    load,
    note,
)
from bench.fleet_cluster import dask_cluster
from parallel_orch.report import ParallelTestReport

SLOTS = 4
DASK_WORKERS = 2
THREADS = 2
SLEEP = 0.2
TARGET_RATIO = 1.3


@dataclass
class Split:
    """Where one run's wall went (seconds; per attempt as means)."""

    start: float
    gap: float
    inside: float
    end: float
    hosts: int


@dataclass
class Side:
    """One side's timed runs in one environment."""

    label: str
    spans: list[Span] = field(default_factory=list)
    splits: list[Split] = field(default_factory=list)
    failed: int = 0  # runs whose report did not show every test passed

    def wall(self) -> float:
        return sum(s.wall for s in self.spans)

    def overhead_ms(self, tests: int) -> float:
        """Per attempt: the slot time beyond the tests' own sleep, mean over the runs."""
        per_run = self.wall() / len(self.spans)
        return (per_run * SLOTS - tests * SLEEP) / tests * 1000


def split(report: ParallelTestReport, began: datetime, ended: datetime) -> Split:
    """Where a run's wall went, from its report's attempts (see the module docstring)."""
    attempts = [a for t in report.completed_tests for a in t.attempts]
    by_slot: dict[int, list[tuple[datetime, datetime, float]]] = defaultdict(list)
    for a in attempts:
        if a.completed_at is not None:
            by_slot[a.worker].append(
                (_utc(a.started_at), _utc(a.completed_at), a.duration_seconds or 0.0)
            )
    gaps, inside = [], []
    for runs in by_slot.values():
        runs.sort()
        for (_, prev_end, _), (start, _, _) in itertools.pairwise(runs):
            gaps.append((start - prev_end).total_seconds())
        inside += [(end - start).total_seconds() - took for start, end, took in runs]
    first = min(r[0] for runs in by_slot.values() for r in runs)
    last = max(r[1] for runs in by_slot.values() for r in runs)
    return Split(
        start=(first - began).total_seconds(),
        gap=statistics.fmean(gaps) if gaps else 0.0,
        inside=statistics.fmean(inside),
        end=(ended - last).total_seconds(),
        hosts=len({a.host for a in attempts}),
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cli_side(
    label: str, args: list[str], repo: Path, work: Path, env: dict[str, str], tests: int
) -> Callable[[Side | None], None]:
    """One run of the side (timed into ``side``, or untimed when it is None)."""

    def run(side: Side | None) -> None:
        report_path = work / f"{label}-report.json"
        began = datetime.now(UTC)
        done = run_cli(args, cwd=repo, env=env, log=work / f"{label}.log", report=report_path)
        ended = datetime.now(UTC)
        report = done.report
        if report is None or report.tests_passed != tests:
            passed = report.tests_passed if report else "no report"
            note(f"warning: {label}: {passed} of {tests} passed ({work / f'{label}.log'})")
        if side is None:
            return
        side.spans.append(done.span)
        if report is None or report.tests_passed != tests:
            side.failed += 1
        if report is not None and report.completed_tests:
            side.splits.append(split(report, began, ended))

    return run


def measure_env(
    pyenv: PyEnv, repo: Path, work: Path, tests: int, rounds: int
) -> tuple[Side, Side, float]:
    """Warm both sides, then ``rounds`` alternating rounds; the sides, and the cluster's
    CPU seconds during the timed dask runs."""
    worker_dir = (work / "workers").resolve()
    env = {**pyenv.env, "PARALLEL_ORCH_DASK_WORKER_DIR": str(worker_dir)}
    plan = work.parent / "sleep.toml"
    common = ["run", str(plan), "-j", str(SLOTS), "-q"]
    local, dask = Side("local"), Side("dask")
    cluster_cpu = 0.0
    with dask_cluster(
        work / "cluster", env, workers=DASK_WORKERS, threads=THREADS, worker_dir=worker_dir
    ) as cluster:
        runs = {
            local.label: cli_side(
                "local", [*common, "--state-dir", str(work / "state-local")], repo, work, env, tests
            ),
            dask.label: cli_side(
                "dask",
                [*common, "--state-dir", str(work / "state-dask"), "--scheduler", cluster.address],
                repo,
                work,
                env,
                tests,
            ),
        }
        sides = {local.label: local, dask.label: dask}
        for label in runs:  # warm, untimed: pools, clones, page cache
            runs[label](None)
        for index in range(rounds):
            order = list(runs) if index % 2 == 0 else list(runs)[::-1]
            for label in order:
                before = cluster.cpu_seconds() if label == "dask" else 0.0
                runs[label](sides[label])
                if label == "dask":
                    cluster_cpu += cluster.cpu_seconds() - before
    return local, dask, cluster_cpu


def describe(side: Side, tests: int, extra_cpu: float = 0.0) -> None:
    walls = ", ".join(f"{s.wall:.2f}" for s in side.spans)
    cpu = sum(s.cpu for s in side.spans) + extra_cpu
    note(
        f"{side.label:5}: walls {walls} s; CPU {cpu / len(side.spans):.2f} s a run; "
        f"overhead {side.overhead_ms(tests):.1f} ms an attempt"
    )
    if side.splits:
        splits = side.splits
        note(
            f"       start {_mean(splits, 'start'):.2f} s, per attempt: gap on its slot "
            f"{_mean(splits, 'gap') * 1000:.1f} ms + inside beyond the test "
            f"{_mean(splits, 'inside') * 1000:.1f} ms; end {_mean(splits, 'end'):.2f} s; "
            f"hosts {max(s.hosts for s in splits)}"
        )
    if side.failed:
        note(f"       {side.failed} run(s) did not pass every test")


def _mean(splits: list[Split], name: str) -> float:
    return statistics.fmean(float(getattr(s, name)) for s in splits)


def run(quick: bool) -> list[Figure]:
    tests, rounds = (100, 2) if quick else (200, 4)
    work = fresh_dir("fleet")
    repo = work / "repo"
    init_repo(repo, 200)
    (work / "sleep.toml").write_text(
        "".join(f'[[test]]\nid = "sleep-{i:03d}"\nrun = "sleep {SLEEP}"\n' for i in range(tests))
    )
    note(
        f"{tests} tests of `sleep {SLEEP}`; dask: {DASK_WORKERS} workers x {THREADS} threads; "
        f"local: -j {SLOTS}; {rounds} timed rounds after one warm run of each"
    )
    autogroup_note()
    figures: list[Figure] = []
    for index, pyenv in enumerate(python_envs()):
        note(f"[{pyenv.label}] load average at start: {load()}")
        started = time.perf_counter()
        local, dask, cluster_cpu = measure_env(pyenv, repo, work / f"env-{index}", tests, rounds)
        took = time.perf_counter() - started
        note(f"[{pyenv.label}] load average at end  : {load()} ({took:.0f} s)")
        describe(local, tests)
        describe(dask, tests, cluster_cpu)
        ratio = dask.wall() / local.wall()
        per_round = ", ".join(
            f"{d.wall / lo.wall:.2f}" for d, lo in zip(dask.spans, local.spans, strict=True)
        )
        note(f"dask / local per round: {per_round}")
        extra = dask.overhead_ms(tests) - local.overhead_ms(tests)
        figures += [
            Figure(
                f"fleet [{pyenv.label}]: dask / local, wall",
                ratio,
                target=f"<= {TARGET_RATIO}",
                met=ratio <= TARGET_RATIO,
            ),
            Figure(
                f"fleet [{pyenv.label}]: overhead an attempt, local", local.overhead_ms(tests), "ms"
            ),
            Figure(
                f"fleet [{pyenv.label}]: overhead an attempt, dask", dask.overhead_ms(tests), "ms"
            ),
            Figure(f"fleet [{pyenv.label}]: dask - local an attempt", extra, "ms"),
        ]
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("a Dask fleet against the local executor", run, argv)


if __name__ == "__main__":
    main()
