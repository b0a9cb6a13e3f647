"""One client's connection to the daemon: read lines, answer them in order.

Each connection has a reader task (lines in, idle timeout, size limit, hang-up
detection) and answers its requests one at a time, in order; a client that
wants two things at once opens two connections. A plain submit read while
nothing else is in hand goes to the submit lane instead (see lane.py), and
the connection's next line waits for its answer.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import BaseModel

from parallel_orch.daemon import between, wire
from parallel_orch.daemon import protocol as p
from parallel_orch.daemon.lane import LaneAnswer, SubmitLane
from parallel_orch.daemon.lines import LineReader
from parallel_orch.daemon.protocol import ErrorCode, Method, RpcError
from parallel_orch.daemon.service import DaemonService
from parallel_orch.events import Event

log = logging.getLogger("parallel_orch.daemon.server")  # one log for the socket side

WRITE_TIMEOUT_SECONDS = 30.0  # a client that stops reading is dropped after this
PIPELINE_DEPTH = 16  # lines read ahead of the one being answered


class Signal(enum.Enum):
    """What the reader tells the answering side besides lines."""

    TOO_LARGE = "too large"
    IDLE = "idle"


Line = bytes | Signal


class _ClientGone(Exception):
    """The client closed, reset or stopped reading from the connection."""


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int


class Host(Protocol):
    """What a connection needs of its server."""

    service: DaemonService
    idle_timeout: float
    lane: SubmitLane

    def notify(self) -> None:
        """A connection's state changed."""


async def _next_line(lines: MemoryObjectReceiveStream[Line]) -> Line | None:
    """The next line read, without a turn of the loop when one is waiting (a memory stream's
    ``receive`` always takes one); ``None`` once the reader has ended."""
    try:
        return lines.receive_nowait()
    except anyio.WouldBlock:
        pass
    except anyio.EndOfStream:
        return None
    try:
        return await lines.receive()
    except anyio.EndOfStream:
        return None


class Connection:
    """One client: read lines, answer them in order."""

    def __init__(self, server: Host, stream: SocketStream, peer: Peer) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        self.busy = False
        self.hung_up = False
        self._raw: socket.socket = stream.extra(SocketAttribute.raw_socket)  # looked up once
        self._reader = LineReader(self._raw, asyncio.get_running_loop())  # the daemon's loop
        self._write_lock = anyio.Lock(fast_acquire=True)  # no loop turn when nobody writes
        self._watch_scope: anyio.CancelScope | None = None
        self._early: bytes | None = None  # of a reply sent early: what the socket did not take
        self._lane: anyio.Event | None = None  # set when the submit the lane took is answered
        self._lane_at: float | None = None  # when the lane last took a line: not idle since
        self._handed = 0  # lines handed to the answering side and not yet answered
        self._tg: TaskGroup | None = None  # while lines are answered; then nothing is taken
        self._reader.offer = self._offer

    @property
    def watching(self) -> bool:
        """Whether the request in hand is a watch (it lasts as long as its session)."""
        return self._watch_scope is not None

    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            self._reader.close()  # its task has ended: before the socket closes

    async def _serve(self) -> None:
        send, receive = anyio.create_memory_object_stream[Line](PIPELINE_DEPTH)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._read, send)
            try:
                async with receive:
                    while (line := await _next_line(receive)) is not None:
                        if not await self._answer(line):
                            break
            except _ClientGone as exc:
                log.debug("client pid %d went away: %s", self.peer.pid, exc)
            finally:
                self._tg = None  # the lane takes no more of this connection's lines
                if self._lane is not None:  # the answer of the one it took goes out first
                    await self._lane.wait()
                tg.cancel_scope.cancel()

    # -- reading ------------------------------------------------------------

    async def _hand(self, lines: MemoryObjectSendStream[Line], line: Line) -> None:
        """``line`` to the answering side, counted until it is answered."""
        self._handed += 1
        try:  # no loop turn when the answering side has room (it usually does)
            lines.send_nowait(line)
        except anyio.WouldBlock:
            await lines.send(line)

    def _idle_left(self) -> float:
        """Seconds to wait for a line before the connection counts as idle: the idle
        timeout, or less while a submit the lane took lately keeps it busy."""
        timeout = self.server.idle_timeout
        if self._lane_at is not None:
            left = self._lane_at + timeout - anyio.current_time()
            if left > 0:
                return left
        return timeout

    async def _read(self, lines: MemoryObjectSendStream[Line]) -> None:
        async with lines:
            while True:
                line: bytes | None = None
                try:
                    with anyio.move_on_after(self._idle_left()) as idle:
                        line = await self._reader.receive_line(p.MAX_LINE_BYTES)
                except anyio.DelimiterNotFound:
                    pass  # line stays None: too large
                except (
                    anyio.IncompleteRead,
                    anyio.BrokenResourceError,
                    anyio.ClosedResourceError,
                    OSError,
                ):
                    await self._end_of_input(lines)
                    return
                if idle.cancelled_caught:
                    waiting = self.busy or self._handed or self._lane is not None
                    if waiting or self._idle_left() < self.server.idle_timeout:
                        continue  # quiet because it waits for an answer: not idle
                    await self._hand(lines, Signal.IDLE)
                    return
                if line is None or len(line) > p.MAX_LINE_BYTES:  # found in the last chunk read
                    await self._hand(lines, Signal.TOO_LARGE)
                    return
                if line.strip():
                    await self._hand(lines, line)
                else:  # a keep-alive: a turn for each, as reading takes none (a flood of them)
                    await anyio.lowlevel.checkpoint()

    async def _end_of_input(self, lines: MemoryObjectSendStream[Line]) -> None:
        """The client sent EOF: answer what it sent; stop a watch if it hung up entirely."""
        rest = self._reader.buffer
        if rest.strip() and len(rest) <= p.MAX_LINE_BYTES:
            await self._hand(lines, rest)
        if self._peer_hung_up():
            self.hung_up = True
            if self._watch_scope is not None:
                self._watch_scope.cancel()

    def _peer_hung_up(self) -> bool:
        """Closed both ways (POLLHUP), not just shut down for writing like ``socat`` at EOF."""
        poller = select.poll()
        poller.register(self._raw.fileno(), select.POLLIN)
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))

    # -- answering ----------------------------------------------------------

    async def _answer(self, line: Line) -> bool:
        """Answer one line, after the submit the lane took before it; False when the
        connection should close."""
        try:
            if self._lane is not None:  # answers go out in the order the lines came
                await self._lane.wait()
            return await self._answer_line(line)
        finally:
            self._handed -= 1

    async def _answer_line(self, line: Line) -> bool:
        if line is Signal.TOO_LARGE:
            await self._send(
                p.error_line(
                    None,
                    RpcError(
                        ErrorCode.MESSAGE_TOO_LARGE,
                        f"message too large: a request line may have at most "
                        f"{p.MAX_LINE_BYTES} bytes (1 MiB); closing the connection",
                    ),
                )
            )
            return False
        if line is Signal.IDLE:
            log.info("closing idle connection from pid %d", self.peer.pid)
            await self._send(
                p.error_line(
                    None,
                    RpcError(
                        ErrorCode.IDLE_TIMEOUT,
                        f"idle for {self.server.idle_timeout:g}s without a request; "
                        "closing the connection",
                    ),
                )
            )
            return False
        self.busy = True
        try:
            return await self._answer_request(line)
        finally:
            self.busy = False
            self.server.notify()

    async def _answer_request(self, line: bytes) -> bool:
        try:
            request = p.parse_request(line)
        except RpcError as exc:
            await self._send(p.error_line(exc.request_id, exc))
            return True
        try:
            result = await self._call(request)
        except _ClientGone:
            raise
        except RpcError as exc:
            await self._reply(functools.partial(p.error_line, request.id, exc))
            return True
        except Exception as exc:
            log.exception("%s failed", request.method)
            error = RpcError(
                ErrorCode.INTERNAL_ERROR, f"internal error: {exc!r}; see the daemon's log"
            )
            await self._reply(functools.partial(p.error_line, request.id, error))
            return True
        if result is None:
            return False  # the client hung up during watch
        await self._reply(functools.partial(p.result_line, request.id, result), at_once=True)
        return True

    async def _reply(self, line: Callable[[], bytes], *, at_once: bool = False) -> None:
        """The answer to the request in hand (``line()``); or, when it was answered early,
        only what the socket did not take of that answer: a request is answered once,
        whatever happened after its answer went out (an error then is in the log)."""
        rest, self._early = self._early, None
        if rest is None:
            await self._send(line(), at_once=at_once)
        elif rest:
            await self._send(rest)

    def _reply_early(self, request_id: int | str) -> Callable[[BaseModel], None]:
        """The service's ``reply`` for this request: the answer written to the socket at
        once, without a turn of the loop (another write in progress: left to the usual way)."""

        def reply(result: BaseModel) -> None:
            if self._write_lock.locked() or self._early is not None:
                return
            line = p.result_line(request_id, result)
            try:
                sent = wire.send_now(self._raw, line)
            except OSError:  # gone: the usual way finds out
                return
            self._early = line[sent:]
            if sent:  # it woke its client
                between.yield_soon()

        return reply

    def _offer(self, line: bytes) -> bool:
        """A line read while nothing else is in hand: to the submit lane, if it takes it
        (then the next line waits for its answer)."""
        tg = self._tg
        if tg is None or self.busy or self._handed or self._lane is not None:
            return False  # closing, or lines before it wait to be answered
        answer = LaneAnswer(self._raw, self._send, tg, self._lane_done)
        if not self.server.lane.offer(line, answer):
            return False
        self.busy = True
        self._lane = anyio.Event()
        self._lane_at = anyio.current_time()
        return True

    def _lane_done(self) -> None:
        lane, self._lane = self._lane, None
        self.busy = False
        if lane is not None:
            lane.set()
        self.server.notify()

    async def _call(self, request: p.Request) -> BaseModel | list[Any] | None:
        if request.method != Method.WATCH.value:
            return await self.server.service.call(
                request.method, request.params, self._emit, self._reply_early(request.id)
            )
        with anyio.CancelScope() as scope:
            self._watch_scope = scope
            if self.hung_up:
                scope.cancel()
            try:
                result = await self.server.service.call(request.method, request.params, self._emit)
            except _ClientGone:  # found by an event it could not be sent, not by the reader
                log.info("watch ended: client pid %d hung up", self.peer.pid)
                raise
            finally:  # a watch refused (no such session) is over too: the next request is not one
                self._watch_scope = None
        if scope.cancelled_caught:
            log.info("watch ended: client pid %d hung up", self.peer.pid)
            return None
        return result

    async def _emit(self, *events: Event) -> None:
        await self._send(b"".join(p.notification_line(event) for event in events))

    async def _send(self, data: bytes, *, at_once: bool = False) -> None:
        """Write ``data`` whole; ``at_once`` (a reply) first tries the socket without a loop turn.

        A reply is what its client waits for; under load each turn of the loop
        costs milliseconds. Notifications keep the turn, so a watch replaying a
        long session lets the loop serve others between events.
        """
        try:
            async with self._write_lock:
                sent = wire.send_now(self._raw, data) if at_once else 0
                if sent < len(data):
                    with anyio.fail_after(WRITE_TIMEOUT_SECONDS):
                        await self.stream.send(data[sent:])
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _ClientGone(repr(exc)) from None
