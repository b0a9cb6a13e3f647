"""Where an attempt's time goes: the engine's per-attempt costs, measured three ways.

Not a target of its own: it explains the isolation and scheduling figures.

1. Breakdown. Trivial attempts (``true``) on 2 workers, with wall-time
   accumulators wrapped around the engine's per-attempt steps (lease,
   store writes, process run). Steps the engine no longer has are skipped.
2. Store writes alone: the three transactions the engine makes per attempt,
   through its ``Store``, against the same rows written with ``sqlite3``.
3. What-if: the isolation benchmark's two sides, once as is and once with
   the per-attempt store writes stubbed out (nothing recorded), to bound
   what faster recording could buy.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio

from bench import isolation
from bench.common import Figure, Span, bench_main, fresh_dir, init_repo, note
from parallel_orch import (
    ExecutionStatus,
    ParallelTestConfig,
    ParallelTestOrchestrator,
    RetryPolicy,
    TestRequest,
    runner,
    store,
    worker,
    worktrees,
)

WORKERS = 2
STORE_WRITES = ("start_attempt", "set_attempt_process", "end_attempt")
#: (owner, attribute) of each per-attempt step timed in the breakdown.
STEPS: tuple[tuple[Any, str], ...] = (
    (worker.ExecutionWorker, "_attempt"),
    (worktrees.WorktreePool, "lease"),
    (worktrees.WorktreePool, "release"),
    *((store.Store, name) for name in STORE_WRITES),
    (runner, "run_process"),
)


@contextmanager
def patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    original = owner.__dict__[name]
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextmanager
def timing(totals: dict[str, list[float]]) -> Iterator[None]:
    """Accumulate wall seconds per step into ``totals["Owner.step"]`` while the block runs."""
    with ExitStack() as stack:
        for owner, name in STEPS:
            fn = getattr(owner, name, None)
            if fn is None or not inspect.iscoroutinefunction(fn):
                note(f"(the engine has no coroutine {name}; not timed)")
                continue
            label = f"{owner.__name__.rsplit('.', 1)[-1]}.{name}"
            stack.enter_context(patched(owner, name, _timed(fn, totals[label])))
        yield


def _timed(fn: Callable[..., Any], bucket: list[float]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - started)

    return wrapper


@contextmanager
def store_writes_stubbed() -> Iterator[None]:
    """The per-attempt store writes do nothing (``start_attempt`` hands out fake ids)."""
    ids = itertools.count(1_000_000_000)

    async def start_attempt(self: store.Store, *args: Any, **kwargs: Any) -> int:
        return next(ids)

    async def nothing(self: store.Store, *args: Any, **kwargs: Any) -> None:
        return None

    with ExitStack() as stack:
        stack.enter_context(patched(store.Store, "start_attempt", start_attempt))
        for name in STORE_WRITES[1:]:
            stack.enter_context(patched(store.Store, name, nothing))
        yield


async def _breakdown(
    repo: Path, work: Path, sha: str, tests: int
) -> tuple[float, dict[str, list[float]]]:
    config = ParallelTestConfig(
        repo=repo,
        num_workers=WORKERS,
        state_dir=work / "state",
        worktree_base_dir=work / "worktrees",
    )
    requests = [TestRequest(id=f"t{i:04d}", command="true", ref=sha) for i in range(tests)]
    totals: dict[str, list[float]] = defaultdict(list)
    async with ParallelTestOrchestrator(config, retry_policy=RetryPolicy.zero_wait()) as orch:
        await orch.run_tests(requests)  # warm
        with timing(totals):
            started = time.perf_counter()
            await orch.run_tests(requests)
            elapsed = time.perf_counter() - started
    return elapsed, totals


async def _store_writes(path: Path, count: int) -> tuple[float, float]:
    """Seconds per attempt's writes: through the engine's Store, then as plain sqlite3."""
    async with store.open_store(path) as db:
        ids = await db.create_session(
            "bench",
            num_workers=1,
            repo="/repo",
            plan_paths=[],
            plan_key="bench",
            owner="bench",
            executions=[
                store.NewExecution(request=TestRequest(id=f"t{i}", command="true"), sha="0" * 40)
                for i in range(count)
            ],
        )
        started = time.perf_counter()
        for execution_id in ids:
            attempt_id = await db.start_attempt(
                execution_id, "bench", number=1, worker=0, worktree="/wt", log_path="/log"
            )
            await db.set_attempt_process(attempt_id, 1, 1)
            await db.end_attempt(
                store.AttemptEnd(
                    attempt_id=attempt_id,
                    execution_id=execution_id,
                    status=ExecutionStatus.PASSED,
                    exit_code=0,
                    duration_seconds=0.0,
                ),
                store.ExecutionEnd(status=ExecutionStatus.PASSED, duration_seconds=0.0),
            )
        engine = (time.perf_counter() - started) / count
    raw = await anyio.to_thread.run_sync(_raw_writes, db.path, ids)
    return engine, raw


def _raw_writes(database: Path, ids: Sequence[int]) -> float:
    """The same rows as the engine writes per attempt, in 3 transactions, with plain sqlite3."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        started = time.perf_counter()
        for execution_id in ids:
            conn.execute("BEGIN")
            cursor = conn.execute(
                "INSERT INTO attempts (execution_id, session_id, number, worker, worktree, "
                "started_at, status, log_path, output_tail) VALUES (?, 'bench', 2, 0, '/wt', "
                "datetime('now'), 'running', '/log', '')",
                (execution_id,),
            )
            conn.execute(
                "UPDATE executions SET status = 'running', attempts = 2 WHERE id = ?",
                (execution_id,),
            )
            conn.execute("COMMIT")
            conn.execute("UPDATE attempts SET pid = 1, pgid = 1 WHERE id = ?", (cursor.lastrowid,))
            conn.execute("BEGIN")
            conn.execute(
                "UPDATE attempts SET status = 'passed', exit_code = 0, duration_seconds = 0, "
                "completed_at = datetime('now') WHERE id = ?",
                (cursor.lastrowid,),
            )
            conn.execute(
                "UPDATE executions SET status = 'passed', completed_at = datetime('now') "
                "WHERE id = ?",
                (execution_id,),
            )
            conn.execute("COMMIT")
        return (time.perf_counter() - started) / len(ids)
    finally:
        conn.close()


def _ratio(sides: tuple[list[Span], list[Span]], attr: str) -> float:
    """Ours / baseline, of summed ``wall`` or ``cpu``."""
    ours, baseline = sides
    mine: float = sum(getattr(s, attr) for s in ours)
    theirs: float = sum(getattr(s, attr) for s in baseline)
    return mine / theirs


def run(quick: bool) -> list[Figure]:
    files, tests, rounds = (500, 100, 2) if quick else (2_000, 300, 2)
    work = fresh_dir("attempt_costs")
    repo = work / "repo"
    sha = init_repo(repo, files)

    note(f"1. breakdown: {tests} attempts of `true`, {WORKERS} workers, {files} files")
    elapsed, totals = anyio.run(_breakdown, repo, work / "breakdown", sha, tests)
    note(
        f"   run_tests wall {elapsed:.2f} s = {elapsed / tests * 1000:.1f} ms per attempt per pool"
    )
    for label, values in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
        per = sum(values) / max(len(values), 1) * 1000
        note(f"   {label:30} {per:7.2f} ms a call, {len(values):4} calls, {sum(values):6.2f} s")
    writes = sum(sum(totals.get(f"Store.{name}", [])) for name in STORE_WRITES) / tests * 1000
    note(f"   store writes: {writes:.1f} ms per attempt (wall, under the load of the run)")

    count = 100 if quick else 300
    engine, raw = anyio.run(_store_writes, work / "store", count)
    note(
        f"2. store writes alone, {count} attempts: Store {engine * 1000:.2f} ms per attempt, "
        f"sqlite3 {raw * 1000:.2f} ms"
    )

    note(f"3. what-if: isolation benchmark ({tests} tests, {rounds} rounds), store writes stubbed")
    normal = anyio.run(isolation.measure_sides, repo, work / "normal", sha, tests, rounds)
    with store_writes_stubbed():
        stubbed = anyio.run(
            functools.partial(isolation.measure_sides, check=False),
            repo,
            work / "stubbed",
            sha,
            tests,
            rounds,
        )
    as_is = _ratio(normal, "wall")
    without = _ratio(stubbed, "wall")
    note(f"   ours / xargs, wall: as is {as_is:.2f}, store writes stubbed {without:.2f}")
    note(
        f"   ours / xargs, CPU : as is {_ratio(normal, 'cpu'):.2f}, "
        f"store writes stubbed {_ratio(stubbed, 'cpu'):.2f}"
    )
    return [
        Figure("attempt: store writes per attempt", writes, "ms"),
        Figure("attempt: Store / sqlite3 for the same rows", engine / raw),
        Figure("attempt: isolation ratio as is", as_is),
        Figure("attempt: isolation ratio, store writes stubbed", without),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("where an attempt's time goes", run, argv)


if __name__ == "__main__":
    main()
