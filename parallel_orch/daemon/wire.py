"""The protocol's constants, its reply envelope, and one blocking call: stdlib only.

The CLI's one-shot client commands (``ping``, ``status``, ``sessions``, ``submit``,
``cancel``, ``shutdown``) connect, send one request, read its reply and exit. They
call :func:`call` here and format the reply's plain JSON: no event loop and no
pydantic to import, which was most of their start-up. The async
:class:`~parallel_orch.client.DaemonClient` (typed results, ``watch``) checks
replies and reports a lost daemon with the same functions and errors.
:mod:`parallel_orch.daemon.protocol` has the typed messages the daemon validates.
"""

from __future__ import annotations

import json
import socket
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

from parallel_orch.exceptions import OrchError

#: Bumped on any incompatible change to methods, params or results.
PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1024 * 1024  # one request line, newline excluded
MAX_REPLY_BYTES = 256 * 1024 * 1024  # a report of a huge session is one long line
EVENT_METHOD = "event"
CONNECT_TIMEOUT_SECONDS = 5.0
HINT = "start it with `parallel-orch daemon` or pass --socket"


class Method(StrEnum):
    PING = "ping"
    SUBMIT = "submit"
    STATUS = "status"
    SESSIONS = "sessions"
    REPORT = "report"
    CANCEL = "cancel"
    WATCH = "watch"
    SHUTDOWN = "shutdown"
    HISTORY = "history"
    FLAKY = "flaky"


class ErrorCode(IntEnum):
    """JSON-RPC's reserved codes, then ours in the -32000..-32099 server range."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    PLAN_ERROR = -32001  # the plan is invalid; nothing was queued
    PATH_REFUSED = -32002  # a submitted path is outside the repository
    SESSION_NOT_FOUND = -32003
    SESSION_FINISHED = -32004  # e.g. cancel of a session that already ended
    SHUTTING_DOWN = -32005  # the daemon takes no new sessions
    MESSAGE_TOO_LARGE = -32006  # then the connection is closed
    IDLE_TIMEOUT = -32007  # then the connection is closed
    PERMISSION_DENIED = -32008  # a peer with another uid; then the connection is closed
    TOO_MANY_CONNECTIONS = -32009  # then the connection is closed
    REPO_ERROR = -32010  # a ref or the repository itself is unusable
    WATCH_DROPPED = -32011  # a watch whose client fell too far behind; its last message


#: Errors that mean "fix what you asked" (exit 2); the rest are infrastructure (exit 3).
USAGE_ERRORS = frozenset(
    {
        ErrorCode.INVALID_PARAMS,
        ErrorCode.PLAN_ERROR,
        ErrorCode.PATH_REFUSED,
        ErrorCode.SESSION_NOT_FOUND,
        ErrorCode.SESSION_FINISHED,
    }
)


class DaemonUnreachableError(OrchError):
    """The daemon cannot be reached; start it with `parallel-orch daemon`."""


class DaemonConnectionLost(DaemonUnreachableError):
    """The connection to the daemon was lost before its answer came."""


class DaemonProtocolError(OrchError):
    """The daemon's reply is not valid protocol; are client and daemon the same version?"""


class DaemonRequestError(OrchError):
    """The daemon refused the request."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data or {}
        self.exit_code = 2 if code in USAGE_ERRORS else 3


def unreachable(path: Path, exc: OSError) -> DaemonUnreachableError:
    """What connecting to ``path`` failing with ``exc`` means, in one line."""
    if isinstance(exc, FileNotFoundError):
        return DaemonUnreachableError(f"no daemon at {path} (no socket there); {HINT}")
    if isinstance(exc, ConnectionRefusedError):
        return DaemonUnreachableError(f"no daemon answers at {path} (a stale socket); {HINT}")
    if isinstance(exc, TimeoutError):
        return DaemonUnreachableError(
            f"the daemon at {path} did not accept within {CONNECT_TIMEOUT_SECONDS:g}s"
        )
    return DaemonUnreachableError(f"cannot connect to {path}: {exc.strerror or exc}")


def request_line(request_id: int, method: str, params: dict[str, Any] | None) -> bytes:
    line = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
    return json.dumps(line).encode() + b"\n"


def parse_reply_line(line: bytes) -> dict[str, Any]:
    """The JSON object on one line the daemon sent."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DaemonProtocolError(f"the daemon sent invalid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise DaemonProtocolError(f"the daemon sent {type(message).__name__}, not an object")
    return message


def reply_result(message: dict[str, Any], request_id: int) -> Any:
    """The ``result`` of the reply ``message`` to ``request_id``.

    :raises DaemonRequestError: for an ``error`` reply.
    :raises DaemonProtocolError: for anything that is not a reply.
    """
    unknown = set(message) - {"jsonrpc", "id", "result", "error"}
    if message.get("jsonrpc", "2.0") != "2.0" or unknown:
        raise DaemonProtocolError(f"not a reply: {json.dumps(message)[:200]}")
    error = message.get("error")
    if error is not None:
        if not (
            isinstance(error, dict)
            and isinstance(error.get("code"), int)
            and isinstance(error.get("message"), str)
            and isinstance(error.get("data"), dict | None)
        ):
            raise DaemonProtocolError(f"not an error object: {json.dumps(error)[:200]}")
        raise DaemonRequestError(error["code"], error["message"], error.get("data"))
    if message.get("id") != request_id:
        raise DaemonProtocolError(f"reply for id {message.get('id')!r}, expected {request_id}")
    return message.get("result")


def call(
    socket_path: Path,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    read_to_end: bool = False,
) -> Any:
    """Connect, send one request, return its ``result`` (blocking).

    With ``read_to_end``, then wait until the daemon closes the connection (after
    ``shutdown``: it is gone).

    :raises DaemonUnreachableError: no daemon, or the connection was lost.
    :raises DaemonRequestError: the daemon refused the request.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT_SECONDS)
        try:
            sock.connect(str(socket_path))
        except OSError as exc:
            raise unreachable(socket_path, exc) from None
        sock.settimeout(None)
        try:
            sock.sendall(request_line(1, method, params))
        except OSError as exc:
            raise DaemonConnectionLost(f"lost the connection to the daemon: {exc!r}") from None
        with sock.makefile("rb") as replies:
            result = _read_reply(replies)
            if read_to_end:
                while replies.readline(MAX_REPLY_BYTES + 1):
                    pass  # EOF: the daemon is gone
            return result


def _read_reply(replies: Any) -> Any:
    while True:
        try:
            line = replies.readline(MAX_REPLY_BYTES + 1)
        except OSError:
            line = b""
        if not line.endswith(b"\n"):
            if len(line) > MAX_REPLY_BYTES:
                raise DaemonProtocolError(f"a reply over {MAX_REPLY_BYTES} bytes")
            raise DaemonConnectionLost("the daemon closed the connection (is it shutting down?)")
        message = parse_reply_line(line)
        if "id" in message:
            return reply_result(message, 1)


def send_now(sock: socket.socket, data: bytes) -> int:
    """As much of ``data`` as a non-blocking socket takes at once (0 when its buffer is
    full): a line goes out without waiting for a turn of a busy event loop."""
    try:
        return sock.send(data)
    except BlockingIOError:
        return 0
