"""A session's final report: built from the store, compared, judged by its gates.

The report of a session that has ended is this, stored with it; its coverage
is combined once, here (:mod:`parallel_orch.report.coverage`). ``report
SESSION --min-pass-rate ...`` judges a stored one again by other gates.
"""

from __future__ import annotations

import logging
from enum import Enum

from parallel_orch.exceptions import SessionNotFoundError
from parallel_orch.report import build, coverage
from parallel_orch.report.compare import compare
from parallel_orch.report.gates import judge
from parallel_orch.report.model import ParallelTestReport
from parallel_orch.report.options import Gates, ReportOptions
from parallel_orch.store import SessionRecord, SessionSnapshot, Store

log = logging.getLogger(__name__)


class Unread(Enum):
    """A previous session not read yet (``None`` is "read: there is none")."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD


def options_of(session: SessionRecord) -> ReportOptions:
    """The options a session was submitted with (defaults for sessions older than them)."""
    try:
        return ReportOptions.model_validate_json(session.options_json or "{}")
    except ValueError:
        log.warning("session %s: unreadable report options, using defaults", session.id)
        return ReportOptions()


async def baseline_of(
    store: Store,
    session: SessionRecord,
    compare_to: str | None,
    previous: SessionRecord | Unread | None = UNREAD,
) -> ParallelTestReport | None:
    """The report to compare ``session`` with: ``compare_to``'s, else the previous session's
    of the same plan set (``previous``, when it was read already), else none.

    :raises SessionNotFoundError: if ``compare_to`` names no session.
    """
    if compare_to is not None:
        return await build.load_report(store, compare_to)
    if isinstance(previous, Unread):
        previous = await store.previous_session(session)
    if previous is None:
        return None
    try:
        return await build.report_of(store, previous)
    except SessionNotFoundError:  # deleted since
        return None


def judged(
    report: ParallelTestReport, gates: Gates, baseline: ParallelTestReport | None
) -> ParallelTestReport:
    """``report`` with its comparison to ``baseline``, its gates' verdicts and a hash over both."""
    comparison = compare(report, baseline) if baseline is not None else None
    report = report.model_copy(update={"comparison": comparison})
    verdicts = judge(report, gates)
    return report.model_copy(
        update={
            "gates": verdicts,
            "gates_passed": all(v.passed for v in verdicts),
            "report_hash": build.rehash(report.report_hash, gates, verdicts),
        }
    )


async def final_report(
    store: Store,
    session: SessionRecord,
    snapshot: SessionSnapshot,
    previous: SessionRecord | Unread | None = UNREAD,
) -> ParallelTestReport:
    """The report of ``session`` (with its final status) from ``snapshot``, with its coverage
    combined per commit, compared (with ``previous``, when it was read with the snapshot)
    and judged."""
    options = options_of(session)
    report = build.report_from(session, snapshot.executions, snapshot.attempts, snapshot.cases)
    state_dir = store.path.parent  # the store's file lives in the state dir
    combined = await coverage.combine_session(state_dir, session, snapshot)
    report = report.model_copy(update={"coverage": combined})
    try:
        baseline = await baseline_of(store, session, options.compare_to, previous)
    except SessionNotFoundError as exc:
        log.warning("session %s: not compared: %s", session.id, exc)
        baseline = None
    return judged(report, options.gates, baseline)


async def rejudged(store: Store, session_id: str, options: ReportOptions) -> ParallelTestReport:
    """A session's report judged again, by other gates or against another baseline.

    :raises SessionNotFoundError: if the session, or ``options.compare_to``, is not there.
    """
    session = await store.get_session(session_id)
    snapshot = await store.session_snapshot(session.id)
    report = build.report_from(session, snapshot.executions, snapshot.attempts, snapshot.cases)
    stored = await build.load_report(store, session.id)
    report = report.model_copy(update={"coverage": stored.coverage})
    baseline = await baseline_of(store, session, options.compare_to)
    return judged(report, options.gates, baseline)


async def stored_or_rejudged(
    store: Store, session_id: str, options: ReportOptions | None
) -> ParallelTestReport:
    """A session's stored report; with ``options``, judged again by them (:func:`rejudged`)."""
    if options is None:
        return await build.load_report(store, session_id)
    return await rejudged(store, session_id, options)
