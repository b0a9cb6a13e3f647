"""A submit is answered from its commit's own step, and answered once."""

from __future__ import annotations

import functools
import gc
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from parallel_orch import ParallelTestConfig, ParallelTestOrchestrator
from parallel_orch.daemon import between, paths
from parallel_orch.daemon.lifecycle import DaemonOptions, run_daemon
from parallel_orch.daemon.server import DaemonServer
from parallel_orch.daemon.service import DaemonService
from tests.e2e.conftest import REPLY_SECONDS, StartDaemon, read_lines
from tests.helpers import GitRepo

SUBMITTED = "tests submitted"  # the service's log line, written after create_session returns


class PeekAtLog(logging.Handler):
    """On the service's "submitted" line, looks whether the client can read its answer yet."""

    def __init__(self, client: socket.socket) -> None:
        super().__init__()
        self.client = client
        self.readable_then: list[bool] = []

    def emit(self, record: logging.LogRecord) -> None:
        if SUBMITTED in record.getMessage():
            try:
                self.readable_then.append(bool(self.client.recv(1, socket.MSG_PEEK)))
            except BlockingIOError:
                self.readable_then.append(False)


@asynccontextmanager
async def serving(config: ParallelTestConfig, socket_path: Path) -> AsyncIterator[socket.socket]:
    """An orchestrator's daemon server on ``socket_path``, in this process; a connected,
    non-blocking client socket."""
    async with ParallelTestOrchestrator(config) as orch:
        with paths.bound_socket(socket_path) as bound:
            service = DaemonService(orch, socket_path=bound.path, grace_seconds=0.0)
            server = DaemonServer(service, bound.sock)
            async with anyio.create_task_group() as tg:
                await tg.start(server.serve)
                client = socket.socket(socket.AF_UNIX)
                client.connect(str(socket_path))
                client.setblocking(False)
                try:
                    yield client
                finally:
                    client.close()
                    tg.cancel_scope.cancel()


async def call(client: socket.socket, method: str, params: Any, request_id: int) -> None:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    client.sendall(json.dumps(message).encode() + b"\n")


#: A plain submit (the lane's, once the connection waits) and one with an idempotency key,
#: which always goes the usual way (the service's submit): both answer from the commit's step.
WAYS = pytest.mark.parametrize(
    "extra", [{}, {"idempotency_key": "k"}], ids=["plain-submit", "keyed-submit"]
)


@WAYS
async def test_a_submit_is_answered_before_its_method_returns(
    config: ParallelTestConfig, socket_path: Path, extra: dict[str, str]
) -> None:
    """The answer is on the client's socket by the time the daemon logs the submit (the
    method's tail): it went out from the commit's step, with the session running."""
    async with serving(config, socket_path) as client:
        peek = PeekAtLog(client)
        logger = logging.getLogger("parallel_orch.daemon")  # the service's and the lane's
        logger.addHandler(peek)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            requests = [{"id": "t", "command": ["true"]}]
            await call(client, "submit", {"requests": requests, **extra}, 1)
            (reply,) = await read_lines(client, 1)
        finally:
            logger.removeHandler(peek)
            logger.setLevel(old_level)
    assert reply["result"]["total"] == 1
    assert peek.readable_then == [True]


@pytest.mark.parametrize("ref", ["HEAD", "no-such-ref"], ids=["runs", "nothing-to-run"])
async def test_each_submit_gets_exactly_one_answer(
    config: ParallelTestConfig, socket_path: Path, ref: str
) -> None:
    """Submits (answered early, or the usual way when nothing of theirs can run) and the
    requests after them on one connection: one answer each, in order, nothing repeated."""
    async with serving(config, socket_path) as client:
        requests = [{"id": "t", "command": ["true"], "ref": ref}]
        await call(client, "submit", {"requests": requests}, 1)
        await call(client, "submit", {"requests": requests, "idempotency_key": "k"}, 2)
        await call(client, "submit", {"requests": requests, "idempotency_key": "k"}, 3)
        await call(client, "ping", {}, 4)
        replies = await read_lines(client, 4)
        await call(client, "ping", {}, 5)
        (last,) = await read_lines(client, 1)
    assert [r["id"] for r in replies] == [1, 2, 3, 4]
    assert all("result" in r for r in replies), replies
    assert replies[1]["result"]["session_id"] == replies[2]["result"]["session_id"]
    assert last["id"] == 5


@pytest.mark.parametrize("ref", ["HEAD", "no-such-ref"], ids=["runs", "nothing-to-run"])
async def test_the_total_counts_each_shard_whichever_way_it_is_answered(
    config: ParallelTestConfig, socket_path: Path, ref: str
) -> None:
    """A sharded test's submit answers with one test per shard, early or not, and a retry
    with its idempotency key answers the same."""
    async with serving(config, socket_path) as client:
        requests = [{"id": "t", "command": ["true"], "shards": 3, "ref": ref}]
        await call(client, "submit", {"requests": requests, "idempotency_key": "k"}, 1)
        await call(client, "submit", {"requests": requests, "idempotency_key": "k"}, 2)
        first, retry = await read_lines(client, 2)
    assert first["result"]["total"] == retry["result"]["total"] == 3


class AnsweringAtLog(logging.Handler):
    """On a "submitted" line (the service's or the submit lane's), records whether the
    server says it is answering."""

    def __init__(self, server: DaemonServer) -> None:
        super().__init__()
        self.server = server
        self.answering_then: list[bool] = []

    def emit(self, record: logging.LogRecord) -> None:
        if SUBMITTED in record.getMessage():
            self.answering_then.append(self.server.answering())


@WAYS
async def test_the_collector_sees_a_submit_as_an_answer_and_a_watch_as_none(
    config: ParallelTestConfig, socket_path: Path, extra: dict[str, str]
) -> None:
    """The daemon's collector waits while a submit is being answered (a refused watch before
    it on the connection included), not while a client only watches a session (a watch
    lasts as long as its session)."""
    async with ParallelTestOrchestrator(config) as orch:
        with paths.bound_socket(socket_path) as bound:
            service = DaemonService(orch, socket_path=bound.path, grace_seconds=0.0)
            server = DaemonServer(service, bound.sock)
            handler = AnsweringAtLog(server)
            logger = logging.getLogger("parallel_orch.daemon")  # the service's and the lane's
            logger.addHandler(handler)
            old_level = logger.level
            logger.setLevel(logging.INFO)
            client = socket.socket(socket.AF_UNIX)
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(server.serve)
                    client.connect(str(socket_path))
                    client.setblocking(False)
                    await call(client, "watch", {"session_id": "no-such-session"}, 1)
                    (refused,) = await read_lines(client, 1)
                    assert "error" in refused, refused
                    requests = [{"id": "slow", "command": ["sleep", "30"]}]
                    await call(client, "submit", {"requests": requests, **extra}, 2)
                    (reply,) = await read_lines(client, 1)
                    session_id = reply["result"]["session_id"]
                    await call(client, "watch", {"session_id": session_id}, 3)
                    with anyio.fail_after(REPLY_SECONDS):  # its replayed events: the watch runs
                        await anyio.wait_readable(client)
                    watching = server.answering()
                    await orch.cancel_session(session_id)
                    tg.cancel_scope.cancel()
            finally:
                client.close()
                logger.removeHandler(handler)
                logger.setLevel(old_level)
    assert handler.answering_then == [True]
    assert not watching


@pytest.mark.parametrize("own", [True, False], ids=["daemon-process", "embedded"])
async def test_the_daemon_runs_its_own_collector_only_when_told(
    config: ParallelTestConfig, socket_path: Path, own: bool
) -> None:
    """A daemon in its own process turns the automatic collector off while it serves (it
    collects between answers) and on again when it stops; an embedded one leaves it on."""
    options = DaemonOptions(
        config=config, socket_path=socket_path, handle_signals=False, own_collector=own
    )
    assert gc.isenabled()
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(run_daemon, options))
        serving_with_collector = not gc.isenabled()
        tg.cancel_scope.cancel()
    assert serving_with_collector == own
    assert gc.isenabled()


@WAYS
async def test_an_early_answer_yields_the_cpu_once_its_step_is_over(
    config: ParallelTestConfig,
    socket_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra: dict[str, str],
) -> None:
    """A submit answered early asks for the one yield of the CPU that lets its client read the
    answer before the daemon's tail runs; a request answered the usual way does not."""
    asked: list[str] = []
    real = between.yield_soon

    def counted() -> None:
        asked.append("yield")
        real()

    monkeypatch.setattr(between, "yield_soon", counted)
    async with serving(config, socket_path) as client:
        await call(client, "ping", {}, 1)
        await read_lines(client, 1)
        pinged = list(asked)
        await call(client, "submit", {"requests": [{"id": "t", "command": ["true"]}], **extra}, 2)
        await read_lines(client, 1)
    assert pinged == []
    assert asked == ["yield"]


def test_the_daemon_command_collects_between_answers(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """``parallel-orch daemon`` (its own process) runs its collector between answers."""
    daemon = start_daemon(repo.path)
    daemon.wait_for_log("garbage collected between answers")
