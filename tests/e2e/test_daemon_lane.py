"""The submit lane: plain submits taken as they are read, admitted together, answered in order."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from parallel_orch import ParallelTestConfig, ParallelTestOrchestrator, SessionStatus
from parallel_orch.daemon import paths
from parallel_orch.daemon.connection import Connection
from parallel_orch.daemon.server import DaemonServer
from parallel_orch.daemon.service import DaemonService
from tests.e2e.conftest import REPLY_SECONDS, read_lines
from tests.helpers import stopped

SETTLE = 0.1  # seconds for a connection's reader to be waiting, as a client's would be


@dataclass
class Served:
    orch: ParallelTestOrchestrator
    server: DaemonServer
    socket_path: Path
    clients: list[socket.socket] = field(default_factory=list)  # closed after

    def connect(self) -> socket.socket:
        client = socket.socket(socket.AF_UNIX)
        self.clients.append(client)
        client.connect(str(self.socket_path))
        client.setblocking(False)
        return client


@asynccontextmanager
async def serving(
    config: ParallelTestConfig, socket_path: Path, *, idle_timeout: float = 30.0
) -> AsyncIterator[Served]:
    """An orchestrator's daemon server on ``socket_path``, in this process."""
    async with ParallelTestOrchestrator(config) as orch:
        with paths.bound_socket(socket_path) as bound:
            service = DaemonService(orch, socket_path=bound.path, grace_seconds=0.0)
            server = DaemonServer(service, bound.sock, idle_timeout=idle_timeout)
            served = Served(orch, server, socket_path)
            async with anyio.create_task_group() as tg:
                await tg.start(server.serve)
                try:
                    yield served
                finally:
                    for client in served.clients:
                        client.close()
                    tg.cancel_scope.cancel()


def line(method: str, params: Any, request_id: int) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    ).encode()


async def warm_client(served: Served) -> socket.socket:
    """A client whose connection waits for its next line, after one submit (answered: the
    daemon's ``git cat-file`` runs)."""
    client = served.connect()
    await anyio.sleep(SETTLE)
    client.sendall(line("submit", plain("warm"), 1) + b"\n")
    await read_lines(client, 1)
    return client


def held_lookups(served: Served) -> contextlib.AbstractContextManager[None]:
    """Ref lookups held up for the block (the daemon's ``git cat-file`` stopped)."""
    resolver = served.orch._running.admission.lookup.resolver
    assert resolver._proc is not None
    return stopped(resolver._proc.pid)


def plain(test_id: str) -> dict[str, Any]:
    return {"requests": [{"id": test_id, "command": ["true"]}]}


async def test_a_burst_of_plain_submits_is_taken_by_the_lane_and_committed_together(
    config: ParallelTestConfig, socket_path: Path
) -> None:
    """Eight clients each send a plain submit at once: the lane takes all eight, one lookup
    and one synced commit serve them, and each client gets its own session, which runs."""
    async with serving(config, socket_path) as served:
        clients = [served.connect() for _ in range(8)]
        await anyio.sleep(SETTLE)
        admission = served.orch._running.admission
        lookups, commits = admission.lookup.known.batches, served.orch.store._writer.synced_commits
        for index, client in enumerate(clients):
            client.sendall(line("submit", plain(f"t{index}"), index) + b"\n")
        replies = [(await read_lines(client, 1))[0] for client in clients]
        assert served.server.lane.taken == 8
        assert admission.lookup.known.batches - lookups == 1
        assert served.orch.store._writer.synced_commits - commits == 1
        ids = [reply["result"]["session_id"] for reply in replies]
        assert len(set(ids)) == 8
        assert [reply["result"]["total"] for reply in replies] == [1] * 8
        for session_id in ids:
            report = await served.orch.wait_for_session(session_id)
            assert report.status == SessionStatus.COMPLETE


async def test_a_line_after_a_submit_the_lane_took_waits_for_its_answer(
    config: ParallelTestConfig, socket_path: Path
) -> None:
    """A ping sent while the lane's submit before it is still being admitted (its ref lookup
    held up) is answered after that submit, on the same connection: answers stay in order."""
    async with serving(config, socket_path) as served:
        client = await warm_client(served)
        with held_lookups(served):
            await anyio.sleep(SETTLE)
            client.sendall(line("submit", plain("held"), 2) + b"\n")
            await anyio.sleep(SETTLE)
            client.sendall(line("ping", {}, 3) + b"\n")
            with anyio.move_on_after(0.5):
                await anyio.wait_readable(client)
                pytest.fail("answered while the submit before it was still being admitted")
        submitted, pinged = await read_lines(client, 2)
        assert served.server.lane.taken == 2
        assert (submitted["id"], pinged["id"]) == (2, 3)
        assert "session_id" in submitted["result"] and "pid" in pinged["result"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({**plain("t"), "idempotency_key": "k"}, None),
        ({"requests": [{"id": "t", "command": ["true"], "shards": 2}]}, None),
        ({"requests": [{"id": "t", "command": ["true"]}] * 2}, -32602),
        ({"paths": ["no/such/plan.toml"]}, -32001),
        ({"requests": []}, -32602),
        ({**plain("t"), "options": {"compare_to": "x\ud800"}}, -32603),
    ],
    ids=["idempotency-key", "sharded", "duplicate-ids", "plan-paths", "no-requests", "unstorable"],
)
async def test_submits_the_lane_leaves_are_answered_the_usual_way(
    config: ParallelTestConfig, socket_path: Path, params: dict[str, Any], code: int | None
) -> None:
    """A submit with an idempotency key, a sharded test, plan paths, bad params or options
    that cannot be stored is not the lane's: it is answered as before (a session, or the
    error saying what is wrong)."""
    async with serving(config, socket_path) as served:
        client = served.connect()
        await anyio.sleep(SETTLE)
        client.sendall(line("submit", params, 1) + b"\n")
        (reply,) = await read_lines(client, 1)
        assert served.server.lane.taken == 0
        if code is None:
            assert "session_id" in reply["result"], reply
        else:
            assert reply["error"]["code"] == code, reply


async def test_a_connection_submitting_by_the_lane_is_not_idle(
    config: ParallelTestConfig, socket_path: Path
) -> None:
    """Submits taken by the lane count as requests: a client submitting more often than the
    idle timeout keeps its connection; once it stops, the connection is closed as idle."""
    async with serving(config, socket_path, idle_timeout=0.4) as served:
        client = served.connect()
        await anyio.sleep(SETTLE)
        for index in range(6):  # 1.2 s, three idle timeouts
            client.sendall(line("submit", plain(f"t{index}"), index) + b"\n")
            (reply,) = await read_lines(client, 1)
            assert "result" in reply, reply
            await anyio.sleep(0.2)
        assert served.server.lane.taken == 6
        (closing,) = await read_lines(client, 1)
        assert closing["error"]["code"] == -32007, closing


async def test_a_submit_line_that_is_not_json_is_answered_the_usual_way(
    config: ParallelTestConfig, socket_path: Path
) -> None:
    """A line that names a submit but is not valid JSON is not the lane's: the usual way
    answers it with a parse error, and the connection goes on serving."""
    async with serving(config, socket_path) as served:
        client = served.connect()
        await anyio.sleep(SETTLE)
        client.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "submit", \n')
        (reply,) = await read_lines(client, 1)
        assert reply["error"]["code"] == -32700, reply
        await anyio.sleep(SETTLE)
        client.sendall(line("submit", plain("t"), 2) + b"\n")
        (reply,) = await read_lines(client, 1)
        assert "session_id" in reply["result"], reply
        assert served.server.lane.taken == 1


async def read_to_end(client: socket.socket, seconds: float = REPLY_SECONDS) -> bytes:
    """Everything the daemon sends until it closes the connection (or ``seconds`` pass)."""
    buffer = b""
    with anyio.move_on_after(seconds):
        while True:
            await anyio.wait_readable(client)
            if not (data := client.recv(65536)):
                break
            buffer += data
    return buffer


async def test_a_client_that_sends_eof_after_its_submit_still_gets_the_answer(
    config: ParallelTestConfig, socket_path: Path
) -> None:
    """``echo '{...submit...}' | socat - UNIX-CONNECT:...``: the client shuts its sending
    side after the line; the lane's answer still comes before the daemon closes."""
    async with serving(config, socket_path) as served:
        for index in range(5):
            client = served.connect()
            await anyio.sleep(SETTLE)
            client.sendall(line("submit", plain(f"t{index}"), 1) + b"\n")
            client.shutdown(socket.SHUT_WR)
            answer = json.loads(await read_to_end(client))
            assert "session_id" in answer["result"], answer
        assert served.server.lane.taken == 5


async def test_a_line_too_large_after_a_submit_the_lane_took_is_refused_after_its_answer(
    config: ParallelTestConfig, socket_path: Path
) -> None:
    """A line over 1 MiB sent while the lane's submit before it is being admitted: the
    submit's answer comes first, then the refusal, then the connection closes."""
    async with serving(config, socket_path) as served:
        client = await warm_client(served)
        with held_lookups(served):
            client.sendall(line("submit", plain("held"), 2) + b"\n")
            await anyio.sleep(SETTLE)
            huge = b"x" * (1024 * 1024 + 10)
            with anyio.fail_after(REPLY_SECONDS):
                while huge:
                    await anyio.wait_writable(client)
                    huge = huge[client.send(huge) :]
            await anyio.sleep(SETTLE)
        submitted, refused = (json.loads(one) for one in (await read_to_end(client)).splitlines())
        assert submitted["id"] == 2 and "session_id" in submitted["result"], submitted
        assert refused["error"]["code"] == -32006, refused


async def test_a_submit_that_cannot_be_stored_fails_alone_in_its_batch(
    config: ParallelTestConfig, socket_path: Path
) -> None:
    """Four submits taken together, one of them with an environment value that cannot be
    stored (a lone surrogate): that one is refused, the other three get their sessions."""
    async with serving(config, socket_path) as served:
        clients = [served.connect() for _ in range(4)]
        await anyio.sleep(SETTLE)
        bad = {"requests": [{"id": "bad", "command": ["true"], "env": {"A": "\ud800"}}]}
        for index, client in enumerate(clients):
            client.sendall(line("submit", bad if index == 0 else plain(f"t{index}"), index))
            client.sendall(b"\n")
        replies = [(await read_lines(client, 1))[0] for client in clients]
        assert served.server.lane.taken == 4
        assert "error" in replies[0], replies[0]
        assert all("session_id" in reply["result"] for reply in replies[1:]), replies


async def test_a_line_read_as_the_lane_answers_waits_for_the_line_handed_before_it(
    config: ParallelTestConfig, socket_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane's submit, then a watch handed to the connection while the submit is held,
    then a submit read in the very step the lane's answer is done: the lane does not take
    that last one past the running watch; it is answered once the watch ends, in order."""
    async with serving(config, socket_path) as served:
        client = served.connect()
        await anyio.sleep(SETTLE)
        long = {"requests": [{"id": "long", "command": ["sleep", "30"]}]}
        client.sendall(line("submit", long, 1) + b"\n")
        (watched,) = await read_lines(client, 1)
        session_id = watched["result"]["session_id"]
        done = Connection._lane_done
        fired: list[bool] = []

        def done_then_readable(self: Connection) -> None:
            done(self)
            if not fired:  # the third line arrives, read by the callback in this same step
                fired.append(True)
                client.sendall(line("submit", plain("third"), 4) + b"\n")
                self._reader._on_readable()

        monkeypatch.setattr(Connection, "_lane_done", done_then_readable)
        resolver = served.orch._running.admission.lookup.resolver
        assert resolver._proc is not None
        with stopped(resolver._proc.pid):
            client.sendall(line("submit", plain("second"), 2) + b"\n")
            await anyio.sleep(SETTLE)
            client.sendall(line("watch", {"session_id": session_id}, 3) + b"\n")
            await anyio.sleep(SETTLE)
        await anyio.sleep(0.5)  # the watch runs: nothing after it may be answered yet
        await served.orch.cancel_session(session_id)  # the watch ends
        data, ids = b"", []
        with anyio.fail_after(REPLY_SECONDS):
            while 4 not in ids:
                await anyio.wait_readable(client)
                data += client.recv(65536)
                ids = [json.loads(one).get("id") for one in data.split(b"\n")[:-1]]
        assert [i for i in ids if i is not None] == [2, 3, 4], ids
        assert fired
