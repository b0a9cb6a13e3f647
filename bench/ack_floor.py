"""The floor under the daemon's ack: a minimal server doing only a submit's own work.

Run as ``python -m bench.ack_floor SOCKET STORE``: it prints SOCKET once listening and
serves until killed. ``daemon_latency`` sends it the same bursts as the daemon, from
the same client, in the same run, so the two figures read side by side.

What it does for each submit line, in an asyncio protocol with no task per connection:
the daemon's own parsing and validation (``protocol.parse_request`` / ``parse_params``),
the daemon's own insert (``store.writes.insert_session``) into a store made by the
daemon's own schema, one transaction for every line read in the same turn of the
loop, committed with ``synchronous = FULL`` (synced, as the daemon's acks are), then
the reply (``protocol.result_line``). What it leaves out: resolving refs (every
request gets one fixed commit), histories, idempotency keys, the session's
bookkeeping and queueing, logging, and every error path. It is not a daemon: it is
what any Python server doing this much pays on the machine at hand.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import sys
import uuid
from pathlib import Path

from parallel_orch.daemon import protocol as p
from parallel_orch.store import schema, writes
from parallel_orch.store.records import NewExecution, utcnow
from parallel_orch.store.writer import sql_time

SHA = "0" * 40  # every request's commit: no ref is resolved here


class _Batch:
    """Lines read in this turn of the loop, committed together at the next."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.waiting: list[tuple[asyncio.Transport, int | str | None, p.SubmitParams]] = []

    def add(self, transport: asyncio.Transport, line: bytes) -> None:
        request = p.parse_request(line)
        params = p.parse_params(p.Method(request.method), request.params)
        assert isinstance(params, p.SubmitParams) and params.requests is not None
        if not self.waiting:
            asyncio.get_running_loop().call_soon(self.commit)
        self.waiting.append((transport, request.id, params))

    def commit(self) -> None:
        waiting, self.waiting = self.waiting, []
        now = sql_time(utcnow())
        replies = []
        self.db.execute("BEGIN IMMEDIATE")
        for transport, request_id, params in waiting:
            assert params.requests is not None
            session_id = uuid.uuid4().hex[:12]
            executions = [NewExecution(request, SHA) for request in params.requests]
            writes.insert_session(
                self.db,
                session_id,
                num_workers=2,
                repo="",
                plan_paths=(),
                plan_key="",
                owner="ack_floor",
                executions=executions,
                now=now,
            )
            result = p.SubmitResult(session_id=session_id, total=len(executions))
            replies.append((transport, p.result_line(request_id, result)))
        self.db.execute("COMMIT")
        for transport, reply in replies:
            transport.write(reply)


class _Connection(asyncio.Protocol):
    def __init__(self, batch: _Batch) -> None:
        self.batch = batch
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.batch.add(self.transport, line)


async def serve(socket: Path, store: Path) -> None:
    """Listen on ``socket`` with a store at ``store``; print the socket once listening."""
    schema.create_schema(store, store.with_name(store.name + ".lock"))
    db = sqlite3.connect(store, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    batch = _Batch(db)
    server = await asyncio.get_running_loop().create_unix_server(
        lambda: _Connection(batch), str(socket)
    )
    gc.freeze()  # as the daemon does once listening: start-up's objects are never collected
    print(socket, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), Path(sys.argv[2])))
