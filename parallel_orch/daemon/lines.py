"""Newline-framed messages read straight from a connected socket, for the daemon and its client.

anyio's buffered stream over a socket stream takes a turn of the event loop
before every ``recv`` and registers the socket with the loop by the object,
whose repr (a ``getpeername`` call) asyncio formats each time. Here a line
already in the socket costs one ``recv``, and a wait for more data registers
the descriptor alone: with twenty clients sending at once that was a tenth
of a millisecond a line of the daemon's single thread.
"""

from __future__ import annotations

import socket

import anyio

RECV_BYTES = 65536


class LineReader:
    """Lines from ``sock`` (non-blocking, connected), without their newline; one reader a
    socket, from one task at a time. Works on any anyio backend."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._buffer = bytearray()

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
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.IncompleteRead
            self._buffer += data
