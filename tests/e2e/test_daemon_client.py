"""The Python client against a real daemon: what it sends arrives whole, in order."""

from __future__ import annotations

import json
import socket

from parallel_orch import TestRequest
from parallel_orch.client import DaemonClient
from parallel_orch.daemon.protocol import MAX_LINE_BYTES
from tests.e2e.conftest import StartDaemon, query
from tests.helpers import GitRepo


async def test_a_submit_larger_than_the_socket_buffer_arrives_whole(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """A submit whose request line is many times the socket's send buffer (sent in part at
    once, the rest as the daemon reads) is committed with every request, in order."""
    daemon = start_daemon(repo.path, "-j", "1")
    with socket.socket(socket.AF_UNIX) as probe:
        buffer = probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    count = 3 * buffer // 4000 + 1
    requests = [  # every byte different from its neighbours: a byte lost or doubled shows
        TestRequest(id=f"t{n:05d}", command=("true",), env={"PAD": _pattern(n, 4000)})
        for n in range(count)
    ]
    line_bytes = sum(len(r.model_dump_json()) for r in requests)
    assert 3 * buffer < line_bytes < MAX_LINE_BYTES
    async with DaemonClient(daemon.socket) as client:
        submitted = await client.submit(requests=requests)
        assert submitted.total == count
        second = await client.submit(requests=[TestRequest(id="after", command=("true",))])
        await client.cancel(submitted.session_id)  # its requests are what counts, not their runs
        assert (await client.wait(second.session_id)).status == "complete"
    rows = query(
        daemon.state_dir,
        "SELECT test_id, request_json FROM executions WHERE session_id = ? ORDER BY id",
        submitted.session_id,
    )
    assert [r[0] for r in rows] == [r.id for r in requests]
    assert [json.loads(r[1])["env"]["PAD"] for r in rows] == [r.env["PAD"] for r in requests]


def _pattern(seed: int, size: int) -> str:
    digits = "".join(f"{seed:05d}{n:07d}" for n in range(size // 12 + 1))
    return digits[:size]
