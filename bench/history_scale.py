"""A daemon with a long history: submit-to-ack and a session's end against an empty store.

A CI daemon runs the same plan again and again. Each submit reads its tests'
expected durations (their last few executions) and each session's end reads
the previous session of its plan set; both used to read the whole history of
the test or the plan set. Here one store holds 2,000 finished sessions of a
100-test plan (200,000 executions; quick: 500), written straight into its
tables, and another is empty. A daemon on each gets the same plan submitted
10 times, one session at a time: the time to each acknowledgement and to each
session's end (its 100 ``true`` tests run), side by side, the two daemons
alternating.

Targets: with the long history, submit-to-ack median and session wall each
at most 1.5x the empty store's.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import anyio

from bench.common import Figure, bench_main, fresh_dir, init_repo, note
from bench.daemon_process import running_daemon
from parallel_orch import TestRequest
from parallel_orch.client import DaemonClient
from parallel_orch.plan_identity import plan_key
from parallel_orch.store import DB_FILENAME, utcnow
from parallel_orch.store.writer import sql_time

TESTS = 100
SESSIONS = 2_000  # of history (quick: 500)
SUBMITS = 10
ROUNDS = 2  # each daemon started this many times, alternating
WORKERS = os.cpu_count() or 2
TARGET = 1.5


def requests() -> list[TestRequest]:
    return [TestRequest(id=f"suite::t{n}", command=("true",)) for n in range(TESTS)]


def fill(state_dir: Path, sessions: int) -> None:
    """``sessions`` finished sessions of the plan, an hour old and older, straight into the
    tables of the store in ``state_dir`` (made by a daemon started once before)."""
    ids = [r.id for r in requests()]
    key = plan_key((), ids)
    start = utcnow() - timedelta(hours=1, seconds=sessions)
    with sqlite3.connect(state_dir / DB_FILENAME) as db:
        for n in range(sessions):
            at = sql_time(start + timedelta(seconds=n))  # as the store writes its times
            sid = f"old{n:06d}"
            db.execute(
                "INSERT INTO sessions (id, status, created_at, completed_at, num_workers, repo,"
                " plan_paths, plan_key, owner) VALUES (?, 'complete', ?, ?, 2, '/r', '[]', ?, '')",
                (sid, at, at, key),
            )
            db.executemany(
                "INSERT INTO executions (session_id, seq, test_id, request_json, ref, category,"
                " status, flaky, attempts, created_at, completed_at, duration_seconds)"
                " VALUES (?, ?, ?, '{}', 'HEAD', 'default', 'passed', 0, 1, ?, ?, 0.01)",
                [(sid, seq, test_id, at, at) for seq, test_id in enumerate(ids)],
            )


async def submit_each(socket: Path) -> tuple[list[float], list[float]]:
    """The plan submitted :data:`SUBMITS` times, each once the one before ended: seconds
    to each acknowledgement, and to each session's end."""
    acks, walls = [], []
    async with DaemonClient(socket) as client:
        for _ in range(SUBMITS):
            started = time.perf_counter()
            submitted = await client.submit(requests=requests())
            acks.append(time.perf_counter() - started)
            await client.wait(submitted.session_id)
            walls.append(time.perf_counter() - started)
    return acks, walls


def measure(repo: Path, log: Path) -> tuple[list[float], list[float]]:
    with running_daemon(repo, workers=WORKERS, log=log) as daemon:
        anyio.run(submit_each, daemon.socket)  # warm: the pool, the daemon's first uses
        return anyio.run(submit_each, daemon.socket)


def run(quick: bool) -> list[Figure]:
    sessions = 500 if quick else SESSIONS
    work = fresh_dir("history_scale")
    repos = {"empty": work / "empty", "long": work / "long"}
    for name, repo in repos.items():
        init_repo(repo, 10)
        with running_daemon(repo, workers=WORKERS, log=work / f"{name}-first.log"):
            pass  # the store made at its schema's head
    fill(repos["long"] / ".parallel-orch", sessions)
    acks: dict[str, list[float]] = {name: [] for name in repos}
    walls: dict[str, list[float]] = {name: [] for name in repos}
    for n in range(ROUNDS):
        for name, repo in repos.items():
            a, w = measure(repo, work / f"{name}-{n}.log")
            acks[name] += a
            walls[name] += w
    note(
        f"a plan of {TESTS} tests submitted {SUBMITS} times a round, {ROUNDS} rounds, "
        f"{WORKERS} workers; long history: {sessions} sessions of it, "
        f"{sessions * TESTS:,} executions"
    )
    figures = []
    for label, values in (("submit-to-ack median", acks), ("session wall median", walls)):
        empty, long = statistics.median(values["empty"]), statistics.median(values["long"])
        note(f"{label}: empty store {empty * 1000:.1f} ms, long history {long * 1000:.1f} ms")
        ratio = long / empty
        figures.append(
            Figure(
                f"{label}, long history / empty store",
                ratio,
                target=f"<= {TARGET}",
                met=ratio <= TARGET,
            )
        )
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("daemon: a long history against an empty store", run, argv)


if __name__ == "__main__":
    main()
