"""A real HTTP server on the loopback that records the webhook's POSTs and answers as told."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers import WAIT_SECONDS


@dataclass(frozen=True)
class Received:
    """One request the server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer:
    """Answers each POST with the next of ``statuses`` (the last one once they run out).

    ``hold`` makes every answer wait until :meth:`release` is called.
    """

    def __init__(self, statuses: tuple[int, ...] = (200,), *, hold: bool = False) -> None:
        self.statuses = list(statuses)
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._released = threading.Event()
        if not hold:
            self._released.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server._cond:
                    server.received.append(
                        Received(
                            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    status = (
                        server.statuses.pop(0) if len(server.statuses) > 1 else server.statuses[0]
                    )
                    server._cond.notify_all()
                server._released.wait(WAIT_SECONDS)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads ``received``, not a log

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/secret-token"

    def release(self) -> None:
        self._released.set()

    def wait_for(self, count: int) -> list[Received]:
        """Until ``count`` requests have come; all of them."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.received) >= count, WAIT_SECONDS), (
                f"got {len(self.received)} requests, waited for {count}"
            )
            return list(self.received)


@contextmanager
def webhook_server(
    statuses: tuple[int, ...] = (200,), *, hold: bool = False
) -> Iterator[WebhookServer]:
    """A :class:`WebhookServer` serving in a thread while the block runs."""
    server = WebhookServer(statuses, hold=hold)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release()
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(WAIT_SECONDS)


def dead_url() -> str:
    """A loopback URL where nothing listens: the port was just bound, then let go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
