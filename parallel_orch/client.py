"""Async client for the daemon (``parallel-orch daemon``); the CLI's client commands use it.

::

    from parallel_orch.client import DaemonClient

    async with DaemonClient("/path/to/daemon.sock") as client:
        submitted = await client.submit(paths=["plans/unit"])
        async for event in client.watch(submitted.session_id):
            print(event.type, event.test_id or "", event.status or "")
        report = await client.report(submitted.session_id)

One client is one connection and answers one call at a time (calls from
several tasks queue up); ``watch`` holds the connection until its session
ends, so watch from one client and call from another. Leaving a ``watch``
early closes the connection.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio import AsyncContextManagerMixin
from anyio.abc import SocketAttribute, SocketStream

from parallel_orch.daemon import protocol as p
from parallel_orch.daemon import wire
from parallel_orch.daemon.lines import LineReader
from parallel_orch.daemon.paths import socket_path_light
from parallel_orch.daemon.wire import CONNECT_TIMEOUT_SECONDS, MAX_REPLY_BYTES
from parallel_orch.daemon.wire import DaemonConnectionLost as DaemonConnectionLost
from parallel_orch.daemon.wire import DaemonProtocolError as DaemonProtocolError
from parallel_orch.daemon.wire import DaemonRequestError as DaemonRequestError
from parallel_orch.daemon.wire import DaemonUnreachableError as DaemonUnreachableError
from parallel_orch.events import Event

# What only some calls need is imported by them: a client command starts at once.
if TYPE_CHECKING:
    from parallel_orch.history import FlakyTests, HistoryEntry
    from parallel_orch.models import TestRequest
    from parallel_orch.report import ParallelTestReport
    from parallel_orch.report.options import ReportOptions


class DaemonClient(AsyncContextManagerMixin):
    """A connection to the daemon at ``socket_path``; use as ``async with``.

    Without ``socket_path``, the daemon of the repo around the current
    directory, at the socket ``parallel-orch daemon`` uses by default there.
    """

    def __init__(self, socket_path: str | Path | None = None) -> None:
        if socket_path is None:
            socket_path = socket_path_light()
        self.socket_path = Path(socket_path)
        self._stream: SocketStream | None = None
        self._raw: socket.socket | None = None
        self._reader: LineReader | None = None
        self._ids = itertools.count(1)
        self._lock = anyio.Lock(fast_acquire=True)  # no loop turn when no other call waits
        self._broken = False

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[DaemonClient]:
        stream = await self._connect()
        async with stream:
            raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
            self._stream, self._raw, self._reader = stream, raw, LineReader(raw)
            try:
                yield self
            finally:
                self._stream = self._raw = self._reader = None
                anyio.notify_closing(raw)  # a call still waiting for a reply: connection lost

    async def _connect(self) -> SocketStream:
        try:
            with anyio.fail_after(CONNECT_TIMEOUT_SECONDS):
                return await anyio.connect_unix(self.socket_path)
        except OSError as exc:  # TimeoutError too
            raise wire.unreachable(self.socket_path, exc) from None

    # -- the wire -------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request, return its ``result``.

        :raises DaemonRequestError: if the daemon answers with an error.
        :raises DaemonUnreachableError: if the connection is gone.
        """
        async with self._lock:
            request_id = await self._send(method, params)
            while True:
                message = await self._receive()
                if "id" in message:
                    return self._result(message, request_id)

    async def _send(self, method: str, params: dict[str, Any] | None) -> int:
        if self._stream is None or self._raw is None:
            raise DaemonUnreachableError(
                "the client is not connected; use `async with DaemonClient(...)`"
            )
        if self._broken:
            raise DaemonUnreachableError(
                "this connection was left in the middle of a watch; reconnect"
            )
        request_id = next(self._ids)
        line = wire.request_line(request_id, method, params)
        try:
            sent = wire.send_now(self._raw, line)
            if sent < len(line):
                await self._stream.send(line[sent:])
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise DaemonConnectionLost(f"lost the connection to the daemon: {exc!r}") from None
        return request_id

    async def _receive(self) -> dict[str, Any]:
        assert self._reader is not None
        # A turn of the loop for each message, as anyio's stream took: a watch replaying a
        # long session's events lets the program's other tasks (its ETA reads, a timeout)
        # run between them, however many are already read.
        await anyio.lowlevel.checkpoint()
        try:
            line = await self._reader.receive_line(MAX_REPLY_BYTES)
        except (
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        ):
            raise DaemonConnectionLost(
                "the daemon closed the connection (is it shutting down?)"
            ) from None
        except anyio.DelimiterNotFound:
            raise DaemonProtocolError(f"a reply over {MAX_REPLY_BYTES} bytes") from None
        return wire.parse_reply_line(line)

    @staticmethod
    def _result(message: dict[str, Any], request_id: int) -> Any:
        return wire.reply_result(message, request_id)

    # -- methods --------------------------------------------------------------

    async def ping(self) -> p.PingResult:
        """The daemon's version, pid, repo, socket and whether it takes new sessions."""
        return p.PingResult.model_validate(await self.call("ping"))

    async def submit(
        self,
        *,
        paths: Sequence[str | Path] | None = None,
        requests: Sequence[TestRequest] | None = None,
        ref: str | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        options: ReportOptions | None = None,
    ) -> p.SubmitResult:
        """Submit plan paths (resolved by the daemon inside its repo) or inline requests.

        Returns once the daemon has committed every request. A submit sent again
        with the same ``idempotency_key`` gets the first one's session back.
        """
        params: dict[str, Any] = {"priority": priority}
        if idempotency_key is not None:
            params["idempotency_key"] = idempotency_key
        if paths is not None:
            params["paths"] = [str(x) for x in paths]
        if requests is not None:
            params["requests"] = [r.model_dump(mode="json") for r in requests]
        if ref is not None:
            params["ref"] = ref
        if options is not None:
            params["options"] = options.model_dump(mode="json")
        return p.SubmitResult.model_validate(await self.call("submit", params))

    async def status(self) -> p.DaemonStatus:
        """The daemon: workers, queue, pool and running sessions."""
        return p.DaemonStatus.model_validate(await self.call("status"))

    async def session(self, session_id: str) -> p.SessionSummary:
        """One session's status and counts (``status`` with a session id)."""
        return p.SessionSummary.model_validate(
            await self.call("status", {"session_id": session_id})
        )

    async def sessions(self, limit: int = 20) -> list[p.SessionSummary]:
        """The newest ``limit`` sessions, newest first."""
        rows = await self.call("sessions", {"limit": limit})
        return [p.SessionSummary.model_validate(row) for row in rows]

    async def history(self, test_id: str, limit: int = 20) -> list[HistoryEntry]:
        """The newest executions of a test (and its ``@ref`` / ``#n`` variants), newest first."""
        from parallel_orch.history import HistoryEntry

        rows = await self.call("history", {"test_id": test_id, "limit": limit})
        return [HistoryEntry.model_validate(row) for row in rows]

    async def flaky(self, sessions: int = 20) -> FlakyTests:
        """Tests that flaked in the newest ``sessions`` sessions, flakiest first."""
        from parallel_orch.history import FlakyTests

        return FlakyTests.model_validate(await self.call("flaky", {"sessions": sessions}))

    async def report(
        self, session_id: str, *, options: ReportOptions | None = None
    ) -> ParallelTestReport:
        """A session's report; with ``options``, judged again by those gates and baseline."""
        from parallel_orch.report import ParallelTestReport

        params: dict[str, Any] = {"session_id": session_id}
        if options is not None:
            params["options"] = options.model_dump(mode="json")
        return ParallelTestReport.model_validate(await self.call("report", params))

    async def cancel(self, session_id: str) -> p.CancelResult:
        """Stop a running session: its queued tests dropped, its running attempts stopped
        (SIGTERM, then SIGKILL after the kill grace); it ends ``cancelled``."""
        return p.CancelResult.model_validate(await self.call("cancel", {"session_id": session_id}))

    async def shutdown(self, *, now: bool = False, wait: bool = True) -> p.ShutdownResult:
        """Ask the daemon to stop; with ``wait``, return once it has closed this connection."""
        result = p.ShutdownResult.model_validate(await self.call("shutdown", {"now": now}))
        if wait:
            async with self._lock:
                try:
                    while True:
                        await self._receive()
                except DaemonUnreachableError:
                    pass  # EOF: the daemon is gone
        return result

    async def watch(self, session_id: str) -> AsyncIterator[Event]:
        """The session so far, then its events, until its ``session.finished``."""
        async with aclosing(self._watch(session_id)) as items:
            async for item in items:
                if isinstance(item, Event):
                    yield item

    async def wait(self, session_id: str) -> p.SessionSummary:
        """Wait until the session ends; its final summary."""
        async with aclosing(self._watch(session_id)) as items:
            async for item in items:
                if isinstance(item, p.SessionSummary):
                    return item
        raise DaemonProtocolError("watch ended without a result")

    async def _watch(self, session_id: str) -> AsyncGenerator[Event | p.SessionSummary, None]:
        async with self._lock:
            request_id = await self._send("watch", {"session_id": session_id})
            finished = False
            try:
                while True:
                    message = await self._receive()
                    if "id" in message:
                        finished = True
                        yield p.SessionSummary.model_validate(self._result(message, request_id))
                        return
                    if message.get("method") == p.EVENT_METHOD:
                        yield Event.model_validate(message.get("params"))
            finally:
                if not finished:
                    self._broken = (
                        True  # the rest of the watch is unread: the connection is unusable
                    )
