"""Who may talk to the daemon, and what it refuses to bind over."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import anyio
import pytest

from parallel_orch import ParallelTestConfig, ParallelTestOrchestrator
from parallel_orch.daemon import paths
from parallel_orch.daemon.protocol import ErrorCode
from parallel_orch.daemon.server import DaemonServer
from parallel_orch.daemon.service import DaemonService
from tests.e2e.conftest import RawClient, StartDaemon
from tests.helpers import GitRepo


async def test_a_peer_with_another_uid_is_refused_and_logged(
    config: ParallelTestConfig, socket_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SO_PEERCRED: a connection from a uid other than the daemon's gets an error and is closed."""
    caplog.set_level(logging.WARNING, logger="parallel_orch.daemon.server")
    async with ParallelTestOrchestrator(config) as orch:
        with paths.bound_socket(socket_path) as bound:
            service = DaemonService(orch, socket_path=bound.path, grace_seconds=0.0)
            # Tests cannot switch uid: make ours the foreign one instead.
            server = DaemonServer(service, bound.sock, allowed_uid=os.getuid() + 1)
            async with anyio.create_task_group() as tg:
                await tg.start(server.serve)
                async with RawClient.connect(socket_path) as client:
                    reply = await client.receive()
                    assert await client.closed()
                tg.cancel_scope.cancel()
    assert reply["error"]["code"] == ErrorCode.PERMISSION_DENIED
    assert f"refused a connection from uid {os.getuid()}" in caplog.text


def test_a_stale_socket_from_a_dead_daemon_is_replaced(
    repo: GitRepo, start_daemon: StartDaemon, socket_path: Path
) -> None:
    """A socket file nobody listens on is removed and the daemon binds in its place."""
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(socket_path))
    stale.close()  # the file stays, like after kill -9
    daemon = start_daemon(repo.path)
    assert "removing stale socket" in daemon.log
    assert socket_path.is_socket()


def test_a_file_that_is_not_a_socket_is_never_replaced(
    repo: GitRepo, start_daemon: StartDaemon, socket_path: Path
) -> None:
    """A regular file at the socket path: the daemon exits 3 and leaves the file alone."""
    socket_path.write_text("precious")
    daemon = start_daemon(repo.path, ready=False)
    assert daemon.wait() == 3
    assert "is not a socket" in daemon.log
    assert socket_path.read_text() == "precious"


def test_a_socket_path_over_the_unix_limit_is_refused_with_advice(
    repo: GitRepo, start_daemon: StartDaemon, socket_path: Path
) -> None:
    """A --socket longer than sun_path allows: exit 3 saying how long and what to do."""
    long_path = socket_path.parent / ("s" * 120) / "d.sock"
    daemon = start_daemon(repo.path, socket=long_path, ready=False)
    assert daemon.wait() == 3
    assert "pass a shorter --socket" in daemon.log
