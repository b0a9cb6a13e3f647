"""Sessions a dead process left `running`: mark them interrupted, or take them over.

Killing what their attempts left running is the executor's part
(:meth:`~parallel_orch.executors.protocol.Executor.kill_leftovers`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio

from parallel_orch import gitrepo, procs
from parallel_orch.executors.protocol import Executor
from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.queue import Admitted
from parallel_orch.sessions import SessionRegistry, SessionState
from parallel_orch.store import SessionRecord, Store

log = logging.getLogger(__name__)

DIED = "the process running it died"


async def orphaned_sessions(store: Store) -> list[SessionRecord]:
    """Sessions recorded `running` whose owner process is gone."""
    running = await store.sessions_with_status(SessionStatus.RUNNING)
    return [s for s in running if not procs.owner_alive(s.owner)]


async def mark_interrupted(store: Store, session_id: str) -> None:
    """Running attempts and unfinished executions become `interrupted`."""
    await store.close_unfinished(session_id, ExecutionStatus.INTERRUPTED, error=DIED)


async def reopen(
    store: Store, repo: Path, session: SessionRecord, owner: str
) -> tuple[SessionState, list[Admitted]]:
    """Take the session over: running attempts `interrupted`, unfinished requests pending again.

    Requests whose ref no longer resolves end `error`; the rest come back
    admitted, ready to queue, and counted in the returned state.
    """
    await store.close_unfinished(
        session.id, ExecutionStatus.INTERRUPTED, error=DIED, executions=False
    )
    await store.reopen_session(session.id, owner)
    state = SessionState(id=session.id, plan_key=session.plan_key)
    unfinished = await store.executions(
        session.id, [ExecutionStatus.PENDING, ExecutionStatus.RUNNING]
    )
    requests = [e.request for e in unfinished]
    resolved = await anyio.to_thread.run_sync(gitrepo.resolve_refs, repo, [r.ref for r in requests])
    admitted = []
    for row, request in zip(unfinished, requests, strict=True):
        sha = row.sha or resolved.get(request.ref)
        if not isinstance(sha, str):
            await store.finish_execution(row.id, ExecutionStatus.ERROR, error=str(sha))
            continue
        await store.set_execution_pending(row.id)
        admitted.append(Admitted(row.id, request, sha))
    state.outstanding = len(admitted)
    log.info("resuming session %s: %d requests", session.id, state.outstanding)
    return state, admitted


async def recover(
    store: Store,
    executor: Executor,
    registry: SessionRegistry,
    *,
    repo: Path,
    owner: str,
    resume: bool,
) -> list[tuple[SessionState, list[Admitted]]]:
    """Sessions whose owner died: kill what they left, then mark them interrupted or,
    when ``resume``, take them over; those taken over with their requests to queue."""
    resumed = []
    for session in await orphaned_sessions(store):
        leftovers = await store.attempts(session.id, status=ExecutionStatus.RUNNING)
        await executor.kill_leftovers(session.id, leftovers)
        if not resume:
            await mark_interrupted(store, session.id)
            await registry.record_end(session.id, SessionStatus.INTERRUPTED)
            continue
        state, admitted = await reopen(store, repo, session, owner)
        registry.add(state)
        if state.outstanding == 0:
            await registry.finish(state)
        else:
            resumed.append((state, admitted))
    return resumed
