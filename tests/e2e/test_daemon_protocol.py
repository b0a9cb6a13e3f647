"""The daemon's JSON-lines protocol as any program speaks it, bad input included."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from parallel_orch.daemon.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, ErrorCode
from tests.e2e.conftest import DaemonProcess, RawClient, query, write_plan
from tests.helpers import WAIT_SECONDS, make_git_repo

IDLE_SECONDS = 1.0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon shared by this module's tests (short idle timeout), on a fresh repo."""
    repo = make_git_repo(tmp_path_factory.mktemp("proto") / "repo")
    write_plan(
        repo.path,
        "quick.toml",
        '[[test]]\nid = "a"\nrun = "true"\n[[test]]\nid = "b"\nrun = "exit 3"\n',
    )
    write_plan(repo.path, "bad.toml", '[[test]]\nid = "a"\nrun = "true"\ncolour = "red"\n')
    socket_dir = Path(tempfile.mkdtemp(dir="/tmp", prefix="po-"))
    proc = DaemonProcess(
        repo.path, socket_dir / "d.sock", ["-j", "2", "--idle-timeout", str(IDLE_SECONDS)]
    )
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


def error_of(reply: dict[str, Any]) -> tuple[int, str]:
    assert reply["jsonrpc"] == "2.0" and "result" not in reply, reply
    return reply["error"]["code"], reply["error"]["message"]


async def test_ping_reports_the_protocol_version(daemon: DaemonProcess) -> None:
    """`ping` answers with the protocol version, the daemon's pid and its repo."""
    async with RawClient.connect(daemon.socket) as client:
        reply = await client.call("ping", request_id=7)
    assert reply["id"] == 7
    assert reply["result"]["protocol"] == PROTOCOL_VERSION
    assert (reply["result"]["pid"], reply["result"]["repo"]) == (daemon.proc.pid, str(daemon.repo))


async def test_malformed_json_gets_a_parse_error_and_the_connection_goes_on(
    daemon: DaemonProcess,
) -> None:
    """A line that is not JSON gets -32700 with id null; the next request is still answered."""
    async with RawClient.connect(daemon.socket) as client:
        await client.send(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
        reply = await client.receive()
        assert reply["id"] is None
        assert error_of(reply)[0] == ErrorCode.PARSE_ERROR
        assert (await client.call("ping", request_id=2))["result"]["protocol"] == PROTOCOL_VERSION


@pytest.mark.parametrize("line", [b"[1, 2]", b'"ping"', b"42", b"null", b"true"])
async def test_a_json_value_that_is_not_an_object_is_an_invalid_request(
    daemon: DaemonProcess, line: bytes
) -> None:
    """Arrays, strings, numbers, null and booleans get -32600 saying an object is expected."""
    async with RawClient.connect(daemon.socket) as client:
        await client.send(line + b"\n")
        code, message = error_of(await client.receive())
    assert code == ErrorCode.INVALID_REQUEST
    assert "expected a JSON object" in message


@pytest.mark.parametrize(
    ("request_", "missing"),
    [
        ({"id": 4, "method": "ping"}, "jsonrpc"),
        ({"jsonrpc": "2.0", "method": "ping"}, "id"),
        ({"jsonrpc": "1.0", "id": 4, "method": "ping"}, "jsonrpc"),
    ],
)
async def test_an_object_that_is_not_a_request_names_the_bad_field(
    daemon: DaemonProcess, request_: dict[str, Any], missing: str
) -> None:
    """A missing id or jsonrpc, or the wrong version, gets -32600 naming the field (id echoed)."""
    async with RawClient.connect(daemon.socket) as client:
        await client.send(json.dumps(request_).encode() + b"\n")
        reply = await client.receive()
    code, message = error_of(reply)
    assert code == ErrorCode.INVALID_REQUEST and missing in message
    assert reply["id"] == request_.get("id")


async def test_an_unknown_method_is_named_with_the_known_ones(daemon: DaemonProcess) -> None:
    """An unknown method gets -32601 naming it and listing the methods."""
    async with RawClient.connect(daemon.socket) as client:
        code, message = error_of(await client.call("launch"))
    assert code == ErrorCode.METHOD_NOT_FOUND
    assert "'launch'" in message and "submit" in message


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("cancel", {}, "session_id"),
        ("watch", {"session_id": 12}, "session_id"),
        ("submit", {"paths": ["plans"], "priority": "high"}, "priority"),
        ("submit", {}, "paths"),
        ("submit", {"paths": "plans"}, "paths"),
        ("sessions", {"limit": 0}, "limit"),
        ("ping", {"verbose": True}, "verbose"),
        ("status", [1], "params"),
    ],
)
async def test_missing_or_wrong_typed_params_are_invalid_params(
    daemon: DaemonProcess, method: str, params: Any, field: str
) -> None:
    """Missing, extra or wrong-typed params get an error naming the field; nothing is done."""
    async with RawClient.connect(daemon.socket) as client:
        code, message = error_of(await client.call(method, params))
    assert code in (ErrorCode.INVALID_PARAMS, ErrorCode.INVALID_REQUEST)
    assert field in message


async def test_a_line_over_one_mebibyte_is_refused_and_the_daemon_serves_on(
    daemon: DaemonProcess,
) -> None:
    """A line over 1 MiB gets -32006 and the connection is closed; other clients are served."""
    async with RawClient.connect(daemon.socket) as client:
        async with anyio.create_task_group() as tg:

            async def flood() -> None:
                # The daemon may close the connection while we are still sending.
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await client.send(b'{"x": "' + b"y" * (MAX_LINE_BYTES + 10) + b'"}\n')

            tg.start_soon(flood)
            code, message = error_of(await client.receive())
        assert code == ErrorCode.MESSAGE_TOO_LARGE and "1 MiB" in message
        assert await client.closed()
    async with RawClient.connect(daemon.socket) as other:
        assert "result" in await other.call("ping")


async def test_a_silent_client_blocks_no_one_and_is_dropped_when_idle(
    daemon: DaemonProcess,
) -> None:
    """A client that says nothing does not delay others and is closed after the idle timeout."""
    async with RawClient.connect(daemon.socket) as silent:
        with anyio.fail_after(IDLE_SECONDS / 2 + 5):
            async with RawClient.connect(daemon.socket) as other:
                assert "result" in await other.call("ping")
        code, _ = error_of(await silent.receive())
        assert code == ErrorCode.IDLE_TIMEOUT
        assert await silent.closed()


async def test_a_hundred_clients_at_once_are_all_answered(daemon: DaemonProcess) -> None:
    """100 concurrent connections each get their ping answered."""
    answered: list[int] = []

    async def one(n: int) -> None:
        async with RawClient.connect(daemon.socket) as client:
            reply = await client.call("ping", request_id=n)
            answered.append(reply["id"])

    async with anyio.create_task_group() as tg:
        for n in range(100):
            tg.start_soon(one, n)
    assert sorted(answered) == list(range(100))


async def test_submit_is_acknowledged_only_once_its_requests_are_committed(
    daemon: DaemonProcess,
) -> None:
    """Inline requests: when the session id comes back, another process finds every request."""
    requests = [{"id": f"inline::{n}", "command": ["true"]} for n in range(5)]
    async with RawClient.connect(daemon.socket) as client:
        reply = await client.call("submit", {"requests": requests, "priority": 2})
    session_id = reply["result"]["session_id"]
    assert reply["result"]["total"] == 5
    rows = query(
        daemon.state_dir, "SELECT test_id FROM executions WHERE session_id = ?", session_id
    )
    assert sorted(r[0] for r in rows) == [r["id"] for r in requests]


async def test_submit_of_a_bad_plan_returns_the_plan_error_and_queues_nothing(
    daemon: DaemonProcess,
) -> None:
    """A bad plan gets -32001 naming file and line; no session is recorded."""
    before = query(daemon.state_dir, "SELECT count(*) FROM sessions")
    async with RawClient.connect(daemon.socket) as client:
        reply = await client.call("submit", {"paths": ["plans/bad.toml"]})
    code, message = error_of(reply)
    assert code == ErrorCode.PLAN_ERROR
    assert "bad.toml:4" in message and "colour" in message
    assert reply["error"]["data"]["line"] == 4
    assert query(daemon.state_dir, "SELECT count(*) FROM sessions") == before


@pytest.mark.parametrize("path", ["/etc", "../..", "plans/../../outside"])
async def test_submit_of_a_path_outside_the_repo_is_refused(
    daemon: DaemonProcess, path: str
) -> None:
    """Absolute or relative paths that leave the repo get -32002; nothing is read there."""
    async with RawClient.connect(daemon.socket) as client:
        code, message = error_of(await client.call("submit", {"paths": [path]}))
    assert code == ErrorCode.PATH_REFUSED and "outside the repository" in message


async def test_cancel_of_an_unknown_or_finished_session_is_an_error(daemon: DaemonProcess) -> None:
    """Cancel of an unknown session gets -32003, of a finished one -32004."""
    async with RawClient.connect(daemon.socket) as client:
        code, _ = error_of(await client.call("cancel", {"session_id": "no-such-session"}))
        assert code == ErrorCode.SESSION_NOT_FOUND
        session_id = (await client.call("submit", {"paths": ["plans/quick.toml"]}))["result"][
            "session_id"
        ]
        final = await client.call("watch", {"session_id": session_id})
        while "id" not in final:
            final = await client.receive()
        code, message = error_of(await client.call("cancel", {"session_id": session_id}))
    assert code == ErrorCode.SESSION_FINISHED and "already finished" in message


async def test_watch_streams_events_until_session_finished_then_the_result(
    daemon: DaemonProcess,
) -> None:
    """watch: session.started, one notification per event, session.finished, then the result."""
    async with RawClient.connect(daemon.socket) as client:
        session_id = (await client.call("submit", {"paths": ["plans/quick.toml"]}))["result"][
            "session_id"
        ]
        await client.request("watch", {"session_id": session_id}, request_id=9)
        messages = [await client.receive()]
        while "id" not in messages[-1]:
            messages.append(await client.receive())
    *notes, result = messages
    assert all(n["method"] == "event" and n["params"]["session_id"] == session_id for n in notes)
    types = [n["params"]["type"] for n in notes]
    assert types[0] == "session.started" and types[-1] == "session.finished"
    finished = {
        n["params"]["test_id"]: n["params"]["status"]
        for n in notes
        if n["params"]["type"] == "test.finished"
    }
    assert finished == {"quick::a": "passed", "quick::b": "failed"}  # each once, even if late
    assert result["id"] == 9
    assert (result["result"]["status"], result["result"]["total"]) == ("partial_success", 2)
    assert result["result"]["counts"] == {"passed": 1, "failed": 1}


async def test_a_watch_of_an_ended_session_replays_it_and_sums_it_up_as_status_does(
    daemon: DaemonProcess,
) -> None:
    """Watching a session that has ended (by a prefix of its id): its start, each test's end
    and its end, in one go, and a result equal to ``status`` of that session."""
    async with RawClient.connect(daemon.socket) as client:
        submitted = await client.call("submit", {"paths": ["plans/quick.toml"]})
        session_id = submitted["result"]["session_id"]
        first = await client.call("watch", {"session_id": session_id})
        while "id" not in first:
            first = await client.receive()
        await client.request("watch", {"session_id": session_id[:8]}, request_id=4)
        messages = [await client.receive()]
        while "id" not in messages[-1]:
            messages.append(await client.receive())
        status = await client.call("status", {"session_id": session_id}, request_id=5)
    *notes, result = messages
    assert [(n["params"]["type"], n["params"].get("test_id")) for n in notes] == [
        ("session.started", None),
        ("test.finished", "quick::a"),
        ("test.finished", "quick::b"),
        ("session.finished", None),
    ]
    assert notes[0]["params"]["total"] == notes[-1]["params"]["total"] == 2
    assert notes[-1]["params"]["status"] == "partial_success"
    assert result["result"] == status["result"] == first["result"]


async def test_a_client_that_disconnects_mid_watch_is_dropped_cleanly(
    daemon: DaemonProcess,
) -> None:
    """Hanging up during watch ends that watch; the session runs on and others are served."""
    gate = daemon.repo.parent / "gate"
    requests = [{"id": "gated", "command": f"while [ ! -e {gate} ]; do sleep 0.05; done"}]
    async with RawClient.connect(daemon.socket) as probe:  # other tests may hold connections
        baseline = (await probe.call("status"))["result"]["connections"]
    try:
        async with RawClient.connect(daemon.socket) as client:
            submitted = await client.call("submit", {"requests": requests})
            session_id = submitted["result"]["session_id"]
            await client.request("watch", {"session_id": session_id})
            assert (await client.receive())["params"]["type"] == "session.started"
        await anyio.to_thread.run_sync(daemon.wait_for_log, "hung up")
    finally:
        gate.touch()  # a failure above must not leave the gated test running for ever
    async with RawClient.connect(daemon.socket) as other:
        reply = await other.call("watch", {"session_id": session_id})
        while "id" not in reply:
            reply = await other.receive()
        # the hung-up client is no longer counted (idle ones may have timed out since)
        assert (await other.call("status"))["result"]["connections"] <= baseline
    assert reply["result"]["status"] == "complete"
    assert "Traceback" not in daemon.log
    os.unlink(gate)


async def test_the_daemon_logs_each_session_end(daemon: DaemonProcess) -> None:
    """The daemon's log has a line for each ended session: its id, status and test count."""
    async with RawClient.connect(daemon.socket) as client:
        submitted = await client.call("submit", {"requests": [{"id": "logged", "command": "true"}]})
        session_id = submitted["result"]["session_id"]
        reply = await client.call("watch", {"session_id": session_id})
        while "id" not in reply:  # the session's events come first
            reply = await client.receive()
    assert reply["result"]["status"] == "complete"
    line = f"session {session_id} finished: complete (1 tests)"
    await anyio.to_thread.run_sync(daemon.wait_for_log, line)


def request_line(method: str, params: Any = None, request_id: int = 1) -> bytes:
    """One request as the line a client sends."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode() + b"\n"


#: One line of each kind of bad input above: each gets an error and the connection goes on.
BAD_LINES = (
    b'{"jsonrpc": "2.0", "id": 1, "method": \n',  # malformed JSON
    b"\xff\xfe not UTF-8\n",
    b"[1, 2]\n",  # not an object
    b"null\n",
    b'{"id": 4, "method": "ping"}\n',  # not a request
    b'{"jsonrpc": "1.0", "id": 4, "method": "ping"}\n',
    request_line("launch"),  # unknown method
    request_line("cancel", {}),  # bad params
    request_line("submit", {"paths": "plans"}),
    request_line("sessions", {"limit": 0}),
    request_line("ping", {"verbose": True}),
    request_line("status", [1]),
    request_line("submit", {"paths": ["plans/bad.toml"]}),  # bad plan
    request_line("submit", {"paths": ["/etc"]}),  # outside the repo
    request_line("cancel", {"session_id": "no-such-session"}),  # unknown session
)


async def settled(probe: RawClient) -> None:
    """Until ``probe`` is the daemon's only connection: every other one has been handled to its end.

    The daemon signals nothing when it has finished with a connection, so this asks it.
    """
    delay = 0.01
    with anyio.fail_after(WAIT_SECONDS):
        while (await probe.call("status"))["result"]["connections"] > 1:
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.2)


async def test_bad_input_and_hang_ups_leave_the_daemon_serving_without_tracebacks(
    daemon: DaemonProcess,
) -> None:
    """Every kind of bad input and hang-up above is survived: no traceback logged, ping answered."""
    async with RawClient.connect(daemon.socket) as client:
        for line in BAD_LINES:
            await client.send(line)
            assert "error" in await client.receive(), line
    async with RawClient.connect(daemon.socket) as client:

        async def flood() -> None:
            # The daemon may close the connection while we are still sending.
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await client.send(b'{"x": "' + b"y" * (MAX_LINE_BYTES + 10) + b'"}\n')

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            assert error_of(await client.receive())[0] == ErrorCode.MESSAGE_TOO_LARGE
        assert await client.closed()
    async with RawClient.connect(daemon.socket) as client:  # EOF after an unterminated request
        await client.send(request_line("ping").rstrip(b"\n"))
        await client.stream.send_eof()
        assert "result" in await client.receive()
    async with RawClient.connect(daemon.socket) as client:  # hang-up in the middle of a line
        await client.send(b'{"jsonrpc": "2.0", "id": 1, "meth')
    async with RawClient.connect(daemon.socket) as client:  # hang-up before reading the answer
        await client.send(request_line("sessions", {"limit": 5}))
    held = [{"id": "held", "command": ["sleep", "60"]}]
    async with RawClient.connect(daemon.socket) as client:  # hang-up in the middle of a watch
        session_id = (await client.call("submit", {"requests": held}))["result"]["session_id"]
        await client.request("watch", {"session_id": session_id})
        assert (await client.receive())["params"]["type"] == "session.started"

    async with RawClient.connect(daemon.socket) as probe:
        await settled(probe)
        assert "result" in await probe.call("cancel", {"session_id": session_id})
        # Logged after every connection above ended: all they logged is in the log read below.
        await anyio.to_thread.run_sync(daemon.wait_for_log, f"session {session_id}: cancelled")
        final = await probe.call("watch", {"session_id": session_id})
        while "id" not in final:
            final = await probe.receive()
        assert final["result"]["status"] == "cancelled"
        ping = await probe.call("ping")
    assert ping["result"]["pid"] == daemon.proc.pid
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.log, daemon.log


async def test_json_nested_too_deeply_is_a_parse_error_not_a_dead_connection(
    daemon: DaemonProcess,
) -> None:
    """100,000 nested arrays get -32700 'nested too deeply'; the connection then goes on."""
    async with RawClient.connect(daemon.socket) as client:
        await client.send(b"[" * 100_000 + b"]" * 100_000 + b"\n")
        reply = await client.receive()
        assert reply["id"] is None
        assert error_of(reply) == (
            ErrorCode.PARSE_ERROR,
            "parse error: the JSON is nested too deeply",
        )
        assert (await client.call("ping", request_id=2))["result"]["protocol"] == PROTOCOL_VERSION
    assert "RecursionError" not in daemon.log


@pytest.mark.parametrize("bad_id", [True, False, 1.0, None, [1], {"a": 1}])
async def test_an_id_that_is_not_an_integer_or_string_is_an_invalid_request(
    daemon: DaemonProcess, bad_id: object
) -> None:
    """`"id": true` (or 1.0, null, a list) gets -32600 with id null, never answered as id 1."""
    async with RawClient.connect(daemon.socket) as client:
        line = json.dumps({"jsonrpc": "2.0", "id": bad_id, "method": "ping"})
        await client.send(line.encode() + b"\n")
        reply = await client.receive()
    assert reply["id"] is None
    code, message = error_of(reply)
    assert code == ErrorCode.INVALID_REQUEST and "id" in message


async def test_a_client_flooding_blank_lines_does_not_hold_up_the_others(
    daemon: DaemonProcess,
) -> None:
    """While one client sends nothing but blank lines as fast as it can, another client's
    ping is answered at once, not after the flood."""
    stop = threading.Event()

    def flood() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(daemon.socket))
            chunk = b"\n" * 65536
            while not stop.is_set():
                sock.sendall(chunk)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        await anyio.sleep(0.3)  # the daemon is reading the flood
        async with RawClient.connect(daemon.socket) as client:
            started = time.monotonic()
            reply = await client.call("ping", request_id=5)
            waited = time.monotonic() - started
    finally:
        stop.set()
        flooder.join(10)
    assert reply["id"] == 5
    assert waited < 1.0, f"the ping waited {waited:.1f} s behind another client's blank lines"


async def test_blank_lines_are_ignored_as_keep_alives(daemon: DaemonProcess) -> None:
    """Blank and whitespace-only lines get no answer; the next request's answer comes first."""
    async with RawClient.connect(daemon.socket) as client:
        await client.send(b"\n  \n\t\n")
        reply = await client.call("ping", request_id=9)
    assert reply["id"] == 9 and reply["result"]["protocol"] == PROTOCOL_VERSION
