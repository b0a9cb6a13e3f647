"""The attempts as a Chrome trace (Trace Event Format), for Perfetto and ``chrome://tracing``.

``{"traceEvents": [...], "displayTimeUnit": "ms"}``: one process for the
session, one track (thread) per worker, named by ``thread_name`` metadata
events. Each attempt is one complete event (``"ph": "X"``, category
``attempt``) named by its test id, with its attempt number, status, worktree,
exit code and shard in ``args``; a worktree setup that ran before it is a slice of
its own (category ``setup``) just before it. Timestamps are microseconds from
the session's start.

Where the slices sit: an attempt is recorded as started once its worktree is
leased, then ran its setup (``setup_seconds``) and its command
(``duration_seconds``). So its slices start at its recorded start and last
those durations. Its recorded end can come later (a passed attempt is
recorded while its worker moves on), so it is not used: this way the slices
of one worker never overlap.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from parallel_orch.report.model import AttemptResult, ParallelTestReport

PID = 1
# chrome://tracing's reserved colour names, by status (Perfetto picks its own).
_COLOUR = {
    "passed": "good",
    "failed": "bad",
    "timed_out": "terrible",
    "error": "terrible",
    "cancelled": "grey",
    "interrupted": "grey",
    "skipped": "grey",
}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _origin(report: ParallelTestReport) -> datetime | None:
    """The session's start; its first attempt's if it has none."""
    if report.started_at is not None:
        return _aware(report.started_at)
    starts = [_aware(a.started_at) for t in report.completed_tests for a in t.attempts]
    return min(starts, default=None)


def tid(worker: int) -> int:
    """A worker's track: never 0 nor the process id, which viewers treat as special."""
    return worker + PID + 1


def _slices(test_id: str, attempt: AttemptResult, start_us: int) -> list[dict[str, Any]]:
    track = tid(attempt.worker)
    events: list[dict[str, Any]] = []
    setup_us = _micros(attempt.setup_seconds or 0.0)
    if setup_us > 0:
        events.append(
            {
                "name": f"setup for {test_id}",
                "cat": "setup",
                "ph": "X",
                "pid": PID,
                "tid": track,
                "ts": start_us,
                "dur": setup_us,
                "args": {"test_id": test_id, "attempt": attempt.number},
            }
        )
    args: dict[str, Any] = {
        "attempt": attempt.number,
        "status": attempt.status,
        "worktree": attempt.worktree,
        "exit_code": attempt.exit_code,
    }
    if attempt.shard:
        args["shard"] = attempt.shard
    if attempt.host:
        args["host"] = attempt.host
    if attempt.error:
        args["error"] = attempt.error
    event: dict[str, Any] = {
        "name": test_id,
        "cat": "attempt",
        "ph": "X",
        "pid": PID,
        "tid": track,
        "ts": start_us + setup_us,
        "dur": _micros(attempt.duration_seconds or 0.0),
        "args": args,
    }
    if attempt.status in _COLOUR:
        event["cname"] = _COLOUR[attempt.status]
    events.append(event)
    return events


def _metadata(report: ParallelTestReport, workers: set[int]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": PID,
            "args": {"name": f"parallel-orch session {report.session_id}"},
        }
    ]
    for worker in sorted(workers):
        for name, args in (
            ("thread_name", {"name": f"worker {worker}"}),
            ("thread_sort_index", {"sort_index": worker}),
        ):
            events.append({"name": name, "ph": "M", "pid": PID, "tid": tid(worker), "args": args})
    return events


def render(report: ParallelTestReport) -> str:
    """The session's attempts as Trace Event Format JSON; see the module docstring."""
    origin = _origin(report)
    slices: list[dict[str, Any]] = []
    workers: set[int] = set()
    for test in report.completed_tests:
        for attempt in test.attempts:
            assert origin is not None  # an attempt makes one
            start = (_aware(attempt.started_at) - origin).total_seconds()
            slices += _slices(test.test_id, attempt, _micros(start))
            workers.add(attempt.worker)
    trace = {
        "traceEvents": _metadata(report, workers) + slices,
        "displayTimeUnit": "ms",
        "otherData": {
            "session_id": report.session_id,
            "status": report.status,
            "started_at": origin.isoformat() if origin else None,
            "num_workers": report.num_workers,
        },
    }
    return json.dumps(trace, separators=(",", ":")) + "\n"
