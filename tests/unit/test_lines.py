"""Lines read straight from a real socket pair: split, joined, unfinished, too long, closed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from parallel_orch.client import DaemonClient, DaemonConnectionLost
from parallel_orch.daemon.lines import LineReader


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    with ours, theirs:
        yield ours, theirs


async def test_lines_come_whole_however_the_bytes_arrive(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Two lines in one send, then a line in three sends with a pause between: each line whole,
    in order, without its newline; the reader waits for the rest of a line."""
    ours, theirs = pair
    reader = LineReader(ours)
    theirs.sendall(b'{"a": 1}\n{"b": 2}\n{"c"')
    assert await reader.receive_line(100) == b'{"a": 1}'
    assert await reader.receive_line(100) == b'{"b": 2}'
    got: list[bytes] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            got.append(await reader.receive_line(100))

        tg.start_soon(read)
        await anyio.sleep(0.05)
        assert got == []  # the line is not finished yet
        theirs.sendall(b": 3")
        await anyio.sleep(0.05)
        theirs.sendall(b"}\nrest")
    assert got == [b'{"c": 3}']
    assert reader.buffer == b"rest"


async def test_an_unfinished_line_at_the_end_and_a_line_too_long_are_told_apart(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """The peer closing mid-line is an incomplete read with the rest kept; bytes past the limit
    without a newline are a missing delimiter, not a wait for ever."""
    ours, theirs = pair
    reader = LineReader(ours)
    theirs.sendall(b"x" * 10)
    with pytest.raises(anyio.DelimiterNotFound):
        await reader.receive_line(8)
    theirs.sendall(b"\nhalf a line")
    assert await reader.receive_line(100) == b"x" * 10
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(anyio.IncompleteRead):
        await reader.receive_line(100)
    assert reader.buffer == b"half a line"


async def test_a_call_waiting_for_its_reply_ends_when_the_client_closes(tmp_path: Path) -> None:
    """A task still waiting for a reply when its client's connection closes gets a lost
    connection at once, instead of waiting on a socket that is gone."""
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    with listener:
        errors: list[BaseException] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg, DaemonClient(path) as client:

                async def ping() -> None:
                    try:
                        await client.ping()  # nobody answers
                    except DaemonConnectionLost as exc:
                        errors.append(exc)

                tg.start_soon(ping)
                await anyio.sleep(0.05)
    assert len(errors) == 1
