"""A real Dask cluster on the loopback for the fleet's tests: ``dask scheduler`` and
``dask worker`` processes from this venv, as a user starts them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.e2e.cli import cli_env

DASK = str(Path(sys.executable).with_name("dask"))
START_SECONDS = 60.0


class DaskCluster:
    """A scheduler and named workers (each behind a nanny, which restarts it if it dies)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = home / "scheduler.json"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.nannies: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def address(self) -> str:
        return str(json.loads(self.scheduler_file.read_text())["address"])

    def start(self, workers: dict[str, str | None]) -> DaskCluster:
        """The scheduler, then ``workers`` (name -> resources such as ``"gpu=1"`` or None),
        2 threads each; returns once all have joined."""
        self.scheduler = self._spawn(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(self.scheduler_file),
        )  # fmt: skip
        self._wait(lambda: self.scheduler_file.exists(), "the scheduler's file")
        for name, resources in workers.items():
            self.add_worker(name, resources)
        self.wait_for_workers(len(workers))
        return self

    def add_worker(self, name: str, resources: str | None = None) -> None:
        args = [
            "worker", "--scheduler-file", str(self.scheduler_file), "--name", name,
            "--nthreads", "2", "--no-dashboard", "--host", "127.0.0.1",
            "--local-directory", str(self.home / f"dask-{name}"),
        ]  # fmt: skip
        if resources:
            args += ["--resources", resources]
        self.nannies[name] = self._spawn(f"worker-{name}", *args)

    def workers(self) -> dict[str, str]:
        """Worker name -> address, as the scheduler knows them now."""
        from distributed import Client

        with Client(scheduler_file=str(self.scheduler_file), timeout=30) as client:  # type: ignore[no-untyped-call]
            info = client.scheduler_info(n_workers=-1)["workers"]
        return {str(w["name"]): addr for addr, w in info.items()}

    def wait_for_workers(self, count: int) -> None:
        self._wait(lambda: len(self.workers()) >= count, f"{count} workers")

    def worker_process(self, name: str) -> psutil.Process:
        """The worker process behind a nanny (it runs the attempts)."""
        children = psutil.Process(self.nannies[name].pid).children()
        workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        assert workers, f"no worker process under nanny {name}"
        return workers[0]

    def stop(self) -> None:
        """Every process of the cluster, and what they started, gone."""
        procs = [p for p in [*self.nannies.values(), self.scheduler] if p is not None]
        family: list[psutil.Process] = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                family += [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=15)
        for leftover in alive:
            leftover.kill()
        for proc in procs:
            proc.wait(timeout=15)

    def _spawn(self, log: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.home / f"{log}.log").open("ab") as out:
            return subprocess.Popen(
                [DASK, *args], stdout=out, stderr=subprocess.STDOUT, env=cli_env(),
                start_new_session=True,
            )  # fmt: skip

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not ready():
            for name, proc in [("scheduler", self.scheduler), *self.nannies.items()]:
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"dask {name} exited; see {self.home}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}; see {self.home}"
            time.sleep(0.1)


def fleet_env(cluster: DaskCluster, worker_dir: Path) -> dict[str, str]:
    """The CLI's environment for a run on ``cluster``, its workers' pools in ``worker_dir``."""
    return {
        "PARALLEL_ORCH_DASK_SCHEDULER": cluster.address,
        "PARALLEL_ORCH_EXECUTOR": "dask",
        "PARALLEL_ORCH_DASK_WORKER_DIR": str(worker_dir),
        "PARALLEL_ORCH_KILL_GRACE_SECONDS": "0.5",
        **{k: v for k, v in os.environ.items() if k.startswith("GIT_")},
    }
