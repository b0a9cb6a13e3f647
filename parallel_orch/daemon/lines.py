"""Newline-framed messages read straight from a connected socket, for the daemon and its client.

anyio's buffered stream over a socket stream takes a turn of the event loop
before every ``recv`` and registers the socket with the loop by the object,
whose repr (a ``getpeername`` call) asyncio formats each time. Here a line
already in the socket costs one ``recv``, and a wait for more data registers
the descriptor alone: about 40 µs a request of the daemon's single thread
(20 clients pinging back to back: 148-157 µs of its CPU a ping, from 188-198),
and 20 more where the socket stays registered.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import anyio

RECV_BYTES = 65536


class LineReader:
    """Lines from ``sock`` (non-blocking, connected), without their newline; one reader a
    socket, from one task at a time. Works on any anyio backend.

    Given the asyncio ``loop`` it runs on, the socket stays registered with the loop
    between lines (as a transport keeps it), instead of being added and removed for
    each wait: two ``epoll_ctl`` calls and a selector key a request. Then
    :meth:`close` it before the socket closes.
    """

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._buffer = bytearray()
        self._loop = loop
        self._registered = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: OSError | None = None  # a reset found by a wake-up's peek
        #: Given a whole line read by the loop's callback while a reader waits with nothing
        #: buffered: ``True`` when it took the line (the reader goes on waiting).
        self.offer: Callable[[bytes], bool] | None = None

    def close(self) -> None:
        """Stop watching the socket (with a ``loop``); call before it closes."""
        if self._registered and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._registered = False

    @property
    def buffer(self) -> bytes:
        """What was read past the last line returned (an unfinished line)."""
        return bytes(self._buffer)

    async def receive_line(self, max_bytes: int) -> bytes:
        """The next line, as :meth:`anyio.streams.buffered.BufferedByteReceiveStream.receive_until`
        with ``b"\\n"`` returns it.

        :raises anyio.DelimiterNotFound: ``max_bytes`` or more were read without a newline.
        :raises anyio.IncompleteRead: the peer closed its side before the line ended.
        :raises OSError: the connection failed (reset, say).
        """
        start = 0
        while True:
            index = self._buffer.find(b"\n", start)
            if index >= 0:
                line = bytes(self._buffer[:index])
                del self._buffer[: index + 1]
                return line
            if len(self._buffer) >= max_bytes:
                raise anyio.DelimiterNotFound(max_bytes)
            start = len(self._buffer)
            try:
                data = self._sock.recv(RECV_BYTES)
            except BlockingIOError:
                await self._readable()
                continue
            if not data:
                if self._error is not None:  # the wake-up's peek took the socket's error
                    raise self._error
                raise anyio.IncompleteRead
            self._buffer += data

    async def _readable(self) -> None:
        if self._loop is None:
            await anyio.wait_readable(self._fd)
            return
        if not self._registered:
            self._loop.add_reader(self._fd, self._on_readable)
            self._registered = True
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _on_readable(self) -> None:
        """The loop saw the socket readable. Its next pass sees it so again, when the reader
        it woke has not run yet; by the time this runs the data may be read: then nothing."""
        if self.offer is not None and self._waiter is not None and not self._buffer:
            self._read_for_offer()
            return
        try:
            self._sock.recv(1, socket.MSG_PEEK)  # data, or b"" at the end: readable
        except BlockingIOError:
            return
        except OSError as exc:  # taken from the socket: the reader's recv sees the end
            self._error = exc
        if self._waiter is not None:
            if not self._waiter.done():
                self._waiter.set_result(None)
        else:  # nobody reads (answers are backed up): not woken again until someone waits
            assert self._loop is not None
            self._loop.remove_reader(self._fd)
            self._registered = False

    def _read_for_offer(self) -> None:
        """Read here: a single whole line goes to :attr:`offer`; the rest to the reader."""
        assert self.offer is not None and self._waiter is not None
        try:
            data = self._sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:  # the reader's recv sees the end
            self._error, data = exc, b""
        if data.endswith(b"\n") and data.count(b"\n") == 1 and self.offer(data[:-1]):
            return
        self._buffer += data  # b"" at the end: the reader's own recv finds it again
        if not self._waiter.done():
            self._waiter.set_result(None)
