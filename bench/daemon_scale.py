"""Daemon at scale: 10,000 queued requests in 10 sessions; memory and `status` latency.

Ten clients each submit one session of 1,000 trivial requests (``true``) at
once, filling the queue to its default bound. While the workers drain it, a
client asks ``status`` every 20 ms and the daemon's resident memory is
sampled; after the measuring window the daemon is stopped with no grace.

Targets: daemon RSS < 200 MB; ``status`` p99 < 50 ms.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from bench.common import Figure, bench_main, fresh_dir, init_repo, note
from bench.daemon_process import percentile, rss_mb, running_daemon
from parallel_orch import TestRequest
from parallel_orch.client import DaemonClient

SESSIONS = 10
PER_SESSION = 1_000
WINDOW_SECONDS = 30.0
STATUS_EVERY_SECONDS = 0.02
RSS_TARGET_MB = 200.0
STATUS_P99_TARGET_MS = 50.0
WORKERS = os.cpu_count() or 2


async def submit_sessions(socket: Path, per_session: int) -> float:
    """Submit the sessions concurrently, one client each; seconds until all were acknowledged."""
    started = time.perf_counter()

    async def one(index: int) -> None:
        requests = [
            TestRequest(id=f"s{index}::t{n}", command=("true",)) for n in range(per_session)
        ]
        async with DaemonClient(socket) as client:
            await client.submit(requests=requests)

    async with anyio.create_task_group() as tg:
        for index in range(SESSIONS):
            tg.start_soon(one, index)
    return time.perf_counter() - started


async def finished(client: DaemonClient) -> int:
    """Executions of all sessions that have reached a final status."""
    sessions = await client.sessions(limit=SESSIONS)
    return sum(s.total - s.counts.get("pending", 0) - s.counts.get("running", 0) for s in sessions)


async def measure(socket: Path, pid: int, window: float) -> tuple[list[float], list[float], int]:
    """``status`` latencies and RSS samples over the window; executions finished in it."""
    latencies: list[float] = []
    rss: list[float] = [rss_mb(pid)]
    async with DaemonClient(socket) as client:
        before = await finished(client)
        deadline = time.perf_counter() + window
        last_rss = time.perf_counter()
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status = await client.status()
            latencies.append(time.perf_counter() - t0)
            if status.queued == 0 and not any(w.test_id for w in status.workers):
                break
            if time.perf_counter() - last_rss >= 0.5:
                rss.append(rss_mb(pid))
                last_rss = time.perf_counter()
            await anyio.sleep(STATUS_EVERY_SECONDS)
        drained = await finished(client) - before
        await client.shutdown(now=True, wait=False)
    return latencies, rss, drained


def run(quick: bool) -> list[Figure]:
    per_session = 100 if quick else PER_SESSION
    window = 5.0 if quick else WINDOW_SECONDS
    work = fresh_dir("daemon_scale")
    repo = work / "repo"
    init_repo(repo, 50)
    with running_daemon(repo, workers=WORKERS, log=work / "daemon.log") as daemon:
        idle_rss = rss_mb(daemon.pid)
        submit_seconds = anyio.run(submit_sessions, daemon.socket, per_session)
        loaded_rss = rss_mb(daemon.pid)
        latencies, rss, drained = anyio.run(measure, daemon.socket, daemon.pid, window)
    total = SESSIONS * per_session
    note(
        f"{SESSIONS} sessions x {per_session} requests = {total}, {WORKERS} workers; "
        f"all acknowledged in {submit_seconds:.2f} s"
    )
    note(f"RSS idle {idle_rss:.0f} MB, after submitting {loaded_rss:.0f} MB, max {max(rss):.0f} MB")
    note(
        f"{len(latencies)} status calls in {window:.0f} s while {drained} requests ran "
        f"({drained / window:.1f}/s)"
    )
    p99_ms = percentile(latencies, 99) * 1000
    return [
        Figure(
            "daemon RSS max", max(rss), "MB", f"< {RSS_TARGET_MB:.0f}", max(rss) < RSS_TARGET_MB
        ),
        Figure("status p50", percentile(latencies, 50) * 1000, "ms"),
        Figure(
            "status p99",
            p99_ms,
            "ms",
            f"< {STATUS_P99_TARGET_MS:.0f}",
            p99_ms < STATUS_P99_TARGET_MS,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("daemon: 10,000 queued requests", run, argv)


if __name__ == "__main__":
    main()
