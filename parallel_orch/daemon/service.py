"""What each protocol method does, on top of one ParallelTestOrchestrator.

The service knows nothing of sockets: it takes typed params and returns
result models, raising :class:`~parallel_orch.daemon.protocol.RpcError`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from parallel_orch import events, history, listing
from parallel_orch.daemon import protocol as p
from parallel_orch.daemon.protocol import ErrorCode, Method, RpcError, rpc_error
from parallel_orch.eta import SessionEta
from parallel_orch.events import Event, EventType, Subscription
from parallel_orch.exceptions import OrchError
from parallel_orch.models import ExecutionStatus, SessionStatus, TestRequest, with_default_ref
from parallel_orch.orchestrator import ParallelTestOrchestrator
from parallel_orch.plans import load_plans
from parallel_orch.store import ExecutionRecord, SessionRecord

log = logging.getLogger(__name__)

Emit = Callable[..., Awaitable[None]]
"""``await emit(*events)``: send events to the client, in order, in one write."""

Reply = Callable[[BaseModel], None]
"""``reply(result)``: the answer, sent now (before the method returns); nothing more is sent."""

WATCH_BUFFER_EVENTS = 2048  # events a watcher may fall behind by before it is dropped
REPLAY_CHUNK = 256  # events of a watch's replay sent in one write


@functools.cache
def _version() -> str:
    """This package's version, looked up once: a lookup walks the import path (~1 ms)."""
    return metadata.version("parallel-orch")


class DaemonService:
    """The methods of the protocol; see ``docs/protocol.md``."""

    def __init__(
        self, orch: ParallelTestOrchestrator, *, socket_path: Path, grace_seconds: float
    ) -> None:
        self.orch = orch
        self.socket_path = socket_path
        self.grace_seconds = grace_seconds
        self.connections = 0  # kept by the server
        self.accepting = True
        self.stop_requested = anyio.Event()
        self.forced = anyio.Event()  # stop now: no grace for running attempts
        self._started = time.monotonic()
        self._submitting = 0  # submits between the accepting check and their commit
        self._submitted: anyio.Event | None = None  # made by the first to wait for one
        self._eta: SessionEta | None = None  # made at first use: the store opens with the orch

    def request_stop(self, *, now: bool) -> None:
        """Stop taking sessions and wake the lifecycle; ``now`` also cuts the grace. Idempotent."""
        self.accepting = False
        self.stop_requested.set()
        if now:
            self.forced.set()

    async def call(
        self, method: str, params: dict[str, Any], emit: Emit, reply: Reply | None = None
    ) -> BaseModel | list[Any]:
        """Run one request; a submit may answer through ``reply`` before it returns.

        :raises RpcError: for an unknown method, bad params, or what the engine refused.
        """
        try:
            known = Method(method)
        except ValueError:
            names = ", ".join(m.value for m in Method)
            raise RpcError(
                ErrorCode.METHOD_NOT_FOUND, f"unknown method {method!r}; methods: {names}"
            ) from None
        typed = p.parse_params(known, params)
        try:
            return await self._dispatch(known, typed, emit, reply)
        except OrchError as exc:
            raise rpc_error(exc) from None

    async def _dispatch(
        self, method: Method, params: BaseModel, emit: Emit, reply: Reply | None
    ) -> BaseModel | list[Any]:
        if isinstance(params, p.SubmitParams):
            return await self.submit(params, reply)
        if isinstance(params, p.StatusParams):
            return await self.status(params.session_id)
        if isinstance(params, p.SessionsParams):
            return [s.model_dump(mode="json") for s in await self.sessions(params.limit)]
        if isinstance(params, p.ShutdownParams):
            return self.shutdown(now=params.now)
        if isinstance(params, p.HistoryParams):
            found = await history.executions(self.orch.store, params.test_id, params.limit)
            return [e.model_dump(mode="json") for e in found]
        if isinstance(params, p.FlakyParams):
            return await history.flaky(self.orch.store, params.sessions)
        if isinstance(params, p.SessionParams):
            if isinstance(params, p.ReportParams):
                return await self.orch.report(params.session_id, options=params.options)
            if method is Method.CANCEL:
                return await self.cancel(params.session_id)
            return await self.watch(params.session_id, emit)
        return self.ping()

    # -- methods --------------------------------------------------------------

    def ping(self) -> p.PingResult:
        return p.PingResult(
            protocol=p.PROTOCOL_VERSION,
            version=_version(),
            pid=os.getpid(),
            repo=str(self.orch.repo),
            state_dir=str(self.orch.state_dir),
            socket=str(self.socket_path),
            num_workers=self.orch.config.num_workers,
            accepting=self.accepting,
            uptime_seconds=round(time.monotonic() - self._started, 3),
        )

    async def submit(self, params: p.SubmitParams, reply: Reply | None = None) -> p.SubmitResult:
        """Commit a session, then answer: an acknowledged request is never lost.

        A submit whose idempotency key made a session already (a retry whose answer was
        lost, even across a restart) gets that session back. With ``reply``, the answer goes
        out from the commit's own step, the session running by then: a burst committed
        together is answered together, not each a turn of the loop after the one before."""
        key = params.idempotency_key
        done = await self.orch.store.session_for_key(key) if key is not None else None
        if done is not None:
            log.info("session %s: submitted again with its idempotency key", done)
            return p.SubmitResult(session_id=done, total=await self._total(done))
        if not self.accepting:
            raise RpcError(
                ErrorCode.SHUTTING_DOWN, "the daemon is shutting down; it takes no new sessions"
            )
        self.submitting(1)
        totals: list[int] = []  # the session's, once committed (shards counted apart)

        def acked(session_id: str, total: int) -> None:
            totals.append(total)
            if reply is not None:
                reply(p.SubmitResult(session_id=session_id, total=total))

        try:
            requests, plan_paths = await self._requests(params)
            session_id = await self.orch.create_session(
                requests,
                plan_paths=plan_paths,
                priority=params.priority,
                idempotency_key=key,
                options=params.options,
                acked=acked,
            )
        finally:
            self.submitting(-1)
        total = totals[0] if totals else await self._total(session_id)  # nothing ran, or a retry
        log.info("session %s: %d tests submitted", session_id, total)
        return p.SubmitResult(session_id=session_id, total=total)

    def submitting(self, change: int) -> None:
        """Count submits begun (``+n``) or ended (``-n``): :meth:`wait_for_submits` waits
        for them."""
        self._submitting += change
        if change < 0 and self._submitted is not None:
            self._submitted.set()
            self._submitted = None

    async def _total(self, session_id: str) -> int:
        return sum((await self.orch.store.count_by_status(session_id)).values())

    async def wait_for_submits(self) -> None:
        """Until submits begun before the stop are committed: the stop then cancels them too."""
        while self._submitting:
            if self._submitted is None:
                self._submitted = anyio.Event()
            await self._submitted.wait()

    async def _requests(self, params: p.SubmitParams) -> tuple[list[TestRequest], list[str]]:
        """The requests of a submit, and its plan paths (absolute, resolved)."""
        plan_paths: list[str] = []
        if params.paths is not None:
            files = [self._inside_repo(raw) for raw in params.paths]
            plan_paths = [str(f) for f in files]
            config = self.orch.config
            root, timeout = config.resolved_plans_root, config.default_timeout
            requests = await anyio.to_thread.run_sync(
                lambda: load_plans(files, root=root, default_timeout=timeout)
            )
        else:
            requests = list(params.requests or ())
            _check_unique(requests)
        if not requests:
            named = ", ".join(params.paths or ())
            raise RpcError(ErrorCode.PLAN_ERROR, f"no tests found in {named}")
        return with_default_ref(requests, params.ref), plan_paths

    def _inside_repo(self, raw: str) -> Path:
        """``raw`` resolved against the repo, symlinks followed; refused if it leaves the repo."""
        repo = self.orch.repo
        path = Path(raw).expanduser()
        resolved = (path if path.is_absolute() else repo / path).resolve()
        if not resolved.is_relative_to(repo):
            raise RpcError(
                ErrorCode.PATH_REFUSED,
                f"{raw!r} is outside the repository {repo}; the daemon only runs plans inside it",
            )
        return resolved

    async def status(self, session_id: str | None) -> p.SessionSummary | p.DaemonStatus:
        if session_id is not None:
            return await listing.summary(self.orch.store, session_id, self.eta)
        snapshot = self.orch.get_status()
        return p.DaemonStatus(
            protocol=p.PROTOCOL_VERSION,
            pid=os.getpid(),
            accepting=self.accepting,
            num_workers=snapshot["num_workers"],
            queued=snapshot["queued"],
            connections=self.connections,
            uptime_seconds=round(time.monotonic() - self._started, 3),
            workers=[p.WorkerStatus(**w) for w in snapshot["workers"]],
            pool=snapshot["pool"],
            sessions=[p.RunningSession(**s) for s in snapshot["sessions"]],
        )

    async def sessions(self, limit: int) -> list[p.SessionSummary]:
        return await listing.recent_summaries(self.orch.store, limit, self.eta)

    @property
    def eta(self) -> SessionEta:
        """The ETAs of running sessions (their histories kept between calls)."""
        if self._eta is None:
            self._eta = SessionEta(self.orch.store)
        return self._eta

    async def cancel(self, session_id: str) -> p.CancelResult:
        store = self.orch.store
        row = await store.get_session(session_id)
        if SessionStatus(row.status).is_final:
            raise RpcError(
                ErrorCode.SESSION_FINISHED,
                f"session {row.id} already finished ({row.status}); nothing to cancel",
            )
        if not await self.orch.cancel_session(row.id):
            raise RpcError(
                ErrorCode.SESSION_FINISHED,
                f"session {row.id} is run by another process ({row.owner}), not this daemon",
            )
        log.info("session %s: cancelled by a client", row.id)
        return p.CancelResult(session_id=row.id, status=(await store.get_session(row.id)).status)

    async def watch(self, session_id: str, emit: Emit) -> p.SessionSummary:
        """Emit the session so far, then its events until ``session.finished``; its summary.

        "So far" is a ``session.started`` with the total and a ``test.finished`` per
        execution already final, read after subscribing (live duplicates are dropped),
        so a watch that starts late, even after the end, misses nothing. A session that
        had ended already is read once, before subscribing: nothing can happen to it.
        """
        store = self.orch.store
        ended: tuple[SessionRecord, list[ExecutionRecord]] | None = None
        if not self.orch.is_running(session_id):  # a prefix, or a session that is not here
            ended = await store.session_executions(session_id)
            session_id = ended[0].id
        async with self.orch.bus.subscribe(
            WATCH_BUFFER_EVENTS, session_id=session_id
        ) as subscription:
            running = self.orch.is_running(session_id)
            if running or ended is None or ended[0].status == SessionStatus.RUNNING.value:
                row, executions = await store.session_executions(session_id)  # after both
            else:
                row, executions = ended
            if not running and row.status == SessionStatus.RUNNING.value:
                raise RpcError(
                    ErrorCode.SESSION_NOT_FOUND,
                    f"session {row.id} is run by another process ({row.owner}), not this daemon",
                )
            replay = [events.session_started(row.id, len(executions))]
            seen: set[int | None] = set()
            for execution in executions:
                if ExecutionStatus(execution.status).is_final:
                    seen.add(execution.id)
                    replay.append(_finished(execution))
            if running:
                await _emit_in_chunks(replay, emit)
                await _follow(subscription, seen, emit, row.id)
        if running:
            return listing.summarize(*await store.session_counts(row.id))
        counts = Counter(e.status for e in executions)
        summary = listing.summarize(row, dict(sorted(counts.items())))  # as the store counts
        replay.append(
            events.session_finished(
                row.id,
                status=summary.status,
                total=summary.total,
                duration_seconds=summary.duration_seconds,
            )
        )
        await _emit_in_chunks(replay, emit)
        return summary

    def shutdown(self, *, now: bool) -> p.ShutdownResult:
        log.info("shutdown requested by a client (%s)", "now" if now else "drain")
        self.request_stop(now=now)
        return p.ShutdownResult(
            mode="now" if now else "drain", grace_seconds=0.0 if now else self.grace_seconds
        )


def _check_unique(requests: Sequence[TestRequest]) -> None:
    seen: set[str] = set()
    for request in requests:
        if request.id in seen:
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"invalid params for submit: duplicate test id {request.id!r}",
            )
        seen.add(request.id)


async def _emit_in_chunks(replay: Sequence[Event], emit: Emit) -> None:
    """A watch's replay, :data:`REPLAY_CHUNK` events to a write."""
    for start in range(0, len(replay), REPLAY_CHUNK):
        await emit(*replay[start : start + REPLAY_CHUNK])


async def _follow(
    subscription: Subscription, seen: set[int | None], emit: Emit, session_id: str
) -> None:
    """A running session's live events (those replayed already left out) to its end."""
    async for event in subscription.receive:
        if event.type is EventType.TEST_FINISHED and event.execution_id in seen:
            continue
        await emit(event)
        if event.type is EventType.SESSION_FINISHED:
            return
    if subscription.dropped:
        raise _fell_behind(session_id)


def _finished(execution: ExecutionRecord) -> Event:
    """The ``test.finished`` event of an execution already final in the store."""
    return events.test_finished(
        execution.session_id,
        test_id=execution.test_id,
        execution_id=execution.id,
        attempt=execution.attempts,
        status=execution.status,
        duration_seconds=execution.duration_seconds,
        error=execution.error,
        flaky=execution.flaky,
        at=execution.completed_at or execution.created_at,
    )


def _fell_behind(session_id: str) -> RpcError:
    log.warning(
        "watch of session %s dropped: its client fell %d events behind",
        session_id,
        WATCH_BUFFER_EVENTS,
    )
    return RpcError(
        ErrorCode.WATCH_DROPPED,
        f"this watch fell {WATCH_BUFFER_EVENTS} events behind and was dropped; "
        f"watch {session_id} again, or read `report {session_id}`",
    )
