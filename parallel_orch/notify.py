"""The webhook: a session's report POSTed as JSON to a URL once the session has ended.

A delivery starts after the session's end and report are recorded, runs in a
task of its own (other sessions and their ends never wait for it), is retried
with backoff under :class:`NotifyPolicy`, and ends with its outcome in the
store (``notify_status``) and in the log. It never changes the session.
Closing the :class:`Notifier` (a CLI's exit, a daemon's stop) waits a bounded
time for deliveries under way; those it cuts short are recorded ``abandoned``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
from anyio import AsyncContextManagerMixin, CapacityLimiter
from anyio.abc import TaskGroup

from parallel_orch.exceptions import StoreError
from parallel_orch.store import Store

if TYPE_CHECKING:
    import urllib.request
    from email.message import Message

log = logging.getLogger(__name__)

#: Client errors worth another try (timeout, rate limit); other 4xx will not change.
RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})
#: Deliveries talking to servers at once: threads of their own, not the engine's.
MAX_CONCURRENT_DELIVERIES = 4


@dataclass(frozen=True, slots=True)
class NotifyPolicy:
    """How hard a delivery tries.

    The wait before try ``n + 1`` (after ``n`` failed tries) is
    ``min(max_wait_seconds, initial_seconds * base ** (n - 1))``. A delivery
    makes at most ``max_tries`` tries, each cut off after ``timeout_seconds``,
    and gives up once ``max_total_seconds`` have passed since its first try.
    Retried: no answer (refused, reset, timed out), 5xx, 408 and 429. Closing
    the notifier waits ``drain_seconds`` at most for deliveries still trying.
    """

    max_tries: int = 5
    initial_seconds: float = 0.5
    base: float = 2.0
    max_wait_seconds: float = 8.0
    timeout_seconds: float = 10.0
    max_total_seconds: float = 30.0
    drain_seconds: float = 15.0  # closing waits this long for deliveries under way

    @classmethod
    def zero_wait(cls, max_tries: int = 5) -> NotifyPolicy:
        """No backoff: for tests."""
        return cls(max_tries=max_tries, initial_seconds=0.0, max_wait_seconds=0.0)

    def decide(self, outcome: Outcome, *, tries: int, elapsed_seconds: float) -> float | None:
        """Seconds to wait before the next try, or ``None`` when ``outcome`` is final.

        :param tries: tries made so far (>= 1), the last one's ``outcome``.
        :param elapsed_seconds: since the first try started.
        """
        if not self.retries(outcome, tries=tries):
            return None
        wait = min(self.max_wait_seconds, self.initial_seconds * self.base ** (tries - 1))
        if elapsed_seconds + wait >= self.max_total_seconds:
            return None
        return wait

    def retries(self, outcome: Outcome, *, tries: int) -> bool:
        """Whether another try follows ``outcome``, time allowing: when it does not come,
        the total time is why."""
        return not outcome.delivered and outcome.retryable and tries < self.max_tries


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one try got: an HTTP status, or why there was none."""

    status: int | None = None
    error: str | None = None  # no answer: refused, timed out, ...

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return True
        return self.status >= 500 or self.status in RETRYABLE_CLIENT_ERRORS

    def __str__(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else str(self.error)


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """An opener that follows no redirect, made when first needed: its imports
    (``urllib.request``, ``http.client``) are no cost to a session that sends nothing."""
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        """A redirect is an answer (3xx), not a reason to POST elsewhere, or to GET."""

        def redirect_request(
            self,
            req: urllib.request.Request,
            fp: IO[bytes],
            code: int,
            msg: str,
            headers: Message,
            newurl: str,
        ) -> urllib.request.Request | None:
            return None

    return urllib.request.build_opener(NoRedirects)


def post(url: str, body: bytes, headers: dict[str, str], timeout_seconds: float) -> Outcome:
    """One POST of ``body`` (blocking: call it in a thread); never raises for the network."""
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener().open(request, timeout=timeout_seconds) as response:
            return Outcome(status=response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return Outcome(status=exc.code)
    except urllib.error.URLError as exc:
        reason = exc.reason
        return Outcome(error=getattr(reason, "strerror", None) or str(reason))
    except (OSError, http.client.HTTPException, ValueError) as exc:  # reset, timed out, garbled
        return Outcome(error=getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)


def where(url: str) -> str:
    """``url`` without its path, query and credentials: a webhook's path is often its secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _tries(n: int) -> str:
    return f"{n} {'try' if n == 1 else 'tries'}"


class Notifier(AsyncContextManagerMixin):
    """Delivers reports in tasks of its own; see the module docstring."""

    def __init__(self, store: Store, policy: NotifyPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or NotifyPolicy()
        self._tg: TaskGroup | None = None
        self._under_way = 0  # deliveries started and not ended
        self._idle = anyio.Event()  # set when the last one under way ends
        self._limiter = CapacityLimiter(MAX_CONCURRENT_DELIVERIES)
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"parallel-orch/{metadata.version('parallel-orch')}",
        }

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Notifier]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield self
            finally:
                self._tg = None  # nothing new
                with anyio.move_on_after(self.policy.drain_seconds):
                    while self._under_way:
                        await self._idle.wait()
                tg.cancel_scope.cancel()  # those still trying are recorded abandoned

    def send(self, session_id: str, url: str, report_json: str) -> None:
        """Deliver ``report_json`` to ``url`` in the background.

        :raises RuntimeError: if the notifier is closed.
        """
        if self._tg is None:
            raise RuntimeError("the notifier is closed")
        self._under_way += 1
        self._idle = anyio.Event()
        self._tg.start_soon(self._deliver_one, session_id, url, report_json.encode())

    async def _deliver_one(self, session_id: str, url: str, body: bytes) -> None:
        try:
            await self.deliver(session_id, url, body)
        finally:
            self._under_way -= 1
            if not self._under_way:
                self._idle.set()

    async def deliver(self, session_id: str, url: str, body: bytes) -> str:
        """Try until delivered or the policy gives up; record and return how it went."""
        headers = {**self._headers, "X-Parallel-Orch-Session": session_id}
        await self._record(session_id, "pending")
        tries, outcome, status = 0, None, None  # outcome: of the last try that ended
        try:
            with anyio.move_on_after(self.policy.max_total_seconds) as total:
                started = anyio.current_time()
                while True:
                    tries += 1
                    outcome = await self._try(url, body, headers, started)
                    elapsed = anyio.current_time() - started
                    wait = self.policy.decide(outcome, tries=tries, elapsed_seconds=elapsed)
                    if wait is None:
                        break
                    # The first failure is a warning: it says why a CLI waits at its exit.
                    log.log(
                        logging.WARNING if tries == 1 else logging.INFO,
                        "session %s: webhook %s: %s; trying again for up to %.0fs",
                        session_id,
                        where(url),
                        outcome,
                        self.policy.max_total_seconds - elapsed,
                    )
                    await anyio.sleep(wait)
            ended = outcome or Outcome(error="no answer")
            # Out of time: cut off by the total, or stopped by the policy because the next
            # try would come past it (a try that ended just short of the deadline).
            out_of_time = total.cancelled_caught or self.policy.retries(ended, tries=tries)
            limit = self.policy.max_total_seconds if out_of_time else None
            status = _status(ended, tries, time_limit=limit)
            return status
        finally:  # cancelled (a forced stop): say so, then let the cancellation go on
            if status is None:
                last = f" (last: {outcome})" if outcome is not None else ""
                status = f"abandoned: stopped at try {tries}{last}"
            with anyio.CancelScope(shield=True):
                await self._finish(session_id, url, status)

    async def _try(self, url: str, body: bytes, headers: dict[str, str], started: float) -> Outcome:
        left = self.policy.max_total_seconds - (anyio.current_time() - started)
        timeout = max(0.1, min(self.policy.timeout_seconds, left))
        with anyio.move_on_after(timeout + 1.0):  # urllib's timeout is per socket operation
            return await anyio.to_thread.run_sync(
                post, url, body, headers, timeout, limiter=self._limiter, abandon_on_cancel=True
            )
        return Outcome(error=f"no answer in {timeout:g}s")

    async def _finish(self, session_id: str, url: str, status: str) -> None:
        if status.startswith("delivered"):
            log.info("session %s: report delivered to %s (%s)", session_id, where(url), status)
        else:
            log.warning("session %s: webhook %s %s", session_id, where(url), status)
        await self._record(session_id, status)

    async def _record(self, session_id: str, status: str) -> None:
        try:
            await self.store.set_notify_status(session_id, status)
        except StoreError as exc:  # the delivery is not worth failing the orchestrator for
            log.warning("session %s: webhook status not recorded: %s", session_id, exc)


def _status(outcome: Outcome, tries: int, *, time_limit: float | None) -> str:
    """How a delivery went, in one line, for the store and the log.

    :param time_limit: the total time, when it ran out.
    """
    if outcome.delivered:
        return f"delivered: {outcome} after {_tries(tries)}"
    if time_limit is not None:
        return f"failed: no delivery within {time_limit:g}s, {_tries(tries)} (last: {outcome})"
    if not outcome.retryable:
        return f"failed: {outcome} (not retried)"
    return f"failed: {outcome} after {_tries(tries)}"
