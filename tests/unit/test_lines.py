"""Lines read straight from a real socket pair: split, joined, unfinished, too long, closed."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
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


def reader_of(sock: socket.socket, kept: bool) -> LineReader:
    """A reader that keeps the socket registered with the running loop, or one that does not."""
    return LineReader(sock, asyncio.get_running_loop() if kept else None)


@pytest.mark.parametrize("kept", [False, True], ids=["per-wait", "kept-registered"])
async def test_lines_come_whole_however_the_bytes_arrive(
    pair: tuple[socket.socket, socket.socket], kept: bool
) -> None:
    """Two lines in one send, then a line in three sends with a pause between: each line whole,
    in order, without its newline; the reader waits for the rest of a line."""
    ours, theirs = pair
    reader = reader_of(ours, kept)
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


@pytest.mark.parametrize("kept", [False, True], ids=["per-wait", "kept-registered"])
async def test_an_unfinished_line_at_the_end_and_a_line_too_long_are_told_apart(
    pair: tuple[socket.socket, socket.socket], kept: bool
) -> None:
    """The peer closing mid-line is an incomplete read with the rest kept; bytes past the limit
    without a newline are a missing delimiter, not a wait for ever."""
    ours, theirs = pair
    reader = reader_of(ours, kept)
    theirs.sendall(b"x" * 10)
    with pytest.raises(anyio.DelimiterNotFound):
        await reader.receive_line(8)
    theirs.sendall(b"\nhalf a line")
    assert await reader.receive_line(100) == b"x" * 10
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(anyio.IncompleteRead):
        await reader.receive_line(100)
    assert reader.buffer == b"half a line"


async def test_a_reader_held_up_with_data_waiting_costs_the_loop_nothing(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A kept-registered reader that stops reading (its connection's answers are backed up)
    while lines keep arriving does not wake the loop over and over: no CPU burnt meanwhile."""
    ours, theirs = pair
    reader = reader_of(ours, True)
    theirs.sendall(b"first\n")
    assert await reader.receive_line(100) == b"first"
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader.receive_line, 100)  # registered, waiting
        await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    theirs.sendall(b"pending\n")  # readable, and nobody reads it
    cpu = time.process_time()
    await anyio.sleep(0.3)
    assert time.process_time() - cpu < 0.1, "the loop spun on a readable socket nobody read"
    assert await reader.receive_line(100) == b"pending"
    reader.close()


async def test_a_closed_reader_leaves_nothing_registered_with_the_loop(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A kept-registered reader closed before its socket leaves no registration behind (a new
    socket given the same descriptor number would inherit it), whether it was waiting or
    had just read a line."""
    ours, theirs = pair
    loop = asyncio.get_running_loop()
    reader = reader_of(ours, True)
    theirs.sendall(b"hello\n")
    lines: list[bytes] = []

    async def read_all() -> None:
        while True:
            lines.append(await reader.receive_line(100))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_all)  # reads it, then waits: registered
        await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert lines == [b"hello"]
    reader.close()
    assert not loop.remove_reader(ours.fileno()), "the socket is still watched"


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


@pytest.mark.parametrize("kept", [False, True], ids=["per-wait", "kept-registered"])
async def test_a_reset_connection_is_an_error_not_an_end(
    pair: tuple[socket.socket, socket.socket], kept: bool
) -> None:
    """A peer that goes away without reading what it was sent resets the connection: the
    reader says so (an OSError), as a clean end of the stream would not."""
    ours, theirs = pair
    reader = reader_of(ours, kept)
    async with anyio.create_task_group() as tg:

        async def reset_soon() -> None:
            await anyio.sleep(0.05)
            ours.send(b"a reply the peer never reads\n")
            theirs.close()

        tg.start_soon(reset_soon)
        with pytest.raises(ConnectionResetError):
            await reader.receive_line(100)
    reader.close()


async def test_a_client_lets_other_tasks_run_between_events_it_has_already_read(
    tmp_path: Path,
) -> None:
    """A watch whose events arrive all at once (a long session's replay) still gives the
    program's other tasks (``watch``'s ETA reads, say) a turn between events."""
    from parallel_orch import events
    from parallel_orch.daemon import protocol as p

    count = 200
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the watch request
            replay = [events.session_started("s1", count)] + [
                events.test_finished("s1", test_id=f"t{n}", execution_id=n, status="passed")
                for n in range(count)
            ]
            conn.sendall(b"".join(p.notification_line(e) for e in replay))
            conn.recv(1)  # until the client goes

    turns = 0

    async def tick() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    with listener:
        server = threading.Thread(target=serve, daemon=True)
        server.start()
        seen = 0
        async with DaemonClient(path) as client, anyio.create_task_group() as tg:
            async for _ in client.watch("s1"):
                seen += 1
                if seen == 1:
                    await anyio.sleep(0.1)  # all the rest has arrived
                    tg.start_soon(tick)
                    await anyio.lowlevel.checkpoint()
                    turns = 0
                if seen == count + 1:
                    break
            tg.cancel_scope.cancel()
        server.join(5)
    assert turns >= count // 2, f"other tasks ran {turns} times over {count} events"


async def test_a_whole_line_read_by_the_callback_is_offered_and_the_rest_goes_to_the_reader(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """While a reader waits with nothing buffered, one whole line arriving alone goes to the
    offer (taken: the reader goes on waiting); a line it refuses, two lines at once, or an
    unfinished one go to the reader as they came."""
    ours, theirs = pair
    reader = reader_of(ours, kept=True)
    offered: list[bytes] = []

    def offer(line: bytes) -> bool:
        offered.append(line)
        return line.startswith(b"take")

    reader.offer = offer
    got: list[bytes] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            while len(got) < 4:
                got.append(await reader.receive_line(100))

        tg.start_soon(read)
        for data in (b"take 1\n", b"keep 2\n", b"take 3\ntake 4\n", b"take 5"):
            await anyio.sleep(0.05)  # the reader waits again
            theirs.sendall(data)
        await anyio.sleep(0.05)
        theirs.sendall(b"\n")
    assert offered == [b"take 1", b"keep 2"]
    assert got == [b"keep 2", b"take 3", b"take 4", b"take 5"]
