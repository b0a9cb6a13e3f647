"""How long a running session has left, from the recorded durations of its tests.

A test's expected duration is the store's history (the mean of its last final
attempts). A test with no history gets the median of those that have one,
else of the session's tests finished so far; with neither there is no
estimate. Then::

    work = sum(expected of each queued test) + sum(max(0, expected - elapsed) of each running one)
    eta  = max(work / workers, the longest single part of work)

(a test does not split over workers, so one long test bounds the rest). The
same figure is shown by ``run``'s progress, ``status SESSION`` and ``watch``.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime

from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.store import ExecutionProgress, Store, utcnow

CACHED_SESSIONS = 16  # sessions whose expected durations are kept between calls


def estimate(queued: Iterable[float], running: Iterable[float], workers: int) -> float:
    """Seconds until the last test ends, ``workers`` sharing the work.

    :param queued: the expected seconds of each test not started yet.
    :param running: the expected seconds still to go of each running test (never below 0).
    """
    parts = [*queued, *running]
    if not parts:
        return 0.0
    return max(sum(parts) / max(1, workers), max(parts))


class SessionEta:
    """ETAs of the sessions in one store; a session's history is read once, then kept."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._expected: OrderedDict[str, dict[str, float]] = OrderedDict()

    async def seconds_left(self, session_id: str) -> float | None:
        """Seconds until the session ends, or ``None`` once it has (or with nothing to go on)."""
        session = await self.store.get_session(session_id)
        if SessionStatus(session.status).is_final:
            self._expected.pop(session.id, None)
            return None
        executions = await self.store.progress(session.id)
        expected = await self._history(session.id, executions)
        fallback = _fallback(expected, executions)
        now = utcnow()
        queued: list[float] = []
        running: list[float] = []
        for execution in executions:
            if ExecutionStatus(execution.status).is_final:
                continue
            seconds = expected.get(execution.test_id, fallback)
            if seconds is None:
                return None
            if execution.running_since is None:
                queued.append(seconds)
            else:
                elapsed = (now - _utc(execution.running_since)).total_seconds()
                running.append(max(0.0, seconds - elapsed))
        return round(estimate(queued, running, session.num_workers), 1)

    async def _history(
        self, session_id: str, executions: list[ExecutionProgress]
    ) -> dict[str, float]:
        found = self._expected.get(session_id)
        if found is None:
            found = await self.store.history(e.test_id for e in executions)
            self._expected[session_id] = found
            while len(self._expected) > CACHED_SESSIONS:
                self._expected.popitem(last=False)
        return found


def _fallback(expected: dict[str, float], executions: Iterable[ExecutionProgress]) -> float | None:
    """What a test without history is expected to take: the median of what is known."""
    if expected:
        return statistics.median(expected.values())
    finished = [e.duration_seconds for e in executions if e.duration_seconds is not None]
    return statistics.median(finished) if finished else None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
