"""TestQueue: bounded priority queue with delayed retries, fair between sessions.

Order of service: the highest ``priority`` among ready items first; between
sessions at that priority, round robin (the session served least recently
goes next); within a session, longest expected duration first, then
submission order. Retries re-enter after their backoff and do not count
against the bound, so a worker never blocks on a full queue.
"""

from __future__ import annotations

import heapq
import itertools
import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio

from parallel_orch.exceptions import OrchestratorClosedError, QueueFullError
from parallel_orch.models import TestRequest

DEFAULT_EXPECTED_SECONDS = 1.0  # expected duration when the store has no history at all


@dataclass(slots=True)
class QueueItem:
    """A request waiting for a worker, with the commit it runs at."""

    execution_id: int
    session_id: str
    request: TestRequest
    sha: str
    priority: int = 0
    expected_seconds: float = 0.0
    seq: int = 0
    attempt: int = 1  # the attempt this item will run
    avoid_worktree: str | None = None  # a retry prefers another worktree
    first_started: float | None = None  # monotonic time of attempt 1
    lost: int = 0  # attempts interrupted by a lost machine, not counted as retries

    @property
    def test_id(self) -> str:
        return self.request.id

    def sort_key(self) -> tuple[int, float, int]:
        return (-self.priority, -self.expected_seconds, self.seq)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request committed pending, at the commit its ref resolved to: ready to queue."""

    execution_id: int
    request: TestRequest
    sha: str


def queue_items(
    session_id: str, priority: int, admitted: list[Admitted], history: dict[str, float]
) -> list[QueueItem]:
    """Queue items, expecting durations from ``history`` (unknown tests: its median)."""
    fallback = statistics.median(history.values()) if history else DEFAULT_EXPECTED_SECONDS
    return [
        QueueItem(
            execution_id=a.execution_id,
            session_id=session_id,
            request=a.request,
            sha=a.sha,
            priority=a.request.priority + priority,
            expected_seconds=history.get(a.request.id, fallback),
            seq=a.execution_id,
        )
        for a in admitted
    ]


class TestQueue:
    """Bounded, prioritised, session-fair queue. Single event loop; not thread safe."""

    __test__ = False

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._ready: dict[str, list[tuple[tuple[int, float, int], int, QueueItem]]] = {}
        self._delayed: list[tuple[float, int, QueueItem]] = []
        self._served: dict[str, int] = {}
        self._tick = itertools.count()
        self._size = 0  # fresh (non-retry) items, counted against max_size
        self._closed = False
        self._changed = anyio.Event()
        self._on_close: set[anyio.CancelScope] = set()

    def __len__(self) -> int:
        return sum(len(h) for h in self._ready.values()) + len(self._delayed)

    @property
    def closed(self) -> bool:
        return self._closed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _push(self, item: QueueItem) -> None:
        heap = self._ready.setdefault(item.session_id, [])
        heapq.heappush(heap, (item.sort_key(), next(self._tick), item))
        self._served.setdefault(item.session_id, -1)

    @property
    def room(self) -> int:
        """How many fresh items fit now (0 once closed)."""
        return 0 if self._closed else max(0, self.max_size - self._size)

    def reserve(self, count: int = 1) -> None:
        """Hold room for ``count`` fresh items, to be filled by :meth:`put_reserved`.

        :raises QueueFullError: unless ``count`` more fresh items fit now.
        """
        if self._closed:
            raise OrchestratorClosedError("the queue is closed; no new tests are accepted")
        if self._size + count > self.max_size:
            raise QueueFullError(
                f"the queue is full ({self._size} of {self.max_size} waiting); "
                "use submit_test() to wait, or raise max_queue_size"
            )
        self._size += count

    def unreserve(self, count: int) -> None:
        """Give back room reserved and not used."""
        self._size -= count
        self._notify()

    def put_reserved(self, item: QueueItem) -> None:
        """Queue a fresh item into room held by :meth:`reserve`."""
        self._push(item)
        self._notify()

    def put_nowait(self, item: QueueItem) -> None:
        """Queue a fresh request.

        :raises QueueFullError: if ``max_size`` items are already waiting.
        """
        self.reserve()
        self.put_reserved(item)

    async def put(self, item: QueueItem) -> None:
        """Queue a fresh request, waiting while the queue is full."""
        while self._size >= self.max_size and not self._closed:
            await self._changed.wait()
        self.put_nowait(item)

    def retry_later(self, item: QueueItem, delay_seconds: float) -> None:
        """Re-queue a retry after ``delay_seconds``; never blocks nor counts against the bound."""
        if delay_seconds <= 0:
            self._push(item)
        else:
            heapq.heappush(
                self._delayed, (anyio.current_time() + delay_seconds, next(self._tick), item)
            )
        self._notify()

    def _promote_due(self) -> float:
        """Move due retries to ready; seconds until the next one is due (inf if none)."""
        now = anyio.current_time()
        while self._delayed and self._delayed[0][0] <= now:
            self._push(heapq.heappop(self._delayed)[2])
        return self._delayed[0][0] - now if self._delayed else math.inf

    def _pick(self) -> QueueItem | None:
        best: tuple[int, int, str] | None = None
        for session_id, heap in self._ready.items():
            if heap:
                key = (heap[0][0][0], self._served[session_id], session_id)
                if best is None or key < best:
                    best = key
        if best is None:
            return None
        session_id = best[2]
        item = heapq.heappop(self._ready[session_id])[2]
        self._served[session_id] = next(self._tick)
        if item.attempt == 1:
            self._size -= 1
        return item

    async def get(self) -> QueueItem:
        """The next item to run; waits for one.

        :raises OrchestratorClosedError: once the queue is closed and empty of ready work.
        """
        while True:
            wait = self._promote_due()
            item = self._pick()
            if item is not None:
                self._notify()  # room for a waiting put()
                return item
            if self._closed and not self._delayed:
                raise OrchestratorClosedError("the queue is closed")
            changed = self._changed
            with anyio.move_on_after(wait):
                await changed.wait()

    def remove_session(self, session_id: str | None = None) -> list[QueueItem]:
        """Drop and return every waiting item of a session (all sessions when ``None``)."""
        removed: list[QueueItem] = []
        for sid in list(self._ready):
            if session_id is None or sid == session_id:
                removed.extend(entry[2] for entry in self._ready.pop(sid))
                self._served.pop(sid, None)
        kept = []
        for entry in self._delayed:
            if session_id is None or entry[2].session_id == session_id:
                removed.append(entry[2])
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._delayed = kept
        self._size -= sum(1 for item in removed if item.attempt == 1)
        self._notify()
        return removed

    def close(self) -> None:
        """No more puts; getters drain what is left, then get ``OrchestratorClosedError``."""
        self._closed = True
        self._notify()
        for scope in self._on_close:
            scope.cancel()

    @contextmanager
    def until_closed(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope that :meth:`close` cancels (at once if closed already)."""
        scope = anyio.CancelScope()
        if self._closed:
            scope.cancel()
        self._on_close.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._on_close.discard(scope)

    def waiting_counts(self) -> dict[str, int]:
        """How many items wait per session (ready or in retry backoff), without a walk."""
        counts = {sid: len(heap) for sid, heap in self._ready.items() if heap}
        for _, _, item in self._delayed:
            counts[item.session_id] = counts.get(item.session_id, 0) + 1
        return counts

    def waiting(self, session_id: str | None = None) -> Iterator[QueueItem]:
        for sid, heap in self._ready.items():
            if session_id in (None, sid):
                yield from (entry[2] for entry in heap)
        yield from (e[2] for e in self._delayed if session_id in (None, e[2].session_id))
