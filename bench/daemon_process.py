"""A real daemon for the daemon benchmarks: started as a subprocess, stopped at once after."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Daemon:
    pid: int
    socket: Path


def cli_env() -> dict[str, str]:
    """This checkout first on the import path; no PARALLEL_ORCH_* settings from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLEL_ORCH_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


@contextmanager
def running_daemon(
    repo: Path, *, workers: int, log: Path, args: Sequence[str] = ()
) -> Iterator[Daemon]:
    """``parallel-orch daemon`` on ``repo``, ready (it printed its socket); forced to stop after."""
    daemon = [sys.executable, "-m", "parallel_orch", "daemon", "--repo", str(repo)]
    with serving(
        lambda socket: [*daemon, "--socket", str(socket), "-j", str(workers), *args],
        name="the daemon",
        cwd=repo,
        log=log,
    ) as served:
        yield served


@contextmanager
def running_floor(store: Path, *, log: Path) -> Iterator[Daemon]:
    """``bench.ack_floor``'s minimal server (see there) on a store at ``store``, ready."""
    floor = [sys.executable, "-m", "bench.ack_floor"]
    with serving(
        lambda socket: [*floor, str(socket), str(store)], name="bench.ack_floor", cwd=None, log=log
    ) as served:
        yield served


@contextmanager
def serving(
    argv: Callable[[Path], list[str]], *, name: str, cwd: Path | None, log: Path
) -> Iterator[Daemon]:
    """The server ``argv(socket)`` starts, once it has printed its socket (it is listening
    then); stopped after with SIGTERM, twice (a daemon's second one forces its stop)."""
    socket_dir = Path(tempfile.mkdtemp(dir="/tmp", prefix="po-bench-"))  # short: sun_path
    socket = socket_dir / "d.sock"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            argv(socket), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != str(socket):
            raise RuntimeError(f"{name} did not start (printed {line!r}); see {log}")
        yield Daemon(proc.pid, socket)
    finally:
        for _ in range(2):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(socket_dir, ignore_errors=True)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
