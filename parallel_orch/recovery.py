"""Sessions a dead process left `running`: kill what it left, then mark or reopen them."""

from __future__ import annotations

import logging
import signal

import anyio

from parallel_orch import procs
from parallel_orch.models import ExecutionStatus, SessionStatus, TestRequest
from parallel_orch.sessions import SessionState
from parallel_orch.store import ParallelTestSession, Store
from parallel_orch.worktrees import WorktreePool

log = logging.getLogger(__name__)

DIED = "the process running it died"


async def orphaned_sessions(store: Store) -> list[ParallelTestSession]:
    """Sessions recorded `running` whose owner process is gone."""
    running = await store.sessions_with_status(SessionStatus.RUNNING)
    return [s for s in running if not procs.owner_alive(s.owner)]


async def kill_leftovers(store: Store, session_id: str) -> set[int]:
    """SIGKILL the process groups a session's attempts left, if still ours; which ones."""
    killed: set[int] = set()
    for attempt in await store.running_attempts(session_id):
        if attempt.pgid is not None and procs.kill_stale_group(attempt.pgid, session_id):
            killed.add(attempt.pgid)
    # Groups spawned before their pgid was committed: found by their environment.
    for pgid in await anyio.to_thread.run_sync(procs.session_groups, session_id):
        if pgid not in killed and procs.signal_group(pgid, signal.SIGKILL):
            killed.add(pgid)
    for pgid in sorted(killed):
        log.warning("killed process group %s left by session %s", pgid, session_id)
    return killed


async def mark_interrupted(store: Store, session_id: str) -> None:
    """Running attempts and unfinished executions become `interrupted`."""
    await store.close_unfinished(session_id, ExecutionStatus.INTERRUPTED, error=DIED)


async def reopen(
    store: Store, pool: WorktreePool, session: ParallelTestSession, owner: str
) -> SessionState:
    """Take the session over: running attempts `interrupted`, unfinished requests pending again.

    Requests whose ref no longer resolves end `error`; the returned state
    holds the rest, ready to queue.
    """
    await store.close_unfinished(
        session.id, ExecutionStatus.INTERRUPTED, error=DIED, executions=False
    )
    await store.reopen_session(session.id, owner)
    state = SessionState(id=session.id, plan_key=session.plan_key)
    unfinished = await store.executions(
        session.id, [ExecutionStatus.PENDING, ExecutionStatus.RUNNING]
    )
    requests = [TestRequest.model_validate_json(e.request_json) for e in unfinished]
    resolved = await anyio.to_thread.run_sync(pool.resolve_refs, [r.ref for r in requests])
    for row, request in zip(unfinished, requests, strict=True):
        assert row.id is not None
        sha = row.sha or resolved.get(request.ref)
        if not isinstance(sha, str):
            await store.finish_execution(row.id, ExecutionStatus.ERROR, error=str(sha))
            continue
        await store.set_execution_pending(row.id)
        state.requests[row.id] = request
        state.shas[row.id] = sha
    state.outstanding = len(state.requests)
    log.info("resuming session %s: %d requests", session.id, state.outstanding)
    return state
