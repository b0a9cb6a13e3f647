"""Scheduling: makespan against its lower bound, before and after history is known.

40 ``sleep`` tests with skewed durations (three long ones, many short ones,
about 12 s of sleeping in all) on 4 workers. They are submitted with the
long ones last: the worst case for first-come first-served. Two sessions
share one state dir: the first has no history, so every test is expected
to take the same time and they run in submission order; the second knows
each test's duration and should start the long ones first.

Lower bound = max(sum of durations / workers, longest duration). The pool
is warmed beforehand (with a separate state dir), so neither session pays
for creating worktrees.

Target: second session's makespan / lower bound <= 1.10.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio

from bench.common import Figure, bench_main, fresh_dir, init_repo, note
from parallel_orch import ParallelTestConfig, ParallelTestOrchestrator, RetryPolicy, TestRequest

WORKERS = 4
LONG_SECONDS = (2.0, 1.6, 1.2)
SHORT_SECONDS = (0.1, 0.15, 0.2, 0.25, 0.3)  # cycled over the short tests
TESTS = 40
TARGET_RATIO = 1.10


def durations(scale: float) -> list[float]:
    """Seconds per test, in submission order: the short ones, then the long ones."""
    shorts = TESTS - len(LONG_SECONDS)
    values = [SHORT_SECONDS[i % len(SHORT_SECONDS)] for i in range(shorts)] + list(LONG_SECONDS)
    return [round(v * scale, 3) for v in values]


def requests(seconds: Sequence[float]) -> list[TestRequest]:
    return [TestRequest(id=f"sleep-{i:02d}", command=f"sleep {s}") for i, s in enumerate(seconds)]


async def _session(config: ParallelTestConfig, seconds: Sequence[float]) -> tuple[float, float]:
    """One session in its own orchestrator (as two CLI runs would be); wall and attempts' sum."""
    async with ParallelTestOrchestrator(config, retry_policy=RetryPolicy.zero_wait()) as orch:
        started = anyio.current_time()
        report = await orch.run_tests(requests(seconds))
        elapsed = anyio.current_time() - started
    if report.tests_passed != len(seconds):
        note(f"warning: {report.tests_passed} of {len(seconds)} passed")
    return elapsed, report.duration_stats.sum


async def _measure(repo: Path, work: Path, seconds: Sequence[float]) -> list[tuple[float, float]]:
    worktrees = work / "worktrees"
    warm = ParallelTestConfig(
        repo=repo, num_workers=WORKERS, state_dir=work / "warm-state", worktree_base_dir=worktrees
    )
    await _session(warm, [0.0] * WORKERS)  # creates the worktrees; its history is not used
    config = ParallelTestConfig(
        repo=repo, num_workers=WORKERS, state_dir=work / "state", worktree_base_dir=worktrees
    )
    return [await _session(config, seconds), await _session(config, seconds)]


def greedy_makespan(seconds: Sequence[float], workers: int) -> float:
    """Makespan of list scheduling in the given order with zero overhead per test."""
    loads = [0.0] * workers
    for value in seconds:
        loads[loads.index(min(loads))] += value
    return max(loads)


def run(quick: bool) -> list[Figure]:
    scale = 0.5 if quick else 1.0
    work = fresh_dir("scheduling")
    repo = work / "repo"
    init_repo(repo, 50)
    seconds = durations(scale)
    bound = max(sum(seconds) / WORKERS, max(seconds))
    note(
        f"{len(seconds)} sleep tests, {sum(seconds):.1f} s in all, longest {max(seconds):.1f} s, "
        f"{WORKERS} workers; lower bound {bound:.2f} s"
    )
    fifo = greedy_makespan(seconds, WORKERS)
    lpt = greedy_makespan(sorted(seconds, reverse=True), WORKERS)
    note(
        f"with zero overhead: submission order {fifo:.2f} s = {fifo / bound:.3f} x bound, "
        f"longest first {lpt:.2f} s = {lpt / bound:.3f} x bound"
    )
    (first, first_sum), (second, second_sum) = anyio.run(_measure, repo, work, seconds)
    for label, makespan, attempts_sum in (
        ("first (no history)", first, first_sum),
        ("second (history)", second, second_sum),
    ):
        overhead_ms = (attempts_sum - sum(seconds)) / len(seconds) * 1000
        idle = (makespan * WORKERS - attempts_sum) / WORKERS
        note(
            f"{label:19}: makespan {makespan:.2f} s = {makespan / bound:.3f} x bound; "
            f"attempts {overhead_ms:.0f} ms over their sleep each; {idle:.2f} s idle per worker"
        )
    return [
        Figure("scheduling: first run / lower bound", first / bound),
        Figure(
            "scheduling: second run / lower bound",
            second / bound,
            target=f"<= {TARGET_RATIO}",
            met=second / bound <= TARGET_RATIO,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("scheduling with and without history", run, argv)


if __name__ == "__main__":
    main()
