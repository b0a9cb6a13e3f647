"""`status` and `watch` in words: counts, plurals and a running session's ETA."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from parallel_orch.cli.status_text import daemon_lines, reading, summary_line
from parallel_orch.daemon import protocol as p
from parallel_orch.daemon.wire import DaemonProtocolError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_running_session_says_its_eta_and_a_finished_one_how_long_it_took() -> None:
    """`status SESSION`: counts by status, then the ETA while running, the time once done."""
    running = p.SessionSummary(
        session_id="abc",
        status="running",
        created_at=T0,
        completed_at=None,
        duration_seconds=None,
        total=1,
        passed=0,
        failed=0,
        counts={"running": 1},
        eta_seconds=65.2,
    )
    assert (
        summary_line(running.model_dump(mode="json"))
        == "session abc: running (1 test: running 1), ETA 1m 05s"
    )
    done = running.model_copy(
        update={"status": "complete", "duration_seconds": 3.0, "counts": {"passed": 1}}
    )
    assert summary_line(done.model_copy(update={"eta_seconds": None}).model_dump(mode="json")) == (
        "session abc: complete in 3.00s (1 test: passed 1)"
    )
    notified = done.model_copy(update={"eta_seconds": None, "notify_status": "delivered: HTTP 200"})
    assert summary_line(notified.model_dump(mode="json")).endswith(
        "(1 test: passed 1); webhook delivered: HTTP 200"
    )


def test_the_daemon_status_lists_busy_workers_and_running_sessions() -> None:
    """`status`: one line for the daemon, then a line per busy worker and running session."""
    status = p.DaemonStatus(
        protocol=1,
        pid=42,
        accepting=True,
        num_workers=2,
        queued=3,
        connections=1,
        uptime_seconds=10.0,
        workers=[
            p.WorkerStatus(worker=0, session_id="abc", test_id="unit::a"),
            p.WorkerStatus(worker=1, session_id=None, test_id=None),
        ],
        pool={},
        sessions=[
            p.RunningSession(
                session_id="abc",
                priority=0,
                outstanding=4,
                queued=3,
                running=1,
                failures=0,
            )
        ],
    )
    assert daemon_lines(status.model_dump(mode="json")) == [
        "daemon pid 42, accepting, up 10s; workers 1/2 busy, 3 queued, 1 connection",
        "  worker 0: unit::a (abc)",
        "  session abc: 4 to go (3 queued, 1 running), 0 failed, priority 0",
    ]


def test_a_reply_without_a_field_we_read_is_a_protocol_error() -> None:
    """A daemon of another version: one clear error naming the method, not a KeyError."""
    with (
        pytest.raises(DaemonProtocolError, match=r"reply to status .*same version"),
        reading("status"),
    ):
        daemon_lines({"pid": 1, "accepting": True})
