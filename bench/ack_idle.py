"""Daemon: the ack of a burst against how long the server sat idle, beside the floor's.

The same burst as ``daemon_latency``'s (20 connections, one submit each at the
same instant) after 0, 5, 50 and 200 ms asleep, 10 bursts at each pause
(quick: 5), to the daemon with every worker held (the submit path alone) and
to ``bench.ack_floor``'s minimal server (the floor: the daemon's own parsing,
insert and synced commit, nothing else). Both servers run side by side; at
each pause the daemon's bursts come first, then the floor's. Beside the
latencies, each server's own CPU per submit, read from ``/proc``.

On some virtual machines an idle vCPU halts at once and the host takes idle
memory back, so what a burst costs depends on how long it was awaited; the
kernel's idle and memory-reporting settings are printed when it has any.
No target: this measures the machine under ``daemon_latency``'s figures.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import anyio

from bench.common import Figure, bench_main, fresh_dir, init_repo, note
from bench.daemon_latency import bursts, cpu_seconds, hold_workers, measured
from bench.daemon_process import Daemon, percentile, running_daemon, running_floor

PAUSES = (0.0, 0.005, 0.05, 0.2)  # seconds asleep before each burst
IDLE_SETTINGS = ("haltpoll", "idle=", "page_reporting", "nested_pvm")


def idle_settings() -> list[str]:
    """The kernel command line's settings for idle vCPUs and memory given back to a host."""
    try:
        words = Path("/proc/cmdline").read_text().split()
    except OSError:
        return []
    return [w for w in words if any(s in w for s in IDLE_SETTINGS)]


def at_pause(server: Daemon, count: int, pause: float) -> tuple[list[float], float]:
    """Latencies of ``count`` bursts ``pause`` seconds apart, and the server's CPU a submit."""
    before = cpu_seconds(server.pid)
    timed = functools.partial(bursts, pause=pause, wait_sessions=False)
    latencies = measured(timed, server.socket, count)
    return latencies, (cpu_seconds(server.pid) - before) / len(latencies)


def run(quick: bool) -> list[Figure]:
    count = 5 if quick else 10
    work = fresh_dir("ack_idle")
    repo = work / "repo"
    init_repo(repo, 50)
    settings = idle_settings()
    note(
        "kernel idle settings: " + (" ".join(settings) if settings else "none on its command line")
    )
    figures = []
    with (
        running_daemon(repo, workers=os.cpu_count() or 2, log=work / "daemon.log") as daemon,
        running_floor(work / "floor.sqlite3", log=work / "floor.log") as floor,
    ):
        anyio.run(hold_workers, daemon.socket)
        for server in (daemon, floor):  # a burst untimed: each model's validator is built
            at_pause(server, 1, 0.0)
        for pause in PAUSES:
            held, held_cpu = at_pause(daemon, count, pause)
            flat, floor_cpu = at_pause(floor, count, pause)
            after = f"after {pause * 1000:g} ms asleep"
            note(
                f"{after}: daemon {held_cpu * 1e6:.0f} µs of CPU a submit, "
                f"floor {floor_cpu * 1e6:.0f} µs"
            )
            for name, latencies in (("daemon, workers held", held), ("floor", flat)):
                for q in (50, 99):
                    figures.append(
                        Figure(f"{name}, {after}, p{q}", percentile(latencies, q) * 1000, "ms")
                    )
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("daemon: ack against idle time", run, argv)


if __name__ == "__main__":
    main()
