"""The CLI's blocking client call against a real Unix socket: replies, refusals, bad daemons;
and the daemon's event lines it reads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from parallel_orch import events
from parallel_orch.daemon import protocol as p
from parallel_orch.daemon import wire
from tests.e2e.cli import cli_env

Answer = Callable[[dict[str, object]], bytes]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Answer], Path]]:
    """Factory: a one-connection server on a real socket that answers with ``answer(request)``."""
    servers: list[socket.socket] = []

    def start(answer: Answer) -> Path:
        path = tmp_path / "d.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen()
        servers.append(server)

        def one() -> None:
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as lines:
                conn.sendall(answer(json.loads(lines.readline())))

        threading.Thread(target=one, daemon=True).start()
        return path

    yield start
    for server in servers:
        server.close()


def reply(request: dict[str, object], **body: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request["id"], **body}).encode() + b"\n"


def test_a_reply_comes_back_after_the_events_before_it(serve: Callable[[Answer], Path]) -> None:
    """Notifications before the reply are skipped; the request is JSON-RPC as documented."""
    seen: list[dict[str, object]] = []

    def answer(request: dict[str, object]) -> bytes:
        seen.append(request)
        event = b'{"jsonrpc":"2.0","method":"event","params":{}}\n'
        return event + reply(request, result={"pid": 7})

    path = serve(answer)
    assert wire.call(path, "status", {"session_id": "abc"}) == {"pid": 7}
    assert seen == [
        {"jsonrpc": "2.0", "id": 1, "method": "status", "params": {"session_id": "abc"}}
    ]


@pytest.mark.parametrize(
    ("answer", "error", "exit_code", "message"),
    [
        (
            lambda r: reply(r, error={"code": -32003, "message": "no session abc"}),
            wire.DaemonRequestError,
            2,
            "no session abc",
        ),
        (
            lambda r: reply(r, error={"code": -32005, "message": "shutting down"}),
            wire.DaemonRequestError,
            3,
            "shutting down",
        ),
        (lambda r: b"not json\n", wire.DaemonProtocolError, 3, "invalid JSON"),
        (lambda r: b"[1]\n", wire.DaemonProtocolError, 3, "list, not an object"),
        (lambda r: b'{"id": 9, "result": 1}\n', wire.DaemonProtocolError, 3, "for id 9"),
        (lambda r: reply(r, result=1, extra=2), wire.DaemonProtocolError, 3, "not a reply"),
        (lambda r: reply(r, error={"code": "x"}), wire.DaemonProtocolError, 3, "error object"),
        (lambda r: b'{"id": 1, "res', wire.DaemonConnectionLost, 3, "closed the connection"),
    ],
    ids=[
        "refused",
        "shutting-down",
        "bad-json",
        "not-object",
        "wrong-id",
        "extra",
        "bad-error",
        "cut",
    ],
)
def test_refusals_and_broken_replies_are_one_clear_error(
    serve: Callable[[Answer], Path],
    answer: Answer,
    error: type[Exception],
    exit_code: int,
    message: str,
) -> None:
    """A refusal keeps its message and exit code (2: fix the request); a broken reply is 3."""
    path = serve(answer)
    with pytest.raises(error, match=message) as raised:
        wire.call(path, "ping")
    assert getattr(raised.value, "exit_code", None) == exit_code


def test_no_daemon_and_a_stale_socket_say_how_to_start_one(tmp_path: Path) -> None:
    """No socket file, or one nobody listens on: exit 3 with the hint."""
    with pytest.raises(wire.DaemonUnreachableError, match=r"no socket there.*parallel-orch daemon"):
        wire.call(tmp_path / "none.sock", "ping")
    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    with pytest.raises(wire.DaemonUnreachableError, match="a stale socket"):
        wire.call(stale, "ping")


def test_a_daemon_of_another_version_is_one_line_and_exit_3(
    serve: Callable[[Answer], Path], tmp_path: Path
) -> None:
    """`parallel-orch ping` against a reply without the fields it prints: no traceback."""
    path = serve(lambda r: reply(r, result={"pid": 1, "protocol": 9}))
    argv = [sys.executable, "-m", "parallel_orch", "ping", "--socket", str(path)]
    done = subprocess.run(argv, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 3
    (line,) = done.stderr.splitlines()
    assert "reply to ping is not what this client reads" in line
    assert "same version" in line


@pytest.mark.parametrize(
    "row",
    [
        {"session_id": "a", "created_at": "", "completed_at": None},
        {
            "session_id": "a",
            "status": "x",
            "created_at": "2026-01-01T00:00:00Z",
            "completed_at": None,
        },
    ],
    ids=["bad-time", "no-counts"],
)
def test_a_session_list_of_another_shape_is_one_line_and_exit_3(
    serve: Callable[[Answer], Path], tmp_path: Path, row: dict[str, object]
) -> None:
    """`parallel-orch sessions --socket` against rows it cannot read: no traceback."""
    path = serve(lambda r: reply(r, result=[row]))
    argv = [sys.executable, "-m", "parallel_orch", "sessions", "--socket", str(path)]
    done = subprocess.run(argv, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 3
    (line,) = done.stderr.splitlines()
    assert "reply to sessions is not what this client reads" in line


def test_an_event_line_is_the_notification_model_encoded() -> None:
    """Each kind of event goes out as exactly what encoding its Notification model gives."""
    samples = [
        events.session_started("s1", 3),
        events.test_finished(
            "s1", test_id="t", execution_id=7, attempt=2, status="failed", error="exit 1"
        ),
        events.session_finished("s1", status="complete", total=3, duration_seconds=1.5),
    ]
    for event in samples:
        line = p.notification_line(event)
        assert line == p.encode(p.Notification(params=event))
        assert json.loads(line)["params"]["type"] == event.type.value
