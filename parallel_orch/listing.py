"""Session listings as the CLI and the daemon show them: one summary per session."""

from __future__ import annotations

from parallel_orch.daemon.protocol import SessionSummary
from parallel_orch.eta import SessionEta
from parallel_orch.models import FAILURE_STATUSES, ExecutionStatus, SessionStatus
from parallel_orch.store import SessionRecord, Store


def summarize(
    session: SessionRecord, counts: dict[str, int], eta_seconds: float | None = None
) -> SessionSummary:
    """A session and its executions' per-status counts, summed up."""
    ended = session.completed_at
    return SessionSummary(
        session_id=session.id,
        status=session.status,
        created_at=session.created_at,
        completed_at=ended,
        duration_seconds=(ended - session.created_at).total_seconds() if ended else None,
        total=sum(counts.values()),
        passed=counts.get(ExecutionStatus.PASSED.value, 0),
        failed=sum(counts.get(s.value, 0) for s in FAILURE_STATUSES),
        counts=counts,
        plan_paths=list(session.plan_paths),
        notify_status=session.notify_status,
        eta_seconds=eta_seconds,
    )


async def recent_summaries(
    store: Store, limit: int, eta: SessionEta | None = None
) -> list[SessionSummary]:
    """The latest sessions with their counts, in two queries (and the ETA of running ones)."""
    sessions = await store.recent_sessions(limit)
    counts = await store.counts_by_session([s.id for s in sessions])
    return [summarize(s, counts[s.id], await _eta(s, eta)) for s in sessions]


async def summary(store: Store, session_id: str, eta: SessionEta | None = None) -> SessionSummary:
    """One session (``session_id`` may be a unique prefix) with its counts (and ETA)."""
    session = await store.get_session(session_id)
    return summarize(session, await store.count_by_status(session.id), await _eta(session, eta))


async def _eta(session: SessionRecord, eta: SessionEta | None) -> float | None:
    if eta is None or session.status != SessionStatus.RUNNING.value:
        return None
    return await eta.seconds_left(session.id)
