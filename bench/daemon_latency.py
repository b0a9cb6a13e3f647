"""Daemon: submit-to-acknowledge latency with 20 concurrent clients, and wall time against `run`.

20 clients, each on its own connection, submit trivial one-request sessions
(``true``) back to back, 10 each: 200 sessions (quick: 3 each, 60). The
latency of each submit is the time until its session id comes back (its
requests are committed and synced to disk by then). The daemon's wall time
runs from the first submit until every session has finished. The same
requests as one plan, run by a plain ``parallel-orch run`` (process start
included, same warm worktree pool), give the reference wall time. The two
alternate three times (quick: twice), each daemon after the first started
afresh and warmed up the same way, and the ratio is of their medians: one
wall of each, about a second apiece, gave ratios from 0.89 to 1.32 here.

A synced commit cannot be faster than the disk's fsync, so the median of 50
fsyncs of a 4 KiB append in the store's folder is printed beside them; and the
daemon's own CPU per session (its process, not the tests' or git's), which
other load on the machine inflates much less than the walls.

The issue's "20 clients submitting at once" is also measured as it reads: 20
connections, each sending one submit at the same instant to a daemon with
nothing else to do, 100 such bursts (quick: 20), each 50 ms after the last
one's sessions ended, and again 5 ms after: the p99 target is for these. A
burst's 20 answers come back together, fast or slow alike, so over 10 bursts
(this benchmark's count until 2026-12-01) the p99 of 200 submits was the
third-slowest answer, always in the slowest burst: one slow burst in ten
decided it, where the p99 asks about one submit in a hundred. Over 100 the
p99 is the 21st-slowest of 2,000 answers, which one slow burst alone does not
reach. How many bursts had their slowest answer at 10 ms or more is printed
beside it, and the slowest answer of all. The
back-to-back figures are printed beside them without a target: there the
clients' next submits arrive while the daemon runs the sessions before them,
and each waits behind that work (a reading harder than the issue's, which
this benchmark held itself to until 2026-12-01).

How long the daemon sat idle matters on some virtual machines (this one): the
host takes idle memory back, and a page touched after a pause faults again.
So the time to write 1,000 resident pages of this process after 0, 5 and 50 ms
asleep is printed beside the bursts, as the fsync is beside the commits.

Then the same bursts twice more, for scale: with every worker held by a long
test (the submit path alone: the submits only queue), and to
``bench.ack_floor``'s minimal server (the daemon's own parsing, insert and
synced commit, nothing else: the floor on this machine).

Targets: submit-to-ack p99 < 10 ms (both ways); daemon / run <= 1.2.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio

from bench.cli_process import cli_argv
from bench.common import Figure, bench_main, fmt_ms, fresh_dir, init_repo, note
from bench.daemon_process import cli_env, percentile, running_daemon, running_floor
from parallel_orch import TestRequest
from parallel_orch.client import DaemonClient

CLIENTS = 20
SUBMITS_PER_CLIENT = 10
BURSTS = 100  # quick: a fifth (see the module)
WORKERS = os.cpu_count() or 2
ACK_P99_TARGET_MS = 10.0
RATIO_TARGET = 1.2
RATIO_ROUNDS = 3  # the daemon's wall and `run`'s, alternating (quick: 2); medians compared
FSYNCS = 50
BURST_PAUSE = 0.05  # seconds a burst comes after the sessions of the one before ended
WARM_PAUSE = 0.005  # and the same burst sooner, for comparison
PAGE = 4096
RETOUCH_PAGES = 1000
T = TypeVar("T")
HELD = "20 submits at once, workers held (the submit path alone), 50 ms after the last acks,"
FLOOR = "20 submits at once to bench.ack_floor's minimal server, 50 ms after the last acks,"


def cpu_seconds(pid: int) -> float:
    """CPU seconds ``pid`` has used (user + system, its own threads; not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fsync_seconds(folder: Path, count: int = FSYNCS) -> list[float]:
    """Seconds of each of ``count`` 4 KiB appends to a file in ``folder``, each fsynced."""
    path = folder / "bench-fsync.tmp"
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fsync(fd)
        out = []
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            out.append(time.perf_counter() - started)
        return out
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


async def submit_all(socket: Path, per_client: int) -> tuple[list[float], float]:
    """Every client's submit latencies (seconds), and the wall time until all sessions ended."""
    latencies: list[float] = []
    started = time.perf_counter()

    async def client(index: int) -> None:
        async with DaemonClient(socket) as conn:
            sessions = []
            for n in range(per_client):
                request = TestRequest(id=f"c{index}::r{n}", command=("true",))
                t0 = time.perf_counter()
                submitted = await conn.submit(requests=[request])
                latencies.append(time.perf_counter() - t0)
                sessions.append(submitted.session_id)
            for session_id in sessions:
                await conn.wait(session_id)

    async with anyio.create_task_group() as tg:
        for index in range(CLIENTS):
            tg.start_soon(client, index)
    return latencies, time.perf_counter() - started


async def bursts(
    socket: Path, count: int, pause: float = BURST_PAUSE, *, wait_sessions: bool = True
) -> list[float]:
    """Latencies of ``count`` bursts of one submit from each client at the same instant,
    each burst ``pause`` seconds after the sessions of the one before have ended (and every
    client is waiting for the signal); without ``wait_sessions``, after its acks."""
    latencies: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(DaemonClient(socket)) for _ in range(CLIENTS)]
        for burst in range(count):
            go = anyio.Event()
            sessions: list[tuple[DaemonClient, str]] = []
            waiting: list[int] = []
            all_waiting = anyio.Event()

            async def submit(
                index: int,
                conn: DaemonClient,
                burst: int,
                go: anyio.Event,
                sessions: list[tuple[DaemonClient, str]],
                waiting: list[int],
                all_waiting: anyio.Event,
            ) -> None:
                request = TestRequest(id=f"b{burst}::c{index}", command=("true",))
                waiting.append(index)
                if len(waiting) == CLIENTS:
                    all_waiting.set()
                await go.wait()
                t0 = time.perf_counter()
                submitted = await conn.submit(requests=[request])
                latencies.append(time.perf_counter() - t0)
                sessions.append((conn, submitted.session_id))

            async with anyio.create_task_group() as tg:
                for index, conn in enumerate(conns):
                    tg.start_soon(submit, index, conn, burst, go, sessions, waiting, all_waiting)
                await all_waiting.wait()  # every client waiting on the event
                await anyio.sleep(pause)
                go.set()
            for conn, session_id in sessions if wait_sessions else ():
                await conn.wait(session_id)
    return latencies


async def held_bursts(socket: Path, count: int) -> list[float]:
    """:func:`bursts` with every worker held by a long test, so that the submits only
    queue: the submit path alone, nothing of the sessions' own work beside it."""
    await hold_workers(socket)
    return await bursts(socket, count, wait_sessions=False)


async def hold_workers(socket: Path) -> None:
    """Every worker of the daemon at ``socket`` busy with a test that sleeps 10 minutes."""
    async with DaemonClient(socket) as conn:
        hold = [TestRequest(id=f"hold{n}", command=("sleep", "600")) for n in range(WORKERS)]
        await conn.submit(requests=hold)
        for _ in range(600):  # the workers' state is polled: no event tells it
            if all(w.test_id for w in (await conn.status()).workers):
                break
            await anyio.sleep(0.05)
        else:
            raise RuntimeError("the held tests did not start within 30 s")


async def floor_bursts(socket: Path, count: int) -> list[float]:
    """:func:`bursts` to ``bench.ack_floor``, after one burst untimed (the daemon's bursts
    come after its warm-up too: the first use of each model builds its validator)."""
    await bursts(socket, 1, wait_sessions=False)
    return await bursts(socket, count, wait_sessions=False)


def measured(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``anyio.run(fn, *args)`` with this process's garbage collected first and what is
    left frozen: a full collection of what the phases before left (30 ms was seen) would
    otherwise land in some submit's latency, this client's pause and not the server's."""
    gc.collect()
    gc.freeze()
    return anyio.run(fn, *args)


def retouch_ms(idle: float, pages: int = RETOUCH_PAGES, rounds: int = 5) -> float:
    """Median ms to write one byte in each of ``pages`` resident pages of this process after
    ``idle`` seconds asleep. On some virtual machines the host takes idle memory back and
    every page touched after a pause faults again: a daemon woken by a burst pays it for
    every page its code and data touch, whatever that code does."""
    block = bytearray(pages * PAGE)
    for at in range(0, len(block), PAGE):
        block[at] = 1
    times = []
    for _ in range(rounds):
        time.sleep(idle)
        started = time.perf_counter()
        for at in range(0, len(block), PAGE):
            block[at] += 1
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run_seconds(repo: Path, plan: Path) -> float:
    """Wall seconds of ``parallel-orch run`` of ``plan`` as a user starts it (a new process)."""
    started = time.perf_counter()
    subprocess.run(
        cli_argv("run", str(plan), "-j", str(WORKERS), "-q"),
        cwd=repo,
        env=cli_env(),
        check=False,
        capture_output=True,
    )
    return time.perf_counter() - started


def daemon_seconds(repo: Path, log: Path, per_client: int) -> float:
    """A daemon started again and warmed up as the first was: the wall seconds of its
    back-to-back submits, until every session has ended."""
    with running_daemon(repo, workers=WORKERS, log=log) as daemon:
        anyio.run(submit_all, daemon.socket, 1)
        return measured(submit_all, daemon.socket, per_client)[1]


def run(quick: bool) -> list[Figure]:
    per_client = 3 if quick else SUBMITS_PER_CLIENT
    bursts_count = BURSTS // 5 if quick else BURSTS
    work = fresh_dir("daemon_latency")
    repo = work / "repo"
    init_repo(repo, 50)
    with running_daemon(repo, workers=WORKERS, log=work / "daemon.log") as daemon:
        anyio.run(submit_all, daemon.socket, 1)  # warm the pool, like the run below gets it
        cpu_before = cpu_seconds(daemon.pid)
        latencies, daemon_wall = measured(submit_all, daemon.socket, per_client)
        daemon_cpu = cpu_seconds(daemon.pid) - cpu_before
        burst = measured(bursts, daemon.socket, bursts_count)
        warm_burst = measured(bursts, daemon.socket, bursts_count, WARM_PAUSE)
        held = measured(held_bursts, daemon.socket, bursts_count)
    with running_floor(work / "floor.sqlite3", log=work / "floor.log") as floor_server:
        floor = measured(floor_bursts, floor_server.socket, bursts_count)
    retouch = {idle: retouch_ms(idle) for idle in (0.0, WARM_PAUSE, BURST_PAUSE)}
    fsyncs = fsync_seconds(repo / ".parallel-orch")  # the daemon's state dir, the store's disk
    total = CLIENTS * per_client
    plan = repo / "plans" / "latency.toml"
    plan.parent.mkdir()
    plan.write_text("".join(f'[[test]]\nid = "t{n}"\nrun = ["true"]\n' for n in range(total)))
    daemon_walls, run_walls = [daemon_wall], [run_seconds(repo, plan)]
    for n in range(2, 3 if quick else RATIO_ROUNDS + 1):  # alternating: one wall each is noise
        daemon_walls.append(daemon_seconds(repo, work / f"daemon-{n}.log", per_client))
        run_walls.append(run_seconds(repo, plan))
    note(f"{CLIENTS} clients x {per_client} submits of 1 request, {WORKERS} workers")
    note(
        f"daemon, s until all {total} sessions ended: "
        + ", ".join(f"{wall:.2f}" for wall in daemon_walls)
        + f"; `parallel-orch run` of the same {total} tests, after each: "
        + ", ".join(f"{wall:.2f}" for wall in run_walls)
    )
    note(f"fsync of a 4 KiB append in the state dir: {fmt_ms(fsyncs)}")
    note(
        f"writing {RETOUCH_PAGES} resident pages after an idle pause of "
        + ", ".join(f"{idle * 1000:g} ms: {ms:.1f} ms" for idle, ms in retouch.items())
        + " (what any process woken after such a pause pays per page it touches)"
    )
    p99 = percentile(latencies, 99) * 1000
    burst_p99 = percentile(burst, 99) * 1000
    slowest = [max(burst[at : at + CLIENTS]) * 1000 for at in range(0, len(burst), CLIENTS)]
    slow = sum(ms >= ACK_P99_TARGET_MS for ms in slowest)
    ratio = statistics.median(daemon_walls) / statistics.median(run_walls)
    warm = f"20 submits at once, {WARM_PAUSE * 1000:g} ms after the last burst's sessions,"
    return [
        Figure("20 submits at once, p50", percentile(burst, 50) * 1000, "ms"),
        Figure(
            "20 submits at once, p99",
            burst_p99,
            "ms",
            f"< {ACK_P99_TARGET_MS:.0f} ms",
            burst_p99 < ACK_P99_TARGET_MS,
        ),
        Figure(
            f"20 submits at once, bursts of {len(slowest)} with an answer at "
            f"{ACK_P99_TARGET_MS:g} ms or more",
            slow,
            "count",
        ),
        Figure("20 submits at once, slowest answer", max(slowest), "ms"),
        Figure(f"{warm} p50", percentile(warm_burst, 50) * 1000, "ms"),
        Figure(f"{warm} p99", percentile(warm_burst, 99) * 1000, "ms"),
        Figure(f"{HELD} p50", percentile(held, 50) * 1000, "ms"),
        Figure(f"{HELD} p99", percentile(held, 99) * 1000, "ms"),
        Figure(f"{FLOOR} p50", percentile(floor, 50) * 1000, "ms"),
        Figure(f"{FLOOR} p99", percentile(floor, 99) * 1000, "ms"),
        Figure(
            f"{RETOUCH_PAGES} resident pages written after {BURST_PAUSE * 1000:g} ms idle",
            retouch[BURST_PAUSE],
            "ms",
        ),
        Figure("back to back, submit-to-ack p50", percentile(latencies, 50) * 1000, "ms"),
        Figure("back to back, submit-to-ack p99", p99, "ms"),
        Figure("disk fsync, median of 50", statistics.median(fsyncs) * 1000, "ms"),
        Figure("daemon CPU per one-test session", daemon_cpu / total * 1000, "ms"),
        Figure(
            f"wall time daemon / run, {total} one-test sessions, medians of {len(run_walls)}",
            ratio,
            target=f"<= {RATIO_TARGET}",
            met=ratio <= RATIO_TARGET,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("daemon: submit latency, 20 clients", run, argv)


if __name__ == "__main__":
    main()
