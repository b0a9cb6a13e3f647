"""The daemon's wire format: newline-delimited JSON, shaped like JSON-RPC 2.0.

Every message is one JSON object on one line (at most :data:`MAX_LINE_BYTES`).
A request carries ``jsonrpc``, ``id``, ``method`` and an optional ``params``
object; its reply carries the same ``id`` and either ``result`` or ``error``.
``watch`` also sends notifications (no ``id``, ``method`` ``"event"``) before
its reply. ``docs/protocol.md`` is the user-facing description.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from parallel_orch.daemon.wire import EVENT_METHOD as EVENT_METHOD
from parallel_orch.daemon.wire import MAX_LINE_BYTES as MAX_LINE_BYTES
from parallel_orch.daemon.wire import PROTOCOL_VERSION as PROTOCOL_VERSION
from parallel_orch.daemon.wire import ErrorCode as ErrorCode
from parallel_orch.daemon.wire import Method as Method
from parallel_orch.events import Event
from parallel_orch.exceptions import (
    OrchError,
    OrchestratorClosedError,
    PlanError,
    RefError,
    RepoError,
    SessionNotFoundError,
    UsageError,
)
from parallel_orch.models import TestRequest
from parallel_orch.report.options import ReportOptions


class RpcError(OrchError):
    """The daemon refused a request."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        request_id: int | str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.data = data
        self.request_id = request_id  # when a bad request still had a usable id


# -- envelopes ------------------------------------------------------------------


class _Model(BaseModel):
    # Validators are built when a message of the kind is first read: a client command
    # uses two or three of these, and building all of them cost a tenth of a second.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Request(_Model):
    """``{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}``.

    Unlike JSON-RPC proper an ``id`` is required: every request is answered.
    """

    jsonrpc: Literal["2.0"]
    id: StrictInt | StrictStr  # strict: true is not 1, nor 1.0
    method: str
    params: dict[str, Any] = Field(default_factory=dict)


class ErrorObject(_Model):
    code: int
    message: str
    data: dict[str, Any] | None = None


class Response(_Model):
    jsonrpc: Literal["2.0"] = "2.0"
    id: int | str | None
    result: Any = None
    error: ErrorObject | None = None


class Notification(_Model):
    jsonrpc: Literal["2.0"] = "2.0"
    method: Literal["event"] = "event"
    params: Event


# -- params -----------------------------------------------------------------------


class _Params(_Model):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


class NoParams(_Params):
    pass


class SubmitParams(_Params):
    """Either ``paths`` (plan files or directories in the repo) or inline ``requests``."""

    paths: list[str] | None = Field(default=None, min_length=1)
    requests: list[TestRequest] | None = Field(default=None, min_length=1)
    ref: str | None = Field(default=None, min_length=1)
    priority: int = 0
    #: The same key returns the session the first submit with it made (retries are safe).
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    #: Gates, baseline and webhook for its report; the daemon's configuration when absent.
    options: ReportOptions | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SubmitParams:
        if (self.paths is None) == (self.requests is None):
            raise ValueError("give exactly one of 'paths' (plan files) or 'requests' (inline)")
        return self


class SessionParams(_Params):
    session_id: str = Field(min_length=1)


class ReportParams(SessionParams):
    #: Judge the report again by these gates, or against this baseline.
    options: ReportOptions | None = None


class StatusParams(_Params):
    session_id: str | None = Field(default=None, min_length=1)


class SessionsParams(_Params):
    limit: int = Field(default=20, ge=1, le=1000)


class ShutdownParams(_Params):
    now: bool = False


class HistoryParams(_Params):
    test_id: str = Field(min_length=1)
    limit: int = Field(default=20, ge=1, le=1000)


class FlakyParams(_Params):
    sessions: int = Field(default=20, ge=1, le=1000)  # how many of the newest to look at


PARAMS: dict[Method, type[_Params]] = {
    Method.PING: NoParams,
    Method.SUBMIT: SubmitParams,
    Method.STATUS: StatusParams,
    Method.SESSIONS: SessionsParams,
    Method.REPORT: ReportParams,
    Method.CANCEL: SessionParams,
    Method.WATCH: SessionParams,
    Method.SHUTDOWN: ShutdownParams,
    Method.HISTORY: HistoryParams,
    Method.FLAKY: FlakyParams,
}


# -- results ----------------------------------------------------------------------


class PingResult(_Model):
    protocol: int
    version: str
    pid: int
    repo: str
    state_dir: str
    socket: str
    num_workers: int
    accepting: bool
    uptime_seconds: float


class SubmitResult(_Model):
    session_id: str
    total: int


class SessionSummary(_Model):
    """A session as ``sessions``, ``status SESSION`` and the end of ``watch`` show it."""

    session_id: str
    status: str
    created_at: datetime
    completed_at: datetime | None
    duration_seconds: float | None
    total: int
    passed: int
    failed: int  # failed, timed out or error
    counts: dict[str, int]  # execution status -> how many
    plan_paths: list[str] = Field(default_factory=list)
    notify_status: str | None = None  # how the webhook's delivery of its report went
    #: Seconds until a running session ends, from its tests' recorded durations (see
    #: :mod:`parallel_orch.eta`); ``None`` once it has ended or with no history to go on.
    eta_seconds: float | None = None


class WorkerStatus(_Model):
    worker: int
    session_id: str | None
    test_id: str | None


class RunningSession(_Model):
    """A session the daemon is running, as its memory has it (no store reads)."""

    session_id: str
    priority: int
    outstanding: int  # executions not yet final
    queued: int
    running: int
    failures: int


class DaemonStatus(_Model):
    protocol: int
    pid: int
    accepting: bool
    num_workers: int
    queued: int
    connections: int
    uptime_seconds: float
    workers: list[WorkerStatus]
    pool: dict[str, int]
    sessions: list[RunningSession]


class CancelResult(_Model):
    session_id: str
    status: str


class ShutdownResult(_Model):
    mode: Literal["drain", "now"]
    grace_seconds: float


# -- encoding ---------------------------------------------------------------------


def encode(message: BaseModel) -> bytes:
    """One line of JSON (``None`` fields left out), newline included."""
    return message.model_dump_json(exclude_none=True).encode() + b"\n"


_NOTIFICATION = b'{"jsonrpc":"2.0","method":"event","params":'


def notification_line(event: Event) -> bytes:
    """:func:`encode` of ``Notification(params=event)``, without building the notification."""
    return _NOTIFICATION + event.model_dump_json(exclude_none=True).encode() + b"}\n"


def result_line(
    request_id: int | str | None, result: BaseModel | list[Any] | dict[str, Any]
) -> bytes:
    payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    return _line({"jsonrpc": "2.0", "id": request_id, "result": payload})


def error_line(request_id: int | str | None, error: RpcError) -> bytes:
    """An error reply; ``id`` is ``null`` when the request's id could not be read."""
    body = ErrorObject(code=int(error.code), message=error.message, data=error.data)
    return _line({"jsonrpc": "2.0", "id": request_id, "error": body.model_dump(exclude_none=True)})


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def validation_message(exc: ValidationError) -> str:
    """``loc: msg`` for each problem, joined: what a user needs to fix the request."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")  # pydantic's, for a ValueError
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def validation_data(exc: ValidationError) -> dict[str, Any]:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return {"errors": [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]}


def parse_request(line: bytes) -> Request:
    """The request in ``line``.

    :raises RpcError: ``PARSE_ERROR`` for bad JSON, ``INVALID_REQUEST`` for a
        value that is not a request object.
    """
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RpcError(ErrorCode.PARSE_ERROR, f"parse error: not valid JSON ({exc})") from None
    except RecursionError:
        raise RpcError(
            ErrorCode.PARSE_ERROR, "parse error: the JSON is nested too deeply"
        ) from None
    if not isinstance(value, dict):
        kind = type(value).__name__.replace("NoneType", "null").replace("dict", "object")
        raise RpcError(
            ErrorCode.INVALID_REQUEST,
            f"invalid request: expected a JSON object, got {kind}; send "
            '{"jsonrpc": "2.0", "id": 1, "method": "ping"}',
        )
    try:
        return Request.model_validate(value)
    except ValidationError as exc:
        request_id = value.get("id")
        raise RpcError(
            ErrorCode.INVALID_REQUEST,
            f"invalid request: {validation_message(exc)}",
            validation_data(exc),
            request_id=request_id if _valid_id(request_id) else None,
        ) from None


def _valid_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_params(method: Method, params: dict[str, Any]) -> _Params:
    """The typed params of ``method``.

    :raises RpcError: ``INVALID_PARAMS`` naming each missing or wrong field.
    """
    try:
        return PARAMS[method].model_validate(params)
    except ValidationError as exc:
        raise RpcError(
            ErrorCode.INVALID_PARAMS,
            f"invalid params for {method.value}: {validation_message(exc)}",
            validation_data(exc),
        ) from None


def rpc_error(exc: OrchError) -> RpcError:
    """Our engine's exceptions as protocol errors, keeping their messages."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, PlanError):
        return RpcError(ErrorCode.PLAN_ERROR, exc.message, {"path": exc.path, "line": exc.line})
    if isinstance(exc, SessionNotFoundError):
        return RpcError(ErrorCode.SESSION_NOT_FOUND, exc.message)
    if isinstance(exc, OrchestratorClosedError):
        return RpcError(
            ErrorCode.SHUTTING_DOWN, "the daemon is shutting down; it takes no new work"
        )
    if isinstance(exc, RepoError | RefError):
        return RpcError(ErrorCode.REPO_ERROR, exc.message)
    if isinstance(exc, UsageError):  # what was asked cannot be done as asked (too many shards)
        return RpcError(ErrorCode.INVALID_PARAMS, exc.message)
    return RpcError(ErrorCode.INTERNAL_ERROR, exc.message)
