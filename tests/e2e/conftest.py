"""Daemon end-to-end helpers: the real daemon as a subprocess, a raw socket client.

Readiness is the daemon's printed socket path, waits are on its output or on
the socket, never fixed sleeps. Sockets live in short dirs under /tmp: a
pytest tmp path can exceed the 108-byte limit of a Unix socket path.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.e2e.cli import cli_argv, cli_env

READY_SECONDS = 60.0  # generous: two xdist workers may start daemons at once
REPLY_SECONDS = 30.0


class DaemonProcess:
    """``parallel-orch daemon`` in a subprocess; its stdout and stderr collected by line."""

    def __init__(
        self,
        repo: Path,
        socket: Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        default_socket: bool = False,
    ) -> None:
        """:param default_socket: pass no ``--socket``; ``socket`` is where it should end up."""
        self.repo = repo
        self.socket = socket
        self.state_dir = repo / ".parallel-orch"
        where = [] if default_socket else ["--socket", str(socket)]
        argv = cli_argv("daemon", "--repo", str(repo), *where, *args)
        self.proc = subprocess.Popen(
            argv,
            cwd=repo,
            env=cli_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._closed: set[str] = set()
        self._cond = threading.Condition()
        self._pumps: list[threading.Thread] = []
        for name, pipe, sink in (
            ("out", self.proc.stdout, self.stdout),
            ("err", self.proc.stderr, self.stderr),
        ):
            assert pipe is not None
            pump = threading.Thread(target=self._pump, args=(name, pipe, sink), daemon=True)
            pump.start()
            self._pumps.append(pump)

    def _pump(self, name: str, pipe: IO[str], sink: list[str]) -> None:
        with pipe:
            for line in pipe:
                with self._cond:
                    sink.append(line.rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._closed.add(name)
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self.stderr)

    def wait_ready(self) -> DaemonProcess:
        """Until the daemon prints its socket path; fails with its log if it exits instead."""
        with self._cond:
            self._cond.wait_for(lambda: self.stdout or "out" in self._closed, READY_SECONDS)
            first = self.stdout[0] if self.stdout else None
        assert first == str(self.socket), f"daemon not ready (printed {first!r}):\n{self.log}"
        return self

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Until a stderr line contains ``text``."""
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(text in line for line in self.stderr) or "err" in self._closed, timeout
            )
            assert found and any(text in line for line in self.stderr), (
                f"{text!r} not logged:\n{self.log}"
            )

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        """Its exit code, once it has exited and its output is all read."""
        code = self.proc.wait(timeout)
        for pump in self._pumps:
            pump.join(timeout)
        return code

    def kill(self) -> None:
        """SIGKILL, then reap it: a zombie would still look like a live owner."""
        self.proc.kill()
        self.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.wait(10)


StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A short socket path in a fresh private dir under /tmp."""
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="po-"))
    yield directory / "d.sock"
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def start_daemon(socket_path: Path) -> Iterator[StartDaemon]:
    """Factory: ``start_daemon(repo, *args, socket=None, env=None, ...)``, ready; stopped after."""
    started: list[DaemonProcess] = []

    def start(
        repo: Path,
        *args: str,
        socket: Path | None = None,
        env: Mapping[str, str] | None = None,
        ready: bool = True,
        default_socket: bool = False,
    ) -> DaemonProcess:
        daemon = DaemonProcess(
            repo, socket or socket_path, ["-j", "2", *args], env, default_socket=default_socket
        )
        started.append(daemon)
        return daemon.wait_ready() if ready else daemon

    yield start
    for daemon in started:
        daemon.stop()


def write_plan(repo: Path, name: str, text: str) -> Path:
    """A plan file under ``repo/plans`` (not committed: the daemon reads it from disk)."""
    path = repo / "plans" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def hold_plan(fifo: Path, ids: Sequence[str], *, marks: Path | None = None) -> str:
    """Tests that announce their pid on ``fifo`` and then sleep until killed.

    With ``marks``, a test that finds its mark (left by an earlier run) passes at once.
    """
    tests = []
    for test_id in ids:
        skip = f'[ -e "{marks}/{test_id}" ] && exit 0; touch "{marks}/{test_id}"; ' if marks else ""
        tests.append(
            f'[[test]]\nid = "{test_id}"\nrun = \'{skip}echo $$ > "{fifo}"; exec sleep 120\'\n'
        )
    return "\n".join(tests)


def read_pids(fifo: Path, count: int, timeout: float = 60.0) -> list[int]:
    """``count`` pids written to a FIFO by tests (each writer opens, writes a line, closes)."""
    pids: list[int] = []
    deadline = time.monotonic() + timeout
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep_open = os.open(fifo, os.O_WRONLY)  # no EOF between writers
    buffer = b""
    try:
        while len(pids) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {pids} announced on {fifo}"
            if select.select([fd], [], [], remaining)[0]:
                buffer += os.read(fd, 4096)
                *lines, buffer = buffer.split(b"\n")
                pids.extend(int(line) for line in lines if line.strip())
    finally:
        os.close(keep_open)
        os.close(fd)
    return pids


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll a condition of the outside world (a process table, a file) with backoff."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def query(state_dir: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the daemon's store as another process would, while it writes."""
    with sqlite3.connect(f"file:{state_dir / 'orch.sqlite3'}?mode=ro", uri=True, timeout=10) as db:
        return list(db.execute(sql, args))


class RawClient:
    """A protocol client that sends exactly the bytes it is given."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    @classmethod
    @asynccontextmanager
    async def connect(cls, path: Path) -> AsyncIterator[RawClient]:
        async with await anyio.connect_unix(path) as stream:
            yield cls(stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def request(self, method: str, params: Any = None, request_id: int = 1) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(json.dumps(message).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        with anyio.fail_after(REPLY_SECONDS):
            line = await self.reader.receive_until(b"\n", 64 * 1024 * 1024)
        value = json.loads(line)
        assert isinstance(value, dict)
        return value

    async def call(self, method: str, params: Any = None, request_id: int = 1) -> dict[str, Any]:
        await self.request(method, params, request_id)
        return await self.receive()

    async def closed(self) -> bool:
        """True once the daemon closes the connection (EOF or reset) with nothing more to read."""
        with anyio.fail_after(REPLY_SECONDS):
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                return True
        raise AssertionError(f"expected the connection to close, got {data!r}")


async def read_lines(client: socket.socket, count: int) -> list[dict[str, Any]]:
    """The next ``count`` lines the daemon sent, parsed; fails if they do not come."""
    buffer = b""
    with anyio.fail_after(REPLY_SECONDS):
        while buffer.count(b"\n") < count:
            await anyio.wait_readable(client)
            data = client.recv(65536)
            assert data, f"the daemon closed the connection after {buffer!r}"
            buffer += data
    *complete, rest = buffer.split(b"\n")
    assert not rest, f"more than {count} lines: {rest!r}"
    return [json.loads(one) for one in complete]
