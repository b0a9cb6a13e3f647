"""Retried submits: the same idempotency key returns the first session, restarts included."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from parallel_orch import ParallelTestConfig, ParallelTestOrchestrator, TestRequest
from parallel_orch.cli.remote import submit_once
from parallel_orch.daemon import protocol as p
from parallel_orch.daemon.service import DaemonService
from parallel_orch.store import open_store
from tests.helpers import make_fifo, orchestrator


def submit(key: str | None, *ids: str) -> p.SubmitParams:
    requests = [TestRequest(id=i, command="true") for i in ids]
    return p.SubmitParams(requests=requests, idempotency_key=key)


async def sessions_in(config: ParallelTestConfig) -> int:
    async with open_store(config.resolved_state_dir) as store:
        return len(await store.recent_sessions(100))


async def test_a_submit_retried_with_its_key_returns_the_first_session(
    config: ParallelTestConfig, tmp_path: Path
) -> None:
    """Twice the same key: one session, both answers name it; another key is another session."""
    async with orchestrator(config) as orch:
        service = DaemonService(orch, socket_path=tmp_path / "d.sock", grace_seconds=0.0)
        first = await service.submit(submit("k-1", "a", "b"))
        again = await service.submit(submit("k-1", "a", "b"))
        other = await service.submit(submit("k-2", "a"))
        unkeyed = [await service.submit(submit(None, "a")) for _ in range(2)]
        await orch.wait_for_completion()
    assert again == first and first.total == 2
    assert len({first.session_id, other.session_id, *(u.session_id for u in unkeyed)}) == 4
    assert await sessions_in(config) == 4


async def test_concurrent_submits_with_one_key_make_one_session(
    config: ParallelTestConfig, tmp_path: Path
) -> None:
    """Five submits with one key at once (a retry while the first commits): one session."""
    async with orchestrator(config) as orch:
        service = DaemonService(orch, socket_path=tmp_path / "d.sock", grace_seconds=0.0)
        answers: list[p.SubmitResult] = []

        async def send() -> None:
            answers.append(await service.submit(submit("same", "a")))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(send)
    assert len({a.session_id for a in answers}) == 1
    assert await sessions_in(config) == 1


async def test_a_key_finds_its_session_after_the_daemon_restarts(
    config: ParallelTestConfig, tmp_path: Path
) -> None:
    """The key is in the store: a retry sent to the next daemon gets the same session."""
    gate = make_fifo(tmp_path / "gate")
    held = p.SubmitParams(
        requests=[TestRequest(id="held", command=f"cat {gate}")], idempotency_key="lost"
    )
    async with orchestrator(config) as orch:
        service = DaemonService(orch, socket_path=tmp_path / "d.sock", grace_seconds=0.0)
        first = await service.submit(held)
        await orch.cancel_session(first.session_id)
    async with open_store(config.resolved_state_dir) as store:
        assert await store.session_for_key("lost") == first.session_id
    async with ParallelTestOrchestrator(config, resume=True) as orch:
        service = DaemonService(orch, socket_path=tmp_path / "d.sock", grace_seconds=0.0)
        assert (await service.submit(held)).session_id == first.session_id
    assert await sessions_in(config) == 1


async def test_the_cli_sends_one_key_and_retries_a_submit_whose_answer_was_lost(
    tmp_path: Path,
) -> None:
    """A connection lost before the answer: the CLI submits once more with the same key."""
    socket_path = tmp_path / "d.sock"
    received: list[dict[str, Any]] = []

    async def serve(stream: SocketStream) -> None:
        async with stream:
            line = await BufferedByteReceiveStream(stream).receive_until(b"\n", 1 << 20)
            request = json.loads(line)
            received.append(request)
            if len(received) == 1:
                return  # committed, say, but the answer never goes out
            result = {"session_id": "abcdef123456", "total": 1}
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": result}
            await stream.send(json.dumps(reply).encode() + b"\n")

    listener = await anyio.create_unix_listener(socket_path)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        submitted = await anyio.to_thread.run_sync(
            lambda: submit_once(socket_path, {"paths": ["plans"]}, idempotency_key="k")
        )
        tg.cancel_scope.cancel()
    assert submitted == "abcdef123456"
    keys = [r["params"]["idempotency_key"] for r in received]
    assert keys == ["k", "k"]
    os.unlink(socket_path)
