"""The daemon's event loop: one known, harmless asyncio race kept out of its log.

anyio's Unix socket streams wait for a socket with
``loop.add_reader(sock, future.set_result, None)`` (the daemon's connections
now read through :mod:`parallel_orch.daemon.lines`, which does not; anyio's
waits for a socket to take a reply's rest, and its listener, still do). When the task reading a
connection is cancelled (a client hangs up, the daemon stops) in the same
loop iteration as the socket becomes readable, the reader's callback runs
on the cancelled future before its done-callback has removed the reader, and
asyncio logs ``InvalidStateError`` from ``Future.set_result`` with a
traceback. Nothing is lost: the read was cancelled on purpose. (The same
family as anyio#1267, fixed there for ``aclose()`` only; still in anyio 4.16.)
This handler says so at debug level and leaves every other error to asyncio.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


def _is_cancelled_read_race(context: dict[str, Any]) -> bool:
    exception = context.get("exception")
    handle = context.get("handle")
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    return (
        isinstance(exception, asyncio.InvalidStateError)
        and isinstance(owner, asyncio.Future)
        and getattr(callback, "__name__", "") == "set_result"
        and owner.cancelled()
    )


def quiet_cancelled_reads(loop: asyncio.AbstractEventLoop) -> None:
    """Install the handler on ``loop``, in front of whatever handled errors before."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _is_cancelled_read_race(context):
            log.debug("a cancelled socket read was woken after its cancel (harmless)")
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
