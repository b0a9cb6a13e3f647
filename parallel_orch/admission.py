"""Admission: a request's way in. Resolve its ref, commit it pending, track it, queue it.

A session and all its requests are committed in one transaction before
``create_session`` returns (an acknowledged request is never lost), then
queued as far as the queue has room; the rest follow in the background as
room frees up. A request whose ref does not resolve is recorded ``error``
at once and never queued.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from parallel_orch import events, sharding
from parallel_orch.events import EventBus
from parallel_orch.exceptions import DuplicateSubmitError, OrchestratorClosedError, UsageError
from parallel_orch.intake import Intake
from parallel_orch.limits import MAX_SHARD_REQUESTS
from parallel_orch.lookup import Lookup
from parallel_orch.models import ExecutionStatus, TestRequest
from parallel_orch.plan_identity import canonical_plan_paths, plan_key
from parallel_orch.queue import Admitted, QueueItem, TestQueue, queue_items
from parallel_orch.report.options import ReportOptions
from parallel_orch.sessions import SessionRegistry, SessionState, Spawn
from parallel_orch.store import NewExecution, Store

log = logging.getLogger(__name__)

CLOSED = "the orchestrator is not accepting work (shutting down?)"


@dataclass(frozen=True, slots=True)
class PlainSession:
    """A session for :meth:`Admission.create_sessions`: inline requests, none sharded, no
    idempotency key; ``acked`` as :meth:`Admission.create_session` calls it."""

    requests: Sequence[TestRequest]
    priority: int
    options: ReportOptions | None
    acked: Callable[[str, int], None]


def _rows(
    admission: Admission,
    sessions: Sequence[PlainSession],
    states: Sequence[SessionState],
    news: Sequence[list[NewExecution]],
) -> list[dict[str, Any]]:
    """Plain sessions' rows for :meth:`~parallel_orch.store.Store.create_sessions`; options
    shared by several (the configuration's, mostly) serialised once."""
    dumped: dict[int, str] = {}
    for options in (s.options for s in sessions if id(s.options) not in dumped):
        dumped[id(options)] = (options or ReportOptions()).model_dump_json()
    return [
        {
            "session_id": state.id,
            "num_workers": admission.num_workers,
            "repo": str(admission.repo),
            "plan_paths": (),
            "plan_key": state.plan_key,
            "owner": admission.owner,
            "executions": new,
            "options_json": dumped[id(session.options)],
        }
        for session, state, new in zip(sessions, states, news, strict=True)
    ]


async def _end_unqueued(admission: Admission, state: SessionState, exc: Exception) -> None:
    """A session acknowledged but not queued (a bug): it ends, its requests ``error``."""
    error = f"could not be queued: {exc!r}; see the daemon's log"
    try:
        await admission.store.close_unfinished(state.id, ExecutionStatus.ERROR, error=error)
    except Exception:  # it ends all the same: its report says what the store has
        log.exception("session %s: its requests could not be ended", state.id)
    finally:
        state.outstanding = 0
        await admission.registry.finish(state)


class Admission:
    """Takes sessions and requests in; see the module docstring."""

    def __init__(
        self,
        *,
        repo: Path,
        store: Store,
        queue: TestQueue,
        bus: EventBus,
        registry: SessionRegistry,
        owner: str,
        num_workers: Callable[[], int],
        spawn: Spawn,
        state_dir: Path,
    ) -> None:
        """:param num_workers: how many attempts run at once now (a fleet's grows and
        shrinks): recorded with each session, and what ``shards = "auto"`` splits into."""
        self.repo = repo
        self.store = store
        self.queue = queue
        self.bus = bus
        self.registry = registry
        self.owner = owner
        self.state_dir = state_dir
        self.lookup = Lookup(repo, store)  # refs and histories, shared by concurrent submits
        self._width = num_workers
        self.spawn = spawn
        self.accepting = False
        self._default: SessionState | None = None  # of submit_batch
        self._default_lock = anyio.Lock()
        self.intake = Intake()  # admissions in progress: workers let them finish first

    @property
    def num_workers(self) -> int:
        return max(1, self._width())

    async def aclose(self) -> None:
        """End the long-running git process that resolves refs."""
        await self.lookup.aclose()

    async def create_session(
        self,
        requests: Sequence[TestRequest],
        *,
        plan_paths: Sequence[str] = (),
        priority: int = 0,
        session_id: str | None = None,
        keep_open: bool = False,
        idempotency_key: str | None = None,
        options: ReportOptions | None = None,
        acked: Callable[[str, int], None] | None = None,
    ) -> str:
        """Commit a session and all its requests (pending), then queue them; its id.

        With an ``idempotency_key`` that already made a session, that session's id.
        ``acked(session_id, total)`` is called the moment the session is committed,
        tracked and queued, in the commit's own step on the loop (see
        :meth:`~parallel_orch.store.writer.Writer.write_synced`): whoever learns
        of the session from it finds it running. Not for a session with nothing
        to run (every ref failed), which has ended by the time this returns.
        """
        with self.intake.admitting_one():  # workers let it finish first (see intake.py)
            if not self.accepting:
                raise OrchestratorClosedError(CLOSED)
            session_id = session_id or uuid.uuid4().hex[:12]
            requests = await self._split(session_id, requests)
            if plan_paths:  # resolving touches the disk: off the loop
                plan_paths = await anyio.to_thread.run_sync(
                    canonical_plan_paths, self.repo, plan_paths
                )
            new, history = await self.lookup.executions(requests)
            key = plan_key(plan_paths, [r.id for r in requests])
            state = SessionState(id=session_id, plan_key=key, priority=priority, open=keep_open)

            def committed(ids: list[int]) -> None:  # on disk: running, then acknowledged
                self._open(state, len(requests), ids, new, history)
                if state.outstanding or state.open:
                    if acked is not None:
                        acked(session_id, len(requests))
                else:  # nothing to run: it ends even if its caller is gone (cancelled meanwhile)
                    self.spawn(functools.partial(self.registry.finish, state))

            try:
                await self.store.create_session(
                    session_id,
                    num_workers=self.num_workers,
                    repo=str(self.repo),
                    plan_paths=plan_paths,
                    plan_key=key,
                    owner=self.owner,
                    executions=new,
                    idempotency_key=idempotency_key,
                    options_json=(options or ReportOptions()).model_dump_json(),
                    then=committed,
                )
            except DuplicateSubmitError as duplicate:  # a retried submit: nothing new
                return duplicate.session_id
        if state.outstanding == 0 and not state.open:  # ended before this returns
            await self.registry.finish(state)
        return session_id

    async def create_sessions(self, sessions: Sequence[PlainSession]) -> list[str | Exception]:
        """:meth:`create_session` for several plain sessions at once: one lookup, one synced
        write, all acknowledged, then opened, in the write's own step (their clients read
        the answers meanwhile; one with nothing to run ends in a task of its own). Each
        session's id, or why it alone was not admitted (the store undoes only those).

        :raises OrchError: when none can be (shutting down, the commit failed).
        """
        with self.intake.admitting_one():
            if not self.accepting:
                raise OrchestratorClosedError(CLOSED)
            known = await self.lookup.refs_and_history([r for s in sessions for r in s.requests])
            states = [
                SessionState(
                    uuid.uuid4().hex[:12], plan_key((), [r.id for r in s.requests]), s.priority
                )
                for s in sessions
            ]
            news = [known.executions(s.requests) for s in sessions]
            outcomes: list[str | Exception] = []

            def committed(ids: list[list[int] | Exception]) -> None:  # on disk: answer, open
                batch = list(zip(sessions, states, news, ids, strict=True))
                for session, state, new, these in batch:
                    try:
                        if not isinstance(these, Exception):
                            session.acked(state.id, len(new))
                    except Exception:  # its batch mates are answered still
                        log.exception("session %s: the answer failed", state.id)
                for _, state, new, these in batch:
                    outcomes.append(self._open_plain(state, new, these, known.history))

            await self.store.create_sessions(_rows(self, sessions, states, news), then=committed)
        return outcomes

    def _open_plain(
        self,
        state: SessionState,
        new: list[NewExecution],
        ids: list[int] | Exception,
        history: dict[str, float],
    ) -> str | Exception:
        """A plain session committed and acknowledged (or refused): opened; its id."""
        if isinstance(ids, Exception):
            return ids
        try:
            self._open(state, len(new), ids, new, history)
            if not state.outstanding:
                self.spawn(functools.partial(self.registry.finish, state))
        except Exception as exc:  # this one's; the others of the batch go on
            log.exception("session %s: committed, but could not be queued", state.id)
            self.queue.remove_session(state.id)  # what was queued before it failed
            self.registry.add(state)  # a wait or a watch from now on waits for its end
            self.spawn(functools.partial(_end_unqueued, self, state, exc))
        return state.id

    def _open(
        self,
        state: SessionState,
        total: int,
        ids: list[int],
        new: list[NewExecution],
        history: dict[str, float],
    ) -> None:
        """A committed session running: registered, announced, its requests tracked and
        queued as far as there is room (the rest by a task of their own). Takes no turn
        of the loop."""
        self.registry.add(state)
        self.bus.publish(events.session_started(state.id, total))
        admitted = self._track(state, ids, new)
        self._queue_items(state, queue_items(state.id, state.priority, admitted, history))

    def _queue_items(self, state: SessionState, items: list[QueueItem]) -> None:
        """Queue ``items`` as far as there is room; the rest by a task of their own."""
        room = self.queue.room
        for item in items[:room]:
            self.queue.put_nowait(item)
        if items[room:]:
            rest = items[room:]

            async def put_rest() -> None:
                await self._put_all(state, rest)

            self.spawn(put_rest)

    async def submit_batch(self, requests: Sequence[TestRequest], *, wait: bool = True) -> str:
        """Add requests to the default session (created when there is none); its id.

        :param wait: wait for room in the queue; otherwise raise
            :class:`QueueFullError` before anything is recorded.
        """
        reserved = 0
        if not wait:
            self.queue.reserve(len(requests))  # held through the commit: no one takes it
            reserved = len(requests)
        try:
            # the commit only: waiting for room below is not intake (workers make the room)
            with self.intake.admitting_one():
                async with self._default_lock:  # one default session; sealing waits for commits
                    state = self._default
                    if state is None or state.done.is_set():
                        session_id = await self.create_session([], keep_open=True)
                        state = self._default = self.registry.get(session_id)
                        assert state is not None
                    admitted = await self._commit(state, requests)
            if wait:
                await self.enqueue(state, admitted)
            else:
                for item in queue_items(state.id, state.priority, admitted, {}):
                    self.queue.put_reserved(item)
                    reserved -= 1
        finally:
            if reserved:
                self.queue.unreserve(reserved)
        return state.id

    async def seal_default(self) -> SessionState | None:
        """End the default session's intake: it finishes once its requests have."""
        async with self._default_lock:  # not while a submit is committing to it
            state, self._default = self._default, None
        if state is not None:
            state.open = False
            if state.outstanding <= 0 and not state.done.is_set():
                await self.registry.finish(state)
        return state

    async def enqueue(self, state: SessionState, admitted: list[Admitted]) -> None:
        """Queue admitted requests, waiting for room; in history's order."""
        history = await self.store.history(a.request.id for a in admitted)
        await self._put_all(state, queue_items(state.id, state.priority, admitted, history))

    async def _split(
        self, session_id: str, requests: Sequence[TestRequest]
    ) -> Sequence[TestRequest]:
        """Sharded requests as their shards, each test's case durations written once for all."""
        if all(r.shards == 1 or r.shard for r in requests):
            return requests
        parts = sum(r.shard_count(self.num_workers) for r in requests if r.shard is None)
        if parts > MAX_SHARD_REQUESTS:
            raise UsageError(
                f"the sharded tests would make {parts} requests; at most {MAX_SHARD_REQUESTS}"
                " (lower their shards)"
            )
        out: list[TestRequest] = []
        for request in requests:
            shards = request.split(self.num_workers)
            if len(shards) > 1:
                durations = await self.store.case_durations(request.id)
                path = sharding.durations_path(self.state_dir, session_id, request.id)
                await anyio.to_thread.run_sync(sharding.write_durations, path, durations)
            out.extend(shards)
        return out

    async def _commit(self, state: SessionState, requests: Sequence[TestRequest]) -> list[Admitted]:
        """Add requests to an open session: committed pending, then tracked (not yet queued)."""
        if not self.accepting:
            raise OrchestratorClosedError(CLOSED)
        requests = await self._split(state.id, requests)
        new = await self.lookup.refs(requests)
        ids = await self.store.add_executions(state.id, new)
        return self._track(state, ids, new)

    def _track(
        self, state: SessionState, ids: list[int], new: list[NewExecution]
    ) -> list[Admitted]:
        """Count resolved requests as outstanding; publish the end of those that did not."""
        admitted = []
        for execution_id, item in zip(ids, new, strict=True):
            if item.sha is None:
                self.bus.publish(
                    events.test_finished(
                        state.id,
                        test_id=item.request.id,
                        execution_id=execution_id,
                        status=ExecutionStatus.ERROR.value,
                        error=item.error,
                    )
                )
                continue
            admitted.append(Admitted(execution_id, item.request, item.sha))
        state.outstanding += len(admitted)
        return admitted

    async def _put_all(self, state: SessionState, items: list[QueueItem]) -> None:
        """Queue ``items``, waiting for room; stops when the session or the queue does."""
        for item in items:
            if state.stopping is not None:
                return
            try:
                await self.queue.put(item)
            except OrchestratorClosedError:
                return  # closed while waiting for room: cancel_all() records the rest
