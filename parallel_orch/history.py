"""A test across sessions: its recent executions, and which tests flake.

``history`` lists a test's executions newest first, whatever session ran
them. ``flaky`` ranks tests by flake rate over the newest N sessions: a run
is a flake when the execution is flagged flaky (it failed, then passed on a
retry), or when it failed or timed out at a commit where the same test also
passed in the window. A failure at a commit where the test never passed is a
broken test, not a flaky one. Matrix and repeat variants (``@ref``, ``#n``)
count as their test. The CLI and the daemon both answer from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer

from parallel_orch.limits import FLAKY_SESSIONS, HISTORY_LIMIT
from parallel_orch.store import ExecutionRecord, OutcomeCounts

if TYPE_CHECKING:
    from parallel_orch.store import Store

DEFAULT_SESSIONS = FLAKY_SESSIONS  # sessions `flaky` looks back over
DEFAULT_LIMIT = HISTORY_LIMIT  # executions `history` lists
_VARIANT = re.compile(r"[@#].*$")


def iso_z(value: datetime) -> str:
    """ISO 8601 in UTC with ``Z``, as the protocol writes times (naive means UTC)."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat(timespec="microseconds").replace("+00:00", "Z")


#: A time that JSON shows as ``2026-01-02T03:04:05.678901Z``.
UtcTime = Annotated[datetime, PlainSerializer(iso_z, return_type=str, when_used="json")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HistoryEntry(_Model):
    """One execution of a test, as ``history`` lists it."""

    session_id: str
    test_id: str
    status: str
    created_at: UtcTime  # when it was submitted
    started_at: UtcTime | None
    completed_at: UtcTime | None
    duration_seconds: float | None  # of the final attempt
    ref: str
    sha: str | None
    flaky: bool
    attempts: int
    error: str | None


class FlakyTest(_Model):
    """A test that flaked in the window, as ``flaky`` ranks it."""

    test_id: str
    runs: int  # executions that passed, failed or timed out
    flakes: int  # flagged + mixed_failures
    flake_rate: float  # flakes / runs
    flagged: int  # executions that failed, then passed on a retry
    mixed_failures: int  # failed or timed out at a commit where it also passed
    mixed_shas: list[str]  # those commits
    last_flake_session: str
    last_flake_at: UtcTime | None


class FlakyTests(_Model):
    """The result of ``flaky``: the window it looked at, and its tests, flakiest first."""

    sessions: int  # sessions looked at (fewer than asked in a young store)
    tests: list[FlakyTest]


def entry(execution: ExecutionRecord) -> HistoryEntry:
    return HistoryEntry(
        session_id=execution.session_id,
        test_id=execution.test_id,
        status=execution.status,
        created_at=execution.created_at,
        started_at=execution.started_at,
        completed_at=execution.completed_at,
        duration_seconds=execution.duration_seconds,
        ref=execution.ref,
        sha=execution.sha,
        flaky=execution.flaky,
        attempts=execution.attempts,
        error=execution.error,
    )


async def executions(store: Store, test_id: str, limit: int = DEFAULT_LIMIT) -> list[HistoryEntry]:
    """The newest ``limit`` executions of ``test_id`` (and its variants), newest first."""
    return [entry(e) for e in await store.test_history(test_id, limit)]


async def flaky(store: Store, sessions: int = DEFAULT_SESSIONS) -> FlakyTests:
    """Tests that flaked in the newest ``sessions`` sessions, flakiest first."""
    counted, counts = await store.outcome_counts(sessions)
    return FlakyTests(sessions=counted, tests=rank(counts))


def base_id(test_id: str) -> str:
    """The test a matrix or repeat variant belongs to: ``a::b@main#2`` is ``a::b``."""
    plan, sep, name = test_id.rpartition("::")
    return plan + sep + _VARIANT.sub("", name)


def rank(counts: Iterable[OutcomeCounts]) -> list[FlakyTest]:
    """The tests among ``counts`` (per test id and commit) that flaked, flakiest first."""
    by_test: dict[str, dict[str | None, list[OutcomeCounts]]] = {}
    for count in counts:
        by_sha = by_test.setdefault(base_id(count.test_id), {})
        by_sha.setdefault(count.sha, []).append(count)  # variants of one test at one commit
    found = [t for t in (_judge(k, v) for k, v in by_test.items()) if t is not None]
    return sorted(found, key=lambda t: (-t.flake_rate, -t.flakes, t.test_id))


def _judge(test_id: str, by_sha: dict[str | None, list[OutcomeCounts]]) -> FlakyTest | None:
    runs = flagged = mixed_failures = 0
    mixed_shas: list[str] = []
    latest: list[tuple[datetime, str]] = []
    for sha, counts in by_sha.items():
        passed, failed = sum(c.passed for c in counts), sum(c.failed for c in counts)
        runs += passed + failed
        flagged += sum(c.flagged for c in counts)
        latest += [c.last_flagged for c in counts if c.last_flagged is not None]
        if passed and failed and sha is not None:
            mixed_failures += failed
            mixed_shas.append(sha)
            latest += [c.last_failed for c in counts if c.last_failed is not None]
    flakes = flagged + mixed_failures
    if not flakes:
        return None
    last_at, last_session = max(latest) if latest else (None, "")
    return FlakyTest(
        test_id=test_id,
        runs=runs,
        flakes=flakes,
        flake_rate=round(flakes / runs, 4),
        flagged=flagged,
        mixed_failures=mixed_failures,
        mixed_shas=sorted(mixed_shas),
        last_flake_session=last_session,
        last_flake_at=last_at,
    )
