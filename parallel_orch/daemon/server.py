"""The socket side of the daemon: accept, check the peer, hand each client a connection.

What a connection does with its lines is in connection.py; plain submits may go
by the submit lane (lane.py), which this server runs. Nothing a client sends,
or fails to send, can stop the daemon serving the others.
"""

from __future__ import annotations

import logging
import os
import socket
import struct

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskStatus

from parallel_orch.daemon import protocol as p
from parallel_orch.daemon.connection import Connection, Peer
from parallel_orch.daemon.lane import SubmitLane
from parallel_orch.daemon.paths import IDLE_TIMEOUT_SECONDS
from parallel_orch.daemon.protocol import ErrorCode, RpcError
from parallel_orch.daemon.service import DaemonService

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 512
ACCEPT_BACKOFF_SECONDS = 0.1  # after accept() fails (out of file descriptors)


def peer_credentials(stream: SocketStream) -> Peer:
    """The connecting process's pid, uid and gid (``SO_PEERCRED``)."""
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return Peer(pid, uid, gid)


class DaemonServer:
    """Serves :class:`DaemonService` on a listening Unix socket."""

    def __init__(
        self,
        service: DaemonService,
        sock: socket.socket,
        *,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        allowed_uid: int | None = None,
    ) -> None:
        self.service = service
        self.idle_timeout = idle_timeout
        self.allowed_uid = os.getuid() if allowed_uid is None else allowed_uid
        self._sock = sock
        self._connections: set[Connection] = set()
        self._changed: anyio.Event | None = None  # made by the first to wait for a change
        self.lane = SubmitLane(service)  # plain submits, taken as they are read

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until cancelled; ``started`` once accepting."""
        listener = await SocketListener.from_socket(self._sock)
        async with listener, anyio.create_task_group() as tg:
            await tg.start(self.lane.run)
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and friends: back off, keep serving
                    log.error("cannot accept a connection: %s", exc)
                    await anyio.sleep(ACCEPT_BACKOFF_SECONDS)
                    continue
                tg.start_soon(self._handle, stream)

    async def wait_idle(self) -> None:
        """Until no connection is in the middle of answering a request."""
        while any(c.busy for c in self._connections):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def answering(self) -> bool:
        """Whether a request other than a watch is being answered."""
        return any(c.busy and not c.watching for c in self._connections)

    def notify(self) -> None:
        """A connection's state changed: wake whoever waits for one (no one, mostly)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            peer = peer_credentials(stream)
            if peer.uid != self.allowed_uid:
                log.warning(
                    "refused a connection from uid %d (pid %d): this daemon serves uid %d only",
                    peer.uid,
                    peer.pid,
                    self.allowed_uid,
                )
                await _refuse(
                    stream,
                    ErrorCode.PERMISSION_DENIED,
                    f"permission denied: this daemon serves uid {self.allowed_uid} only",
                )
                return
            if len(self._connections) >= MAX_CONNECTIONS:
                log.warning(
                    "refused a connection from pid %d: %d connections open",
                    peer.pid,
                    len(self._connections),
                )
                await _refuse(
                    stream,
                    ErrorCode.TOO_MANY_CONNECTIONS,
                    f"too many connections ({MAX_CONNECTIONS}); try again later",
                )
                return
            conn = Connection(self, stream, peer)
            self._connections.add(conn)
            self.service.connections = len(self._connections)
            try:
                await conn.run()
            except Exception:
                # One client's bug must not take the daemon down: log it, drop the client.
                log.exception("connection from pid %d failed", peer.pid)
            finally:
                self._connections.discard(conn)
                self.service.connections = len(self._connections)
                self.notify()


async def _refuse(stream: SocketStream, code: ErrorCode, message: str) -> None:
    try:
        with anyio.fail_after(1):
            await stream.send(p.error_line(None, RpcError(code, message)))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
