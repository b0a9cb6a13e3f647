"""The daemon's loop keeps anyio's cancelled-read race out of its log, and nothing else."""

from __future__ import annotations

import asyncio
import logging

import pytest

from parallel_orch.daemon.loop import quiet_cancelled_reads


def test_the_race_is_logged_as_an_error_without_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without it asyncio logs the InvalidStateError with a traceback (what tests caught)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        future.cancel()
        loop.call_soon(future.set_result, None)
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
    assert "InvalidStateError" in caplog.text


def test_the_handler_silences_the_race_and_only_it(caplog: pytest.LogCaptureFixture) -> None:
    """A cancelled future's set_result is quiet; a callback's real error is still logged."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        quiet_cancelled_reads(loop)
        future: asyncio.Future[None] = loop.create_future()
        future.cancel()
        loop.call_soon(future.set_result, None)

        def broken() -> None:
            raise ValueError("a real bug")

        loop.call_soon(broken)
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "a real bug" in caplog.text
    assert "cancelled socket read" in caplog.text
