"""How `status`, `watch` and `status SESSION` put the daemon's answers into words.

They read the replies' plain JSON (shaped as :class:`~parallel_orch.daemon.protocol.
SessionSummary` and :class:`~parallel_orch.daemon.protocol.DaemonStatus`), so that
`status` needs no pydantic; a reply without a field these read is a
:class:`~parallel_orch.daemon.wire.DaemonProtocolError` (see :func:`reading`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from parallel_orch.daemon.wire import DaemonProtocolError
from parallel_orch.report.renderers.words import eta, plural, seconds


@contextmanager
def reading(method: str) -> Iterator[None]:
    """Turn a reply to ``method`` that lacks what we read into one clear error."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DaemonProtocolError(
            f"the daemon's reply to {method} is not what this client reads ({exc!r}); "
            "are client and daemon the same version?"
        ) from None


def summary_line(summary: Mapping[str, Any]) -> str:
    """``session ID: running (4 tests: pending 2, running 2), ETA 2s``; how its webhook's
    delivery went, once there is one."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items())) or "no tests"
    took = summary["duration_seconds"]
    line = f"session {summary['session_id']}: {summary['status']}"
    line += f" in {seconds(took)}" if took is not None else ""
    line += f" ({plural(summary['total'], 'test')}: {counts})"
    left = summary.get("eta_seconds")
    line += f", {eta(left)}" if left is not None else ""
    notified = summary.get("notify_status")
    return line + (f"; webhook {notified}" if notified else "")


def daemon_lines(status: Mapping[str, Any]) -> list[str]:
    """The daemon, then each busy worker and each running session, a line each (from the
    daemon's memory: a session's ETA is in its own status)."""
    busy = [w for w in status["workers"] if w["test_id"] is not None]
    lines = [
        f"daemon pid {status['pid']}, {'accepting' if status['accepting'] else 'stopping'}, "
        f"up {status['uptime_seconds']:.0f}s; workers {len(busy)}/{status['num_workers']} "
        f"busy, {status['queued']} queued, {plural(status['connections'], 'connection')}"
    ]
    lines += [f"  worker {w['worker']}: {w['test_id']} ({w['session_id']})" for w in busy]
    lines += [
        f"  session {s['session_id']}: {s['outstanding']} to go ({s['queued']} queued, "
        f"{s['running']} running), {s['failures']} failed, priority {s['priority']}"
        for s in status["sessions"]
    ]
    return lines
