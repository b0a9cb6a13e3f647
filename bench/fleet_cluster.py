"""A real Dask cluster on the loopback for the fleet benchmark: a scheduler and worker
processes (the venv's ``dask`` command), stopped at the end whatever happens.

Each process is started in a session of its own, so a Ctrl-C at the terminal
reaches the benchmark (which then stops them) rather than killing them half-way,
and so that what each left behind can be found and killed by its session id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from bench.common import note

START_SECONDS = 60.0  # for the scheduler file and every worker to appear
STOP_SECONDS = 15.0  # after SIGTERM, before SIGKILL
SLOT_ENV = b"PARALLEL_ORCH_FLEET_SLOT="  # what marks a fleet worker's test processes
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Cluster:
    """The running cluster: its address and processes (each the leader of its session)."""

    address: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        """CPU (user + system, with reaped children: the tests) of every process in the
        cluster's sessions so far."""
        sessions = {p.pid for p in self.processes}
        total = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            with suppress(OSError):
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) in sessions:  # field 6 of stat: the session id
                    total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        return total / TICK


def dask_command(*args: str) -> list[str]:
    """The venv's ``dask`` command (beside this Python)."""
    script = Path(sys.executable).with_name("dask")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "distributed.cli.dask"]
    return [*head, *args]


@contextmanager
def dask_cluster(
    work: Path, env: Mapping[str, str], *, workers: int, threads: int, worker_dir: Path
) -> Iterator[Cluster]:
    """A scheduler and ``workers`` worker processes of ``threads`` threads each, all ready;
    stopped when the block ends, a Ctrl-C, SIGTERM or crash included, and then any test
    process a fleet worker left running with a slot under ``worker_dir`` killed."""
    work.mkdir(parents=True, exist_ok=True)
    scheduler_file = work / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    cluster = Cluster()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        cluster.processes.append(
            _start(
                ["scheduler", "--scheduler-file", str(scheduler_file), "--no-dashboard",
                 "--host", "127.0.0.1"],
                work / "scheduler.log", env, work,
            )
        )  # fmt: skip
        cluster.address = _wait_address(scheduler_file, cluster.processes[0])
        for index in range(workers):
            cluster.processes.append(
                _start(
                    ["worker", "--scheduler-file", str(scheduler_file), "--nthreads",
                     str(threads), "--no-dashboard", "--host", "127.0.0.1"],
                    work / f"worker-{index}.log", env, work,
                )
            )  # fmt: skip
        _wait_workers(scheduler_file, workers, threads)
        yield cluster
    finally:
        try:
            _stop(cluster, worker_dir)
        finally:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so the finally above stops the cluster


def _start(
    args: list[str], log: Path, env: Mapping[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            dask_command(*args),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_address(scheduler_file: Path, scheduler: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited {scheduler.returncode}")
        with suppress(OSError, ValueError):
            address = json.loads(scheduler_file.read_text())["address"]
            if address:
                return str(address)
        time.sleep(0.1)
    raise RuntimeError(f"no dask scheduler address in {scheduler_file}")


def _wait_workers(scheduler_file: Path, workers: int, threads: int) -> None:
    from distributed import Client

    with Client(scheduler_file=str(scheduler_file), timeout=START_SECONDS) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(workers, timeout=START_SECONDS)
        total = sum(client.nthreads().values())
    note(f"dask cluster ready: {workers} workers, {total} threads (asked {workers * threads})")


def _stop(cluster: Cluster, worker_dir: Path) -> None:
    """SIGTERM every process (workers first: they close their pools), SIGKILL what stays;
    then kill any test process a fleet worker of ours left running."""
    sessions = [p.pid for p in cluster.processes]
    for process in reversed(cluster.processes):
        with suppress(ProcessLookupError):
            process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_SECONDS)
    for pgid in sessions:  # nannies' worker children, and anything else in those groups
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for process in cluster.processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_SECONDS)
    left = [p.pid for p in cluster.processes if p.poll() is None]
    killed = _kill_fleet_tests(worker_dir)
    if left or killed:
        note(f"warning: dask processes still alive {left}; test processes killed {killed}")


def _kill_fleet_tests(worker_dir: Path) -> list[int]:
    """SIGKILL processes our fleet workers started (their environment names a slot under
    ``worker_dir``; other fleets on this machine are left alone)."""
    marker = SLOT_ENV + str(worker_dir).encode() + b"/"
    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if any(entry.startswith(marker) for entry in environ.split(b"\0")):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(int(name), signal.SIGKILL)
                killed.append(int(name))
    return killed
