"""Report speed: building, comparing and rendering big sessions, and recording their cases.

Two sessions of each shape go into a real store through the store's own API
(the second is compared against the first): 20,000 one-case tests, and 100
tests with 100,000 parsed JUnit cases in all. For each shape it prints the
time to build the report from the store, to compare and judge it, and to
render every format, with the Markdown and HTML sizes. Recording the cases
of 30 attempts of 1,000 cases each (30,000 in all) is timed too, with the
longest stall of the event loop while they are written (a 1 ms heartbeat).

Targets (issue 8): each step under 2 s; Markdown under 1 MiB; HTML under 10 MB;
30,000 cases recorded in well under a second of loop time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from bench.common import Figure, bench_main, fresh_dir, note
from parallel_orch.junit import Case, JUnitResult
from parallel_orch.models import ExecutionStatus, JUnitCounts, SessionStatus, TestRequest
from parallel_orch.report.build import build_report
from parallel_orch.report.finish import judged
from parallel_orch.report.formats import FORMATS
from parallel_orch.report.options import Gates
from parallel_orch.store import AttemptEnd, ExecutionEnd, NewExecution, Store, open_store

SHA = "a" * 40


def _cases(test: int, count: int, fail_every: int) -> tuple[Case, ...]:
    return tuple(
        Case(
            classname=f"pkg.mod{test}",
            name=f"test_{n}",
            status="failed" if fail_every and (test + n) % fail_every == 0 else "passed",
            time=0.001 * (n % 17),
            message="assert 1 == 2" if fail_every and (test + n) % fail_every == 0 else None,
        )
        for n in range(count)
    )


async def _session(
    store: Store, session_id: str, tests: int, cases_each: int, fail_every: int
) -> None:
    requests = [
        TestRequest(id=f"big/plan::t{n:05}", command="true", junit=True) for n in range(tests)
    ]
    ids = await store.create_session(
        session_id,
        num_workers=2,
        repo="/repo",
        plan_paths=("plans",),
        plan_key="bench",
        owner="bench",
        executions=[NewExecution(request=r, sha=SHA) for r in requests],
    )
    for n, execution_id in enumerate(ids):
        attempt = await store.start_attempt(
            execution_id, session_id, number=1, worker=n % 2, worktree="/wt", log_path="/log"
        )
        cases = _cases(n, cases_each, fail_every)
        failed = sum(c.status == "failed" for c in cases)
        status = ExecutionStatus.FAILED if failed else ExecutionStatus.PASSED
        junit = JUnitResult(
            counts=JUnitCounts(passed=len(cases) - failed, failed=failed, errors=0, skipped=0),
            cases=cases,
        )
        end = AttemptEnd(attempt, execution_id, status, 0 if not failed else 1, 0.01, junit=junit)
        await store.end_attempt(end, ExecutionEnd(status=status, duration_seconds=0.01))
    await store.finish_session(session_id, SessionStatus.PARTIAL_SUCCESS, report_json=None)


def _timed(label: str, figures: list[Figure], fn: object, *args: object) -> object:
    started = time.perf_counter()
    result = fn(*args)  # type: ignore[operator]
    seconds = time.perf_counter() - started
    figures.append(Figure(label, seconds, "s", "< 2 s", seconds < 2.0))
    return result


async def _shape(state: Path, name: str, tests: int, cases_each: int) -> list[Figure]:
    figures: list[Figure] = []
    async with open_store(state) as store:
        await _session(store, f"{name}-base", tests, cases_each, fail_every=0)
        await _session(store, f"{name}-now", tests, cases_each, fail_every=97)
        started = time.perf_counter()
        report = await build_report(store, f"{name}-now")
        seconds = time.perf_counter() - started
        figures.append(Figure(f"{name}: build from store", seconds, "s", "< 2 s", seconds < 2.0))
        baseline = await build_report(store, f"{name}-base")
    gates = Gates(min_pass_rate=0.9, max_flaky=0)
    report = _timed(f"{name}: compare and judge", figures, judged, report, gates, baseline)  # type: ignore[assignment]
    for fmt in FORMATS:
        text = _timed(f"{name}: render {fmt}", figures, report.render, fmt)
        size = len(str(text).encode())
        if fmt == "markdown":
            figures.append(
                Figure(f"{name}: markdown size", size / 2**20, "MiB", "< 1", size < 2**20)
            )
        if fmt == "html":
            figures.append(Figure(f"{name}: html size", size / 1e6, "MB", "< 10", size < 10e6))
    return figures


async def _record_cases(state: Path) -> list[Figure]:
    """30 attempts of 1,000 cases: wall time, and the longest loop stall while writing."""
    stalls: list[float] = []
    done = anyio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await anyio.sleep(0.001)
            stalls.append(time.perf_counter() - before - 0.001)

    async with open_store(state) as store, anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        started = time.perf_counter()
        await _session(store, "cases", 30, 1000, fail_every=0)
        wall = time.perf_counter() - started
        done.set()
    worst = max(stalls) if stalls else 0.0
    return [
        Figure("30,000 cases: recorded in", wall, "s"),
        Figure("30,000 cases: longest loop stall", worst * 1e3, "ms", "< 100 ms", worst < 0.1),
    ]


def run(quick: bool) -> list[Figure]:
    work = fresh_dir("report_speed")
    shapes: Sequence[tuple[str, int, int]] = (
        [("2,000 tests", 2000, 1), ("10 tests x 1,000 cases", 10, 1000)]
        if quick
        else [("20,000 tests", 20_000, 1), ("100 tests x 1,000 cases", 100, 1000)]
    )
    figures: list[Figure] = []
    for n, (name, tests, cases_each) in enumerate(shapes):
        note(f"{name}: recording two sessions ...")
        figures += anyio.run(_shape, work / f"state{n}", name, tests, cases_each)
    figures += anyio.run(_record_cases, work / "cases")
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("Report speed: build, compare, render; recording cases", run, argv)


if __name__ == "__main__":
    main()
